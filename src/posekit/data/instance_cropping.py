"""Instance centroids, crop sizes and batched crops for top-down models.

Conventions (SLEAP 1.4.1, `sleap/nn/data/instance_centroids.py` and
`instance_cropping.py`):

- Centroid: the anchor part when it is set and visible; otherwise the midpoint of the
  bounding box of the instance's visible points.
- Crop placement: a crop of ``S`` pixels covers the box whose *pixel centres* run from
  ``x0 = cx - (S - 1) / 2`` to ``x0 + S - 1``, i.e. crop pixel ``j`` samples image
  coordinate ``x0 + j`` (bilinear, zero outside ``[0, W - 1]`` as TF's
  `crop_and_resize`). So the centroid lands at crop coordinate ``(S - 1) / 2 = S/2 - 0.5``
  (between the two middle pixels for even S), and ``point_in_crop = point - origin`` with
  ``origin = (x0, y0)``; ``point = point_in_crop + origin`` maps predictions back.
- Automatic crop size: the largest bounding-box side (width or height) of any user
  instance, after `input_scaling`, plus `crop_size_detection_padding`, rounded up to a
  multiple of the model's maximum stride.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


def bbox_midpoints(points: torch.Tensor) -> torch.Tensor:
    """Midpoint of the bounding box of the visible points: (..., K, 2) -> (..., 2)."""
    visible = ~torch.isnan(points)
    big = torch.finfo(points.dtype).max
    lo = torch.where(visible, points, torch.full_like(points, big)).amin(dim=-2)
    hi = torch.where(visible, points, torch.full_like(points, -big)).amax(dim=-2)
    mid = (lo + hi) * 0.5
    none = ~visible.any(dim=-2)
    return torch.where(none, torch.full_like(mid, float("nan")), mid)


def instance_centroids(
    points: torch.Tensor, anchor_index: int | None = None, method: str = "bbox_center"
) -> torch.Tensor:
    """Centroids (..., 2) of instances (..., K, 2).

    The anchor part's position when `anchor_index` is given and that point is visible,
    else the bounding-box midpoint of the visible points (`method="bbox_center"`,
    SLEAP's rule) or their mean (`"center_of_mass"`, sleap-nn's default for crops
    without an anchor); NaN for an empty instance.
    """
    if method == "center_of_mass":
        visible = ~torch.isnan(points).any(dim=-1, keepdim=True)
        count = visible.sum(dim=-2)
        mid = torch.where(visible, points, torch.zeros_like(points)).sum(dim=-2) / count
    elif method == "bbox_center":
        mid = bbox_midpoints(points)
    else:
        raise ValueError(f"centroid method {method!r}: use 'bbox_center' or 'center_of_mass'")
    if anchor_index is None:
        return mid
    anchor = points[..., anchor_index, :]
    return torch.where(torch.isnan(anchor), mid, anchor)


def find_instance_crop_size(
    points: Iterable[np.ndarray] | np.ndarray,
    padding: int = 0,
    maximum_stride: int = 2,
    input_scaling: float = 1.0,
    min_crop_size: int | None = None,
) -> int:
    """Crop side that holds every instance: max bbox side * scale + padding, rounded up.

    Args:
        points: instances as arrays (K, 2) (or one array (n, K, 2)) in frame pixels.
        padding: `crop_size_detection_padding` (pixels added to the largest side).
        maximum_stride: the model's max stride; the result is a multiple of it.
        input_scaling: the preprocessing scale applied before cropping.
        min_crop_size: optional lower bound on the side before rounding.
    """
    arr_list = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in points]
    max_length = 0.0
    for pts in arr_list:
        pts = pts[~np.isnan(pts).any(axis=1)] * float(input_scaling)
        if len(pts) == 0:
            continue
        extent = pts.max(axis=0) - pts.min(axis=0)
        max_length = max(max_length, float(extent.max()))
    if min_crop_size is not None:
        max_length = max(max_length, float(min_crop_size))
    max_length += float(padding)
    stride = max(int(maximum_stride), 1)
    return max(int(math.ceil(max_length / stride) * stride), stride)


def crop_origins(centroids: torch.Tensor, crop_size: int | tuple[int, int]) -> torch.Tensor:
    """Top-left pixel-centre coordinate (x0, y0) of crops centred on `centroids` (..., 2)."""
    ch, cw = _hw(crop_size)
    delta = torch.tensor([(cw - 1) / 2.0, (ch - 1) / 2.0], dtype=centroids.dtype)
    return centroids - delta.to(centroids.device)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    return int(size[0]), int(size[1])


def bilinear_sample(
    images: torch.Tensor, sample_inds: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor
) -> torch.Tensor:
    """Sample images at pixel coordinates, TF `crop_and_resize` style.

    Args:
        images: (N, C, H, W).
        sample_inds: (M,) which image each output reads.
        xs, ys: (M, h, w) coordinates (pixel centres on integers).

    Returns:
        (M, C, h, w): bilinear values, 0 where a coordinate lies outside ``[0, size-1]``.
        Integer coordinates copy pixels exactly.
    """
    n, c, h_img, w_img = images.shape
    x0f = torch.floor(xs)
    y0f = torch.floor(ys)
    wx = (xs - x0f).to(images.dtype)
    wy = (ys - y0f).to(images.dtype)
    x0 = x0f.long().clamp(0, w_img - 1)
    y0 = y0f.long().clamp(0, h_img - 1)
    x1 = (x0f.long() + 1).clamp(0, w_img - 1)
    y1 = (y0f.long() + 1).clamp(0, h_img - 1)
    inside = (xs >= 0) & (xs <= w_img - 1) & (ys >= 0) & (ys <= h_img - 1)

    # Index the channel-first flattened batch so no image is copied per crop.
    flat = images.transpose(0, 1).reshape(c, n * h_img * w_img)
    base = (sample_inds.long().to(images.device) * (h_img * w_img)).view(-1, 1, 1)

    def gather(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        lin = (base + yy * w_img + xx).reshape(-1)
        return flat[:, lin].reshape(c, *yy.shape).transpose(0, 1)

    top = gather(y0, x0) * (1 - wx)[:, None] + gather(y0, x1) * wx[:, None]
    bottom = gather(y1, x0) * (1 - wx)[:, None] + gather(y1, x1) * wx[:, None]
    out = top * (1 - wy)[:, None] + bottom * wy[:, None]
    return out * inside[:, None].to(out.dtype)


def extract_crops(
    images: torch.Tensor,
    origins: torch.Tensor,
    crop_size: int | tuple[int, int],
    sample_inds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crops (M, C, h, w) whose pixel (i, j) samples image coordinate (x0 + j, y0 + i).

    Args:
        images: (N, C, H, W) full images.
        origins: (M, 2) crop origins (x0, y0) from `crop_origins` (any real values).
        crop_size: side (or (h, w)) of the crops.
        sample_inds: (M,) image index of each crop; default ``arange(M)`` (M == N).
    """
    ch, cw = _hw(crop_size)
    m = origins.shape[0]
    if sample_inds is None:
        sample_inds = torch.arange(m, device=images.device)
    origins = origins.to(device=images.device, dtype=torch.float32)
    jj = torch.arange(cw, device=images.device, dtype=torch.float32)
    ii = torch.arange(ch, device=images.device, dtype=torch.float32)
    xs = (origins[:, 0, None, None] + jj.view(1, 1, cw)).expand(m, ch, cw)
    ys = (origins[:, 1, None, None] + ii.view(1, ch, 1)).expand(m, ch, cw)
    if m == 0:
        return images.new_zeros((0, images.shape[1], ch, cw))
    return bilinear_sample(images, sample_inds.to(images.device), xs, ys)


