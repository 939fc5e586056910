"""Identity (class) assignment for multi-class models, as SLEAP 1.4.1 does it.

Multi-class models learn a fixed set of identities (e.g. "female", "male") instead of
linking detections over time. Inference must give each identity at most one detection
per frame, so classification is an assignment problem, solved with the Hungarian
algorithm (`scipy.optimize.linear_sum_assignment`) on the negated probabilities:

- **bottom-up** (`classify_peaks_from_maps`): every peak reads the class maps at its
  (rounded) position. For each frame and each node type separately, peaks are assigned
  to classes; an assignment is kept only when the class is also that peak's most likely
  class (a peak that lost its favourite class to a better peak is dropped, rather than
  forced into an identity it does not resemble). Instance ``k`` of the frame is then made
  of the peaks assigned to class ``k``.
- **top-down** (`classify_peaks_from_vectors`): every crop has one class-probability
  vector; crops of a frame are assigned to classes with the same rule.

Outputs are laid out by class: index ``k`` on the instance axis is class ``k``, with NaN
where no detection got that class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().to("cpu").numpy()
    return np.asarray(x)


def group_class_peaks(
    peak_class_probs,
    peak_sample_inds,
    peak_channel_inds,
    n_samples: int,
    n_channels: int,
    best_only: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign peaks to classes per (sample, channel) group.

    Args:
        peak_class_probs: (P, K) class probabilities of each peak.
        peak_sample_inds, peak_channel_inds: (P,) group of each peak.
        n_samples, n_channels: number of samples and channels (node types).

    Returns:
        ``(peak_inds, class_inds)``: matched pairs, kept only where the matched class is
        the peak's most probable class.
    """
    from scipy.optimize import linear_sum_assignment

    probs = _to_numpy(peak_class_probs).astype(np.float64)
    samples = _to_numpy(peak_sample_inds).astype(np.int64)
    channels = _to_numpy(peak_channel_inds).astype(np.int64)
    peak_inds, class_inds = [], []
    for s in range(n_samples):
        for c in range(n_channels):
            members = np.nonzero((samples == s) & (channels == c))[0]
            if members.size == 0:
                continue
            p = probs[members]
            cost = np.where(np.isfinite(p), -p, 1e9)
            rows, cols = linear_sum_assignment(cost)
            peak_inds.append(members[rows])
            class_inds.append(cols)
    if not peak_inds:
        empty = np.zeros((0,), np.int64)
        return empty, empty
    peak_inds = np.concatenate(peak_inds)
    class_inds = np.concatenate(class_inds)
    if not best_only:  # sleap-nn's top-down: every matched crop keeps its class
        return peak_inds, class_inds
    matched = probs[peak_inds, class_inds]
    best = probs[peak_inds].max(axis=1)
    keep = matched == best
    return peak_inds[keep], class_inds[keep]


