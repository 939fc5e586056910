"""Segmentation predictors: masks instead of (or beside) poses.

- `SemanticSegmentationPredictor`: one foreground mask per frame (no instances).
- `BottomUpSegmentationPredictor`: one mask per animal. Instance centres are the local
  peaks of the `InstanceCenterHead` map; every foreground cell votes for the centre that
  its predicted offset (`CenterOffsetHead`) points nearest to.
- `TopDownSegmentationPredictor`: a centroid model finds the animals, a
  centered-instance segmentation model gives the mask of the animal in the middle of
  each crop (crops as the pose top-down predictor makes them); the crop's probabilities
  are sampled back onto the frame, so masks of touching animals may overlap.

Masks are made at the frame's full resolution: the foreground probability is upsampled
bilinearly (a stride-`s` cell sits at the centre of the `s x s` input pixels it covers,
as the training targets in `posekit.data.masks` put it), cropped to the scaled frame and
resized to the frame, then thresholded; the cell-level instance labels follow with
nearest-neighbour sampling. Results are `RawMask`es that the base class turns into
`sleap_io.PredictedSegmentationMask`s.

``sleap_compatible=True`` decodes masks as sleap-nn 0.3.5 does (for its model folders;
at input scaling 1): the probability is thresholded on the output grid and each cell
becomes the ``s x s`` block of frame pixels it covers (sleap-nn stores the grid mask with
a sleap-io ``scale``); bottom-up centres are its plateau-aware local maxima over the
whole map, cut to the `max_instances` highest before the cells are grouped (posekit
drops extra masks after grouping); top-down crops are cut at whole pixels and a mask's
score is its mean probability (posekit: its centroid's peak value). Network outputs are
the same either way; what differs is at most a stride cell along mask edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from posekit.inference.predictors.base import MASK_THRESHOLD, OneModelPredictor, RawMask, need_head
from posekit.inference.predictors.topdown import (
    _TopDownBase,
    crop_at_pixels,
    crop_centered,
    paste_crop,
    resize_frames,
)
from posekit.model.preprocessing import scaled_size
from posekit.ops.peaks import find_local_peaks_rough


def maps_to_frame(maps: torch.Tensor, stride: int, scale: float, frame_hw, mode: str):
    """(N, C, h, w) output-grid maps -> (N, C, H, W) frame pixels."""
    if stride > 1:
        size = (maps.shape[-2] * stride, maps.shape[-1] * stride)
        if mode == "nearest":
            maps = maps.repeat_interleave(stride, -2).repeat_interleave(stride, -1)
        else:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    sh, sw = scaled_size(tuple(frame_hw), scale)
    maps = maps[..., :sh, :sw]
    if (sh, sw) != tuple(frame_hw):
        kw = {"align_corners": False} if mode == "bilinear" else {}
        maps = F.interpolate(maps, size=tuple(frame_hw), mode=mode, **kw)
    return maps


class _SegmentationBase(OneModelPredictor):
    """The foreground head's probabilities at frame resolution."""

    def __init__(self, model, *, mask_threshold: float = MASK_THRESHOLD, **kwargs):
        super().__init__(model, **kwargs)
        self.segmentation_head = need_head(model, "SegmentationHead")
        self.mask_threshold = float(mask_threshold)

    def _foreground(self, out: dict, frame_hw) -> torch.Tensor:
        prob = torch.sigmoid(out[self.segmentation_head.name].float())
        stride = int(self.segmentation_head.output_stride)
        if self.sleap_compatible:  # sleap-nn: cells of the grid, each a block of pixels
            return maps_to_frame(prob, stride, self.model.input_scale, frame_hw, "nearest")[:, 0]
        return maps_to_frame(prob, stride, self.model.input_scale, frame_hw, "bilinear")[:, 0]


class SemanticSegmentationPredictor(_SegmentationBase):
    """One foreground mask per frame; its score is the mean probability inside it."""

    def _predict_batch(self, images, gt):
        out = self._forward(self.model, self._preprocess(self.model, images))
        prob = self._foreground(out, tuple(images.shape[1:3]))
        results = []
        grid = torch.sigmoid(out[self.segmentation_head.name].float())[:, 0]
        for p, g in zip(prob, grid):
            fg = p > self.mask_threshold
            if not bool(fg.any()):
                results.append([])
                continue
            # sleap-nn's score: the mean over the grid cells (a cell is one value there)
            inside = g[g > self.mask_threshold] if self.sleap_compatible else p[fg]
            results.append([RawMask(fg.cpu().numpy(), float(inside.mean()))])
        return results


