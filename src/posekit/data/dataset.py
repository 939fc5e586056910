"""Torch datasets for every SLEAP model type, with batched on-device target generation.

Two stages, so that decoding stays in DataLoader workers and everything numeric runs on
the training device, once per batch:

1. `PoseDataset` (CPU, per item) decodes a frame and yields a *raw sample*: uint8 image
   and points in frame pixels. Full-frame models (single instance, centroid, bottom-up)
   get one sample per labelled frame; top-down models (centered instance, multi-class
   top-down) get one per user instance: a *context crop* around the instance, larger than
   the model crop when augmentation can rotate or shrink it, so corners stay real pixels.
   `collate_samples` stacks raw samples into a raw batch.
2. `DataPipeline.process(raw_batch, augment=..., device=...)` runs on the device:
   augmentation (`BatchAugmenter`) -> float/RGB/grayscale/ImageNet normalisation ->
   `input_scaling` resize -> pad to stride (full frames) or crop of `crop_size` around
   the centroid of the augmented points (top-down) -> targets for every head.

SLEAP's order is kept (augment, normalise, resize, find centroids, crop, make targets),
so a top-down crop is re-centred on the augmented instance exactly as SLEAP does.

The processed batch is ``{"image": (N, C, H, W) float32, <head name>: target, ...}``
with targets keyed by the SLEAP head class names that the model's output dict uses
(`SingleInstanceConfmapsHead`, `CentroidConfmapsHead`, `CenteredInstanceConfmapsHead`,
`MultiInstanceConfmapsHead`, `PartAffinityFieldsHead`, `ClassMapsHead`,
`ClassVectorsHead`, `OffsetRefinementHead`; `EmbeddingHead`: the crop's class index)
plus metadata: ``points`` (N, I, K, 2) in
model-input pixels, ``class_ids`` (N, I) (-1 = none), ``class_index`` (N,) for top-down,
``crop_origin`` (N, 2) of top-down crops in scaled-frame pixels (meaningful without
augmentation: frame point = (point_in_crop + crop_origin) / input_scaling), and
``frame_index`` / ``video_index`` / ``frame_idx`` / ``instance_index``.

`PoseDataset(..., with_targets=True)` runs stage 2 per item instead (CPU), for simple
loops, tests and validation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from posekit.data.augmentation import BatchAugmenter
from posekit.data.channels import convert_frame, frame_channels
from posekit.data.instance_cropping import (
    context_crop,
    crop_around_animal,
    crop_origins,
    extract_crops,
    find_instance_crop_size,
    instance_centroids,
)
from posekit.data.labels import PoseLabels, check_part_names
from posekit.data.masks import (
    MASK_HEADS,
    fit_masks,
    mask_head_target,
    sample_masks,
    skip_unmasked,
)
from posekit.data.symmetry import symmetry_pairs
from posekit.data.targets import (
    OFFSET_THRESHOLD,
    centroid_confidence_maps,
    class_maps,
    class_vectors,
    confidence_maps,
    head_sigma,
    offset_maps,
    part_affinity_fields,
)
from posekit.errors import PosekitError
from posekit.model import registry
from posekit.model.preprocessing import Preprocessor, pad_to_stride, resize_images, scaled_size

_METADATA_KEYS = ("frame_index", "video_index", "frame_idx", "instance_index")


def _get(config: Any, path: str, default: Any = None) -> Any:
    """Dotted attribute/dict lookup that tolerates missing sections."""
    value = config
    for name in path.split("."):
        if value is None:
            return default
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    return default if value is None else value


def _model_type(config: Any) -> str:
    """The model type a job config sets (the `model.heads` field), from an object or a dict."""
    from posekit.config.model import HeadsConfig

    heads = _get(config, "model.heads")
    if heads is None:
        raise PosekitError("the config has no model.heads; set one model type under model.heads")
    if isinstance(heads, dict):
        heads = HeadsConfig.model_validate(heads)
    name = heads.which_oneof_attrib_name()
    if name is None:
        raise PosekitError(
            "the config has no heads: set one of model.heads."
            + ", model.heads.".join(HeadsConfig.model_fields)
        )
    return name


def _max_stride(config: Any) -> int:
    backbone = _get(config, "model.backbone")
    if backbone is None:
        return 1
    if isinstance(backbone, dict):
        chosen = next((v for v in backbone.values() if v), None)
        return int((chosen or {}).get("max_stride", 32))
    chosen = backbone.which_oneof() if hasattr(backbone, "which_oneof") else None
    return int(getattr(chosen, "max_stride", 32)) if chosen is not None else 1


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of (raw or processed) samples into a batch: tensors stacked on dim 0."""
    if not samples:
        raise PosekitError("cannot collate an empty list of samples")
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(first, int | float | np.integer | np.floating | bool):
            batch[key] = torch.as_tensor(values)
        else:
            batch[key] = values
    return batch


