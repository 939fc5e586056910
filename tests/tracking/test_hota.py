"""HOTA and CLEAR-MOT against numbers TrackEval 1.3.0 computed on the same input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.tracking.hota import clear, hota

FIXTURE = Path(__file__).with_name("trackeval_fixture.json")


def _cases():
    return json.loads(FIXTURE.read_text())["cases"]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"{c['n_gt']}gt-{c['n_tr']}tr")
def test_matches_trackeval(case):
    g = [np.asarray(x, dtype=int) for x in case["gt_ids"]]
    p = [np.asarray(x, dtype=int) for x in case["tr_ids"]]
    s = [np.asarray(x, dtype=float).reshape(len(a), len(b)) for x, a, b in zip(case["sims"], g, p)]
    got = hota(g, p, s, case["n_gt"], case["n_tr"])
    for key, want in case["hota"].items():
        assert got[key] == pytest.approx(want, abs=1e-9), key
    got = clear(g, p, s, case["n_gt"])
    for key, want in case["clear"].items():
        assert got[key] == pytest.approx(want, abs=1e-9), key


def test_perfect_and_empty_tracking():
    g = [np.array([0, 1])] * 10
    s = [np.eye(2)] * 10
    h = hota(g, g, s, 2, 2)
    assert h["HOTA"] == pytest.approx(1.0) and h["AssA"] == pytest.approx(1.0)
    c = clear(g, g, s, 2)
    assert c["MOTA"] == 1.0 and c["IDSW"] == 0 and c["MT"] == 2
    none = [np.zeros(0, dtype=int)] * 10
    h = hota(g, none, [np.zeros((2, 0))] * 10, 2, 0)
    assert h["HOTA"] == 0.0 and h["DetA"] == 0.0
    assert clear(g, none, [np.zeros((2, 0))] * 10, 2)["CLR_FN"] == 20


def test_a_swap_costs_association_not_detection():
    g = [np.array([0, 1])] * 20
    p = [np.array([0, 1])] * 10 + [np.array([1, 0])] * 10
    s = [np.eye(2)] * 20
    h = hota(g, p, s, 2, 2)
    assert h["DetA"] == pytest.approx(1.0)
    # each half matches 10 of the 20 + 20 - 10 frames of its id pair: AssA = 1/3
    assert h["AssA"] == pytest.approx(1 / 3)
    assert clear(g, p, s, 2)["IDSW"] == 2


def test_tracking_metrics_report_hota_beside_idf1():
    pytest.importorskip("motmetrics")
    from posekit.data.synthetic_tracks import tracking_case
    from posekit.tracking import track, tracking_metrics

    case = tracking_case("crossing", n_frames=150, missed=0.15, seed=0)
    good = tracking_metrics(case.ground_truth, track(case.predictions, max_tracks=2))
    bad = tracking_metrics(case.ground_truth, track(case.predictions, "simple", max_tracks=2))
    for m in (good, bad):
        te = m["trackeval"]
        assert m["hota"] == te["HOTA"] == pytest.approx(np.sqrt(te["DetA"] * te["AssA"]), rel=0.05)
        # TrackEval's CLEAR matches pairs within max_distance, like motmetrics
        assert te["CLR_FN"] == m["misses"] and te["CLR_FP"] == m["false_positives"]
        assert te["IDSW"] == m["identity_switches"]
    assert good["assa"] > bad["assa"] + 0.3  # swaps cost association, not detection
    assert good["hota"] > bad["hota"]
