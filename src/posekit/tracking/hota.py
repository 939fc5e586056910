"""HOTA and CLEAR-MOT exactly as TrackEval computes them, on any per-frame similarity.

TrackEval (Luiten et al., the MOTChallenge evaluation code) defines its metrics on one
sequence given, per frame, the ground-truth ids, the tracker's ids and a similarity
matrix in [0, 1] between them. This module takes that same input and returns the same
numbers, without TrackEval's dependencies (matplotlib, OpenCV, pycocotools):

- HOTA (Luiten et al. 2021): for each localisation threshold alpha in 0.05, 0.10, ...,
  0.95, frames are matched by Hungarian assignment on similarity weighted by the
  global alignment score of each id pair; DetA = TP / (TP + FN + FP), AssA = the
  TP-weighted mean of each match's association IoU, HOTA = sqrt(DetA * AssA); the
  reported values are the means over the 19 thresholds (``LocA`` is the mean
  similarity of matches).
- CLEAR-MOT (Bernardin & Stiefelhagen 2008, TrackEval's variant): matches need
  similarity >= 0.5 and keep last frame's partner when they can; MOTA = (TP - FP -
  IDSW) / (TP + FN), MOTP = mean similarity of matches, Frag, MT / PT / ML.

`tests/tracking/test_hota.py` checks both against numbers TrackEval 1.3.0 produced
(`tests/tracking/trackeval_fixture.json`, made by `benchmarks/trackeval_fixture.py`).
"""

from __future__ import annotations

import numpy as np

ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo("float").eps


def hota(gt_ids: list, tr_ids: list, sims: list, n_gt: int, n_tr: int) -> dict[str, float]:
    """TrackEval's HOTA family for one sequence (ids 0..n-1 per frame, (g, p) similarity)."""
    a = len(ALPHAS)
    tp, fn, fp, loc = (np.zeros(a) for _ in range(4))
    n_gt_dets = sum(len(g) for g in gt_ids)
    n_tr_dets = sum(len(p) for p in tr_ids)
    if n_tr_dets == 0 or n_gt_dets == 0:
        fn[:] = n_gt_dets
        fp[:] = n_tr_dets
        return _hota_final(tp, fn, fp, np.ones(a), np.zeros(a), np.zeros(a), np.zeros(a))
    potential = np.zeros((n_gt, n_tr))
    gt_count = np.zeros((n_gt, 1))
    tr_count = np.zeros((1, n_tr))
    for g, p, s in zip(gt_ids, tr_ids, sims):
        denom = s.sum(0)[None, :] + s.sum(1)[:, None] - s
        iou = np.zeros_like(s)
        ok = denom > 0 + _EPS
        iou[ok] = s[ok] / denom[ok]
        potential[g[:, None], p[None, :]] += iou
        gt_count[g] += 1
        tr_count[0, p] += 1
    alignment = potential / (gt_count + tr_count - potential)
    counts = np.zeros((a, n_gt, n_tr))
    from scipy.optimize import linear_sum_assignment

    for g, p, s in zip(gt_ids, tr_ids, sims):
        if len(g) == 0 or len(p) == 0:
            fp += len(p)
            fn += len(g)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], p[None, :]] * s))
        for k, alpha in enumerate(ALPHAS):
            ok = s[rows, cols] >= alpha - _EPS
            r, c = rows[ok], cols[ok]
            tp[k] += len(r)
            fn[k] += len(g) - len(r)
            fp[k] += len(p) - len(r)
            if len(r):
                loc[k] += s[r, c].sum()
                counts[k][g[r], p[c]] += 1
    ass_a, ass_re, ass_pr = np.zeros(a), np.zeros(a), np.zeros(a)
    for k in range(a):
        m = counts[k]
        denom = np.maximum(1, tp[k])
        ass_a[k] = np.sum(m * (m / np.maximum(1, gt_count + tr_count - m))) / denom
        ass_re[k] = np.sum(m * (m / np.maximum(1, gt_count))) / denom
        ass_pr[k] = np.sum(m * (m / np.maximum(1, tr_count))) / denom
    loc = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    return _hota_final(tp, fn, fp, loc, ass_a, ass_re, ass_pr)


def _hota_final(tp, fn, fp, loc, ass_a, ass_re, ass_pr) -> dict[str, float]:
    det_a = tp / np.maximum(1, tp + fn + fp)
    out = {
        "HOTA": np.sqrt(det_a * ass_a),
        "DetA": det_a,
        "AssA": ass_a,
        "DetRe": tp / np.maximum(1, tp + fn),
        "DetPr": tp / np.maximum(1, tp + fp),
        "AssRe": ass_re,
        "AssPr": ass_pr,
        "LocA": loc,
    }
    return {k: float(np.mean(v)) for k, v in out.items()}


def clear(
    gt_ids: list, tr_ids: list, sims: list, n_gt: int, threshold: float = 0.5
) -> dict[str, float]:
    """TrackEval's CLEAR-MOT for one sequence (same input as `hota`)."""
    tp = fn = fp = idsw = 0
    motp = 0.0
    n_gt_dets = sum(len(g) for g in gt_ids)
    n_tr_dets = sum(len(p) for p in tr_ids)
    gt_count = np.zeros(n_gt)
    matched = np.zeros(n_gt)
    frag = np.zeros(n_gt)
    prev_id = np.full(n_gt, np.nan)
    prev_step_id = np.full(n_gt, np.nan)
    from scipy.optimize import linear_sum_assignment

    for g, p, s in zip(gt_ids, tr_ids, sims):
        if n_tr_dets == 0 or n_gt_dets == 0:
            break
        if len(g) == 0:
            fp += len(p)
            continue
        if len(p) == 0:
            fn += len(g)
            gt_count[g] += 1
            continue
        score = 1000.0 * (p[None, :] == prev_step_id[g[:, None]]) + s
        score[s < threshold - _EPS] = 0
        rows, cols = linear_sum_assignment(-score)
        ok = score[rows, cols] > 0 + _EPS
        rows, cols = rows[ok], cols[ok]
        mg, mt = g[rows], p[cols]
        before = prev_id[mg]
        idsw += int(np.sum(~np.isnan(before) & (mt != before)))
        gt_count[g] += 1
        matched[mg] += 1
        not_tracked = np.isnan(prev_step_id)
        prev_id[mg] = mt
        prev_step_id[:] = np.nan
        prev_step_id[mg] = mt
        frag += not_tracked & ~np.isnan(prev_step_id)
        tp += len(mg)
        fn += len(g) - len(mg)
        fp += len(p) - len(mg)
        motp += float(s[rows, cols].sum())
    if n_tr_dets == 0:
        fn = n_gt_dets
    if n_gt_dets == 0:
        fp = n_tr_dets
    seen = gt_count > 0
    ratio = matched[seen] / gt_count[seen]
    mt_ = int(np.sum(ratio > 0.8))
    pt = int(np.sum((ratio >= 0.2) & (ratio <= 0.8)))
    return {
        "MOTA": (tp - fp - idsw) / max(1, tp + fn),
        "MOTP": motp / max(1, tp),
        "IDSW": idsw,
        "CLR_TP": tp,
        "CLR_FN": fn,
        "CLR_FP": fp,
        "Frag": int(np.sum(frag[frag > 0] - 1)),
        "MT": mt_,
        "PT": pt,
        "ML": n_gt - mt_ - pt,
    }
