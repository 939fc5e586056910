"""Trajectory filters (`posekit.tracking.trajectories`, `posekit filter`): each filter on
tracks with injected errors of known size, and the real flies clip (its proofread tracks
as the truth) through the command line into .slp, .analysis.h5 and .csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from tracking_helpers import FLIES, sio

from posekit.cli import main
from posekit.errors import PosekitError
from posekit.tracking.trajectories import (
    FLAGS,
    TrajectoryFilter,
    filter_labels,
    filter_track,
    original_labels,
)

EDGES = [(0, 1), (1, 2)]


def walk(frames=200, seed=0, noise=0.0):
    """A 3-node animal walking right at 2 px/frame (truth) and its noisy observation."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=float)
    truth = np.stack([np.stack([50 + 2 * t + 10 * k, 100 + 0 * t], axis=1) for k in range(3)], 1)
    return truth, truth + rng.normal(0, noise, truth.shape)


def test_speed_limit_removes_spikes_and_keeps_fast_motion():
    truth, obs = walk()
    obs[[40, 120], 1] += [60.0, -45.0]  # two one-frame spikes on node 1
    obs[[80, 81], 2] += 50.0  # and a two-frame one on node 2
    out, flags = filter_track(obs, np.ones(obs.shape[:2]), EDGES, TrajectoryFilter(max_speed=10))
    removed = np.argwhere(np.isnan(out[..., 0]))
    assert removed.tolist() == [[40, 1], [80, 2], [81, 2], [120, 1]]
    assert np.flatnonzero(flags).tolist() == [40, 80, 81, 120]
    assert (flags[[40, 80, 81, 120]] == FLAGS["jump"]).all()
    np.testing.assert_allclose(out[np.isfinite(out)], truth[np.isfinite(out)])  # 2 px/frame kept


def test_edge_length_drops_the_wrong_end_and_gaps_fill_linearly():
    truth, obs = walk()
    obs[60, 2] += [0.0, 25.0]  # node 2 off: edge (1, 2) three times its length
    flt = TrajectoryFilter(max_edge_change=0.5)
    out, flags = filter_track(obs, np.ones(obs.shape[:2]), EDGES, flt)
    assert np.argwhere(np.isnan(out[..., 0])).tolist() == [[60, 2]]
    assert flags[60] == FLAGS["edge"]
    filled, flags = filter_track(
        obs, np.ones(obs.shape[:2]), EDGES, TrajectoryFilter(max_edge_change=0.5, fill_gaps=2)
    )
    np.testing.assert_allclose(filled[60, 2], truth[60, 2])  # straight-line motion
    assert flags[60] == FLAGS["edge"] | FLAGS["filled"]


def test_low_scores_and_missing_frames():
    truth, obs = walk(50)
    scores = np.ones(obs.shape[:2])
    scores[10, 0] = 0.1
    present = np.ones(50, dtype=bool)
    present[20:23] = False
    obs[20:23] = np.nan
    out, flags = filter_track(
        obs, scores, EDGES, TrajectoryFilter(min_point_score=0.3, fill_gaps=5), present
    )
    assert flags[10] == FLAGS["low_score"] | FLAGS["filled"]  # removed, then refilled
    np.testing.assert_allclose(out[10, 0], truth[10, 0])
    assert np.isnan(out[20:23]).all()  # no instance is invented in frames without one


@pytest.mark.parametrize("smooth", ["median", "savgol", "kalman"])
def test_smoothers_shrink_noise_of_known_size(smooth):
    truth, obs = walk(400, noise=2.0)
    out, flags = filter_track(obs, np.ones(obs.shape[:2]), EDGES, TrajectoryFilter(smooth=smooth))
    before = np.sqrt(np.mean((obs - truth) ** 2))
    after = np.sqrt(np.mean((out - truth) ** 2))
    assert 1.8 < before < 2.2
    assert after < 0.65 * before, (smooth, before, after)
    assert flags.any() and not (flags & ~np.uint8(FLAGS["smoothed"])).any()


