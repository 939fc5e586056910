"""Peak finding on confidence maps, batched and device-agnostic.

Two finders, as in SLEAP:

- **global peaks** (single-instance and centered-instance models): one peak per sample
  and channel, the arg-maximum of the map. A peak whose value is *below* the threshold
  becomes NaN but keeps its value, because SLEAP reports that value as the point score.
- **local peaks** (centroid and multi-instance models): every pixel that is above the
  threshold and *strictly* greater than all eight neighbours. Strictness matters: a flat
  plateau yields no peak, exactly like SLEAP's dilation-based non-maximum suppression.

Everything here works in **grid units** of the map (pixel ``(row, col)`` of the map ->
point ``(x=col, y=row)``). Subpixel refinement lives in `refinement.py`; conversion to
image coordinates (stride, input scaling, crop origin) in `coordinates.to_image_coordinates`.
The convenience wrappers `find_global_peaks` and `find_local_peaks` chain both steps.

`find_global_peaks_fixed` and `find_local_peaks_fixed` are the same finders with outputs
of a fixed size (every channel refined, K slots of local peaks): what an exported graph
can compute, since it cannot select a data-dependent number of peaks. They share the
arg-maximum, the threshold rules, the neighbourhood and the refinement with the finders
above, and nothing in them pins a device or a size when traced.

**The frame, not the padding.** Full frames are resized by the input scaling and padded
bottom/right to a multiple of the network's stride; the maps cover that padding too, and a
network can answer there (a dark strip looks like a dark part; the edge between frame and
padding like a body edge). A point outside the frame is never right, so every finder
takes ``frame_map_hw``, the map rows and columns that lie on the frame
(`frame_map_size`): peaks are chosen only there, as if the map ended at the frame (the
refinement still reads the map as it is). None looks at the whole map (SLEAP's rule).

All functions take NCHW tensors on any device and return tensors on the same device.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_PEAK_THRESHOLD = 0.2


def frame_map_size(frame_hw, input_scale: float, stride: int) -> tuple[int, int]:
    """Rows and columns of a full-frame map that lie on a frame of `frame_hw` (H, W).

    The frame becomes ``int(H * s)`` x ``int(W * s)`` model-input pixels before the
    bottom/right padding; map pixel ``i`` sits at input pixel ``i * stride``
    (`posekit.ops.coordinates`), so it is on the frame when ``i * stride < int(H * s)``:
    ``ceil(int(H * s) / stride)`` rows (and columns likewise).
    """
    from posekit.model.preprocessing import scaled_size

    h, w = scaled_size((int(frame_hw[0]), int(frame_hw[1])), input_scale)
    stride = max(int(stride), 1)
    return -(-h // stride), -(-w // stride)


def mask_outside_frame(cms: torch.Tensor, frame_map_hw, fill: float = float("-inf")):
    """`cms` with every pixel at row >= ``frame_map_hw[0]`` or column >= ``[1]`` set to
    `fill` (None: `cms` unchanged). The sizes may be traced sizes (exported graphs)."""
    import torch

    from posekit.ops.refinement import arange_like

    if frame_map_hw is None:
        return cms
    rows = arange_like(cms.shape[-2], cms, torch.int64)
    cols = arange_like(cms.shape[-1], cms, torch.int64)
    inside = (rows[:, None] < frame_map_hw[0]) & (cols[None, :] < frame_map_hw[1])
    return torch.where(inside, cms, torch.full_like(cms, fill))


def _check_maps(cms: torch.Tensor, name: str = "confidence maps") -> None:
    if cms.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D tensor (N, C, H, W); got shape {tuple(cms.shape)}. "
            "Add a batch axis with `x[None]` for a single sample."
        )


def find_global_peaks_rough(
    cms: torch.Tensor, threshold: float = DEFAULT_PEAK_THRESHOLD, frame_map_hw=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid-aligned global maximum of every channel of every sample.

    Args:
        cms: confidence maps, shape (N, C, H, W).
        threshold: peaks with a value strictly below this become NaN (SLEAP's rule; a
            value equal to the threshold is kept).
        frame_map_hw: the map rows and columns on the frame (`frame_map_size`); the
            maximum is taken there only. None: the whole map.

    Returns:
        ``(points, values)``: points (N, C, 2) float32 as (x, y) grid indices, NaN where
        below threshold; values (N, C), the map value at the arg-maximum (kept even when
        the point is NaN).
    """
    _check_maps(cms)
    points, values = _global_argmax(mask_outside_frame(cms, frame_map_hw))
    return _nan_below(points, values, threshold), values


