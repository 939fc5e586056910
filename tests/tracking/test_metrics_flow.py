"""Tracking metrics (motmetrics), optical-flow shifting and suggestions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tracking_helpers import make_labels, sio

from posekit.errors import PosekitError
from posekit.tracking import tracking_metrics
from posekit.tracking.poses import FramePoses
from posekit.tracking.suggestions import weakest_frames

pytest.importorskip("motmetrics")


def _tracked(n=20, swap_at=None, names=("a", "b")):
    t = np.arange(n)
    traj = np.stack(
        [np.stack([100 + t, np.full(n, 100.0)], 1), np.stack([100 + t, np.full(n, 300.0)], 1)]
    )
    labels, truth = make_labels(traj)
    tracks = [sio.Track(name=x) for x in names]
    for lf in labels.labeled_frames:
        for i, inst in enumerate(lf.instances):
            animal = truth[lf.frame_idx][i]
            if swap_at is not None and lf.frame_idx >= swap_at:
                animal = 1 - animal
            inst.track = tracks[animal]
    labels.tracks = tracks
    return labels


def test_metrics_perfect_and_with_one_swap():
    gt = _tracked()
    perfect = tracking_metrics(gt, _tracked(names=("x", "y")))
    assert perfect["identity_switches"] == 0
    assert perfect["idf1"] == pytest.approx(1.0) and perfect["mota"] == pytest.approx(1.0)
    assert perfect["predicted_tracks"] == 2 and perfect["switch_frames"] == []
    swapped = tracking_metrics(gt, _tracked(swap_at=10, names=("x", "y")))
    assert swapped["identity_switches"] == 2  # both animals change track at frame 10
    assert {s["frame_idx"] for s in swapped["switch_frames"]} == {10}
    assert swapped["idf1"] == pytest.approx(0.5)
    sw = swapped["switch_frames"][0]
    assert sw["from_track"] != sw["to_track"]
    json.dumps(swapped)  # plain, JSON-ready


def test_metrics_bad_inputs():
    gt = _tracked()
    untracked, _ = make_labels(np.zeros((1, 3, 2)))
    with pytest.raises(PosekitError, match="no tracked instances"):
        tracking_metrics(untracked, gt)
    other = sio.Skeleton(nodes=["p", "q", "r", "s"])
    pred = _tracked()
    pred.skeletons = [other]
    with pytest.raises(PosekitError, match="different skeletons"):
        tracking_metrics(gt, pred)


def test_flow_shift_follows_a_moving_blob():
    pytest.importorskip("cv2")
    from posekit.tracking.flow import FlowShifter

    yy, xx = np.mgrid[0:200, 0:200]

    def frame(cx, cy):
        img = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 6.0**2))
        img += (
            60
            * (np.sin(xx / 3.0) * np.cos(yy / 4.0) > 0)
            * (((xx - cx) ** 2 + (yy - cy) ** 2) < 30**2)
        )
        return img.clip(0, 255).astype(np.uint8)

    shifter = FlowShifter()
    a, b = shifter.pyramid(frame(80, 90)), shifter.pyramid(frame(85, 93))
    pts = np.array([[[80.0, 90.0], [np.nan, np.nan]]])
    moved, err = shifter.shift(a, b, pts)
    assert moved[0, 0] == pytest.approx([85.0, 93.0], abs=0.5)
    assert np.isnan(moved[0, 1]).all()  # a missing node stays missing


def _frame(idx, margin):
    return FramePoses(idx, np.zeros((0, 1, 2)), np.zeros(0), np.zeros((0, 1)), [], margin=margin)


def test_weakest_frames_are_lowest_margins_spread_out():
    frames = [_frame(i, m) for i, m in enumerate([5, 0.1, 0.2, 9, np.nan, 3, 0.3] + [7] * 20)]
    picks = weakest_frames(frames, 3, min_separation=2)
    # 2 is too close to 1, 5 and 7 to 6, 0 to 1: the third pick is frame 8
    assert [p[0] for p in picks] == [1, 6, 8]
    assert weakest_frames(frames, 0) == []
