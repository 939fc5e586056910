"""Top-down predictors: find each animal's anchor, then its parts in a crop around it.

- `TopDownPredictor`: a centroid model finds anchor points (local peaks); a crop of the
  centered-instance model's ``crop_size`` is cut around each (bilinear, zero outside the
  frame, as TensorFlow's ``crop_and_resize``) and the centered-instance model finds one
  global peak per part in it. Instance score = centroid confidence. Either model may be
  missing when predicting on labels: without a centroid model the labels' own centroids
  are used (anchor part, else bounding-box centre; score 1); without a centered-instance
  model each centroid takes the nearest labeled instance (SLEAP's ground-truth mode, for
  evaluating a centroid model) and, on unlabeled frames, an instance holding only the
  anchor point.
- `TopDownMultiClassPredictor`: the same crops, assigned to identities by the class
  vectors of a multi-class top-down model.

Which model goes where is the registry's: the crop model is the type with ``crops`` that
the registry runs with the predictor, the anchor model the type it ``pairs_with``.

Crops follow training. A crop is cut from the frame resized by the centered-instance
model's input scaling ``s`` (bilinear, half-pixel centres, as `posekit.model.preprocessing`
resizes), around the centroid times ``s``, and sampled from the crop origin
``s * centroid - (crop_size - 1) / 2`` (the crop's pixel 0, as in training); the model
then sees the crop as it is, without resizing it again. A peak ``u`` (crop pixels, map
index times stride) maps back to the frame as ``(u + origin) / s``, the exact inverse of
the crop training made (for ``s = 1``: ``u + origin``).

SLEAP 1.4.1 (`CentroidCrop` with ``precrop_resize`` and `FindInstancePeaks`) cuts the
same crops but from the resized frame truncated back to uint8, and maps peaks back as
``u / s + 0.5 + (s * centroid - crop_size / 2) / s``: its crop offset is half a pixel of
the resized frame short, and the ``+ 0.5`` (its compensation for TensorFlow's resize) is
not part of the crops' training transform (it is added only when ``s != 1``). For the
same crops SLEAP's points are therefore lower than posekit's default on both axes by
``0.5`` px when ``s = 1`` and by ``0.5 / s - 0.5`` px otherwise (also 0.5 px at
``s = 0.5``). ``sleap_compatible=True`` (alias ``sleap_crop_offsets``) reproduces SLEAP's
crops and mapping exactly.

sleap-nn 0.3.5 cuts its crops at whole pixels (`crop_at_pixels`) and maps peaks back
as posekit does; for a model loaded from a sleap-nn folder ``sleap_compatible=True``
cuts sleap-nn's crops instead of SLEAP's (at input scaling 1; other scalings keep
posekit's crops).
"""

from __future__ import annotations

import numpy as np

from posekit.data.instance_cropping import instance_centroids
from posekit.errors import PosekitError
from posekit.inference.identity import classify_peaks_from_vectors, ensure_probabilities
from posekit.inference.predictors.base import (
    MASK_THRESHOLD,
    Predictor,
    RawInstance,
    RawMask,
    need_head,
    skeleton_of,
    types_run_by,
)
from posekit.model.registry import ModelType
from posekit.ops.coordinates import to_image_coordinates
from posekit.ops.peaks import find_global_peaks, find_local_peaks, top_k_per_sample


