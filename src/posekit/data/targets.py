"""Training targets for every SLEAP head, as batched torch ops on any device.

All maps are sampled on SLEAP's grid: map pixel ``i`` sits at input coordinate
``i * stride`` (``arange(0, size, stride)``, no half-pixel offset), so a map of an
``H x W`` input at stride ``s`` is ``ceil(H / s) x ceil(W / s)``. Points are ``(x, y)`` in
model-input pixels (pixel centres on integers); NaN marks a missing point.

Facts of SLEAP 1.4.1's target code that these functions reproduce (read from
``sleap/nn/data/{confidence_maps,edge_maps,offset_regression,identity}.py``):

- Confidence maps are unnormalised Gaussians ``exp(-d^2 / (2 sigma^2))``; a NaN point gives
  a zero channel; several instances combine by maximum. Before combining, SLEAP drops
  instances with no point strictly inside ``(0, last grid coordinate)`` on both axes
  (``drop_outside_instances``).
- SLEAP's generators call these with ``sigma = head.sigma * output_stride``: the head's
  ``sigma`` is in units of *output-grid* pixels, not input pixels. `head_sigma` applies
  that rule; the functions here take the spread in input pixels.
- PAFs: the edge "Gaussian" is evaluated on the *squared* distance to the segment, i.e.
  ``exp(-(d^2)^2 / (2 sigma^2))`` (SLEAP's ``gaussian_pdf`` squares what
  ``distance_to_edge`` already returns squared), times the edge's unit vector; the squared
  edge length is clamped to >= 1; an edge with a NaN end contributes zeros; instances are
  *summed* (``make_multi_pafs``), not max-reduced. The PAF sigma is *not* multiplied by
  the stride. That is why SLEAP's PAF sigmas are large (15 by default, 75 in profiles).
- Offsets: ``(point - grid position) / stride`` (output-grid units), zero where the part's
  confidence map is not ``> threshold`` (0.2). For several instances SLEAP sums each
  instance's masked offsets; posekit takes the offset of the instance whose map is largest
  at the pixel instead, which is the same wherever at most one instance passes the
  threshold and is well defined where two overlap.
- Class maps: each instance's map is the max over its parts' Gaussians (sigma times the
  stride, as for confidence maps); where it is ``> threshold`` (0.2) the instance gets
  weight ``cm_i / sum_j cm_j`` (1 when alone), and a class channel is the max weight of
  its instances. So class maps are ~binary discs, not Gaussians.
- Class vectors: one-hot of the crop's class index (index -1: all zeros).
"""

from __future__ import annotations

import math

import torch

OFFSET_THRESHOLD = 0.2  # SLEAP's `offsets_threshold` / `sigma_threshold` default
CLASS_MAP_THRESHOLD = 0.2  # SLEAP's `class_map_threshold` default


