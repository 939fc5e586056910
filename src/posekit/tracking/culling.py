"""Keeping at most N instances per frame, best first: SLEAP's target-count culling.

When the number of animals is known, a frame with more instances than animals holds
duplicates or false detections. Matching them would spawn spurious tracks or steal a
real animal's track, so they are removed before matching (SLEAP's
``target_instance_count`` + ``pre_cull_to_target``; posekit does it whenever the count is
known). Optionally, an instance that overlaps a better one by more than
``iou_threshold`` is removed first (SLEAP's ``pre_cull_iou_threshold``), so that a
high-scoring duplicate of one animal cannot push the other animal out.
"""

from __future__ import annotations

import numpy as np

from posekit.tracking.poses import bounding_boxes


def overlap_suppression(points: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by non-maximum suppression on node bounding boxes, best score first.

    Overlap is measured as SLEAP's NMS does: intersection over the area of the
    lower-scored box, so a small duplicate inside a big instance counts as a duplicate.
    """
    boxes = bounding_boxes(points)
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(best)
        rest = []
        for j in order:
            lo = np.maximum(boxes[best, :2], boxes[j, :2])
            hi = np.minimum(boxes[best, 2:], boxes[j, 2:])
            inter = float(np.prod(np.clip(hi - lo, 0, None)))
            area = float(np.prod(boxes[j, 2:] - boxes[j, :2]))
            overlap = inter / area if area > 0 else 0.0
            if not (overlap > iou_threshold):
                rest.append(j)
        order = rest
    return np.asarray(keep, dtype=np.int64)


def cull_indices(
    points: np.ndarray, scores: np.ndarray, count: int, iou_threshold: float | None = None
) -> np.ndarray:
    """Indices (ascending) of the at most `count` instances to keep in one frame.

    Overlapping instances are suppressed first when `iou_threshold` is set, but never
    below `count` (the best suppressed ones come back, as SLEAP intends); then the
    highest scores are kept.
    """
    k = len(scores)
    if count <= 0 or k <= count:
        return np.arange(k)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    candidates = np.arange(k)
    if iou_threshold:
        kept = overlap_suppression(points, scores, iou_threshold)
        if len(kept) < count:
            dropped = np.setdiff1d(candidates, kept)
            dropped = dropped[np.argsort(-scores[dropped], kind="stable")]
            kept = np.concatenate([kept, dropped[: count - len(kept)]])
        candidates = kept
    best = candidates[np.argsort(-scores[candidates], kind="stable")[:count]]
    return np.sort(best)


def cull_frame(poses, count: int, iou_threshold: float | None = None):
    """`FramePoses` with at most `count` instances (see `cull_indices`)."""
    if count <= 0 or len(poses) <= count:
        return poses
    return poses.select(cull_indices(poses.points, poses.scores, count, iou_threshold))