def batch_to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move every tensor of a batch to `device` (non-blocking where possible)."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


class DataPipeline:
    """Everything that turns labels into model inputs and targets for one model.

    Build with `DataPipeline.from_config(job_config, train_labels, model.head_specs)`; then
    `pipeline.dataset(labels)` gives datasets and `pipeline.process(raw_batch, ...)`
    finishes batches on the device.

    Attributes:
        model_type: the `model.heads` field that is set (e.g. "centered_instance").
        heads: `posekit.heads.Head` descriptions in SLEAP's output order.
        part_names: node order of points and confidence-map channels.
        edge_inds: PAF edges as indices into `part_names`.
        symmetry_inds: node pairs swapped by flips.
        class_names: identity classes (tracks).
        preprocessor: the `Preprocessor` (pad_to_stride includes the model's max stride).
        max_stride: the backbone's maximum stride.
        crop_size: top-down crop side in scaled pixels (None for full-frame models).
        anchor_index: anchor node for centroids (None: bounding-box midpoint).
        augmenter: the `BatchAugmenter` used when `process(..., augment=True)`.
    """

    def __init__(
        self,
        model_type: str,
        heads: list[Any],
        part_names: list[str],
        edge_inds: list[tuple[int, int]],
        symmetry_inds: list[tuple[int, int]],
        class_names: list[str],
        preprocessor: Preprocessor,
        max_stride: int = 1,
        crop_size: int | None = None,
        anchor_index: int | None = None,
        augmenter: BatchAugmenter | None = None,
    ) -> None:
        self.model_type = model_type
        self.heads = list(heads)
        self.part_names = list(part_names)
        self.edge_inds = [tuple(e) for e in edge_inds]
        self.symmetry_inds = [tuple(s) for s in symmetry_inds]
        self.class_names = list(class_names)
        self.preprocessor = preprocessor
        self.max_stride = int(max_stride)
        self.crop_size = None if crop_size is None else int(crop_size)
        self.anchor_index = anchor_index
        #: crop centre without a visible anchor (an embedding head may ask for the mean)
        self.centroid_method = next(
            (h.centroid_method for h in heads if getattr(h, "centroid_method", None)),
            "bbox_center",
        )
        self.augmenter = augmenter
        #: posekit-only (budgeted `--auto`, recommend.py rule 14): training batches of a
        #: single-instance model are cut to this side (scaled px) around the animal.
        self.train_crop_size: int | None = None
        #: posekit-only (budgeted `--auto`, recommend.py rule 15): training targets of the
        #: confidence-map heads are drawn with this multiple of their sigma (validation
        #: and the saved config keep the config's sigma).
        self.train_sigma_scale: float = 1.0
        #: channels of the model's frames, from the training labels (`frame_channels`);
        #: validation and test frames of another kind are converted to them.
        self.frame_channels: int | None = None
        self._type = registry.model_type(model_type)
        if self.is_topdown and self.crop_size is None:
            raise PosekitError(f"{model_type} models need a crop size")

    # ------------------------------------------------------------------ building

    @classmethod
    def from_config(
        cls,
        config: Any,
        labels: PoseLabels,
        heads: Sequence[Any],
        max_stride: int | None = None,
        seed: int | None = None,
    ) -> DataPipeline:
        """From a `TrainingJobConfig` (object or nested dict), the training labels and heads.

        `heads` are the model's (`Model.head_specs`): the targets are made for exactly
        the outputs the model has, with the part names, edges and classes it was built
        with, so the pipeline never re-derives them from the config. Reads
        `data.preprocessing`, `data.instance_cropping`, the model type (`model.heads`),
        `model.backbone` (max stride, unless `max_stride` is given) and
        `optimization.augmentation_config`. The automatic crop size is measured on
        `labels`, so pass the training labels.
        """
        model_type = _model_type(config)
        entry = registry.model_type(model_type)
        heads = list(heads)
        stride = int(max_stride) if max_stride is not None else _max_stride(config)
        part_names = next(
            (list(h.part_names) for h in heads if getattr(h, "part_names", None)),
            labels.node_names,
        )
        if not entry.needs_part_names:  # the heads see only an anchor; points keep every part
            part_names = labels.node_names
        check_part_names(labels.node_names, part_names, f"model.heads.{model_type}")
        index = {n: i for i, n in enumerate(part_names)}
        edges: list[tuple[int, int]] = []
        for head in heads:
            for a, b in getattr(head, "edges", None) or []:
                if a not in index or b not in index:
                    raise PosekitError(
                        f"skeleton mismatch: PAF edge ({a!r}, {b!r}) names a part that is not "
                        f"in {part_names}; fix model.heads.{model_type}.pafs.edges"
                    )
                edges.append((index[a], index[b]))
        names_sym = [
            (index[a], index[b]) for a, b in labels.skeleton.symmetries if a in index and b in index
        ]
        if not names_sym and _get(config, "optimization.augmentation_config.random_flip", False):
            # a flip without the left/right pairs would teach that a left wing looks
            # like a right one; take the pairs the part names spell (wingL/wingR)
            names_sym = symmetry_pairs(part_names)
            if names_sym:
                warnings.warn(
                    "random_flip: the skeleton declares no left/right symmetries; swapping "
                    "the pairs found from the part names: "
                    + ", ".join(f"{part_names[a]}/{part_names[b]}" for a, b in names_sym),
                    stacklevel=2,
                )
        classes = next((list(h.classes) for h in heads if getattr(h, "classes", None)), [])

        anchor = next((h.anchor_part for h in heads if getattr(h, "anchor_part", None)), None)
        anchor = anchor or _get(config, "data.instance_cropping.center_on_part")
        anchor_index = None
        if anchor is not None:
            if anchor not in index:
                raise PosekitError(
                    f"anchor part {anchor!r} (model.heads.{model_type}.anchor_part or "
                    f"data.instance_cropping.center_on_part) is not one of {part_names}"
                )
            anchor_index = index[anchor]

        preprocessor = Preprocessor.from_config(
            _get(config, "data.preprocessing"), pad_to_stride=stride
        )
        crop_size = None
        if entry.crops:
            crop_size = _get(config, "data.instance_cropping.crop_size")
            if crop_size is None:
                crop_size = find_instance_crop_size(
                    labels.all_points(),
                    padding=int(
                        _get(config, "data.instance_cropping.crop_size_detection_padding", 16)
                    ),
                    maximum_stride=stride,
                    input_scaling=preprocessor.input_scaling,
                )
        aug_cfg = _get(config, "optimization.augmentation_config")
        augmenter = BatchAugmenter(aug_cfg, names_sym, seed=seed)
        pipeline = cls(
            model_type=model_type,
            heads=heads,
            part_names=part_names,
            edge_inds=edges,
            symmetry_inds=names_sym,
            class_names=classes,
            preprocessor=preprocessor,
            max_stride=stride,
            crop_size=crop_size,
            anchor_index=anchor_index,
            augmenter=augmenter,
        )
        pipeline.frame_channels = frame_channels(labels)
        return pipeline

    @property
    def is_topdown(self) -> bool:
        """True for models trained on crops around each animal (the registry's `crops`)."""
        return self._type.crops

    def context_size(self) -> int | None:
        """Side (frame pixels) of the context crops top-down samples carry."""
        if not self.is_topdown:
            return None
        base = self.crop_size / self.preprocessor.input_scaling
        zoom = 1.0
        if self.augmenter is not None and self.augmenter.params.geometric:
            zoom = self.augmenter.params.max_zoom_out()
            if self.augmenter.params.rotate and self.anchor_index is None:
                zoom *= 1.25  # a bbox-midpoint centroid moves under rotation
        size = int(math.ceil(base * zoom)) + 4
        return size + (size % 2)

    def dataset(
        self, labels: PoseLabels, with_targets: bool = False, augment: bool = False
    ) -> PoseDataset:
        """A `PoseDataset` of `labels` for this pipeline."""
        return PoseDataset(labels, self, with_targets=with_targets, augment=augment)

    # ------------------------------------------------------------------ batches

    def process(
        self,
        batch: dict[str, Any],
        augment: bool = False,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Raw batch (from `collate_samples`) -> model input, targets and metadata."""
        if device is not None:
            batch = batch_to_device(batch, device)
        images = batch["image"]
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        points = batch["points"].float()
        class_ids = batch["class_ids"].long()
        scale = self.preprocessor.input_scaling
        # Full frames are resized in the augmentation's warp (one pass at the model's size).
        size = None if self.is_topdown else scaled_size(tuple(images.shape[-2:]), scale)
        matrices = masks = None
        if augment and self.augmenter is not None and self.augmenter.enabled:
            images, points = self.augmenter(
                images,
                points,
                nan_outside=not self.is_topdown,
                generator=generator,
                output_size=size,
            )
            matrices = self.augmenter.last_matrices
        images = self.preprocessor.normalize(images)
        if size is None or tuple(images.shape[-2:]) != size:
            images = resize_images(images, scale)
        points = points * scale
        out: dict[str, Any] = {}
        if self.is_topdown:
            centroids = instance_centroids(points[:, 0], self.anchor_index, self.centroid_method)
            centre = torch.tensor(
                [(images.shape[-1] - 1) / 2.0, (images.shape[-2] - 1) / 2.0],
                device=images.device,
            )
            centroids = torch.where(torch.isnan(centroids), centre.expand_as(centroids), centroids)
            origins = crop_origins(centroids, self.crop_size)
            if "masks" in batch:
                hw = tuple(images.shape[-2:])
                masks = fit_masks(batch["masks"], matrices, hw, hw).float()
                masks = extract_crops(masks, origins, self.crop_size) > 0.5
            images = extract_crops(images, origins, self.crop_size)
            points = points - origins[:, None, None, :]
            frame_origins = batch["context_origin"].float() * scale + origins
            if not augment and "frame_size" in batch:
                # Like TF's crop_and_resize on the resized frame, read 0 outside it.
                images = images * self._inside_frame(frame_origins, batch["frame_size"], scale)
            out["crop_origin"] = frame_origins
            out["class_index"] = class_ids[:, 0]
        else:
            hw = tuple(images.shape[-2:])
            images = pad_to_stride(images, self.preprocessor.pad_to_stride)
            if "masks" in batch:
                masks = fit_masks(batch["masks"], matrices, hw, tuple(images.shape[-2:]))
            if augment and self.train_crop_size and self.model_type == "single_instance":
                c = images.shape[1]  # masks ride along as extra channels
                both = images if masks is None else torch.cat([images, masks.float()], 1)
                both, points = self._crop_around_animal(both, points, generator)
                images, masks = both[:, :c], None if masks is None else both[:, c:] > 0.5
        out["image"] = images
        sigma_scale = self.train_sigma_scale if augment else 1.0
        hw_out = tuple(images.shape[-2:])
        out.update(self.make_targets(points, class_ids, hw_out, sigma_scale, masks))
        if "has_mask" in batch:  # pose + mask models: instances without a mask
            skip_unmasked(out, batch["has_mask"])
        out["points"] = points
        out["class_ids"] = class_ids
        for key in _METADATA_KEYS:
            if key in batch:
                out[key] = batch[key]
        return out

    def _crop_around_animal(
        self, images: torch.Tensor, points: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training crops of side `train_crop_size` that hold the animal at a random place
        (`posekit.data.instance_cropping.crop_around_animal`)."""
        return crop_around_animal(images, points, int(self.train_crop_size), generator)

    def _inside_frame(
        self, frame_origins: torch.Tensor, frame_size: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """(N, 1, S, S) mask of crop pixels inside ``[0, size - 1]`` of the resized frame."""
        size = self.crop_size
        idx = torch.arange(size, device=frame_origins.device, dtype=torch.float32)
        h_s = torch.floor(frame_size[:, 0].float() * scale).to(frame_origins.device)
        w_s = torch.floor(frame_size[:, 1].float() * scale).to(frame_origins.device)
        xs = frame_origins[:, 0, None] + idx
        ys = frame_origins[:, 1, None] + idx
        in_x = (xs >= -1e-4) & (xs <= (w_s - 1)[:, None] + 1e-4)
        in_y = (ys >= -1e-4) & (ys <= (h_s - 1)[:, None] + 1e-4)
        return (in_y[:, :, None] & in_x[:, None, :])[:, None].float()

    def make_targets(
        self,
        points: torch.Tensor,
        class_ids: torch.Tensor,
        image_hw: tuple[int, int],
        sigma_scale: float = 1.0,
        masks: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Targets of every head for points (N, I, K, 2) in model-input pixels (mask
        heads: from `masks`, (N, M, H, W) bool in model-input pixels).

        `sigma_scale` widens (or narrows) every Gaussian map's spread; PAFs keep theirs.
        """
        targets: dict[str, torch.Tensor] = {}
        primary_points = None
        primary_sigma = None
        for head in self.heads:
            name = head.name
            stride = int(head.output_stride)
            if name in MASK_HEADS:
                if masks is None:
                    raise PosekitError(f"{name} needs masks in the batch (labels with masks)")
                targets[name] = mask_head_target(head, masks)
            elif name == "SingleInstanceConfmapsHead" or name == "CenteredInstanceConfmapsHead":
                primary_points, primary_sigma = (
                    points[:, 0],
                    head_sigma(head.sigma, stride) * sigma_scale,
                )
                targets[name] = confidence_maps(
                    primary_points, image_hw, stride, primary_sigma, drop_outside_instances=False
                )
            elif name == "CentroidConfmapsHead":
                centroids = instance_centroids(points, self.anchor_index, self.centroid_method)
                primary_points = centroids[:, :, None, :]
                primary_sigma = head_sigma(head.sigma, stride) * sigma_scale
                targets[name] = centroid_confidence_maps(centroids, image_hw, stride, primary_sigma)
            elif name == "MultiInstanceConfmapsHead":
                primary_points, primary_sigma = points, head_sigma(head.sigma, stride) * sigma_scale
                targets[name] = confidence_maps(points, image_hw, stride, primary_sigma)
            elif name == "PartAffinityFieldsHead":
                targets[name] = part_affinity_fields(
                    points, self.edge_inds, image_hw, stride, float(head.sigma)
                )
            elif name == "ClassMapsHead":
                targets[name] = class_maps(
                    points,
                    class_ids,
                    len(self.class_names),
                    image_hw,
                    stride,
                    head_sigma(head.sigma, stride) * sigma_scale,
                )
            elif name == "ClassVectorsHead":
                targets[name] = class_vectors(class_ids[:, 0], len(self.class_names)).to(
                    points.device
                )
            elif name == "EmbeddingHead":  # contrastive: the crop's identity index
                targets[name] = class_ids[:, 0].to(points.device, torch.long)
            elif name == "OffsetRefinementHead":
                if primary_points is None:
                    raise PosekitError("OffsetRefinementHead needs a confidence-map head first")
                targets[name] = offset_maps(
                    primary_points,
                    image_hw,
                    stride,
                    primary_sigma,
                    threshold=float(getattr(head, "sigma_threshold", OFFSET_THRESHOLD)),
                )
            else:  # pragma: no cover - heads come from the registry
                raise PosekitError(f"no targets known for head {name}")
        return targets


class PoseDataset(torch.utils.data.Dataset):
    """Raw samples (or, with `with_targets`, processed samples) of `labels` for a pipeline.

    Full-frame models: one item per labelled frame, frames zero-padded bottom/right to
    the largest video size so they batch. Top-down models: one item per user instance,
    a context crop centred on its centroid. Multi-class models skip instances without a
    class; single-instance models use each frame's first instance (as SLEAP).
    """

    def __init__(
        self,
        labels: PoseLabels,
        pipeline: DataPipeline,
        with_targets: bool = False,
        augment: bool = False,
    ) -> None:
        self.labels = labels
        self.pipeline = pipeline
        self.with_targets = with_targets
        self.augment = augment
        missing = [p for p in pipeline.part_names if p not in labels.node_names]
        check_part_names(labels.node_names, missing or None, "the model's part names")
        self.node_index = np.array([labels.node_names.index(p) for p in pipeline.part_names])
        lookup = {n: i for i, n in enumerate(pipeline.class_names)}
        self.class_lookup = np.array(
            [lookup.get(n, -1) for n in labels.class_names] + [-1], dtype=np.int64
        )  # index -1 (no track) maps to the trailing -1
        used = sorted({e.video_index for e in labels.entries})
        shapes = {i: labels.frame_shape(i) for i in used}
        self.frame_hw = (
            max(shapes[i][0] for i in used),
            max(shapes[i][1] for i in used),
        )
        self.channels = pipeline.frame_channels or frame_channels(labels)
        kind = registry.model_type(pipeline.model_type)
        require_class = kind.multi_class
        # A full-frame model with one (global) peak per part sees one animal per frame.
        first_only = kind.peaks == "global" and not kind.crops

        # (entry, instance) pairs for top-down; kept instance lists for full frames.
        self.items: list[tuple[int, np.ndarray]] = []
        for i, entry in enumerate(labels.entries):
            classes = self.class_lookup[entry.track_inds]
            keep = np.flatnonzero(classes >= 0) if require_class else np.arange(entry.n_instances)
            if first_only:
                keep = keep[:1]
            if kind.masks:  # mask models train on the frames (instances) that have masks
                if pipeline.is_topdown:
                    linked = set(entry.mask_instance)
                    self.items.extend((i, np.array([k])) for k in keep if k in linked)
                elif entry.masks:
                    self.items.append((i, keep))
                continue
            if len(keep) == 0:
                continue
            if pipeline.is_topdown:
                self.items.extend((i, np.array([k])) for k in keep)
            else:
                self.items.append((i, keep))
        self.max_masks = max((len(labels.entries[i].masks) for i, _ in self.items), default=0)
        self.with_masks = kind.masks or registry.has_mask_head(pipeline.heads)
        if self.with_masks and not kind.masks and not self.max_masks:
            raise PosekitError(
                f"this {pipeline.model_type} model has a mask head (segmentation) and no "
                "training frame has a mask: make them (`posekit masks LABELS`) or remove "
                f"model.heads.{pipeline.model_type}.segmentation"
            )
        if not self.items and kind.masks:
            raise PosekitError(
                f"a {pipeline.model_type} model trains on segmentation masks and these labels "
                "have none: make them from the poses (`posekit masks LABELS`, or "
                "posekit.data.masks.masks_from_poses)"
            )
        if not self.items:
            raise PosekitError(
                f"no usable instances for a {pipeline.model_type} model in these labels"
                + (" (identity models need instances with a track)" if require_class else "")
            )
        self.max_instances = max(len(k) for _, k in self.items) if self.items else 0
        inv = 1.0 / pipeline.preprocessor.input_scaling
        self._origin_step = int(round(inv)) if abs(inv - round(inv)) < 1e-6 else 1
        self.context_size = pipeline.context_size()
        if self.context_size is not None:
            self.context_size += 2 * self._origin_step

    def __len__(self) -> int:
        return len(self.items)

    def _frame(self, entry_index: int) -> np.ndarray:
        return convert_frame(self.labels.read_entry(entry_index), self.channels)

    def raw_sample(self, index: int) -> dict[str, Any]:
        entry_index, inst = self.items[index]
        entry = self.labels.entries[entry_index]
        pts = entry.points[inst][:, self.node_index].astype(np.float32)
        cls = self.class_lookup[entry.track_inds[inst]]
        img = self._frame(entry_index)
        sample: dict[str, Any] = {}
        if self.pipeline.is_topdown:
            size = self.context_size
            centroid = instance_centroids(
                torch.from_numpy(pts[0]), self.pipeline.anchor_index, self.pipeline.centroid_method
            )
            # Origins on multiples of 1/input_scaling (when that is an integer) keep the
            # resized context on the same pixel grid as the resized full frame, so crops
            # equal SLEAP's crops of the resized frame exactly.
            step = self._origin_step
            x0 = int(math.floor((float(centroid[0]) - size / 2.0) / step)) * step
            y0 = int(math.floor((float(centroid[1]) - size / 2.0) / step)) * step
            h, w = img.shape[:2]
            crop = context_crop(img, x0, y0, size)
            sample["image"] = torch.from_numpy(crop).permute(2, 0, 1).contiguous()
            if self.with_masks:  # the mask linked to this instance
                fm, sample["has_mask"] = sample_masks(entry, (h, w), int(inst[0]), 1)
                sample["masks"] = torch.from_numpy(
                    context_crop(fm.transpose(1, 2, 0), x0, y0, size)
                ).permute(2, 0, 1)
            sample["points"] = torch.from_numpy(pts - np.array([x0, y0], dtype=np.float32))
            sample["class_ids"] = torch.from_numpy(cls.astype(np.int64))
            sample["context_origin"] = torch.tensor([x0, y0], dtype=torch.float32)
            sample["frame_size"] = torch.tensor([h, w], dtype=torch.int64)
            sample["instance_index"] = int(inst[0])
        else:
            h, w = self.frame_hw
            if img.shape[0] != h or img.shape[1] != w:
                padded = np.zeros((h, w, img.shape[2]), dtype=np.uint8)
                padded[: img.shape[0], : img.shape[1]] = img
                img = padded
            n_max = self.max_instances
            all_pts = np.full((n_max, len(self.node_index), 2), np.nan, dtype=np.float32)
            all_pts[: len(inst)] = pts
            all_cls = np.full((n_max,), -1, dtype=np.int64)
            all_cls[: len(inst)] = cls
            sample["image"] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
            sample["points"] = torch.from_numpy(all_pts)
            sample["class_ids"] = torch.from_numpy(all_cls)
            sample["instance_index"] = -1
            if self.with_masks:
                masks, sample["has_mask"] = sample_masks(entry, (h, w), None, self.max_masks)
                sample["masks"] = torch.from_numpy(masks)
        sample["frame_index"] = int(entry_index)
        sample["video_index"] = int(entry.video_index)
        sample["frame_idx"] = int(entry.frame_idx)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.raw_sample(index)
        if not self.with_targets:
            return sample
        batch = self.pipeline.process(
            collate_samples([sample]), augment=self.augment, generator=self._generator()
        )
        return {
            k: (v[0] if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
            for k, v in batch.items()
        }

    def _generator(self) -> torch.Generator | None:
        """Per-worker augmentation generator, so DataLoader workers draw different numbers.

        In the main process the pipeline's augmenter (seeded) is used; in a worker, a
        generator seeded with the worker's seed (which DataLoader varies per epoch).
        """
        info = torch.utils.data.get_worker_info()
        if not self.augment or info is None:
            return None
        if getattr(self, "_worker_seed", None) != info.seed:
            self._worker_seed = info.seed
            self._worker_gen = torch.Generator().manual_seed(int(info.seed) % (2**63))
        return self._worker_gen

    def loader(
        self, batch_size: int = 4, shuffle: bool = True, **kwargs
    ) -> torch.utils.data.DataLoader:
        """A `DataLoader` over this dataset with `collate_samples`."""
        return torch.utils.data.DataLoader(
            self, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_samples, **kwargs
        )


__all__ = [
    "DataPipeline",
    "PoseDataset",
    "batch_to_device",
    "collate_samples",
]
