"""Scores of predicted segmentation masks against labelled ones.

- `mask_iou`: intersection over union of every pair of masks.
- `mask_ap`: mask average precision as COCO computes it (``COCOeval(iouType="segm")``,
  area "all", 100 detections per image): at each IoU threshold 0.50:0.05:0.95 the
  predictions of each frame, best score first, take the unmatched labelled mask they
  overlap most (IoU at least the threshold); the matches of all frames, ranked by
  score, give a precision envelope read at 101 recall points. A test checks the numbers
  against pycocotools.
- `boundary_iou`: IoU of the bands within `d` pixels inside each mask's contour (Cheng
  et al., 2021), which, unlike mask IoU, is as strict for a big animal's outline as for
  a small one's; `d` is 2% of the image diagonal, at least 1 pixel, as in the paper.
- `evaluate_masks`: all of these for two `sleap_io.Labels` (or files), per frame pair.

"median IoU" is over labelled masks: each one's IoU with the prediction it is matched
to (greedy by score, any overlap), 0 when none is.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from posekit.data.labels import read_labels_file
from posekit.data.masks import mask_array, user_masks
from posekit.errors import PosekitError
from posekit.evaluation import OKS_THRESHOLDS, RECALL_THRESHOLDS, find_frame_pairs

#: Most predictions per frame that COCO scores.
MAX_DETECTIONS = 100


def mask_iou(gt: list[np.ndarray], pr: list[np.ndarray]) -> np.ndarray:
    """(n_gt, n_pr) IoU of bool masks of one frame (same shape); 0 where both are empty."""
    if not gt or not pr:
        return np.zeros((len(gt), len(pr)))
    g = np.stack([m.ravel() for m in gt]).astype(np.float64)
    p = np.stack([m.ravel() for m in pr]).astype(np.float64)
    inter = g @ p.T
    union = g.sum(1)[:, None] + p.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _coco_matches(iou: np.ndarray, threshold: float) -> np.ndarray:
    """(n_pr,) bool: which predictions (already best score first) match at `threshold`."""
    n_gt, n_pr = iou.shape
    taken = np.zeros(n_gt, dtype=bool)
    hit = np.zeros(n_pr, dtype=bool)
    for d in range(n_pr):
        best, m = min(threshold, 1 - 1e-10), -1
        for g in range(n_gt):
            if taken[g] or iou[g, d] < best:
                continue
            best, m = iou[g, d], g
        if m >= 0:
            taken[m], hit[d] = True, True
    return hit


def mask_ap(
    frames: list[tuple[list[np.ndarray], list[np.ndarray], list[float]]],
    iou_thresholds=OKS_THRESHOLDS,
    recall_thresholds=RECALL_THRESHOLDS,
) -> dict[str, Any]:
    """COCO mask AP/AR over frames of ``(gt masks, predicted masks, predicted scores)``."""
    n_gt = sum(len(f[0]) for f in frames)
    scores, hits = [], [[] for _ in iou_thresholds]
    for gt, pr, sc in frames:
        order = np.argsort(-np.asarray(sc, dtype=np.float64), kind="mergesort")[:MAX_DETECTIONS]
        iou = mask_iou(gt, [pr[i] for i in order])
        scores.extend(float(sc[i]) for i in order)
        for t, thr in enumerate(iou_thresholds):
            hits[t].extend(_coco_matches(iou, thr).tolist())
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    ap, ar = [], []
    for t in range(len(iou_thresholds)):
        tp = np.cumsum(np.asarray(hits[t], dtype=bool)[order])
        fp = np.cumsum(~np.asarray(hits[t], dtype=bool)[order])
        if n_gt == 0:
            ap.append(float("nan"))
            ar.append(float("nan"))
            continue
        rc = tp / n_gt
        pr = tp / (tp + fp + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
        q = np.zeros(len(recall_thresholds))
        idx = np.searchsorted(rc, recall_thresholds, side="left")
        ok = idx < len(pr)
        q[ok] = pr[idx[ok]]
        ap.append(float(q.mean()))
        ar.append(float(rc[-1]) if len(rc) else 0.0)
    return {
        "iou_thresholds": [float(t) for t in iou_thresholds],
        "AP": ap,
        "AR": ar,
        "mAP": float(np.mean(ap)) if n_gt else float("nan"),
        "mAR": float(np.mean(ar)) if n_gt else float("nan"),
    }


def _erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """3x3 erosion, `iterations` times; outside the image counts as background."""
    m = mask.astype(bool)
    for _ in range(iterations):
        p = np.pad(m, 1, constant_values=False)
        out = p[1:-1, 1:-1].copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                out &= p[dy : dy + m.shape[0], dx : dx + m.shape[1]]
        m = out
    return m


def boundary_band(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The mask's pixels within ``d`` (`dilation_ratio` of the image diagonal) of its edge."""
    h, w = mask.shape
    d = max(1, int(round(dilation_ratio * np.hypot(h, w))))
    return mask.astype(bool) & ~_erode(mask, d)


