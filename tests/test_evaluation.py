"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import sleap_io as sio

from posekit.cli.evaluate import run as run_evaluate
from posekit.errors import PosekitError
from posekit.evaluation import compute_oks, evaluate, match_instances, voc_metrics

SKEL = sio.Skeleton(nodes=["head", "tail"], edges=[("head", "tail")])
A = np.array([[10.0, 10.0], [30.0, 20.0]])  # bbox area 20 * 10 = 200
B = np.array([[100.0, 50.0], [110.0, 80.0]])  # bbox area 10 * 30 = 300


def make_labels(frames, predicted=False, tracks=None, video=None):
    """frames: list (per frame index) of lists of (points, score, track_name)."""
    video = video or sio.Video(filename="fake.mp4", open_backend=False)
    track_objs = {n: sio.Track(name=n) for n in (tracks or [])}
    lfs = []
    for idx, insts in enumerate(frames):
        objs = []
        for pts, score, track in insts:
            t = track_objs.get(track)
            if predicted:
                objs.append(
                    sio.PredictedInstance.from_numpy(
                        points_data=pts,
                        skeleton=SKEL,
                        point_scores=np.ones(len(pts)),
                        score=score,
                        track=t,
                    )
                )
            else:
                objs.append(sio.Instance.from_numpy(pts, skeleton=SKEL, track=t))
        lfs.append(sio.LabeledFrame(video=video, frame_idx=idx, instances=objs))
    return sio.Labels(
        labeled_frames=lfs, videos=[video], skeletons=[SKEL], tracks=list(track_objs.values())
    )


def test_oks_of_known_displacement():
    d = 3.0
    pr = A.copy()
    pr[1, 0] += d
    oks = compute_oks(A[None], pr[None])
    ks = math.exp(-(d**2) / ((2 * 0.025) ** 2 * 2 * (200 + np.spacing(1))))
    assert oks[0, 0] == pytest.approx((1.0 + ks) / 2)
    # Per-node sigma: a larger sigma on the displaced node raises the similarity.
    oks2 = compute_oks(A[None], pr[None], stddev=[0.025, 0.1])
    ks2 = math.exp(-(d**2) / ((2 * 0.1) ** 2 * 2 * 200))
    assert oks2[0, 0] == pytest.approx((1.0 + ks2) / 2)
    # Missing predicted node scores 0; missing labeled node is ignored.
    pr_missing = A.copy()
    pr_missing[1] = np.nan
    assert compute_oks(A[None], pr_missing[None])[0, 0] == pytest.approx(0.5)
    gt_missing = A.copy()
    gt_missing[1] = np.nan
    assert compute_oks(gt_missing[None], pr[None], scale=200)[0, 0] == pytest.approx(1.0)


def test_match_instances_by_score_order():
    gts = [A, B]
    prs = [B + 0.5, A + 0.1, A + 500]
    pairs, fn, fp = match_instances(gts, prs, [0.9, 0.8, 0.95])
    # The 0.95 prediction is far from everything (OKS 0) and stays unmatched.
    assert {(g, p) for g, p, _ in pairs} == {(1, 0), (0, 1)}
    assert fn == [] and fp == [2]


def test_perfect_predictions_give_map_1():
    gt = make_labels([[(A, 1, None), (B, 1, None)], [(A + 5, 1, None)]])
    pr = make_labels([[(A, 0.9, None), (B, 0.8, None)], [(A + 5, 0.7, None)]], predicted=True)
    m = evaluate(gt, pr)
    assert m["oks_voc.mAP"] == pytest.approx(1.0)
    assert m["oks_voc.mAR"] == pytest.approx(1.0)
    assert m["dist.avg"] == 0.0 and m["pck.mPCK"] == 1.0
    assert m["vis.precision"] == 1.0 and m["vis.recall"] == 1.0
    assert m["n_matched"] == 3 and m["n_false_negatives"] == 0


def test_user_labels_kept_beside_predictions_are_not_scored():
    """`posekit predict LABELS.slp` keeps the user's instances beside the predictions."""
    gt = make_labels([[(A, 1, None), (B, 1, None)]])
    pr = make_labels([[(A + 3, 0.4, None), (B + 3, 0.3, None)]], predicted=True)
    both = make_labels([[(A, 1, None), (B, 1, None)]])
    both.labeled_frames[0].instances.extend(pr.labeled_frames[0].instances)
    m = evaluate(gt, both)
    assert m["n_pred_instances"] == 2 and m["dist.p50"] == pytest.approx(math.hypot(3, 3))
    assert m["oks_voc.mAP"] == pytest.approx(evaluate(gt, pr)["oks_voc.mAP"])
    # a file of user labels only (a second annotator) is scored as it is
    assert evaluate(gt, make_labels([[(A, 1, None), (B, 1, None)]]))["oks_voc.mAP"] == 1.0


def test_missing_instance_lowers_recall_by_its_share():
    gt = make_labels([[(A, 1, None), (B, 1, None)]])
    pr = make_labels([[(A, 0.9, None)]], predicted=True)
    m = evaluate(gt, pr)
    assert m["oks_voc.mAR"] == pytest.approx(0.5)
    # Precision is 1 up to recall 0.5 and 0 after: 51 of the 101 recall levels.
    assert m["oks_voc.mAP"] == pytest.approx(51 / 101)
    assert m["n_false_negatives"] == 1


