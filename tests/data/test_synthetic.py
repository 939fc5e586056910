"""Synthetic data: keypoints survive a save/load roundtrip and sit on the drawn features."""

from __future__ import annotations

import numpy as np
import pytest
import sleap_io as sio

from posekit.data.synthetic import (
    make_synthetic_labels,
    part_names_for,
    render_synthetic_frames,
    save_synthetic_dataset,
)
from posekit.errors import PosekitError


def test_pkg_roundtrip_keeps_keypoints_frames_tracks_and_skeleton(synthetic_pkg):
    ref = render_synthetic_frames(12, 2, (64, 80), 5, seed=3)
    labels = sio.load_file(str(synthetic_pkg))
    assert len(labels.labeled_frames) == 12
    assert [t.name for t in labels.tracks] == ["animal0", "animal1"]
    assert labels.skeleton.node_names == ["head", "tail", "left", "right", "spine1"]
    assert labels.skeleton.symmetry_inds == [(2, 3)]
    assert len(labels.skeleton.edges) == 4
    for lf in labels.labeled_frames:
        for a, inst in enumerate(lf.user_instances):
            assert inst.track.name == f"animal{a}"
            np.testing.assert_allclose(inst.numpy(), ref.points[lf.frame_idx, a], atol=1e-9)
        np.testing.assert_array_equal(lf.image, ref.images[lf.frame_idx])


def test_mp4_roundtrip_keeps_keypoints(tmp_path):
    path = save_synthetic_dataset(
        tmp_path, n_frames=4, n_animals=1, image_size=64, n_parts=4, seed=1, video_format="mp4"
    )
    ref = render_synthetic_frames(4, 1, 64, 4, seed=1)
    labels = sio.load_file(str(path))
    assert path.suffix == ".slp" and (tmp_path / "synthetic.mp4").exists()
    for lf in labels.labeled_frames:
        np.testing.assert_allclose(lf.user_instances[0].numpy(), ref.points[lf.frame_idx, 0])
        diff = np.abs(lf.image.astype(float) - ref.images[lf.frame_idx].astype(float)).mean()
        assert diff < 8.0  # lossy but close


def test_keypoints_sit_on_their_blobs():
    frames = render_synthetic_frames(6, 2, 96, 5, seed=0)
    head, tail = [], []
    for t in range(6):
        for a in range(2):
            (hx, hy), (tx, ty) = frames.points[t, a, 0], frames.points[t, a, 1]
            head.append(frames.images[t, int(round(hy)), int(round(hx)), 0])
            tail.append(frames.images[t, int(round(ty)), int(round(tx)), 0])
    assert np.mean(head) > 200 and np.mean(tail) < 70


def test_in_memory_labels_reference_a_lossless_video(tmp_path):
    labels = make_synthetic_labels(3, 2, 48, 3, seed=2, video_path=tmp_path / "f.h5")
    ref = render_synthetic_frames(3, 2, 48, 3, seed=2)
    np.testing.assert_array_equal(labels.labeled_frames[2].image, ref.images[2])
    assert labels.skeleton.node_names == part_names_for(3) == ["head", "tail", "left"]


def test_bad_arguments():
    with pytest.raises(PosekitError, match="n_parts"):
        part_names_for(1)
    with pytest.raises(PosekitError, match="video_format"):
        save_synthetic_dataset("/tmp/unused", n_frames=1, video_format="avi")
