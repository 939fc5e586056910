"""Map-grid coordinates -> image coordinates, SLEAP's way (one copy for every caller).

Map pixel ``i`` sits at input pixel ``i * stride`` (no half-pixel shift). With input
scaling ``s != 1`` the point is divided by ``s`` and 0.5 is added: SLEAP's compensation
for TensorFlow's resize alignment, reproduced so predictions match SLEAP's. Top-down crops
then add their origin in the full frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def to_image_coordinates(
    points: torch.Tensor,
    stride: float,
    input_scale: float = 1.0,
    crop_offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grid coordinates -> full-image coordinates, SLEAP's way.

    ``(points * stride)``; then if ``input_scale != 1``: ``/ input_scale + 0.5``; then
    ``+ crop_offsets`` (broadcast over the node axis: pass (M, 2) for (M, C, 2) points).
    NaNs stay NaN.
    """
    out = points * float(stride)
    if input_scale != 1.0:
        out = out / float(input_scale) + 0.5
    if crop_offsets is not None:
        if out.ndim == 3 and crop_offsets.ndim == 2:
            crop_offsets = crop_offsets[:, None, :]
        out = out + crop_offsets.to(out.dtype)
    return out