def crop_instances(
    images: torch.Tensor,
    centroids: torch.Tensor,
    crop_size: int | tuple[int, int],
    sample_inds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops centred on `centroids` (M, 2) and their origins; see `extract_crops`."""
    origins = crop_origins(centroids.float(), crop_size)
    return extract_crops(images, origins, crop_size, sample_inds), origins


def sleap_nn_crops(
    images: torch.Tensor, centroids: torch.Tensor, crop_size: int, sample_inds: torch.Tensor
) -> torch.Tensor:
    """Crops as sleap-nn cuts them for its embedding models: (M, C, S, S), values in [0, 1].

    sleap-nn has Skia draw the box from ``c - S/2 + 1/2`` to ``c + S/2 - 1/2`` (``S - 1``
    pixels wide) onto ``S`` 8-bit output pixels with its bilinear filter, anti-aliased,
    on black: a zoom of ``S / (S - 1)``, edge pixels of the frame repeated under the
    filter, and output pixels the frame covers in part darkened by that part (in 1/256
    steps). The models were trained on such crops, so they are cut the same way here,
    with Skia's float32 arithmetic in its order (the inverse matrix, four taps weighted and
    summed in turn, halves rounded to even): equal to sleap-nn's crops on the fixtures.

    Args:
        images: (N, C, H, W) frames in [0, 1] (whole grey levels / 255).
        centroids: (M, 2) crop centres (x, y) in frame pixels.
        crop_size: the crop side S.
        sample_inds: (M,) the frame of each crop.
    """
    f32 = torch.float32
    device = images.device
    height, width = images.shape[-2:]
    size = torch.tensor(float(crop_size), dtype=f32, device=device)
    half = torch.tensor(0.5, dtype=f32, device=device)
    cents = centroids.to(device, f32)
    pixels = torch.round(images.to(f32) * 255)  # the frames once, not one copy per crop
    pixels = pixels * torch.tensor(1 / 255, dtype=f32, device=device)  # Skia's unorm
    centres = torch.arange(crop_size, dtype=f32, device=device) + half

    def axis(centre: torch.Tensor, length: int):
        """Per crop (M, S): the first tap's index, the filter weight of the second, and
        the coverage of each output pixel by the frame."""
        lo = (centre - size / 2) + half
        hi = (centre + size / 2) - half
        scale = size / (hi - lo)
        shift = -lo * scale
        inv = 1 / scale
        inv_shift = -shift * inv
        where = centres[None] * inv[:, None] + inv_shift[:, None]  # source, pixel units
        start = torch.floor(where + half)
        frac = (where + half) - start
        # the frame's footprint on the crop, [shift, shift + length * scale)
        j = centres.double()[None] - 0.5
        first, last = shift.double()[:, None], (shift + length * scale).double()[:, None]
        cover = (torch.minimum(j + 1, last) - torch.maximum(j, first)).clamp(0, 1)
        alpha = torch.clamp(torch.round(cover * 256), max=255) / 255
        return start.long() - 1, frac, alpha.to(f32)

    x0, fx, ax = axis(cents[:, 0], width)
    y0, fy, ay = axis(cents[:, 1], height)
    rows = sample_inds.to(device)[:, None, None]
    total = torch.zeros(
        (len(cents), pixels.shape[1], crop_size, crop_size), dtype=f32, device=device
    )
    for dy in (0, 1):
        wy = fy if dy else 1 - fy
        yi = (y0 + dy).clamp(0, height - 1)
        for dx in (0, 1):
            wx = fx if dx else 1 - fx
            xi = (x0 + dx).clamp(0, width - 1)
            taps = pixels[rows, :, yi[:, :, None], xi[:, None, :]].permute(0, 3, 1, 2)
            total = (wy[:, :, None] * wx[:, None, :])[:, None] * taps + total
    coverage = (ay[:, :, None] * ax[:, None, :])[:, None]
    return torch.round(total * coverage * 255) / 255


__all__ = [
    "bbox_midpoints",
    "bilinear_sample",
    "context_crop",
    "crop_around_animal",
    "crop_instances",
    "crop_origins",
    "extract_crops",
    "find_instance_crop_size",
    "instance_centroids",
    "sleap_nn_crops",
]


def context_crop(img: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """(size, size, C) window of an (H, W, C) array at (x0, y0), zeros outside it."""
    crop = np.zeros((size, size, img.shape[2]), dtype=img.dtype)
    h, w = img.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return crop


def crop_around_animal(
    images: torch.Tensor,
    points: torch.Tensor,
    crop_size: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training crops of side `crop_size` that hold the (single) animal at a random place.

    The crop is shifted at random as far as the animal's bounding box still fits (and
    stays inside the image), so the network sees the animal everywhere in its view
    and the background around it; integer origins keep the pixels exact. Extra channels
    of `images` (a pose + mask model's masks) are cut with the image.
    """
    n, _, h, w = images.shape
    c = int(crop_size)
    ch, cw = min(c, h), min(c, w)
    if ch >= h and cw >= w:
        return images, points
    pts = points[:, 0]  # (N, K, 2): single instance
    lo = torch.nan_to_num(
        torch.where(torch.isnan(pts), torch.inf, pts).amin(dim=1), posinf=float("nan")
    )
    hi = torch.nan_to_num(
        torch.where(torch.isnan(pts), -torch.inf, pts).amax(dim=1), neginf=float("nan")
    )
    size = torch.tensor([cw, ch], dtype=pts.dtype, device=pts.device)
    limit = torch.tensor([w - cw, h - ch], dtype=pts.dtype, device=pts.device)
    # integer origins for which the whole box is inside: [ceil(hi - size + 1), floor(lo)]
    low = torch.clamp(torch.ceil(hi - size + 1), min=0.0)
    high = torch.minimum(torch.clamp(torch.floor(lo), min=0.0), limit)
    low = torch.minimum(low, high)
    dev = generator.device if generator is not None else "cpu"
    u = torch.rand((n, 2), generator=generator, device=dev).to(pts.device, pts.dtype)
    origins = torch.minimum(torch.floor(low + u * (high - low + 1)), high)
    centre = torch.floor(limit / 2).expand(n, 2)
    origins = torch.where(torch.isnan(origins), centre, origins)
    origins = torch.minimum(torch.clamp(origins, min=0.0), limit)
    oi = origins.long().tolist()
    crops = torch.stack([images[i, :, y : y + ch, x : x + cw] for i, (x, y) in enumerate(oi)])
    return crops, points - origins[:, None, None, :]