def test_kalman_trusts_sure_points_more():
    truth, obs = walk(300, seed=1)
    rng = np.random.default_rng(2)
    scores = np.where(rng.random(obs.shape[:2]) < 0.3, 0.1, 1.0)  # 30% doubtful points
    obs = truth + rng.normal(0, 1, obs.shape) * (1.0 / scores)[..., None]
    flt = TrajectoryFilter(smooth="kalman", kalman_noise=1.0)
    weighted, _ = filter_track(obs, scores, EDGES, flt)
    flat, _ = filter_track(obs, np.ones_like(scores), EDGES, flt)
    err = lambda x: np.sqrt(np.mean((x - truth) ** 2))  # noqa: E731
    assert err(weighted) < 0.6 * err(flat)


def test_bad_settings_are_one_clear_error():
    with pytest.raises(PosekitError, match="window must be odd"):
        TrajectoryFilter(smooth="median", window=4)
    with pytest.raises(PosekitError, match="smooth must be one of"):
        TrajectoryFilter(smooth="lowess")


@pytest.fixture(scope="module")
def fly_predictions():
    """The first 300 frames of the flies clip as predictions (scores 1), with spikes."""
    if not FLIES.exists():
        pytest.skip("shared flies clip not available")
    labels = sio.load_slp(str(FLIES))
    rng = np.random.default_rng(0)
    frames, spikes = [], set()
    for lf in labels.labeled_frames[:300]:
        insts = []
        for inst in lf.instances:
            pts = inst.numpy().copy()
            if rng.random() < 0.05:
                node = int(rng.integers(len(pts)))
                pts[node] += rng.choice([-1, 1], 2) * 60
                spikes.add((int(lf.frame_idx), inst.track.name, node))
            insts.append(
                sio.PredictedInstance.from_numpy(
                    points_data=pts,
                    skeleton=inst.skeleton,
                    point_scores=np.ones(len(pts)),
                    score=1.0,
                    track=inst.track,
                )
            )
        frames.append(sio.LabeledFrame(lf.video, lf.frame_idx, insts))
    preds = sio.Labels(
        labeled_frames=frames,
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )
    return labels, preds, spikes


def test_flies_spikes_found_and_original_kept(fly_predictions, tmp_path):
    truth, preds, spikes = fly_predictions
    src = tmp_path / "preds.slp"
    sio.save_slp(preds, str(src))
    out = tmp_path / "filtered.slp"
    assert main(["filter", str(src), "-o", str(out), "--max-speed", "25"]) == 0
    filtered = sio.load_slp(str(out))
    names = filtered.skeletons[0].node_names
    found = {
        (int(lf.frame_idx), inst.track.name, n)
        for lf in filtered.labeled_frames
        for inst in lf.instances
        for n in np.flatnonzero(np.isnan(inst.numpy()[:, 0])).tolist()
    }
    truth_missing = {
        (int(lf.frame_idx), inst.track.name, n)
        for lf in truth.labeled_frames[:300]
        for inst in lf.instances
        for n in np.flatnonzero(np.isnan(inst.numpy()[:, 0])).tolist()
    }
    found -= truth_missing
    assert len(spikes) > 20 and len(names) > 5
    assert len(found & spikes) >= 0.9 * len(spikes)  # recall
    assert len(found - spikes) <= 0.1 * len(found)  # precision: real flies are not cut
    back = original_labels(filtered)
    for a, b in zip(back.labeled_frames, preds.labeled_frames):
        for ia, ib in zip(a.instances, b.instances):
            np.testing.assert_allclose(ia.numpy(), ib.numpy(), atol=1e-3)
    assert filtered.provenance["posekit.filter"]["source"] == str(src)
    assert main(["filter", str(out), "-o", str(tmp_path / "again.slp"), "--smooth", "median"]) == 2