class BottomUpSegmentationPredictor(_SegmentationBase):
    """One mask per instance centre; its score is the centre's peak value.

    `peak_threshold` is the lowest centre-map value that counts as an animal;
    `max_instances` keeps the highest-scoring ones.
    """

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.center_head = need_head(model, "InstanceCenterHead")
        self.offset_head = need_head(model, "CenterOffsetHead")

    def _predict_batch(self, images, gt):
        out = self._forward(self.model, self._preprocess(self.model, images))
        frame_hw = tuple(images.shape[1:3])
        prob = self._foreground(out, frame_hw)
        labels, scores = self._cell_labels(
            out, self._frame_map_hw(images, self.model, self.center_head)
        )
        stride = int(self.offset_head.output_stride)
        labels = maps_to_frame(labels.float(), stride, self.model.input_scale, frame_hw, "nearest")
        labels = labels[:, 0].long()
        results = []
        for i, (p, lab) in enumerate(zip(prob, labels)):
            fg = p > self.mask_threshold
            frame = []
            for k, score in enumerate(scores[i]):
                m = fg & (lab == k)
                if bool(m.any()):
                    frame.append(RawMask(m.cpu().numpy(), score))
            frame.sort(key=lambda r: -r.score)
            if self.max_instances is not None:
                frame = frame[: self.max_instances]
            results.append(frame)
        return results

    def _cell_labels(
        self, out: dict, frame_map_hw: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, list[list[float]]]:
        """(N, 1, h, w) index of the centre each offset cell votes for (-1: background or
        no centre), and each frame's centre peak values (the masks' scores); centres are
        looked for on the frame only (`frame_map_hw`, as for poses)."""
        centers = out[self.center_head.name].float()
        offsets = out[self.offset_head.name].float()
        seg = out[self.segmentation_head.name].float()
        s_c, s_o = int(self.center_head.output_stride), int(self.offset_head.output_stride)
        if seg.shape[-2:] != offsets.shape[-2:]:
            seg = F.interpolate(seg, size=offsets.shape[-2:], mode="bilinear", align_corners=False)
        if self.sleap_compatible:
            pts, vals, samples = _plateau_peaks(centers, self.peak_threshold, self.max_instances)
        else:
            pts, vals, samples, _ = find_local_peaks_rough(
                centers, self.peak_threshold, frame_map_hw=frame_map_hw
            )
            if self.max_instances is not None:
                pts, vals, samples = _strongest(pts, vals, samples, self.max_instances)
        pts = pts * s_c + (s_c - 1) / 2.0  # model-input pixels
        n, _, h, w = offsets.shape
        ys = torch.arange(h, device=offsets.device) * s_o + (s_o - 1) / 2.0
        xs = torch.arange(w, device=offsets.device) * s_o + (s_o - 1) / 2.0
        votes = torch.stack(
            [xs[None, None, :] + offsets[:, 0], ys[None, :, None] + offsets[:, 1]], dim=-1
        )  # (N, h, w, 2)
        labels = torch.full((n, 1, h, w), -1, dtype=torch.long, device=offsets.device)
        scores = []
        for i in range(n):
            mine = samples == i
            c, v = pts[mine], vals[mine]
            scores.append([float(x) for x in v.cpu()])
            if len(c) == 0:
                continue
            d = torch.cdist(votes[i].reshape(-1, 2), c.to(votes.dtype))  # (h*w, K)
            nearest = d.argmin(dim=1).reshape(h, w)
            fg = torch.sigmoid(seg[i, 0]) > self.mask_threshold
            labels[i, 0] = torch.where(fg, nearest, labels[i, 0])
        return labels, scores


def _strongest(pts, vals, samples, k: int):
    """The `k` highest peaks of each sample. Centres are cut before grouping (as sleap-nn
    does): a weak extra centre would otherwise claim the cells its offsets point nearest
    to, and those cells would be lost to the animal when its mask is dropped later."""
    keep = torch.zeros_like(vals, dtype=torch.bool)
    for i in samples.unique().tolist():
        idx = (samples == i).nonzero().flatten()
        keep[idx[vals[idx].argsort(descending=True)[:k]]] = True
    return pts[keep], vals[keep], samples[keep]


