"""Re-tracking the real flies clip (two flies, true tracks): no identity switches.

A subset of frames keeps this fast; benchmarks/tracking.py runs the whole clip.
"""

from __future__ import annotations

import numpy as np
import pytest
from tracking_helpers import flies_predictions, sio

from posekit.tracking import track, tracking_metrics

pytest.importorskip("motmetrics")


@pytest.mark.parametrize("tracker", ["simple", "global"])
def test_flies_retracked_without_switches(flies, tracker):
    pred, gt = flies_predictions(flies, n_frames=300)
    out = track(pred, tracker, max_tracks=2)
    m = tracking_metrics(gt, out)
    assert m["identity_switches"] == 0
    assert m["idf1"] == pytest.approx(1.0)
    assert m["predicted_tracks"] == 2


def test_flies_flow_tracker_reads_the_video(flies):
    pytest.importorskip("cv2")
    pred, gt = flies_predictions(flies, n_frames=60)
    out = track(pred, "flow", max_tracks=2)
    m = tracking_metrics(gt, out)
    assert m["identity_switches"] == 0 and m["predicted_tracks"] == 2


def test_flies_spurious_instances_are_culled(flies):
    pred, gt = flies_predictions(flies, n_frames=300)
    rng = np.random.default_rng(1)
    skel = pred.skeletons[0]
    for lf in pred.labeled_frames:
        if rng.random() < 0.05:
            dup = lf.instances[0].numpy() + rng.normal(0, 2, (len(skel.nodes), 2))
            false = rng.uniform(0, 1024, (len(skel.nodes), 2))
            for pts, score in ((dup, 0.3), (false, 0.2)):
                lf.instances.append(
                    sio.PredictedInstance.from_numpy(
                        points_data=pts,
                        skeleton=skel,
                        point_scores=np.ones(len(skel.nodes)),
                        score=score,
                    )
                )
    for tracker in ("simple", "global"):
        out = track(pred, tracker, max_tracks=2)
        m = tracking_metrics(gt, out)
        assert m["predicted_tracks"] == 2
        assert m["idf1"] >= 0.98


@pytest.mark.parametrize("tracker", ["global", "kalman"])
def test_flies_identities_held_across_100_removed_frames(flies, tracker):
    pred, gt = flies_predictions(flies, n_frames=400)

    def cut(labels, **kw):
        frames = [lf for lf in labels.labeled_frames if not 150 <= lf.frame_idx < 250]
        return sio.Labels(frames, videos=labels.videos, skeletons=labels.skeletons, **kw)

    out = track(cut(pred), tracker, max_tracks=2)
    m = tracking_metrics(cut(gt, tracks=gt.tracks), out)
    assert m["identity_switches"] == 0 and m["idf1"] == pytest.approx(1.0)
    assert m["predicted_tracks"] == 2
