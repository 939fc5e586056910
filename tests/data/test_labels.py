"""Labels: sleap-io formats, user instances only, moved videos, errors, splits."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import sleap_io as sio

from posekit.data.labels import (
    load_labels,
    load_training_labels,
    pose_labels_from_sleap_io,
    split_labels,
)
from posekit.errors import PosekitError


def _h5_video(path, n=3, h=8, w=10):
    frames = (np.arange(n * h * w).reshape(n, h, w, 1) % 251).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("video", data=frames)
    return sio.Video.from_filename(str(path), dataset="video"), frames


def _labels(video, frames_instances, tracks=()):
    skel = sio.Skeleton(["a", "b", "c"], edges=[["a", "b"], ["b", "c"]], symmetries=[["a", "c"]])
    lfs = []
    for idx, insts in frames_instances:
        objs = []
        for kind, pts, track in insts:
            cls = sio.PredictedInstance if kind == "pred" else sio.Instance
            objs.append(cls.from_numpy(np.asarray(pts, float), skeleton=skel, track=track))
        lfs.append(sio.LabeledFrame(video=video, frame_idx=idx, instances=objs))
    return sio.Labels(labeled_frames=lfs, videos=[video], skeletons=[skel], tracks=list(tracks))


PTS = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def test_minimal_pkg_slp_with_embedded_image(shared_file):
    path = shared_file("data", "minimal", "minimal_instance.pkg.slp")
    labels = load_labels(path)
    ref = sio.load_file(str(path))
    assert len(labels) == 1 and labels.node_names == ["A", "B"]
    assert labels.skeleton.edges == [("A", "B")]
    assert labels.entries[0].points.shape == (2, 2, 2)
    np.testing.assert_allclose(labels.entries[0].points[0], ref[0].instances[0].numpy())
    img = labels.read_entry(0)
    assert img.shape == (384, 384, 1) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, ref[0].image)


def test_small_robot_slp_with_mp4(shared_file):
    path = shared_file("data", "minimal", "small_robot_minimal.slp")
    labels = load_labels(path, preload=True)
    ref = sio.load_file(str(path))
    n_user = sum(1 for lf in ref.labeled_frames if lf.user_instances)
    assert len(labels) == n_user >= 1
    img = labels.read_entry(0)
    assert img.ndim == 3 and img.dtype == np.uint8
    assert len(labels._cache) == len({(e.video_index, e.frame_idx) for e in labels.entries})


def test_moved_video_error_lists_places_and_hint_fixes_it(tmp_path, minimal_dir):
    moved = tmp_path / "labels" / "robot.slp"
    moved.parent.mkdir()
    shutil.copy(minimal_dir / "small_robot_minimal.slp", moved)
    elsewhere = tmp_path / "nothing_here"
    elsewhere.mkdir()
    with pytest.raises(PosekitError) as err:
        load_labels(moved, search_path_hints=[elsewhere])
    msg = str(err.value)
    assert "small_robot.mp4" in msg
    assert str(elsewhere / "small_robot.mp4") in msg
    assert str(moved.parent.resolve() / "small_robot.mp4") in msg
    assert "data.labels.search_path_hints" in msg
    labels = load_labels(moved, search_path_hints=[elsewhere, minimal_dir])
    assert labels.read_entry(0).ndim == 3


def test_user_instances_only_and_user_wins(tmp_path):
    video, _ = _h5_video(tmp_path / "v.h5")
    t0 = sio.Track("t0")
    labels = _labels(
        video,
        [
            (0, [("pred", [[9.0, 9.0]] * 3, None)]),  # predictions only: skipped
            (1, [("pred", [[8.0, 8.0]] * 3, None), ("user", PTS, t0)]),
            (2, [("user", [[np.nan, np.nan]] * 3, None), ("user", PTS, None)]),
        ],
        tracks=[t0],
    )
    pl = pose_labels_from_sleap_io(labels)
    assert [e.frame_idx for e in pl.entries] == [1, 2]
    assert pl.entries[0].points.shape == (1, 3, 2)
    np.testing.assert_array_equal(pl.entries[0].points[0], PTS)
    assert pl.class_names == ["t0"]
    assert pl.entries[0].track_inds.tolist() == [0]
    assert pl.entries[1].track_inds.tolist() == [-1]  # empty instance dropped, no track
    tracked = pose_labels_from_sleap_io(labels, require_track=True)
    assert [e.frame_idx for e in tracked.entries] == [1]


def test_no_user_instances_is_a_clear_error(tmp_path):
    video, _ = _h5_video(tmp_path / "v.h5")
    labels = _labels(video, [(0, [("pred", PTS, None)])])
    with pytest.raises(PosekitError, match="no user-labelled instances"):
        pose_labels_from_sleap_io(labels)


def test_skeleton_mismatch_names_unknown_parts(tmp_path):
    video, _ = _h5_video(tmp_path / "v.h5")
    labels = _labels(video, [(0, [("user", PTS, None)])])
    with pytest.raises(PosekitError, match=r"skeleton mismatch.*'z'.*\['a', 'b', 'c'\]"):
        pose_labels_from_sleap_io(labels, part_names=["a", "z"])
    reordered = pose_labels_from_sleap_io(labels, part_names=["c", "a"])
    np.testing.assert_array_equal(reordered.entries[0].points[0], [PTS[2], PTS[0]])
    assert reordered.skeleton.symmetries == [("a", "c")]


def test_unreadable_frame_names_video_and_frame(tmp_path):
    video, frames = _h5_video(tmp_path / "v.h5", n=3)
    labels = _labels(video, [(1, [("user", PTS, None)]), (10, [("user", PTS, None)])])
    pl = pose_labels_from_sleap_io(labels)
    np.testing.assert_array_equal(pl.read_entry(0), frames[1])
    with pytest.raises(PosekitError, match=r"frame 10 of video .*v\.h5"):
        pl.read_entry(1)


def test_split_is_seeded_disjoint_and_complete(synthetic_labels):
    train, val = split_labels(synthetic_labels, 0.25, seed=1)
    train2, val2 = split_labels(synthetic_labels, 0.25, seed=1)
    _, val3 = split_labels(synthetic_labels, 0.25, seed=2)
    key = lambda pl: [e.frame_idx for e in pl.entries]  # noqa: E731
    assert key(val) == key(val2) and key(train) == key(train2)
    assert len(val) == 3 and len(train) == 9
    assert sorted(key(train) + key(val)) == list(range(12))
    assert key(val3) != key(val)
    with pytest.raises(PosekitError, match="validation_fraction"):
        split_labels(synthetic_labels, 1.5)


def test_load_training_labels_from_config(synthetic_pkg):
    cfg = {
        "training_labels": str(synthetic_pkg),
        "validation_fraction": 0.5,
        "test_labels": str(synthetic_pkg),
    }
    splits = load_training_labels(cfg, seed=0)
    assert len(splits["train"]) == 6 and len(splits["val"]) == 6 and len(splits["test"]) == 12
    assert splits["train"].class_names == ["animal0", "animal1"]
    given = load_training_labels(
        {"training_labels": str(synthetic_pkg), "validation_labels": str(synthetic_pkg)}
    )
    assert len(given["train"]) == 12 and len(given["val"]) == 12 and given["test"] is None
    with pytest.raises(PosekitError, match="data.labels.training_labels"):
        load_training_labels({})


def test_preload_decodes_a_video_in_order_and_matches_random_access(tmp_path):
    """`preload` streams an mp4 once; the cached frames equal `video[i]` frame by frame."""
    from posekit.data.synthetic import save_synthetic_dataset

    path = save_synthetic_dataset(
        tmp_path, n_frames=12, image_size=64, n_parts=3, video_format="mp4", noise_std=0
    )
    labels = sio.load_slp(str(path))
    keep = [lf for lf in labels.labeled_frames if lf.frame_idx in (1, 4, 5, 9, 11)]
    labels = sio.Labels(labeled_frames=keep, videos=labels.videos, skeletons=labels.skeletons)
    pose = pose_labels_from_sleap_io(labels).preload()
    video = labels.videos[0]
    assert sorted(k[1] for k in pose._cache) == [1, 4, 5, 9, 11]
    for (_, idx), img in pose._cache.items():
        expected = np.asarray(video[idx])
        expected = expected if expected.ndim == 3 else expected[..., None]
        assert img.dtype == np.uint8 and img.shape == expected.shape
        np.testing.assert_array_equal(img, expected)
