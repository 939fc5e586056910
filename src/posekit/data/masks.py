"""Segmentation masks beside poses: read them from labels, make them from poses, make targets.

sleap-io (0.9) stores a mask as a `UserSegmentationMask` / `PredictedSegmentationMask`:
run-length encoded (alternating runs of 0s and 1s in row-major order, starting with 0s),
optionally at a `scale` and `offset` of the image, and optionally linked to an
`Instance`. posekit never re-implements that encoding: `to_sleap_mask` and `mask_array`
go through sleap-io's own `from_numpy` / `data`, so files stay readable by SLEAP tools.

`masks_from_poses` gives a pose project masks at once: each user instance without a mask
gets the convex hull of its visible points, dilated by a few pixels. What that gives and
what it cannot is in the README ("Segmentation masks").

Targets (`foreground_target`, `center_target`, `offset_target`) follow sleap-nn's heads
(`SegmentationHead`, `InstanceCenterHead`, `CenterOffsetHead`): a stride-`s` output cell
covers input pixels ``[i s, i s + s)`` and sits at their centre ``i s + (s - 1) / 2``
(pixel centres are integer coordinates, as for poses), so a foreground cell is one whose
pixels are mostly foreground, and upsampling predictions back is the inverse of that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover - torch is imported where it is used (light CLI)
    import torch

#: Pixels added around the convex hull of an instance's points by `masks_from_poses`.
DEFAULT_DILATION = 4.0


# ----------------------------------------------------------------------- sleap-io


def mask_array(mask: Any, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """The (H, W) bool array of a sleap-io mask, in image pixels.

    Masks stored at another resolution or offset (``scale``/``offset``) are placed on the
    image grid with nearest-neighbour sampling; `image_hw` (default: the mask's extent)
    sets the output size.
    """
    data = np.asarray(mask.data, dtype=bool)
    sx, sy = (float(v) for v in mask.scale)
    ox, oy = (float(v) for v in mask.offset)
    if image_hw is None:
        if sx == 1.0 and sy == 1.0 and ox == 0.0 and oy == 0.0:
            return data
        image_hw = (int(round(oy + data.shape[0] / sy)), int(round(ox + data.shape[1] / sx)))
    h, w = image_hw
    if (sx, sy, ox, oy) == (1.0, 1.0, 0.0, 0.0) and data.shape == (h, w):
        return data
    rows = np.floor((np.arange(h) - oy) * sy + 1e-9).astype(int)
    cols = np.floor((np.arange(w) - ox) * sx + 1e-9).astype(int)
    out = np.zeros((h, w), dtype=bool)
    r_ok = (rows >= 0) & (rows < data.shape[0])
    c_ok = (cols >= 0) & (cols < data.shape[1])
    out[np.ix_(r_ok, c_ok)] = data[np.ix_(rows[r_ok], cols[c_ok])]
    return out


def to_sleap_mask(
    array: np.ndarray, instance: Any = None, score: float | None = None, track: Any = None
) -> Any:
    """A sleap-io mask of a (H, W) bool array: predicted when `score` is given."""
    import sleap_io as sio

    array = np.asarray(array, dtype=bool)
    if array.ndim != 2:
        raise PosekitError(f"a mask must be a 2-D array; got shape {array.shape}")
    if score is None:
        return sio.UserSegmentationMask.from_numpy(array, instance=instance, track=track)
    return sio.PredictedSegmentationMask.from_numpy(
        array, instance=instance, track=track, score=float(score)
    )


def user_masks(lf: Any) -> list[Any]:
    """The user (not predicted) masks of a labelled frame."""
    return [m for m in getattr(lf, "masks", []) or [] if not m.is_predicted]


def labels_have_masks(labels: Any) -> bool:
    """True when any labelled frame of a `sleap_io.Labels` has a user mask."""
    return any(user_masks(lf) for lf in labels.labeled_frames)


# ----------------------------------------------------------------------- from poses


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise in x-right/y-down, no repeats) of (n, 2) points."""
    pts = np.unique(points, axis=0)
    if len(pts) <= 2:
        return pts

    def half(seq):
        out: list[np.ndarray] = []
        for p in seq:
            while len(out) >= 2:
                a, b = out[-2], out[-1]
                if (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) > 0:
                    break
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray):
    d = b - a
    length2 = float(d @ d)
    if length2 == 0.0:
        return np.hypot(px - a[0], py - a[1])
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length2, 0.0, 1.0)
    return np.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1]))