def classify_peaks_from_maps(
    class_maps: torch.Tensor,
    peak_points: torch.Tensor,
    peak_vals: torch.Tensor,
    peak_sample_inds: torch.Tensor,
    peak_channel_inds: torch.Tensor,
    n_channels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group local peaks into one instance per class using class maps.

    Args:
        class_maps: (N, K, H, W) class probability maps.
        peak_points: (P, 2) peak (x, y) **in class-map grid units** (divide image-scale
            peaks by the class-map stride first).
        peak_vals: (P,) confidence-map value of each peak.
        peak_sample_inds, peak_channel_inds: (P,) sample and node of each peak.
        n_channels: number of nodes.

    Returns:
        ``(points (N, K, n_channels, 2), point_vals (N, K, n_channels),
        class_probs (N, K, n_channels))`` as numpy float32, NaN where empty; points are in
        class-map grid units.
    """
    import torch

    n, k, h, w = class_maps.shape
    pts = peak_points.to(torch.float32)
    cols = torch.round(pts[:, 0]).long().clamp(0, w - 1)
    rows = torch.round(pts[:, 1]).long().clamp(0, h - 1)
    samples = peak_sample_inds.long()
    probs = class_maps[samples, :, rows, cols] if pts.shape[0] else class_maps.new_zeros((0, k))
    probs_np = _to_numpy(probs).astype(np.float64)
    peak_inds, class_inds = group_class_peaks(
        probs_np, peak_sample_inds, peak_channel_inds, n, n_channels
    )
    points = np.full((n, k, n_channels, 2), np.nan, np.float32)
    point_vals = np.full((n, k, n_channels), np.nan, np.float32)
    class_probs = np.full((n, k, n_channels), np.nan, np.float32)
    s_np = _to_numpy(peak_sample_inds).astype(np.int64)
    c_np = _to_numpy(peak_channel_inds).astype(np.int64)
    pts_np = _to_numpy(pts)
    vals_np = _to_numpy(peak_vals)
    for p, cls in zip(peak_inds, class_inds):
        points[s_np[p], cls, c_np[p]] = pts_np[p]
        point_vals[s_np[p], cls, c_np[p]] = vals_np[p]
        class_probs[s_np[p], cls, c_np[p]] = probs_np[p, cls]
    return points, point_vals, class_probs


def classify_peaks_from_vectors(
    peak_points,
    peak_vals,
    peak_class_probs,
    crop_sample_inds,
    n_samples: int,
    best_only: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Assign top-down crops to classes, at most one crop per class and frame.

    ``best_only`` (SLEAP's rule) keeps a match only where the class is the crop's most
    probable one; sleap-nn keeps every match of the assignment.

    Args:
        peak_points: (M, n_nodes, 2) points of each crop (any coordinate frame).
        peak_vals: (M, n_nodes) point scores.
        peak_class_probs: (M, K) class probabilities of each crop.
        crop_sample_inds: (M,) frame of each crop.
        n_samples: number of frames in the batch.

    Returns:
        ``(points (N, K, n_nodes, 2), point_vals (N, K, n_nodes), class_probs (N, K),
        crop_inds (N, K))``: NaN / -1 where a class got no crop; ``crop_inds`` tells which
        crop became each instance.
    """
    pts = _to_numpy(peak_points).astype(np.float32)
    vals = _to_numpy(peak_vals).astype(np.float32)
    probs = _to_numpy(peak_class_probs).astype(np.float64)
    samples = _to_numpy(crop_sample_inds).astype(np.int64)
    m = probs.shape[0]
    k = probs.shape[1] if probs.ndim == 2 else 0
    n_nodes = pts.shape[1] if pts.ndim == 3 else 0
    peak_inds, class_inds = group_class_peaks(
        probs, samples, np.zeros((m,), np.int64), n_samples, 1, best_only
    )
    points = np.full((n_samples, k, n_nodes, 2), np.nan, np.float32)
    point_vals = np.full((n_samples, k, n_nodes), np.nan, np.float32)
    class_probs = np.full((n_samples, k), np.nan, np.float32)
    crop_inds = np.full((n_samples, k), -1, np.int64)
    for p, cls in zip(peak_inds, class_inds):
        s = samples[p]
        points[s, cls] = pts[p]
        point_vals[s, cls] = vals[p]
        class_probs[s, cls] = probs[p, cls]
        crop_inds[s, cls] = p
    return points, point_vals, class_probs, crop_inds


def ensure_probabilities(vectors: torch.Tensor) -> torch.Tensor:
    """Class vectors as probabilities: softmax unless rows already are distributions.

    SLEAP's class-vector head ends in a softmax; a head that returns logits is
    normalised here so that the assignment compares probabilities either way.
    """
    import torch

    if vectors.numel() == 0:
        return vectors
    v = vectors.to(torch.float32)
    is_prob = bool(((v >= 0) & (v <= 1)).all()) and bool(
        torch.allclose(v.sum(dim=-1), torch.ones_like(v[:, 0]), atol=1e-3)
    )
    return v if is_prob else torch.softmax(v, dim=-1)