def test_unmatched_prediction_is_a_false_positive_unless_sleap_mode():
    gt = make_labels([[(A, 1, None)]])
    far = A + 200
    pr = make_labels([[(far, 0.99, None), (A, 0.5, None)]], predicted=True)
    coco = evaluate(gt, pr)
    # Ranked: the far one (FP) first, then the true match: precision 0.5 at recall 1.
    assert coco["oks_voc.mAP"] == pytest.approx(0.5)
    sleap = evaluate(gt, pr, count_unmatched_predictions=False)
    assert sleap["oks_voc.mAP"] == pytest.approx(1.0)
    assert coco["n_unmatched_predictions"] == 1


def test_distance_percentiles_pck_and_node_table():
    gt = make_labels([[(A, 1, None)], [(A, 1, None)]])
    p1 = A.copy()
    p1[0, 0] += 2.0  # head off by 2 px
    p2 = A.copy()
    p2[1] = np.nan  # tail missed
    pr = make_labels([[(p1, 1, None)], [(p2, 1, None)]], predicted=True)
    m = evaluate(gt, pr)
    # Distances: head 2 and 0, tail 0 and missing.
    assert m["dist.avg"] == pytest.approx(2 / 3)
    assert m["dist.p50"] == pytest.approx(0.0)
    assert m["dist.p99"] == pytest.approx(np.percentile([2.0, 0.0, 0.0], 99))
    # PCK at 1 px: 2 of 4 labeled nodes; at 3 px and beyond: 3 of 4.
    assert m["pck.at"][0] == pytest.approx(2 / 4)
    assert m["pck.at"][2] == pytest.approx(3 / 4)
    head, tail = m["nodes"]
    assert head["node"] == "head" and head["n"] == 2 and head["mean"] == pytest.approx(1.0)
    assert tail["missed"] == 1
    assert m["vis.recall"] == pytest.approx(3 / 4) and m["vis.precision"] == 1.0


def test_identity_accuracy_by_name_and_by_mapping():
    gt = make_labels([[(A, 1, "f"), (B, 1, "m")], [(A, 1, "f"), (B, 1, "m")]], tracks=["f", "m"])
    pr_named = make_labels(
        [[(A, 1, "f"), (B, 1, "m")], [(A, 1, "m"), (B, 1, "f")]], predicted=True, tracks=["f", "m"]
    )
    m = evaluate(gt, pr_named)
    assert m["identity.accuracy"] == pytest.approx(0.5) and m["identity.n"] == 4
    pr_other = make_labels(
        [[(A, 1, "t0"), (B, 1, "t1")], [(A, 1, "t0"), (B, 1, "t1")]],
        predicted=True,
        tracks=["t0", "t1"],
    )
    m = evaluate(gt, pr_other)
    assert m["identity.accuracy"] == 1.0 and m["identity.mapping"] == {"t0": "f", "t1": "m"}


def test_run_evaluate_json(tmp_path, capsys):
    gt = make_labels([[(A, 1, None)]])
    pr = make_labels([[(A, 0.9, None)]], predicted=True)
    sio.save_slp(gt, str(tmp_path / "gt.slp"))
    sio.save_slp(pr, str(tmp_path / "pr.slp"))
    args = argparse.Namespace(
        ground_truth=str(tmp_path / "gt.slp"), predictions=str(tmp_path / "pr.slp"), json=True
    )
    assert run_evaluate(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["oks_voc.mAP"] == pytest.approx(1.0) and out["n_frames"] == 1
    args.json = False
    assert run_evaluate(args) == 0
    assert "OKS mAP" in capsys.readouterr().out
    with pytest.raises(PosekitError, match="does not exist"):
        run_evaluate(argparse.Namespace(ground_truth="nope.slp", predictions="x.slp", json=False))


def test_bad_sigma_length_is_reported():
    gt = make_labels([[(A, 1, None)]])
    with pytest.raises(PosekitError, match="oks_stddev has 3 values"):
        evaluate(gt, gt, oks_stddev=[0.1, 0.1, 0.1])


def test_voc_no_detections():
    v = voc_metrics([], [], n_gt=3)
    assert v["mAP"] == 0.0 and v["mAR"] == 0.0


def test_greedy_matching_lets_a_high_score_take_a_weak_match():
    # SLEAP's rule: any OKS above the threshold (0) matches, best score first.
    near_b = B + 5.0
    pairs, fn, fp = match_instances([B], [B + 0.5, near_b], [0.5, 0.9])
    assert pairs[0][1] == 1 and 0 < pairs[0][2] < 1e-3
    assert fp == [0]
    pairs, _, fp = match_instances([B], [B + 0.5, near_b], [0.5, 0.9], threshold=0.5)
    assert pairs[0][1] == 0 and fp == [1]


def test_tracked_labels_get_tracking_metrics_with_the_switch_frames():
    pytest.importorskip("motmetrics")
    frames = [[(A, 1, "f"), (B, 1, "m")] for _ in range(4)]
    gt = make_labels(frames, tracks=["f", "m"])
    swapped = [[(A, 1, "t0"), (B, 1, "t1")]] * 2 + [[(A, 1, "t1"), (B, 1, "t0")]] * 2
    m = evaluate(gt, make_labels(swapped, predicted=True, tracks=["t0", "t1"]))
    t = m["tracking"]
    assert t["identity_switches"] == 2 and t["idf1"] == pytest.approx(0.5)
    assert sorted((s["frame_idx"], s["gt_track"]) for s in t["switch_frames"]) == [
        (2, "f"),
        (2, "m"),
    ]
    untracked = make_labels([[(A, 1, None), (B, 1, None)]] * 4, predicted=True)
    assert evaluate(gt, untracked)["tracking"] is None
