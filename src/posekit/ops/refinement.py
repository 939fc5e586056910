"""Subpixel refinement of grid-aligned peaks, the step between peak finding and image coordinates.

Confidence maps are predicted on a coarse grid (one map pixel per ``stride`` input
pixels), so a grid-aligned peak is only accurate to ``stride / 2``. SLEAP recovers the
lost precision in one of three ways, all reproduced here:

- **integral regression** (default): the centre of mass of a small patch (5 x 5) around
  the grid peak, ``offset = sum(g * cm) / sum(cm)`` with ``g = arange(5) - 2`` per axis.
  Pixels outside the map count as zero, as with TensorFlow's ``crop_and_resize``.
- **learned offsets**: an offset-refinement head predicts the offset (in grid units) at
  every pixel; channels are ``[part0_dx, part0_dy, part1_dx, part1_dy, ...]``.
- **local**: a quarter-pixel step towards the larger neighbour along each axis.

`posekit.ops.coordinates` then maps the refined grid points to image coordinates.

Exported graphs (`posekit.export`) run these same functions under `torch.jit.trace`, so
nothing here may pin a device: constant index tensors come from `arange_like`, which the
tracer records relative to the input instead of as a tensor on the tracing device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def arange_like(n, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``0, 1, ..., n - 1`` on `like`'s device (and `dtype`, default `like`'s).

    Equal to ``torch.arange(n, dtype=dtype, device=like.device)``, built from `like`
    because a traced graph records `torch.arange`'s device as a constant: a TorchScript
    export traced on the CPU would then fail when loaded on a GPU. `n` may be a traced
    size (the batch of an exported graph), which keeps that size dynamic.
    """
    return like.new_ones(n, dtype=dtype or like.dtype).cumsum(0) - 1


def _patch_gather(
    cms: torch.Tensor,
    points: torch.Tensor,
    sample_inds: torch.Tensor,
    channel_inds: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """(P, size, size) patches of ``cms`` centred on integer ``points``, zero outside."""
    import torch.nn.functional as F

    half = size // 2
    padded = F.pad(cms, (half, half, half, half), value=0.0)
    xs = points[:, 0].round().long()
    ys = points[:, 1].round().long()
    g = arange_like(size, xs)
    rows = (ys[:, None] + g[None, :])[:, :, None]  # (P, size, 1) in padded coordinates
    cols = (xs[:, None] + g[None, :])[:, None, :]  # (P, 1, size)
    n_idx = sample_inds.long()[:, None, None]
    c_idx = channel_inds.long()[:, None, None]
    return padded[n_idx, c_idx, rows, cols]


def integral_offsets(
    cms: torch.Tensor,
    points: torch.Tensor,
    sample_inds: torch.Tensor,
    channel_inds: torch.Tensor,
    patch_size: int = 5,
) -> torch.Tensor:
    """Centre-of-mass offsets (P, 2) of ``patch_size`` patches around grid peaks.

    Args:
        cms: (N, C, H, W) confidence maps.
        points: (P, 2) integer-valued (x, y) grid peaks.
        sample_inds, channel_inds: (P,) which map each peak belongs to.
        patch_size: odd side of the patch.
    """
    import torch

    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"integral_patch_size must be a positive odd number; got {patch_size}")
    patches = _patch_gather(cms, points, sample_inds, channel_inds, patch_size).to(torch.float32)
    g = arange_like(patch_size, patches) - (patch_size - 1) / 2
    z = patches.sum(dim=(1, 2))
    dx = (patches * g[None, None, :]).sum(dim=(1, 2)) / z
    dy = (patches * g[None, :, None]).sum(dim=(1, 2)) / z
    return torch.stack([dx, dy], dim=-1)


def local_direction_offsets(
    cms: torch.Tensor,
    points: torch.Tensor,
    sample_inds: torch.Tensor,
    channel_inds: torch.Tensor,
    delta: float = 0.25,
) -> torch.Tensor:
    """Quarter-pixel offsets (P, 2) towards the larger neighbour on each axis."""
    import torch

    patches = _patch_gather(cms, points, sample_inds, channel_inds, 3).to(torch.float32)
    dx = patches[:, 1, 2] - patches[:, 1, 0]
    dy = patches[:, 2, 1] - patches[:, 0, 1]
    return torch.sign(torch.stack([dx, dy], dim=-1)) * delta


def learned_offsets(
    offsets: torch.Tensor,
    points: torch.Tensor,
    sample_inds: torch.Tensor,
    channel_inds: torch.Tensor,
) -> torch.Tensor:
    """Offsets (P, 2) read from an offset-refinement head at each grid peak.

    Args:
        offsets: (N, 2C, H, W) with channels ``[part0_dx, part0_dy, part1_dx, ...]`` in
            grid units, at the same stride as the confidence maps.
    """
    import torch

    if offsets.ndim != 4 or offsets.shape[1] % 2:
        raise ValueError(
            "offset maps must be (N, 2 * n_parts, H, W) with [dx, dy] per part; "
            f"got shape {tuple(offsets.shape)}"
        )
    h, w = offsets.shape[-2:]
    xs = points[:, 0].round().long().clamp(0, w - 1)
    ys = points[:, 1].round().long().clamp(0, h - 1)
    n = sample_inds.long()
    c = channel_inds.long()
    dx = offsets[n, 2 * c, ys, xs]
    dy = offsets[n, 2 * c + 1, ys, xs]
    return torch.stack([dx, dy], dim=-1).to(torch.float32)


def refine_peaks(
    cms: torch.Tensor,
    points: torch.Tensor,
    sample_inds: torch.Tensor,
    channel_inds: torch.Tensor,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Refined (P, 2) grid coordinates of grid-aligned peaks.

    Learned ``offsets`` take precedence (SLEAP uses the offset head whenever the model
    has one); otherwise ``refinement`` picks ``"integral"``, ``"local"`` or None.
    """
    if points.shape[0] == 0:
        return points
    if offsets is not None:
        return points + learned_offsets(offsets, points, sample_inds, channel_inds)
    if refinement is None:
        return points
    if refinement == "integral":
        return points + integral_offsets(
            cms, points, sample_inds, channel_inds, patch_size=integral_patch_size
        )
    if refinement == "local":
        return points + local_direction_offsets(cms, points, sample_inds, channel_inds)
    raise ValueError(f"refinement must be 'integral', 'local' or None; got {refinement!r}")