def output_size(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Map size of an input of `image_hw` at `stride`: ``ceil(H / stride), ceil(W / stride)``."""
    return math.ceil(image_hw[0] / stride), math.ceil(image_hw[1] / stride)


def head_sigma(sigma: float, output_stride: int) -> float:
    """Gaussian spread in input pixels that SLEAP uses for a map head's config `sigma`.

    SLEAP's confidence-map and class-map generators multiply the head's sigma by its
    output stride, so a head at stride 4 with sigma 2.5 draws Gaussians of 10 input
    pixels. Reproducing this keeps posekit-trained models comparable to SLEAP's.
    """
    return float(sigma) * int(output_stride)


def make_grid_vectors(
    image_hw: tuple[int, int],
    stride: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input coordinates of the map pixels: ``xv = arange(0, W, stride)``, same for y."""
    xv = torch.arange(0, image_hw[1], stride, device=device, dtype=dtype)
    yv = torch.arange(0, image_hw[0], stride, device=device, dtype=dtype)
    return xv, yv


def _as_instances(points: torch.Tensor) -> torch.Tensor:
    """(N, K, 2) -> (N, 1, K, 2); (N, I, K, 2) unchanged."""
    if points.dim() == 3:
        return points[:, None]
    if points.dim() != 4 or points.shape[-1] != 2:
        raise ValueError(
            f"points must be (N, K, 2) or (N, instances, K, 2); got {tuple(points.shape)}"
        )
    return points


def _inside_grid(points: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> torch.Tensor:
    """(N, I) mask: instance has a point strictly inside (0, last grid coordinate)."""
    x, y = points[..., 0], points[..., 1]
    inside = (x > 0) & (y > 0) & (x < xv[-1]) & (y < yv[-1])
    return inside.any(dim=-1)


def _instance_gaussians(
    points: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, sigma: float
) -> torch.Tensor:
    """(N, I, K, h, w) Gaussians of every point; NaN points give zeros.

    Computed as the outer product of two 1-D Gaussians (exact for an isotropic Gaussian)
    so the cost is dominated by the final product, not by exp().
    """
    denom = 2.0 * float(sigma) ** 2
    gx = torch.exp(-((xv.view(1, 1, 1, -1) - points[..., 0:1]) ** 2) / denom)  # (N,I,K,w)
    gy = torch.exp(-((yv.view(1, 1, 1, -1) - points[..., 1:2]) ** 2) / denom)  # (N,I,K,h)
    g = gy[..., :, None] * gx[..., None, :]
    return torch.nan_to_num(g, nan=0.0)


def confidence_maps(
    points: torch.Tensor,
    image_hw: tuple[int, int],
    stride: int,
    sigma: float,
    drop_outside_instances: bool = True,
) -> torch.Tensor:
    """Confidence maps (N, K, h, w): per part, the max over instances of its Gaussian.

    Args:
        points: (N, K, 2) for one instance per sample or (N, I, K, 2); NaN = missing
            (padding instances are all-NaN).
        image_hw: size of the model input the points live in.
        stride: output stride of the head.
        sigma: Gaussian spread in input pixels (see `head_sigma` for SLEAP's rule).
        drop_outside_instances: ignore instances with no point inside the grid, as
            SLEAP's multi-instance maps do (SLEAP's single/centred maps do not).
    """
    pts = _as_instances(points).float()
    xv, yv = make_grid_vectors(image_hw, stride, pts.device)
    g = _instance_gaussians(pts, xv, yv, sigma)
    if drop_outside_instances:
        keep = _inside_grid(pts, xv, yv)
        g = g * keep[:, :, None, None, None].to(g.dtype)
    if g.shape[1] == 0:
        return g.new_zeros((g.shape[0], g.shape[2], len(yv), len(xv)))
    return g.amax(dim=1)


def centroid_confidence_maps(
    centroids: torch.Tensor, image_hw: tuple[int, int], stride: int, sigma: float
) -> torch.Tensor:
    """One-channel map (N, 1, h, w) of all instance centroids (N, I, 2)."""
    return confidence_maps(centroids[:, :, None, :], image_hw, stride, sigma)


def part_affinity_fields(
    points: torch.Tensor,
    edge_inds: torch.Tensor | list[tuple[int, int]],
    image_hw: tuple[int, int],
    stride: int,
    sigma: float,
    drop_outside_instances: bool = True,
) -> torch.Tensor:
    """PAFs (N, 2 * E, h, w), channels [edge0_x, edge0_y, edge1_x, ...].

    Each pixel gets, per edge and instance, ``exp(-(d^2)^2 / (2 sigma^2))`` times the unit
    vector from source to destination, where ``d`` is the distance from the pixel to the
    segment; instances are summed (SLEAP's conventions, see the module docstring).
    """
    pts = _as_instances(points).float()
    n, n_inst = pts.shape[:2]
    edges = torch.as_tensor(edge_inds, dtype=torch.long, device=pts.device).reshape(-1, 2)
    xv, yv = make_grid_vectors(image_hw, stride, pts.device)
    h, w = len(yv), len(xv)
    n_edges = edges.shape[0]
    if n_edges == 0 or n_inst == 0:
        return pts.new_zeros((n, 2 * n_edges, h, w))
    if drop_outside_instances:
        keep = _inside_grid(pts, xv, yv)
        pts = torch.where(keep[:, :, None, None], pts, torch.full_like(pts, float("nan")))

    src = pts[:, :, edges[:, 0]]  # (N, I, E, 2)
    dst = pts[:, :, edges[:, 1]]
    direction = dst - src
    length_sq = (direction**2).sum(-1).clamp(min=1.0)  # (N, I, E)
    unit = direction / direction.norm(dim=-1, keepdim=True)  # NaN for zero-length edges

    gx = xv.view(1, 1, 1, 1, w)
    gy = yv.view(1, 1, 1, h, 1)
    rel_x = gx - src[..., 0, None, None]  # (N, I, E, 1, w)
    rel_y = gy - src[..., 1, None, None]  # (N, I, E, h, 1)
    dx = direction[..., 0, None, None]
    dy = direction[..., 1, None, None]
    t = ((rel_x * dx + rel_y * dy) / length_sq[..., None, None]).clamp(0.0, 1.0)
    dist_sq = (t * dx - rel_x) ** 2 + (t * dy - rel_y) ** 2  # (N, I, E, h, w)
    weight = torch.exp(-(dist_sq**2) / (2.0 * float(sigma) ** 2))
    paf = weight[:, :, :, None] * unit[..., :, None, None]  # (N, I, E, 2, h, w)
    paf = torch.nan_to_num(paf, nan=0.0).sum(dim=1)  # (N, E, 2, h, w)
    return paf.reshape(n, 2 * n_edges, h, w)


def offset_maps(
    points: torch.Tensor,
    image_hw: tuple[int, int],
    stride: int,
    sigma: float,
    threshold: float = OFFSET_THRESHOLD,
) -> torch.Tensor:
    """Offset-refinement targets (N, 2 * K, h, w), channels [part0_dx, part0_dy, ...].

    Value = (point - grid position) / stride, i.e. in output-grid units, kept where the
    part's confidence map (same `sigma` as the confidence-map head, in input pixels) is
    ``> threshold`` and zero elsewhere. With several instances the instance whose map is
    largest at the pixel provides the offset.
    """
    pts = _as_instances(points).float()
    n, n_inst, k = pts.shape[:3]
    xv, yv = make_grid_vectors(image_hw, stride, pts.device)
    h, w = len(yv), len(xv)
    if n_inst == 0:
        return pts.new_zeros((n, 2 * k, h, w))
    g = _instance_gaussians(pts, xv, yv, sigma)  # (N, I, K, h, w)
    best, idx = g.max(dim=1)  # (N, K, h, w)
    dx = (pts[..., 0, None, None] - xv.view(1, 1, 1, 1, w)) / stride  # (N, I, K, 1, w)
    dy = (pts[..., 1, None, None] - yv.view(1, 1, 1, h, 1)) / stride  # (N, I, K, h, 1)
    dx = dx.expand(n, n_inst, k, h, w).gather(1, idx[:, None]).squeeze(1)
    dy = dy.expand(n, n_inst, k, h, w).gather(1, idx[:, None]).squeeze(1)
    mask = best > threshold
    off = torch.stack([dx, dy], dim=2)  # (N, K, 2, h, w)
    off = torch.where(mask[:, :, None], torch.nan_to_num(off, nan=0.0), torch.zeros_like(off))
    return off.reshape(n, 2 * k, h, w)


def class_maps(
    points: torch.Tensor,
    class_inds: torch.Tensor,
    n_classes: int,
    image_hw: tuple[int, int],
    stride: int,
    sigma: float,
    threshold: float = CLASS_MAP_THRESHOLD,
) -> torch.Tensor:
    """Identity class maps (N, n_classes, h, w), SLEAP's ``make_class_maps``.

    Args:
        points: (N, I, K, 2) instance points (NaN padded).
        class_inds: (N, I) class (track) index per instance, -1 for none/padding.
        sigma: spread in input pixels of the per-instance masking maps.
    """
    pts = _as_instances(points).float()
    n, n_inst = pts.shape[:2]
    xv, yv = make_grid_vectors(image_hw, stride, pts.device)
    h, w = len(yv), len(xv)
    if n_inst == 0 or n_classes == 0:
        return pts.new_zeros((n, n_classes, h, w))
    cms = _instance_gaussians(pts, xv, yv, sigma).amax(dim=2)  # (N, I, h, w)
    total = cms.sum(dim=1, keepdim=True)
    weight = torch.where(cms > threshold, cms / total.clamp(min=1e-12), torch.zeros_like(cms))
    inds = torch.as_tensor(class_inds, device=pts.device, dtype=torch.long).reshape(n, n_inst)
    onehot = class_vectors(inds.reshape(-1), n_classes).reshape(n, n_inst, n_classes)
    maps = weight[:, :, None] * onehot[..., None, None]  # (N, I, C, h, w)
    return maps.amax(dim=1)


def class_vectors(class_inds: torch.Tensor, n_classes: int) -> torch.Tensor:
    """One-hot float vectors (..., n_classes); index -1 (no class) gives all zeros."""
    inds = torch.as_tensor(class_inds, dtype=torch.long)
    valid = (inds >= 0) & (inds < n_classes)
    onehot = torch.nn.functional.one_hot(inds.clamp(min=0), n_classes).float()
    return onehot * valid[..., None].float()


__all__ = [
    "CLASS_MAP_THRESHOLD",
    "OFFSET_THRESHOLD",
    "centroid_confidence_maps",
    "class_maps",
    "class_vectors",
    "confidence_maps",
    "head_sigma",
    "make_grid_vectors",
    "offset_maps",
    "output_size",
    "part_affinity_fields",
]