def crop_centered(images, centroids, sample_inds, crop_size: int):
    """Square crops around centroids with TensorFlow ``crop_and_resize`` semantics.

    Crop pixel ``(i, j)`` samples the image bilinearly at
    ``(cy - (crop_size - 1) / 2 + i, cx - (crop_size - 1) / 2 + j)``; samples outside
    the image are 0. Computed in float32 in TensorFlow's order of operations so that
    integer-aligned crops reproduce SLEAP exactly; integer images are truncated back to
    their dtype as SLEAP does.

    Args:
        images: (N, H, W, C) tensor.
        centroids: (M, 2) (x, y).
        sample_inds: (M,) image of each crop.
        crop_size: side of the crops.

    Returns:
        (M, crop_size, crop_size, C) tensor of the images' dtype.
    """
    import torch

    n, h, w, c = images.shape
    m = centroids.shape[0]
    device = images.device
    if m == 0:
        return images.new_zeros((0, crop_size, crop_size, c))
    cen = centroids.to(device=device, dtype=torch.float32)
    half = torch.tensor((crop_size - 1) * 0.5, dtype=torch.float32, device=device)
    x1 = cen[:, 0] - half
    x2 = cen[:, 0] + half
    y1 = cen[:, 1] - half
    y2 = cen[:, 1] + half
    # A 1-pixel-wide image cannot be normalised (TF divides by zero there); use factor 1.
    fh = torch.tensor(float(max(h - 1, 1)), dtype=torch.float32, device=device)
    fw = torch.tensor(float(max(w - 1, 1)), dtype=torch.float32, device=device)
    # Normalise, then map back like TF's kernel does (this round trip is not exact).
    x1n, x2n, y1n, y2n = x1 / fw, x2 / fw, y1 / fh, y2 / fh
    steps = torch.arange(crop_size, dtype=torch.float32, device=device)
    if crop_size > 1:
        hs = (y2n - y1n) * fh / (crop_size - 1)
        ws = (x2n - x1n) * fw / (crop_size - 1)
        in_y = y1n[:, None] * fh + steps[None, :] * hs[:, None]  # (M, S)
        in_x = x1n[:, None] * fw + steps[None, :] * ws[:, None]
    else:
        in_y = (0.5 * (y1n + y2n) * fh)[:, None]
        in_x = (0.5 * (x1n + x2n) * fw)[:, None]
    valid_y = (in_y >= 0) & (in_y <= h - 1)
    valid_x = (in_x >= 0) & (in_x <= w - 1)
    top = torch.floor(in_y).clamp(0, h - 1).long()
    bottom = torch.ceil(in_y).clamp(0, h - 1).long()
    left = torch.floor(in_x).clamp(0, w - 1).long()
    right = torch.ceil(in_x).clamp(0, w - 1).long()
    y_lerp = (in_y - torch.floor(in_y))[:, :, None, None]
    x_lerp = (in_x - torch.floor(in_x))[:, None, :, None]
    s = sample_inds.to(device).long()[:, None, None]

    def at(rows, cols):
        # Gather in the images' dtype, then convert only the crop pixels (not whole
        # frames): uint8 -> float32 is exact, so the result is the same.
        return images[s, rows[:, :, None], cols[:, None, :]].to(torch.float32)  # (M, S, S, C)

    tl, tr, bl, br = at(top, left), at(top, right), at(bottom, left), at(bottom, right)
    top_v = tl + (tr - tl) * x_lerp
    bottom_v = bl + (br - bl) * x_lerp
    out = top_v + (bottom_v - top_v) * y_lerp
    mask = (valid_y[:, :, None] & valid_x[:, None, :])[..., None]
    out = torch.where(mask, out, torch.zeros_like(out))
    if not images.dtype.is_floating_point:
        out = out.clamp(0, 255 if images.dtype == torch.uint8 else None).to(images.dtype)
    return out.to(images.dtype)