def _grid_points(idx: torch.Tensor, width) -> torch.Tensor:
    """Row-major flat pixel indices -> float32 (x, y) grid points (a trailing axis of 2)."""
    import torch

    ys = torch.div(idx, width, rounding_mode="floor")
    xs = idx - ys * width
    return torch.stack([xs, ys], dim=-1).to(torch.float32)


def _global_argmax(cms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid point (N, C, 2) and value (N, C) of every map's maximum, before thresholding."""
    n, c, h, w = cms.shape
    values, idx = cms.reshape(n, c, h * w).max(dim=-1)
    return _grid_points(idx, w), values


def _nan_below(points: torch.Tensor, values: torch.Tensor, threshold: float) -> torch.Tensor:
    """SLEAP's global-peak rule: a peak whose value is below `threshold` becomes NaN."""
    import torch

    below = values < threshold
    return torch.where(below[..., None], torch.full_like(points, float("nan")), points)


#: (dy, dx) of the eight neighbours a local peak must exceed, for both local finders.
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@functools.cache
def _neighbour_offsets():
    """`_NEIGHBOURS` as two int64 tensors, dy and dx (built once)."""
    import torch

    dy = torch.tensor([d[0] for d in _NEIGHBOURS])
    dx = torch.tensor([d[1] for d in _NEIGHBOURS])
    return dy, dx


def find_local_peaks_rough(
    cms: torch.Tensor, threshold: float = DEFAULT_PEAK_THRESHOLD, frame_map_hw=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All strict local maxima above a threshold.

    A pixel is a peak when its value is strictly greater than ``threshold`` and strictly
    greater than each of its eight neighbours.

    Args:
        cms: confidence maps, shape (N, C, H, W).
        threshold: minimum value (exclusive).
        frame_map_hw: the map rows and columns on the frame (`frame_map_size`); pixels
            beyond them count as outside the map. None: the whole map.

    Returns:
        ``(points, values, sample_inds, channel_inds)``: points (P, 2) float32 (x, y) grid
        indices, values (P,), and the int64 sample and channel of each peak. Peaks are
        ordered by sample, then channel, then row-major position.
    """
    import torch

    _check_maps(cms)
    cms = mask_outside_frame(cms, frame_map_hw)
    # Pixels above the threshold are few (a blob around each animal's part): compare
    # only those with their neighbours instead of building a full neighbourhood-max map
    # (8 passes over every map). Same peaks, same (row-major) order.
    subs = torch.nonzero(cms > threshold, as_tuple=False)  # (K, 4): n, c, y, x
    n, c, y, x = subs.unbind(dim=1)
    values = cms[n, c, y, x]
    h, w = cms.shape[-2:]
    dy, dx = _neighbour_offsets()
    ny = y[:, None] + dy.to(y.device)  # (K, 8)
    nx = x[:, None] + dx.to(x.device)
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    neighbours = cms[n[:, None], c[:, None], ny.clamp(0, h - 1), nx.clamp(0, w - 1)]
    neighbours = neighbours.masked_fill(~inside, float("-inf"))  # outside the map: -inf
    keep = (values[:, None] > neighbours).all(dim=1)
    subs, values = subs[keep], values[keep]
    points = subs[:, [3, 2]].to(torch.float32)
    return points, values, subs[:, 0], subs[:, 1]


def find_global_peaks(
    cms: torch.Tensor,
    threshold: float = DEFAULT_PEAK_THRESHOLD,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    offsets: torch.Tensor | None = None,
    frame_map_hw=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global peaks with subpixel refinement, in grid units.

    Args:
        cms: (N, C, H, W) confidence maps.
        threshold: see `find_global_peaks_rough`.
        refinement: ``"integral"`` (SLEAP's default), ``"local"`` (quarter-pixel step
            towards the larger neighbour) or None. Ignored when ``offsets`` is given.
        integral_patch_size: odd patch size for integral refinement.
        offsets: optional (N, 2C, H, W) output of an offset-refinement head; when given,
            the learned offset at each peak pixel replaces the deterministic refinement.
        frame_map_hw: see `find_global_peaks_rough`.

    Returns:
        ``(points, values)`` with points (N, C, 2) in grid units (NaN below threshold).
    """
    import torch

    from posekit.ops.refinement import refine_peaks

    points, values = find_global_peaks_rough(cms, threshold, frame_map_hw)
    n, c = values.shape
    flat = points.reshape(n * c, 2)
    valid = ~torch.isnan(flat[:, 0])
    if (refinement is None and offsets is None) or not bool(valid.any()):
        return points, values
    sample_inds = torch.arange(n, device=cms.device).repeat_interleave(c)
    channel_inds = torch.arange(c, device=cms.device).repeat(n)
    refined = refine_peaks(
        cms,
        flat[valid],
        sample_inds[valid],
        channel_inds[valid],
        refinement=refinement,
        integral_patch_size=integral_patch_size,
        offsets=offsets,
    )
    flat = flat.clone()
    flat[valid] = refined
    return flat.reshape(n, c, 2), values


def find_local_peaks(
    cms: torch.Tensor,
    threshold: float = DEFAULT_PEAK_THRESHOLD,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    offsets: torch.Tensor | None = None,
    frame_map_hw=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local peaks with subpixel refinement, in grid units.

    Same arguments as `find_global_peaks`; returns
    ``(points (P, 2), values (P,), sample_inds (P,), channel_inds (P,))``.
    """
    from posekit.ops.refinement import refine_peaks

    points, values, sample_inds, channel_inds = find_local_peaks_rough(cms, threshold, frame_map_hw)
    if points.shape[0] == 0 or (refinement is None and offsets is None):
        return points, values, sample_inds, channel_inds
    points = refine_peaks(
        cms,
        points,
        sample_inds,
        channel_inds,
        refinement=refinement,
        integral_patch_size=integral_patch_size,
        offsets=offsets,
    )
    return points, values, sample_inds, channel_inds


def local_peak_mask(cms: torch.Tensor, threshold: float = DEFAULT_PEAK_THRESHOLD) -> torch.Tensor:
    """Boolean (N, C, H, W): `find_local_peaks_rough`'s rule on every pixel at once.

    Above ``threshold`` and strictly above each of the eight neighbours (outside the map
    counts as -inf). Eight passes over the whole map, where `find_local_peaks_rough`
    visits only the pixels above the threshold; this form has fixed shapes, so it
    traces into an exported graph.
    """
    import torch
    import torch.nn.functional as F

    _check_maps(cms)
    h, w = cms.shape[-2:]
    padded = F.pad(cms, (1, 1, 1, 1), value=float("-inf"))
    neighbours = None
    for dy, dx in _NEIGHBOURS:
        view = padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        neighbours = view if neighbours is None else torch.maximum(neighbours, view)
    return (cms > neighbours) & (cms > threshold)


def _refine_slots(
    cms: torch.Tensor,
    points: torch.Tensor,
    refinement: str | None,
    integral_patch_size: int,
    offsets: torch.Tensor | None,
) -> torch.Tensor:
    """`refine_peaks` on grid points (N, C, ..., 2), one per slot of map (n, c).

    Every slot is refined, whether it holds a peak or not (callers mask the empty ones):
    selecting the valid ones would make the number of points depend on the data.
    """
    import torch

    from posekit.ops.refinement import arange_like, refine_peaks

    if refinement is None and offsets is None:
        return points
    slots = torch.zeros_like(points[..., 0], dtype=torch.long)
    trailing = [1] * (slots.ndim - 2)
    samples = arange_like(slots.shape[0], slots).reshape(-1, 1, *trailing) + slots
    channels = arange_like(slots.shape[1], slots).reshape(1, -1, *trailing) + slots
    refined = refine_peaks(
        cms,
        points.reshape(-1, 2),
        samples.reshape(-1),
        channels.reshape(-1),
        refinement=refinement,
        integral_patch_size=integral_patch_size,
        offsets=offsets,
    )
    return refined.reshape(points.shape)


def find_global_peaks_fixed(
    cms: torch.Tensor,
    threshold: float = DEFAULT_PEAK_THRESHOLD,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    offsets: torch.Tensor | None = None,
    frame_map_hw=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`find_global_peaks` without data-dependent steps (for exported graphs).

    Same arguments and outputs; every channel is refined before the threshold turns the
    weak ones into NaN, where `find_global_peaks` refines only the peaks it keeps.
    """
    _check_maps(cms)
    points, values = _global_argmax(mask_outside_frame(cms, frame_map_hw))
    points = _refine_slots(cms, points, refinement, integral_patch_size, offsets)
    return _nan_below(points, values, threshold), values


def find_local_peaks_fixed(
    cms: torch.Tensor,
    max_peaks: int,
    threshold: float = DEFAULT_PEAK_THRESHOLD,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    offsets: torch.Tensor | None = None,
    frame_map_hw=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `max_peaks` strongest local peaks of each map, in K fixed slots (exports).

    The peaks of `find_local_peaks` (same rule and refinement), kept per sample and
    channel: the K highest, strongest first.

    Returns:
        ``(points, values)``: points (N, C, K, 2) in grid units, NaN in unused slots;
        values (N, C, K), 0 in unused slots.
    """
    import torch
    import torch.nn.functional as F

    _check_maps(cms)
    n, c, h, w = cms.shape
    k = int(max_peaks)
    masked = mask_outside_frame(cms, frame_map_hw)
    scores = torch.where(local_peak_mask(masked, threshold), cms, float("-inf"))
    # K extra -inf slots keep top-k valid on maps with fewer than K pixels.
    scores = F.pad(scores.reshape(n, c, h * w), (0, k), value=float("-inf"))
    values, idx = torch.topk(scores, k, dim=-1)
    valid = values > float("-inf")
    points = _grid_points(torch.where(valid, idx, 0), w)
    points = _refine_slots(cms, points, refinement, integral_patch_size, offsets)
    points = torch.where(valid[..., None], points, float("nan"))
    return points, torch.where(valid, values, 0.0)


def top_k_per_sample(
    values: torch.Tensor, sample_inds: torch.Tensor, k: int | None
) -> torch.Tensor:
    """Indices (into the peak list) of the ``k`` highest-valued peaks of each sample.

    Used for ``max_instances`` on centroids. The kept indices are returned in their
    original order, so peaks stay grouped by sample. ``k=None`` keeps everything.
    """
    import torch

    if k is None or values.numel() == 0:
        return torch.arange(values.shape[0], device=values.device)
    if k < 1:
        raise ValueError(f"max_instances must be at least 1 or None; got {k}")
    keep = []
    for s in torch.unique(sample_inds).tolist():
        inds = torch.nonzero(sample_inds == s, as_tuple=False)[:, 0]
        if inds.numel() > k:
            order = torch.argsort(values[inds], descending=True, stable=True)[:k]
            inds = inds[order]
        keep.append(inds)
    return torch.sort(torch.cat(keep)).values