def test_flies_analysis_outputs_carry_flags_and_scores(fly_predictions, tmp_path):
    import h5py

    _, preds, spikes = fly_predictions
    filtered = filter_labels(preds, TrajectoryFilter(max_speed=25))
    rows = filtered.provenance["posekit.filter"]["flags"]
    src = tmp_path / "p.slp"
    sio.save_slp(filtered, str(src))
    from posekit.data.formats import write_predictions

    (h5,) = write_predictions(filtered, tmp_path / "f.analysis.h5")
    with h5py.File(h5) as f:
        per_frame = f["filter_flags"][:]
        per_track = f["filter_track_flags"][:]
        # every frame of the video (SLEAP's layout), predicted or not
        assert f["point_scores"].shape[-1] == per_frame.shape[0] == 1500
        assert "instance_scores" in f
    expected = np.zeros(1500, dtype=np.uint8)
    for _, frame, _, flag in rows:
        expected[frame] |= flag
    np.testing.assert_array_equal(per_frame, expected)
    assert {frame for frame, _, _ in spikes} <= set(np.flatnonzero(per_frame).tolist()) | {
        frame for frame, _, _ in spikes if frame in (0, 1, 298, 299)
    }
    assert per_track.shape == (2, 1500) and (per_track.max(axis=0) == per_frame).all()
    (csv_file,) = write_predictions(filtered, tmp_path / "f.csv")
    with open(csv_file) as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 600 and "instance.score" in table[0]
    flagged = {(int(r["frame_idx"]), r["track"]) for r in table if int(r["filter.flags"])}
    assert flagged == {(f, name) for _, f, name, _ in rows}


def test_several_untracked_animals_need_tracks():
    skeleton = sio.Skeleton(nodes=["a", "b"])
    video = sio.Video(filename="v.mp4")
    inst = lambda x: sio.PredictedInstance.from_numpy(  # noqa: E731
        points_data=np.array([[x, 0.0], [x + 5, 0.0]]),
        skeleton=skeleton,
        point_scores=np.ones(2),
        score=1.0,
    )
    labels = sio.Labels(
        labeled_frames=[sio.LabeledFrame(video, 0, [inst(0), inst(50)])],
        videos=[video],
        skeletons=[skeleton],
    )
    with pytest.raises(PosekitError, match="posekit track"):
        filter_labels(labels, TrajectoryFilter(smooth="kalman"))


ROBOT = FLIES.parents[2] / "sleap_models" / "minimal_robot.UNet.single_instance"


@pytest.mark.skipif(not ROBOT.exists(), reason="shared SLEAP model absent")
def test_predict_applies_the_filters_to_analysis_outputs(tmp_path):
    import h5py

    video = FLIES.parents[1] / "minimal" / "small_robot.mp4"
    raw, smooth = tmp_path / "raw.analysis.h5", tmp_path / "smooth.analysis.h5"
    base = ["predict", str(ROBOT), str(video), "--frames", "0-15", "--device", "cpu"]
    assert main([*base, "-o", str(raw)]) == 0
    assert main([*base, "-o", str(smooth), "--smooth", "median", "--window", "5"]) == 0
    with h5py.File(raw) as f:
        assert "filter_flags" not in f
        before = f["tracks"][0, :, :, :16]  # (xy, nodes, frames)
    with h5py.File(smooth) as f:
        after = f["tracks"][0, :, :, :16]
        flags = f["filter_flags"][:16]
    median = np.median(
        np.lib.stride_tricks.sliding_window_view(before[..., 3:8], 5, axis=-1), axis=-1
    )
    # frame 5 (two CPU runs agree to ~0.02 px, not bit for bit)
    np.testing.assert_allclose(after[..., 5], median[..., 0], atol=0.1)
    moved = np.linalg.norm(after - before, axis=0).max(axis=0)  # per frame
    assert ((flags & FLAGS["smoothed"]) > 0)[(moved > 1.1) | (moved < 0.9)].tolist() == (
        moved[(moved > 1.1) | (moved < 0.9)] > 1.0
    ).tolist()
    assert flags.any()