def boundary_iou(gt: np.ndarray, pr: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two bool masks of one frame (1.0 when both are empty)."""
    a, b = boundary_band(gt, dilation_ratio), boundary_band(pr, dilation_ratio)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _frame_masks(lf: Any, masks: list, hw: tuple[int, int]) -> list[np.ndarray]:
    return [mask_array(m, hw) for m in masks]


def evaluate_masks(ground_truth: Any, predictions: Any) -> dict[str, Any]:
    """Mask scores of `predictions` against the user masks of `ground_truth`.

    Frames are paired as `posekit.evaluation.evaluate` pairs them. A predictions file with
    predicted masks is scored on those alone (predicting a labels file keeps its user
    masks beside the predictions). Returns a JSON-ready dict: counts, ``mask_voc.*``
    (COCO AP/AR), ``mask_iou.median`` / ``mask_iou.mean`` (per labelled mask, 0 when
    unmatched), ``boundary_iou.mean`` (matched pairs) and ``foreground_iou.mean`` (the
    union of every animal's mask per frame, what a semantic model predicts).
    """
    if isinstance(ground_truth, str | os.PathLike):
        ground_truth = read_labels_file(ground_truth, open_videos=False)
    if isinstance(predictions, str | os.PathLike):
        predictions = read_labels_file(predictions, open_videos=False)
    pairs = [(g, p) for g, p in find_frame_pairs(ground_truth, predictions, False) if user_masks(g)]
    if not pairs:
        raise PosekitError(
            "no labelled frame with masks has predictions: label masks (or make them from "
            "poses with `posekit masks`) and predict on the same frames"
        )
    only_predicted = any(m.is_predicted for lf in predictions.labeled_frames for m in lf.masks)
    frames, ious, boundaries, fg_ious = [], [], [], []
    n_pr = 0
    for lf_gt, lf_pr in pairs:
        gt_objs = user_masks(lf_gt)
        pr_objs = [m for m in lf_pr.masks if m.is_predicted or not only_predicted]
        shapes = [m.image_extent for m in gt_objs + pr_objs]
        hw = (max(s[0] for s in shapes), max(s[1] for s in shapes))
        gt = _frame_masks(lf_gt, gt_objs, hw)
        pr = _frame_masks(lf_pr, pr_objs, hw)
        scores = [float(getattr(m, "score", 1.0)) for m in pr_objs]
        n_pr += len(pr)
        frames.append((gt, pr, scores))
        iou = mask_iou(gt, pr)
        best = np.zeros(len(gt))
        taken: set[int] = set()
        for d in np.argsort(-np.asarray(scores), kind="mergesort"):
            free = [g for g in range(len(gt)) if g not in taken and iou[g, d] > 0]
            if not free:
                continue
            g = max(free, key=lambda k: iou[k, d])
            taken.add(g)
            best[g] = iou[g, d]
            boundaries.append(boundary_iou(gt[g], pr[d]))
        ious.extend(best.tolist())
        union_gt = np.any(gt, axis=0)
        union_pr = np.any(pr, axis=0) if pr else np.zeros(hw, dtype=bool)
        fg_ious.append(float(mask_iou([union_gt], [union_pr])[0, 0]))
    voc = mask_ap(frames)
    metrics: dict[str, Any] = {
        "n_frames": len(pairs),
        "n_gt_masks": len(ious),
        "n_pred_masks": n_pr,
    }
    metrics.update({f"mask_voc.{k}": v for k, v in voc.items()})
    metrics["mask_iou.median"] = float(np.median(ious)) if ious else float("nan")
    metrics["mask_iou.mean"] = float(np.mean(ious)) if ious else float("nan")
    metrics["boundary_iou.mean"] = float(np.mean(boundaries)) if boundaries else float("nan")
    metrics["foreground_iou.mean"] = float(np.mean(fg_ious))
    return metrics


def print_mask_report(metrics: dict[str, Any]) -> None:
    """A few lines for people (the CLI's evaluate prints them after the pose report)."""
    print(
        f"masks: {metrics['n_frames']} frames, {metrics['n_gt_masks']} labelled, "
        f"{metrics['n_pred_masks']} predicted"
    )
    print(
        f"  mask AP {metrics['mask_voc.mAP']:.3f} (COCO 0.50:0.95), "
        f"AP50 {metrics['mask_voc.AP'][0]:.3f}, AP75 {metrics['mask_voc.AP'][5]:.3f}"
    )
    print(
        f"  IoU median {metrics['mask_iou.median']:.3f}, mean {metrics['mask_iou.mean']:.3f}; "
        f"boundary IoU {metrics['boundary_iou.mean']:.3f}; "
        f"foreground IoU {metrics['foreground_iou.mean']:.3f}"
    )


__all__ = [
    "boundary_band",
    "boundary_iou",
    "evaluate_masks",
    "mask_ap",
    "mask_iou",
    "print_mask_report",
]
