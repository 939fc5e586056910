"""Similarity between the instances of a frame and a tracker's candidates, SLEAP's four.

Each function takes the current frame's instances ``(k, n_nodes, 2)`` and the candidates
``(c, n_nodes, 2)`` and returns a ``(k, c)`` matrix, higher = more alike, NaN when the pair
cannot be compared (no node visible in both). The formulas are SLEAP 1.4's
(`sleap/nn/tracker/components.py`), vectorised over all pairs at once:

- ``instance``: mean over the instance's visible nodes of ``exp(-d^2)``, ``d`` in pixels.
  Steep on purpose in SLEAP: 3 px apart already scores 1e-4, so poses that moved more
  than a few pixels all score ~0. posekit's matchers break such ties by centroid
  distance (see `matching.tie_break`), which is what a person would do.
- ``centroid``: minus the distance between the nodes' medians.
- ``iou``: intersection over union of the nodes' bounding boxes.
- ``object_keypoint``: ``exp(-d^2 / (2 e^2))`` per node with ``e`` = `oks_errors` pixels
  (default 1), optionally weighted by both point scores, summed and divided by the number
  of nodes (``all``), the instance's visible nodes (``ref``) or the nodes visible in both
  (``union``).
"""

from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError
from posekit.tracking.poses import bounding_boxes, centroids


def _pair_sq_dists(points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(k, n, 2), (c, n, 2) -> (k, c, n) squared distances per node (NaN if missing)."""
    diff = points[:, None, :, :] - candidates[None, :, :, :]
    return np.sum(diff * diff, axis=-1)


def instance_similarity(points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """SLEAP's ``instance`` similarity for every (instance, candidate) pair."""
    d2 = _pair_sq_dists(points, candidates)
    ok = np.isfinite(d2)
    n_ref = np.isfinite(points).all(axis=-1).sum(axis=-1)  # (k,)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        sim = np.where(ok, np.exp(-np.where(ok, d2, 0.0)), 0.0).sum(-1) / n_ref[:, None]
    both = ok.any(axis=-1)
    return np.where(both, sim, np.nan)


def centroid_similarity(points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """SLEAP's ``centroid`` similarity: minus the centroid distance (pixels)."""
    a, b = centroids(points), centroids(candidates)
    return -np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def iou_similarity(points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """SLEAP's ``iou`` similarity: IoU of the bounding boxes of the visible nodes."""
    a, b = bounding_boxes(points), bounding_boxes(candidates)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def object_keypoint_similarity(
    points: np.ndarray,
    candidates: np.ndarray,
    *,
    errors=None,
    score_weighting: bool = False,
    normalization: str = "all",
    point_scores: np.ndarray | None = None,
    candidate_point_scores: np.ndarray | None = None,
) -> np.ndarray:
    """SLEAP's ``object_keypoint`` similarity (see the module docstring)."""
    n_nodes = points.shape[1]
    err = np.asarray(1.0 if errors is None else errors, dtype=np.float64).reshape(-1)
    if err.size not in (1, n_nodes):
        raise PosekitError(
            f"oks_errors has {err.size} values but the skeleton has {n_nodes} nodes; "
            "give one error (pixels) for all nodes or one per node"
        )
    precision = 1.0 / (2.0 * err**2)  # (1,) or (n,)
    d2 = _pair_sq_dists(points, candidates) * precision
    term = np.exp(-d2)
    if score_weighting:
        ps = np.ones(points.shape[:2]) if point_scores is None else point_scores
        cs = (
            np.ones(candidates.shape[:2])
            if candidate_point_scores is None
            else candidate_point_scores
        )
        term = term * ps[:, None, :] * cs[None, :, :]
    vis_ref = np.all(np.isfinite(points), axis=-1)  # (k, n)
    if normalization == "all":
        norm = np.full((len(points), len(candidates)), float(n_nodes))
    elif normalization == "ref":
        norm = np.repeat(vis_ref.sum(-1)[:, None], len(candidates), axis=1).astype(float)
    else:  # union: nodes visible in both
        vis_c = np.all(np.isfinite(candidates), axis=-1)
        norm = (vis_ref[:, None, :] & vis_c[None, :, :]).sum(-1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.nansum(term, axis=-1) / norm
    return np.where(norm > 0, sim, 0.0)


SIMILARITY_FUNCTIONS = {
    "instance": instance_similarity,
    "centroid": centroid_similarity,
    "iou": iou_similarity,
    "object_keypoint": object_keypoint_similarity,
}


def similarity_matrix(
    name: str, points, candidates, *, options=None, point_scores=None, candidate_point_scores=None
) -> np.ndarray:
    """The ``(k, c)`` similarity `name` between instances and candidates."""
    if len(points) == 0 or len(candidates) == 0:
        return np.zeros((len(points), len(candidates)))
    if name == "object_keypoint":
        return object_keypoint_similarity(
            points,
            candidates,
            errors=None if options is None else options.oks_errors,
            score_weighting=False if options is None else options.oks_score_weighting,
            normalization="all" if options is None else options.oks_normalization,
            point_scores=point_scores,
            candidate_point_scores=candidate_point_scores,
        )
    return SIMILARITY_FUNCTIONS[name](points, candidates)