class TopDownSegmentationPredictor(_TopDownBase):
    """Centroid model (or the labels' instances) -> crops -> centred animal's mask; a
    mask's score is its centroid's peak value."""

    crop_head = "SegmentationHead"

    def __init__(self, centroid_model=None, confmap_model=None, *, mask_threshold=None, **kw):
        super().__init__(centroid_model, confmap_model, **kw)
        self.mask_threshold = MASK_THRESHOLD if mask_threshold is None else float(mask_threshold)

    def _predict_batch(self, images, gt):
        n, h, w = images.shape[:3]
        centroids, cvals, samples = self._find_centroids(images, gt)
        results: list[list[RawMask]] = [[] for _ in range(n)]
        if self.confmap_model is None or centroids.shape[0] == 0:
            return results
        model, head = self.confmap_model, self._confmap_head
        scale, size = float(model.input_scale), self.crop_size
        frames = images.to(self.device)
        if scale != 1.0:
            frames = resize_frames(frames, scale)
        c = centroids.to(torch.float32) * scale
        sleap_nn = self.sleap_compatible and scale == 1.0
        crops = (crop_at_pixels if sleap_nn else crop_centered)(frames, c, samples, size)
        crops = crops / 255.0 if crops.is_floating_point() else crops
        out = self._forward(model, self._preprocess(model, crops, resize=scale == 1.0))
        prob = torch.sigmoid(out[head.name].float())
        stride = int(head.output_stride)
        if sleap_nn:
            return self._sleap_nn_masks(prob, c, samples, stride, (h, w), results)
        if stride > 1:
            prob = F.interpolate(prob, size=(size, size), mode="bilinear", align_corners=False)
        for k in range(c.shape[0]):
            mask = paste_crop(prob[k, 0], c[k], scale, (h, w)) > self.mask_threshold
            if bool(mask.any()):
                results[int(samples[k])].append(RawMask(mask.cpu().numpy(), float(cvals[k])))
        return results

    def _sleap_nn_masks(self, prob, centres, samples, stride, frame_hw, results):
        """sleap-nn's top-down masks: each crop's grid cells above the threshold as
        blocks of pixels from the crop's whole-pixel corner (`crop_at_pixels`), scored
        by their mean probability; crops with no foreground give no mask."""
        size, half = self.crop_size, self.crop_size // 2
        corners = (centres - size / 2 + 0.5 + half).to(torch.long) - half
        fg = prob[:, 0] > self.mask_threshold
        blocks = fg.repeat_interleave(stride, -2).repeat_interleave(stride, -1)
        h, w = frame_hw
        for k in range(prob.shape[0]):
            if not bool(fg[k].any()):
                continue
            x0, y0 = (int(v) for v in corners[k])
            mask = torch.zeros((h, w), dtype=torch.bool, device=prob.device)
            ys, xs = slice(max(y0, 0), min(y0 + size, h)), slice(max(x0, 0), min(x0 + size, w))
            mask[ys, xs] = blocks[k, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            score = float(prob[k, 0][fg[k]].mean())
            results[int(samples[k])].append(RawMask(mask.cpu().numpy(), score))
        return results


def _plateau_peaks(maps: torch.Tensor, threshold: float, max_instances: int | None):
    """sleap-nn's instance centres: per map, the cells equal to their 3x3 maximum and
    above `threshold`, each 4-connected plateau of them counted once (at its highest,
    first cell in row-major order), cut to the `max_instances` highest. Returns
    (points (P, 2) x, y grid indices, values (P,), sample of each point)."""
    pooled = F.max_pool2d(maps, kernel_size=3, stride=1, padding=1)
    cand = ((maps >= pooled) & (maps > threshold))[:, 0].cpu().numpy()
    values = maps[:, 0].detach().cpu().numpy()
    pts, vals, samples = [], [], []
    for i in range(cand.shape[0]):
        found = [_best_cell(values[i], comp) for comp in _components(cand[i])]
        if max_instances is not None and len(found) > max_instances:
            found = sorted(found, key=lambda t: -t[2])[:max_instances]
        for x, y, v in found:
            pts.append((x, y))
            vals.append(v)
            samples.append(i)
    dev = maps.device
    return (
        torch.tensor(pts, dtype=torch.float32, device=dev).reshape(-1, 2),
        torch.tensor(vals, dtype=torch.float32, device=dev),
        torch.tensor(samples, dtype=torch.long, device=dev),
    )


def _components(cand) -> list[list[tuple[int, int]]]:
    """4-connected groups of True cells, in row-major order of their first cell (the
    order scipy.ndimage.label numbers them); each group's cells in row-major order."""
    seen = set()
    groups = []
    h, w = cand.shape
    for y, x in zip(*cand.nonzero()):
        if (y, x) in seen:
            continue
        stack, group = [(int(y), int(x))], []
        seen.add((y, x))
        while stack:
            cy, cx = stack.pop()
            group.append((cy, cx))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and cand[ny, nx] and (ny, nx) not in seen:
                    seen.add((ny, nx))
                    stack.append((ny, nx))
        groups.append(sorted(group))
    return groups


def _best_cell(values, group) -> tuple[float, float, float]:
    """(x, y, value) of a group's highest cell (the first of equal ones)."""
    y, x = max(group, key=lambda c: (values[c], -c[0], -c[1]))
    return float(x), float(y), float(values[y, x])


__all__ = [
    "BottomUpSegmentationPredictor",
    "MASK_THRESHOLD",
    "maps_to_frame",
    "SemanticSegmentationPredictor",
    "TopDownSegmentationPredictor",
]
