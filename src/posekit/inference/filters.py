"""Instance filters SLEAP users know, applied to each predicted frame; every one off by default.

| posekit | sleap-nn (``sleap-nn track``) | SLEAP 1.x |
|---|---|---|
| ``min_instance_score`` | ``--filter_min_instance_score`` | GUI: "Delete Predictions with Low Score" |
| ``min_visible_nodes`` | ``--filter_min_visible_nodes`` | GUI: "Delete Predictions with Few Visible Nodes"; ``--tracking.min_new_track_points`` for tracks |
| ``overlap_method`` + ``overlap_threshold`` | ``--filter_overlapping`` + ``--filter_overlapping_method`` (iou/oks) + ``--filter_overlapping_threshold`` (0.8) | ``--tracking.pre_cull_iou_threshold`` |

Overlap removal is greedy non-maximum suppression, best instance score first: an
instance whose similarity to an already kept one exceeds the threshold is a duplicate.
``iou``: intersection over union of the bounding boxes of the visible points; ``oks``:
object keypoint similarity of the points visible in both, with the kept instance's
bounding-box area as the scale and a per-node standard deviation of 0.025, normalised as
SLEAP's evaluation (and `posekit.evaluation.compute_oks`) does, so a duplicate is one whose
points nearly coincide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posekit.errors import PosekitError

__all__ = ["OVERLAP_METHODS", "InstanceFilter", "box_iou", "pose_oks"]

OVERLAP_METHODS = ("iou", "oks")
OKS_STDDEV = 0.025


def _box(points: np.ndarray) -> np.ndarray | None:
    vis = points[~np.isnan(points).any(axis=1)]
    if len(vis) == 0:
        return None
    return np.concatenate([vis.min(axis=0), vis.max(axis=0)])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the bounding boxes of two (n_nodes, 2) point sets (0 when either is empty)."""
    ba, bb = _box(a), _box(b)
    if ba is None or bb is None:
        return 0.0
    lo = np.maximum(ba[:2], bb[:2])
    hi = np.minimum(ba[2:], bb[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(ba[2:] - ba[:2]) + np.prod(bb[2:] - bb[:2]) - inter)
    if union <= 0:  # degenerate boxes (one point, or collinear): same box or not
        return 1.0 if np.allclose(ba, bb) else 0.0
    return inter / union


def pose_oks(reference: np.ndarray, other: np.ndarray, stddev: float = OKS_STDDEV) -> float:
    """OKS of `other` against `reference` over the nodes visible in both (0 if none)."""
    both = ~(np.isnan(reference).any(axis=1) | np.isnan(other).any(axis=1))
    if not both.any():
        return 0.0
    box = _box(reference)
    area = float(np.prod(box[2:] - box[:2])) if box is not None else 0.0
    norm = (2 * stddev) ** 2 * 2 * max(area, 1.0)  # SLEAP's (and posekit.evaluation's)
    d2 = ((reference[both] - other[both]) ** 2).sum(axis=1)
    return float(np.mean(np.exp(-d2 / norm)))


@dataclass(frozen=True)
class InstanceFilter:
    """Which predicted instances of a frame to keep (all of them with the defaults)."""

    min_instance_score: float | None = None
    min_visible_nodes: int | None = None
    overlap_method: str | None = None
    overlap_threshold: float = 0.8

    def __post_init__(self):
        if self.overlap_method is not None and self.overlap_method not in OVERLAP_METHODS:
            raise PosekitError(
                f"overlap method must be one of {OVERLAP_METHODS}; got {self.overlap_method!r}"
            )
        if self.min_visible_nodes is not None and self.min_visible_nodes < 0:
            raise PosekitError(f"min_visible_nodes must be >= 0; got {self.min_visible_nodes}")
        if not 0 < float(self.overlap_threshold) <= 1:
            raise PosekitError(f"overlap threshold must be in (0, 1]; got {self.overlap_threshold}")

    @property
    def active(self) -> bool:
        return bool(
            self.min_instance_score is not None
            or self.min_visible_nodes
            or self.overlap_method is not None
        )

    def keep(self, points: list[np.ndarray], scores: list[float]) -> list[int]:
        """Indices (ascending) of the instances to keep, given their (n_nodes, 2) points
        (NaN: not visible) and instance scores."""
        idx = list(range(len(points)))
        if self.min_instance_score is not None:
            idx = [i for i in idx if scores[i] >= self.min_instance_score]
        if self.min_visible_nodes:
            n = self.min_visible_nodes
            idx = [i for i in idx if int((~np.isnan(points[i]).any(axis=1)).sum()) >= n]
        if self.overlap_method is not None and len(idx) > 1:
            sim = box_iou if self.overlap_method == "iou" else pose_oks
            order = sorted(idx, key=lambda i: (-float(np.nan_to_num(scores[i], nan=-np.inf)), i))
            kept: list[int] = []
            for i in order:
                if all(sim(points[k], points[i]) <= self.overlap_threshold for k in kept):
                    kept.append(i)
            idx = sorted(kept)
        return idx

    def apply(self, instances: list) -> list:
        """The `sleap_io` instances of one frame that pass (the same objects, in order)."""
        if not self.active or not instances:
            return list(instances)
        pts = [np.asarray(inst.numpy(), dtype=np.float64) for inst in instances]
        scores = [float(getattr(inst, "score", np.nan)) for inst in instances]
        return [instances[i] for i in self.keep(pts, scores)]