def crop_at_pixels(images, centroids, sample_inds, crop_size: int):
    """Square crops as sleap-nn 0.3.5 cuts them: whole pixels, no interpolation.

    The crop's first pixel is ``trunc(c - crop_size / 2 + 0.5 + crop_size // 2) -
    crop_size // 2`` (float32, per axis); pixels outside the image are 0. sleap-nn then
    maps peaks back with the unrounded origin ``c - (crop_size - 1) / 2``, as posekit
    does, so its points differ from posekit's only through the crop's pixels.
    """
    import torch

    n, h, w, c = images.shape
    m = centroids.shape[0]
    if m == 0:
        return images.new_zeros((0, crop_size, crop_size, c))
    device = images.device
    cen = centroids.to(device=device, dtype=torch.float32)
    half = crop_size // 2
    start = (cen - crop_size / 2 + 0.5 + half).to(torch.long) - half  # (M, 2) x, y
    steps = torch.arange(crop_size, device=device)
    cols = start[:, 0, None] + steps  # (M, S)
    rows = start[:, 1, None] + steps
    s = sample_inds.to(device).long()[:, None, None]
    out = images[s, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    return torch.where(inside[..., None], out, torch.zeros_like(out))


def resize_frames(images, scale: float, to_uint8: bool = False):
    """(N, H, W, C) frames resized by `scale` for cropping: bilinear with half-pixel
    centres, no antialiasing, to ``int(size * scale)`` (`posekit.model.preprocessing`'s
    resize, which is TensorFlow's), as float32 in the frames' range, or truncated back to
    uint8 as SLEAP's ``resize_image`` does (``to_uint8``)."""
    import torch

    from posekit.model.preprocessing import resize_images

    x = resize_images(images.permute(0, 3, 1, 2).to(torch.float32), scale)
    x = x.permute(0, 2, 3, 1)
    if to_uint8:
        return x.clamp(0, 255).floor().to(torch.uint8)
    return x.contiguous()


def paste_crop(crop, centre, scale: float, frame_hw):
    """(H, W) frame-pixel values of a (S, S) crop map whose pixel (i, j) sat at scaled-frame
    ``centre - (S - 1) / 2 + (j, i)`` (`crop_centered`); 0 outside the crop. Frame pixel X
    is scaled-frame ``(X + 0.5) * scale - 0.5`` (`resize_images`' half-pixel centres)."""
    import torch
    import torch.nn.functional as F

    size = crop.shape[-1]
    h, w = frame_hw
    out = torch.zeros((h, w), device=crop.device)
    lo = centre - (size - 1) / 2.0  # scaled-frame (x, y) of crop pixel 0
    first = torch.ceil((lo + 0.5) / scale - 0.5).clamp(min=0).long().tolist()
    last = torch.floor((lo + size - 1 + 0.5) / scale - 0.5).long().tolist()
    x1, y1 = min(last[0], w - 1), min(last[1], h - 1)
    if x1 < first[0] or y1 < first[1]:
        return out
    xs = torch.arange(first[0], x1 + 1, device=crop.device, dtype=torch.float32)
    ys = torch.arange(first[1], y1 + 1, device=crop.device, dtype=torch.float32)
    gx = ((xs + 0.5) * scale - 0.5 - lo[0]) * 2.0 / max(size - 1, 1) - 1.0
    gy = ((ys + 0.5) * scale - 0.5 - lo[1]) * 2.0 / max(size - 1, 1) - 1.0
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    sampled = F.grid_sample(crop[None, None], grid, mode="bilinear", align_corners=True)
    out[first[1] : y1 + 1, first[0] : x1 + 1] = sampled[0, 0]
    return out


class _TopDownBase(Predictor):
    """Centroid detection and cropping shared by the top-down predictors."""

    #: the crop model's head that the predictor reads
    crop_head = "CenteredInstanceConfmapsHead"

    def __init__(self, centroid_model=None, confmap_model=None, **kwargs):
        crop = self._crop_type()
        name = type(self).__name__
        if confmap_model is None and crop.multi_class:
            # The identities come from the crop model's class vectors.
            raise PosekitError(
                f"{name} needs a {crop.name} model (plus a {crop.pairs_with} model, or labels "
                "to take centroids from)"
            )
        if confmap_model is None and centroid_model is None:
            raise PosekitError(
                f"{name} needs a {crop.pairs_with} model, a {crop.name} model, or both"
            )
        if confmap_model is not None and confmap_model.model_type != crop.name:
            raise PosekitError(
                f"the second top-down model must be a {crop.name} model; got "
                f"{confmap_model.model_type}"
            )
        super().__init__(**kwargs)
        if centroid_model is not None and centroid_model.model_type != crop.pairs_with:
            raise PosekitError(
                f"the first top-down model must be a {crop.pairs_with} model; got "
                f"{centroid_model.model_type}"
            )
        self.centroid_model = centroid_model
        self.confmap_model = confmap_model
        if centroid_model is not None:
            self.centroid_head = need_head(centroid_model, "CentroidConfmapsHead")
        if confmap_model is not None:
            self._confmap_head = need_head(confmap_model, self.crop_head)

    @classmethod
    def _crop_type(cls) -> ModelType:
        """The crop model's type: the registry's crop type that runs with this class."""
        (crop,) = [t for t in types_run_by(cls) if t.crops]
        return crop

    @classmethod
    def from_models(cls, models, **options):
        crop = cls._crop_type()
        return cls(models.get(crop.pairs_with), models.get(crop.name), **options)

    def _models(self):
        return [self.centroid_model, self.confmap_model]

    @property
    def skeleton(self):
        if self.confmap_model is not None:
            return skeleton_of(self.confmap_model)
        return skeleton_of(self.centroid_model)

    @property
    def crop_size(self) -> int:
        size = getattr(self.confmap_model, "crop_size", None) if self.confmap_model else None
        if not size:
            raise PosekitError(
                "the centered-instance model has no crop size: set "
                "data.instance_cropping.crop_size in its training_config.json"
            )
        return int(size)

    def _anchor_name(self) -> str | None:
        anchor = None
        for m in (self.confmap_model, self.centroid_model):
            if m is not None and anchor is None:
                anchor = m.anchor_part
                if anchor is None and getattr(m, "config", None) is not None:
                    anchor = m.config.data.instance_cropping.center_on_part
        return anchor

    @property
    def needs_labels(self) -> bool:
        return self.centroid_model is None

    def _check_labels(self, labels, items) -> None:
        """Without one of its two models, a top-down predictor takes centroids or instances
        from the labels: refuse labels that lack the nodes it needs (which would silently
        give no instance) or that have no user-labeled instance at all."""
        from posekit.inference.checks import check_labels_nodes

        if self.centroid_model is not None and self.confmap_model is not None:
            return
        crop = self._crop_type()
        model = self.confmap_model or self.centroid_model
        desc = f"{model.model_type} model"
        folder = getattr(model, "source_folder", None)
        if folder is not None:
            desc += f" ({folder})"
        names = list(self.skeleton.node_names)
        anchor = self._anchor_name()
        if self.centroid_model is None:
            needed = [anchor] if anchor else names
            why = (
                f"takes its crop centres from the labels' instances (no {crop.pairs_with} "
                "model given), "
                + (f"at its anchor part {anchor!r}" if anchor else "at the middle of all nodes")
            )
            fix = (
                f"predict on labels with the model's skeleton, or add a {crop.pairs_with} "
                f"model: posekit predict {crop.pairs_with.upper()}_MODEL "
                f"{crop.name.upper()}_MODEL SOURCE"
            )
        else:
            needed = names
            why = (
                "copies the labels' instances onto the centroids it finds (no "
                f"{crop.name} model given)"
            )
            fix = f"predict on labels with the model's skeleton, or add a {crop.name} model"
        check_labels_nodes(labels, needed, desc, why, fix)
        if self.centroid_model is None and not any(
            lf is not None and list(getattr(lf, "user_instances", lf.instances))
            for _, _, lf in items
        ):
            raise PosekitError(
                f"the {desc} takes its crop centres from the labels' instances (no "
                f"{crop.pairs_with} model given), but the selected frames have no "
                f"user-labeled instance; {fix}"
            )

    def _anchor_index(self, names: list[str]) -> int | None:
        anchor = self._anchor_name()
        return names.index(anchor) if anchor in names else None

    def _find_centroids(self, images, gt):
        """(centroids (M, 2) full-image xy, values (M,), sample_inds (M,)) as tensors."""
        import torch

        if self.centroid_model is None:
            if gt is None:
                raise PosekitError(
                    "without a centroid model the centroids come from labeled instances, so "
                    "predict on a labels file (.slp) or pass a centroid model as well"
                )
            # The labels' centroids by the rule training cropped them with.
            anchor = self._anchor_index(list(self.skeleton.node_names))
            cents, samples = [], []
            for i, insts in enumerate(gt):
                if insts:
                    cents.append(instance_centroids(torch.from_numpy(np.stack(insts)), anchor))
                    samples.extend([i] * len(insts))
            c = torch.cat(cents).to(torch.float32) if cents else torch.zeros((0, 2))
            s = torch.as_tensor(samples, dtype=torch.long)
            return c.to(self.device), torch.ones(len(s), device=self.device), s.to(self.device)

        model = self.centroid_model
        out = self._forward(model, self._preprocess(model, images))
        cms = out[self.centroid_head.name]
        offsets = out.get("OffsetRefinementHead")
        pts, vals, samples, _ = find_local_peaks(
            cms,
            threshold=self.peak_threshold,
            refinement=self.refinement,
            integral_patch_size=self.integral_patch_size,
            offsets=offsets,
            frame_map_hw=self._frame_map_hw(images, model, self.centroid_head),
        )
        pts = to_image_coordinates(pts, self.centroid_head.output_stride, model.input_scale)
        keep = top_k_per_sample(vals, samples, self._centroid_limit())
        return pts[keep], vals[keep], samples[keep]

    def _centroid_limit(self) -> int | None:
        return self.max_instances

    def _run_crops(self, images, centroids, samples):
        """Crop, run the centered-instance model, find one peak per part.

        Returns (points (M, n_nodes, 2) full-image coordinates, values (M, n_nodes), outputs
        of the model for the crops) as tensors.
        """
        import torch

        model = self.confmap_model
        head = self._confmap_head
        scale = float(model.input_scale)
        size = self.crop_size  # in the model's (resized) input pixels, as in training
        frames = images.to(self.device)
        if scale != 1.0:
            # Training crops the resized frame; so does SLEAP 1.4.1 (uint8 again).
            frames = resize_frames(frames, scale, to_uint8=self.sleap_compatible)
        all_pts, all_vals, all_out = [], [], []
        chunk = max(16, 4 * self.batch_size)
        for start in range(0, centroids.shape[0], chunk):
            c = centroids[start : start + chunk].to(torch.float32) * scale
            s = samples[start : start + chunk]
            if self.sleap_compatible and getattr(model, "sleap_nn", False) and scale == 1.0:
                crops = crop_at_pixels(frames, c, s, size)  # sleap-nn's crops
            else:
                crops = crop_centered(frames, c, s, size)
            if crops.is_floating_point():
                crops = crops / 255.0
            out = self._forward(model, self._preprocess(model, crops, resize=scale == 1.0))
            cms = out[head.name]
            pts, vals = find_global_peaks(
                cms,
                threshold=self.peak_threshold,
                refinement=self.refinement,
                integral_patch_size=self.integral_patch_size,
                offsets=out.get("OffsetRefinementHead"),
            )
            if self.sleap_compatible and not getattr(model, "sleap_nn", False):
                # SLEAP: u / s + 0.5 + (c - size / 2) / s (module docstring)
                pts = to_image_coordinates(pts, head.output_stride, scale, (c - size / 2) / scale)
            else:
                # The inverse of the training crop: (u + c - (size - 1) / 2) / s
                pts = to_image_coordinates(pts, head.output_stride, 1.0, c - (size - 1) / 2)
                if scale != 1.0:
                    pts = pts / scale
            all_pts.append(pts)
            all_vals.append(vals)
            all_out.append(out)
        n_nodes = len(model.part_names)
        if not all_pts:
            return (
                torch.zeros((0, n_nodes, 2), device=self.device),
                torch.zeros((0, n_nodes), device=self.device),
                [],
            )
        return torch.cat(all_pts), torch.cat(all_vals), all_out


class TopDownPredictor(_TopDownBase):
    """Centroid model -> crops -> centered-instance model (either may be None on labels).

    ``sleap_compatible=True`` reproduces SLEAP 1.4.1's top-down points (module doc).
    """

    def _predict_batch(self, images, gt):
        n = images.shape[0]
        centroids, cvals, samples = self._find_centroids(images, gt)
        results: list[list[RawInstance | RawMask]] = [[] for _ in range(n)]
        if self.confmap_model is None:
            return self._centroid_only(centroids, cvals, samples, gt, results)
        pts, vals, outs = self._run_crops(images, centroids, samples)
        masks = self._instance_masks(outs, centroids, tuple(images.shape[1:3]))
        pts, vals = pts.cpu().numpy(), vals.cpu().numpy()
        cvals_np, samples_np = cvals.cpu().numpy(), samples.cpu().numpy()
        n_inst = [0] * n
        for k, (p, v, cv, s) in enumerate(zip(pts, vals, cvals_np, samples_np)):
            if np.isnan(p).all():
                continue
            results[int(s)].append(RawInstance(p, v, float(cv)))
            if masks is not None and masks[k] is not None:  # linked to that instance
                results[int(s)].append(RawMask(masks[k], float(cv), n_inst[int(s)]))
            n_inst[int(s)] += 1
        return results

    def _instance_masks(self, outs, centroids, frame_hw):
        """Each crop's mask pasted back onto the frame, for a centered-instance model with a
        mask head (`segmentation`; None without one, and None for an empty mask)."""
        import torch
        import torch.nn.functional as F

        model = self.confmap_model
        head = next((h for h in model.heads if h.name == "SegmentationHead"), None)
        if head is None or not outs:
            return None
        prob = torch.sigmoid(torch.cat([o[head.name] for o in outs]).float())
        size, scale = self.crop_size, float(model.input_scale)
        if prob.shape[-1] != size:
            prob = F.interpolate(prob, size=(size, size), mode="bilinear", align_corners=False)
        c = centroids.to(prob.device, torch.float32) * scale
        masks = []
        for k in range(prob.shape[0]):
            m = paste_crop(prob[k, 0], c[k], scale, frame_hw) > MASK_THRESHOLD
            masks.append(m.cpu().numpy() if bool(m.any()) else None)
        return masks

    def _centroid_only(self, centroids, cvals, samples, gt, results):
        """SLEAP's ground-truth instance mode; anchor-only instances without labels."""
        names = list(self.skeleton.node_names)
        anchor = self._anchor_index(names)
        cents = centroids.cpu().numpy()
        cvals = cvals.cpu().numpy()
        samples = samples.cpu().numpy()
        for c, cv, s in zip(cents, cvals, samples):
            s = int(s)
            frame_gt = gt[s] if gt is not None else None
            if frame_gt:
                # Nearest labeled instance: smallest distance from the centroid to any of
                # its points.
                d = [np.nanmin(np.linalg.norm(g - c[None], axis=-1)) for g in frame_gt]
                best = frame_gt[int(np.nanargmin(d))]
                results[s].append(
                    RawInstance(best.copy(), np.where(np.isnan(best[:, 0]), np.nan, 1.0), float(cv))
                )
            elif anchor is not None:
                pts = np.full((len(names), 2), np.nan)
                pts[anchor] = c
                sc = np.full((len(names),), np.nan)
                sc[anchor] = cv
                results[s].append(RawInstance(pts, sc, float(cv)))
            else:
                raise PosekitError(
                    "a centroid model without an anchor part only finds bounding-box centres, "
                    "which are not skeleton points: predict on labels (its instances are then "
                    "matched to the centroids) or add a centered-instance model"
                )
        return results


class TopDownMultiClassPredictor(_TopDownBase):
    """Centroid model -> crops -> centered-instance model with class vectors."""

    def __init__(self, centroid_model=None, confmap_model=None, **kwargs):
        super().__init__(centroid_model, confmap_model, **kwargs)
        self.class_vectors_head = need_head(confmap_model, "ClassVectorsHead")

    @property
    def class_names(self):
        return self.confmap_model.classes

    def _centroid_limit(self) -> int | None:
        # Identities already bound the number of instances; sleap-nn also keeps only the
        # `max_instances` best centroids before it crops.
        if self.sleap_compatible and getattr(self.confmap_model, "sleap_nn", False):
            return self.max_instances
        return None

    def _predict_batch(self, images, gt):
        import torch

        n = images.shape[0]
        centroids, cvals, samples = self._find_centroids(images, gt)
        pts, vals, outs = self._run_crops(images, centroids, samples)
        k = len(self.class_names or [])
        if outs:
            probs = ensure_probabilities(torch.cat([o[self.class_vectors_head.name] for o in outs]))
        else:
            probs = torch.zeros((0, k))
        sleap_nn = self.sleap_compatible and getattr(self.confmap_model, "sleap_nn", False)
        points, point_vals, class_probs, crop_inds = classify_peaks_from_vectors(
            pts, vals, probs, samples, n_samples=n, best_only=not sleap_nn
        )
        cvals_np = cvals.cpu().numpy()
        results = []
        for f in range(n):
            frame = []
            for cls in range(points.shape[1]):
                p = points[f, cls]
                if crop_inds[f, cls] < 0 or np.isnan(p).all():
                    continue
                frame.append(
                    RawInstance(
                        p,
                        point_vals[f, cls],
                        float(cvals_np[crop_inds[f, cls]]),
                        track=cls,
                        tracking_score=float(class_probs[f, cls]),
                    )
                )
            results.append(self._keep_best(frame))
        return results