def hull_mask(points: np.ndarray, image_hw: tuple[int, int], dilation: float) -> np.ndarray:
    """(H, W) bool: pixels inside the convex hull of the visible `points` or within
    `dilation` pixels of it (pixel centres at integer coordinates)."""
    h, w = image_hw
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    out = np.zeros((h, w), dtype=bool)
    if len(pts) == 0:
        return out
    r = float(dilation)
    x0, y0 = np.floor(pts.min(axis=0) - r).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0) + r).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if x1 < x0 or y1 < y0:
        return out
    py, px = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
    hull = _convex_hull(pts)
    near = np.zeros(px.shape, dtype=bool)
    for i in range(len(hull)):
        near |= _segment_distance(px, py, hull[i], hull[(i + 1) % len(hull)]) <= r
    if len(hull) >= 3:
        inside = np.ones(px.shape, dtype=bool)
        for i in range(len(hull)):
            a, b = hull[i], hull[(i + 1) % len(hull)]
            inside &= (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]) >= 0
        near |= inside
    out[y0 : y1 + 1, x0 : x1 + 1] = near
    return out


def masks_from_poses(labels: Any, dilation: float = DEFAULT_DILATION) -> int:
    """Give every user instance of `labels` (a `sleap_io.Labels`) that has no mask one
    made from its pose: the convex hull of its visible points, dilated by `dilation`
    pixels. The masks are linked to their instance. Returns how many were added.

    Instances with fewer than one visible point get none. The labels are changed in place
    (save them with `posekit.data.labels.save_labels`).
    """
    from posekit.data.labels import instance_points

    if dilation < 0:
        raise PosekitError(f"mask dilation must be >= 0 pixels; got {dilation}")
    added = 0
    for lf in labels.labeled_frames:
        linked = {id(m.instance) for m in user_masks(lf) if m.instance is not None}
        hw = None
        for inst in lf.user_instances:
            if id(inst) in linked:
                continue
            pts = instance_points(inst, [n.name for n in inst.skeleton.nodes])
            if not np.isfinite(pts).all(axis=1).any():
                continue
            if hw is None:
                shape = lf.video.shape
                if shape is None:
                    raise PosekitError(
                        f"cannot make masks for {lf.video.filename}: its frame size is unknown "
                        "(the video cannot be opened); fix the video path first"
                    )
                hw = (int(shape[1]), int(shape[2]))
            lf.masks.append(
                to_sleap_mask(hull_mask(pts, hw, dilation), instance=inst, track=inst.track)
            )
            added += 1
    return added


# ----------------------------------------------------------------------- targets


def mask_centroids(masks: torch.Tensor) -> torch.Tensor:
    """(N, M, 2) centre of mass (x, y) of each (N, M, H, W) mask; NaN for empty masks."""
    import torch

    m = masks.float()
    h, w = m.shape[-2:]
    area = m.sum(dim=(-2, -1))
    xs = torch.arange(w, device=m.device, dtype=m.dtype)
    ys = torch.arange(h, device=m.device, dtype=m.dtype)
    cx = (m.sum(dim=-2) * xs).sum(dim=-1) / area
    cy = (m.sum(dim=-1) * ys).sum(dim=-1) / area
    return torch.stack([cx, cy], dim=-1)


