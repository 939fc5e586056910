"""The SORT family (`kalman`, `bytetrack`, `ocsort`) on generated cases and the flies clip."""

from __future__ import annotations

import pytest
from tracking_helpers import flies_predictions

from posekit.data.synthetic_tracks import tracking_case
from posekit.errors import PosekitError
from posekit.tracking import track, tracking_metrics

pytest.importorskip("motmetrics")


@pytest.mark.parametrize("tracker", ["kalman", "bytetrack", "ocsort"])
def test_sort_family_keeps_crossing_animals_apart(tracker):
    case = tracking_case("crossing", n_frames=300, missed=0.15, noise=2.0, seed=0)
    out = track(case.predictions, tracker, max_tracks=2)
    m = tracking_metrics(case.ground_truth, out)
    assert m["identity_switches"] <= 2 and m["idf1"] >= 0.95
    assert out.provenance["tracking"]["tracker"] == tracker


@pytest.mark.parametrize("tracker", ["kalman", "bytetrack", "ocsort"])
def test_sort_family_on_the_flies_clip(flies, tracker):
    pred, gt = flies_predictions(flies, n_frames=300)
    m = tracking_metrics(gt, track(pred, tracker, max_tracks=2))
    assert m["identity_switches"] == 0 and m["predicted_tracks"] == 2


def test_bytetrack_low_scores_never_start_tracks():
    # false detections score 0.3-0.5, below det_thresh 0.5: never a track of their own
    case = tracking_case("wander", n_animals=3, n_frames=300, missed=0.0, spurious=0.2, seed=0)
    out = track(case.predictions, "bytetrack")  # number of animals unknown
    assert len(out.tracks) == 3
    m = tracking_metrics(case.ground_truth, out)
    assert m["identity_switches"] == 0
    # SORT starts tracks for them
    assert len(track(case.predictions, "kalman").tracks) > 3


def test_max_age_ends_tracks_without_a_count():
    case = tracking_case("return", n_animals=2, n_frames=200, missed=0.0, seed=0)
    # animal 0 is away 50 frames: after max_age it is a new track, within it the same
    assert len(track(case.predictions, "kalman", max_age=10).tracks) == 3
    assert len(track(case.predictions, "kalman", max_age=80).tracks) == 2


def test_sort_options_are_checked():
    case = tracking_case("crossing", n_frames=20, seed=0)
    with pytest.raises(PosekitError, match="max_age"):
        track(case.predictions, "kalman", max_age=0)
    with pytest.raises(PosekitError, match="keep_tracks"):
        track(case.predictions, "ocsort", keep_tracks=True)
    with pytest.raises(PosekitError, match="inertia"):
        track(case.predictions, "ocsort", inertia=-1)


def test_kalman_candidates_help_the_simple_tracker_across_misses():
    case = tracking_case("crossing", n_frames=400, missed=0.15, noise=2.0, seed=0)
    opts = dict(max_tracks=2, similarity="object_keypoint", oks_errors=3)
    plain = tracking_metrics(case.ground_truth, track(case.predictions, "simple", **opts))
    kalman = tracking_metrics(
        case.ground_truth, track(case.predictions, "simple", kalman_candidates=True, **opts)
    )
    assert kalman["identity_switches"] <= 2 < plain["identity_switches"]
    assert kalman["idf1"] >= 0.95


def test_track_command_takes_the_sort_trackers_and_their_options(tmp_path, capsys):
    from tracking_helpers import sio

    from posekit.cli import main

    case = tracking_case("crossing", n_frames=120, missed=0.15, seed=0)
    src = tmp_path / "pred.slp"
    sio.save_slp(case.predictions, str(src))
    out = tmp_path / "t.slp"
    argv = ["track", str(src), "-o", str(out), "--tracker", "ocsort", "--max-tracks", "2"]
    assert main([*argv, "--tracking.inertia", "0.5", "--tracking.delta_t", "2"]) == 0
    tracked = sio.load_slp(str(out))
    assert tracked.provenance["tracking"]["inertia"] == 0.5
    assert len(tracked.tracks) == 2
    assert main([*argv, "--tracking.max_age", "0"]) != 0
    assert "max_age" in capsys.readouterr().err