def downsample_masks(masks: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, M, H/s, W/s) bool: cells more than half covered by each (N, M, H, W) mask."""
    import torch.nn.functional as F

    m = masks.float()
    if stride > 1:
        m = F.avg_pool2d(m, stride, stride)
    return m > 0.5


def _grid(n: int, stride: int, device, dtype) -> torch.Tensor:
    import torch

    return torch.arange(n, device=device, dtype=dtype) * stride + (stride - 1) / 2.0


def foreground_target(masks: torch.Tensor, stride: int, maxpool: bool = False) -> torch.Tensor:
    """(N, 1, H/s, W/s) float: the union of every instance's mask (`SegmentationHead`);
    with `maxpool` a cell is foreground when any of its pixels is."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = masks.shape
    if masks.shape[1] == 0:
        return torch.zeros((n, 1, h // stride, w // stride), device=masks.device)
    union = masks.amax(dim=1, keepdim=True).float()
    if maxpool and stride > 1:
        return F.max_pool2d(union, stride, stride)
    return downsample_masks(union, stride).float()


def center_target(masks: torch.Tensor, stride: int, sigma: float) -> torch.Tensor:
    """(N, 1, H/s, W/s) float: the max of Gaussians (spread `sigma` input pixels) at each
    mask's centre of mass (`InstanceCenterHead`)."""
    import torch

    n, _, h, w = masks.shape
    centres = mask_centroids(masks)  # (N, M, 2)
    xs = _grid(w // stride, stride, masks.device, torch.float32)
    ys = _grid(h // stride, stride, masks.device, torch.float32)
    dx2 = (xs[None, None, None, :] - centres[..., 0, None, None]) ** 2
    dy2 = (ys[None, None, :, None] - centres[..., 1, None, None]) ** 2
    g = torch.exp(-(dx2 + dy2) / (2.0 * float(sigma) ** 2))
    g = torch.nan_to_num(g, nan=0.0)
    if g.shape[1] == 0:
        return torch.zeros((n, 1, h // stride, w // stride), device=masks.device)
    return g.amax(dim=1, keepdim=True)


def offset_target(masks: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, 2, H/s, W/s) float: (dx, dy) input pixels from each foreground cell to its
    instance's centre of mass (`CenterOffsetHead`); NaN on background, which the loss
    skips. Where masks overlap the smaller instance wins (as sleap-nn)."""
    import torch

    n, m, h, w = masks.shape
    small = downsample_masks(masks, stride)  # (N, M, h', w')
    centres = mask_centroids(masks)
    area = masks.float().sum(dim=(-2, -1))
    xs = _grid(w // stride, stride, masks.device, torch.float32)
    ys = _grid(h // stride, stride, masks.device, torch.float32)
    out = torch.full((n, 2, h // stride, w // stride), float("nan"), device=masks.device)
    order = torch.argsort(area, dim=1, descending=True)
    for i in range(n):
        for j in order[i].tolist():
            cell = small[i, j]
            if not bool(cell.any()):
                continue
            cx, cy = centres[i, j]
            out[i, 0] = torch.where(cell, cx - xs[None, :], out[i, 0])
            out[i, 1] = torch.where(cell, cy - ys[:, None], out[i, 1])
    return out


def frame_masks(lf_masks: Sequence[Any], image_hw: tuple[int, int]) -> np.ndarray:
    """(M, H, W) uint8 of a frame's sleap-io masks, decoded on the image grid."""
    if not lf_masks:
        return np.zeros((0, *image_hw), dtype=np.uint8)
    return np.stack([mask_array(m, image_hw) for m in lf_masks]).astype(np.uint8)


__all__ = [
    "DEFAULT_DILATION",
    "MASK_HEADS",
    "fit_masks",
    "mask_head_target",
    "sample_masks",
    "skip_unmasked",
    "center_target",
    "downsample_masks",
    "foreground_target",
    "frame_masks",
    "hull_mask",
    "labels_have_masks",
    "link_masks",
    "mask_array",
    "mask_centroids",
    "masks_from_poses",
    "offset_target",
    "to_sleap_mask",
    "user_masks",
]


# ----------------------------------------------------------------------- pipeline

#: Heads whose targets come from masks, not points.
MASK_HEADS = ("SegmentationHead", "InstanceCenterHead", "CenterOffsetHead")


def fit_masks(
    masks: torch.Tensor,
    matrices: torch.Tensor | None,
    image_hw: tuple[int, int],
    padded_hw: tuple[int, int],
) -> torch.Tensor:
    """Frame masks (N, M, H, W) onto the model input: the augmentation's warp (`matrices`,
    forward maps from `BatchAugmenter.last_matrices`) or a plain resize to `image_hw`,
    then zero padding to `padded_hw`, as the images were. Returns bool."""
    import torch
    import torch.nn.functional as F

    from posekit.data.augmentation import BatchAugmenter

    m = masks.float()
    if m.shape[1] == 0:
        return torch.zeros((m.shape[0], 0, *padded_hw), dtype=torch.bool, device=m.device)
    if matrices is not None:
        m = BatchAugmenter.warp_images(m, matrices, output_size=image_hw)
    elif tuple(m.shape[-2:]) != tuple(image_hw):
        m = F.interpolate(m, size=image_hw, mode="bilinear", align_corners=False)
    ph, pw = padded_hw[0] - m.shape[-2], padded_hw[1] - m.shape[-1]
    if ph or pw:
        m = F.pad(m, (0, pw, 0, ph))
    return m > 0.5


def sample_masks(entry: Any, image_hw: tuple[int, int], instance: int | None, n: int):
    """((M, H, W) uint8 masks, has a mask) of one training sample of a `LabeledEntry`:
    the mask linked to `instance` (top-down crops), or the frame's masks padded to `n`.

    A pose + mask model trains on every instance; one without a mask gets an empty mask
    and False, so its mask loss is skipped (`skip_unmasked`).
    """
    if instance is not None:
        linked = instance in entry.mask_instance
        ms = [entry.masks[entry.mask_instance.index(instance)]] if linked else []
    else:
        ms = list(entry.masks)
    fm = frame_masks(ms, image_hw)
    out = np.zeros((max(n, len(fm), 1 if instance is not None else 0), *image_hw), np.uint8)
    out[: len(fm)] = fm
    return out, bool(ms)


def skip_unmasked(targets: dict[str, torch.Tensor], has_mask: torch.Tensor) -> None:
    """NaN the `SegmentationHead` target of the samples without a mask (in place): the
    mask loss (`posekit.training.losses.bce_dice`) skips them."""
    import torch

    t = targets.get("SegmentationHead")
    if t is not None and not bool(has_mask.all()):
        keep = has_mask.to(t.device).reshape(-1, *([1] * (t.dim() - 1)))
        targets["SegmentationHead"] = torch.where(keep, t, torch.full_like(t, float("nan")))


def mask_head_target(head: Any, masks: torch.Tensor) -> torch.Tensor:
    """The target of a mask head (`MASK_HEADS`) from (N, M, H, W) bool model-input masks."""
    from posekit.data.targets import head_sigma

    stride = int(head.output_stride)
    if head.name == "SegmentationHead":
        return foreground_target(masks, stride, maxpool=bool(getattr(head, "target_maxpool", 0)))
    if head.name == "InstanceCenterHead":
        return center_target(masks, stride, head_sigma(head.sigma, stride))
    if head.name == "CenterOffsetHead":
        return offset_target(masks, stride)
    raise PosekitError(f"{head.name} has no mask targets")  # pragma: no cover


# ----------------------------------------------------------------------- analysis


def mask_track_table(labels: Any, video: Any) -> dict[str, np.ndarray] | None:
    """Per-frame area (px) and centroid (x, y) of each track's predicted mask on `video`,
    for the analysis HDF5 (None when the video has no predicted mask).

    Rows are tracks: a mask's track (its instance's), else ``untracked_<k>`` for the
    k-th untracked mask of a frame by score. Arrays follow SLEAP's analysis layout
    (frames last, as MATLAB reads them): ``mask_area`` (tracks, frames) and
    ``mask_centroids`` (tracks, 2, frames), NaN where a track has no mask; frames run
    from 0 to the last frame with a mask.
    """
    rows: dict[str, list[tuple[int, float, float, float]]] = {}
    for lf in labels.labeled_frames:
        if lf.video is not video:
            continue
        ms = sorted((m for m in lf.masks if m.is_predicted), key=lambda m: -float(m.score))
        k = 0
        for m in ms:
            if m.track is not None:
                name = m.track.name
            else:
                name, k = f"untracked_{k}", k + 1
            arr = mask_array(m)
            ys, xs = np.nonzero(arr)
            if len(xs) == 0:
                continue
            rows.setdefault(name, []).append(
                (int(lf.frame_idx), float(len(xs)), float(xs.mean()), float(ys.mean()))
            )
    if not rows:
        return None
    names = sorted(rows)
    n_frames = 1 + max(r[0] for v in rows.values() for r in v)
    area = np.full((len(names), n_frames), np.nan)
    centroids = np.full((len(names), 2, n_frames), np.nan)
    for t, name in enumerate(names):
        for f, a, x, y in rows[name]:
            area[t, f], centroids[t, 0, f], centroids[t, 1, f] = a, x, y
    return {
        "mask_track_names": np.array([n.encode() for n in names]),
        "mask_area": area,
        "mask_centroids": centroids,
    }


def add_mask_analysis(h5_path: Any, labels: Any, video: Any) -> bool:
    """Append `mask_track_table` datasets to an analysis HDF5 (created when absent)."""
    import h5py

    table = mask_track_table(labels, video)
    if table is None:
        return False
    with h5py.File(h5_path, "a") as f:
        for key, value in table.items():
            if key in f:
                del f[key]
            f.create_dataset(key, data=value, compression="gzip" if value.ndim > 1 else None)
    return True


def link_masks(masks: Sequence[Any], instances: Sequence[Any], min_inside: float = 0.5) -> int:
    """Link unlinked masks to the instances whose points they hold (best score first).

    A mask takes the free instance with the largest share of its visible points inside
    the mask, if that share is at least `min_inside`; its track becomes the instance's.
    Returns how many masks were linked.
    """
    from posekit.data.labels import instance_points

    free = list(instances)
    linked = 0
    for m in sorted(masks, key=lambda x: -float(getattr(x, "score", 1.0))):
        if m.instance is not None or not free:
            continue
        arr = mask_array(m)
        best, share = None, min_inside
        for inst in free:
            pts = instance_points(inst, [n.name for n in inst.skeleton.nodes])
            pts = np.round(pts[np.isfinite(pts).all(axis=1)]).astype(int)
            if not len(pts):
                continue
            ok = (pts[:, 0] >= 0) & (pts[:, 1] >= 0)
            ok &= (pts[:, 0] < arr.shape[1]) & (pts[:, 1] < arr.shape[0])
            inside = np.zeros(len(pts), dtype=bool)
            inside[ok] = arr[pts[ok, 1], pts[ok, 0]]
            if inside.mean() >= share:
                best, share = inst, inside.mean()
        if best is not None:
            m.instance, m.track = best, best.track
            free.remove(best)
            linked += 1
    return linked
