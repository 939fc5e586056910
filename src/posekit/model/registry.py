"""The model types, in one place: what each one outputs, trains on and is predicted with.

A model type is the field of SLEAP's `HeadsConfig` that a config sets (``single_instance``,
``centroid``, ``centered_instance``, ``multi_instance``, ``multi_class_bottomup``,
``multi_class_topdown``, the segmentation types, and sleap-nn's ``embedding``).
Everything that depends on the type asks this registry instead of comparing names: which heads a model gets (`make_heads`), whether it trains and predicts
on crops around each animal, whether its labels need tracks, which model pairs with it at
inference, which peak finder reads its maps, and which predictor runs it.

Adding a model type means adding its config class to `posekit.config.model.HeadsConfig`,
a head builder below and one `ModelType` entry; the predictor is named by its import path
(``"package.module:Class"``) so this module, which sits below inference, imports nothing
from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posekit.errors import PosekitError
from posekit.heads import (
    CenteredInstanceConfmapsHead,
    CenterOffsetHead,
    CentroidConfmapsHead,
    ClassMapsHead,
    ClassVectorsHead,
    EmbeddingHead,
    Head,
    InstanceCenterHead,
    MultiInstanceConfmapsHead,
    OffsetRefinementHead,
    PartAffinityFieldsHead,
    SegmentationHead,
    SingleInstanceConfmapsHead,
)

__all__ = [
    "MODEL_TYPES",
    "allowed_combinations",
    "has_mask_head",
    "ModelType",
    "make_heads",
    "model_type",
    "predictor_path",
]


@dataclass(frozen=True)
class HeadInputs:
    """What a head builder may fill in from the labels when the config leaves it null."""

    part_names: list[str] | None = None
    edges: list[tuple[str, str]] | None = None
    classes: list[str] | None = None


@dataclass(frozen=True)
class ModelType:
    """Facts about one model type.

    Attributes:
        name: the `HeadsConfig` field (SLEAP's name).
        description: one line for people.
        build_heads: ``(head_config, HeadInputs, field) -> (heads, offset_config,
            offset_parts)``: the heads in SLEAP's output order, and the config and part
            names of the optional offset-refinement head.
        crops: trains and predicts on crops centred on each animal's anchor.
        multi_class: the heads predict identities; training labels need tracks.
        needs_part_names: the heads predict every body part (not only an anchor).
        pairs_with: the model type that finds the animals for this one at inference.
        peaks: "global" (one peak per part and image/crop) or "local" (any number).
        masks: trains on segmentation masks (instead of poses) and predicts masks. (A
            pose type with a `SegmentationHead` -- `has_mask_head` -- trains on both.)
        predictor: import path (``"module:Class"``) of the predictor that runs it.
    """

    name: str
    description: str
    build_heads: Callable[[Any, HeadInputs, str], tuple[list[Head], Any, list[str]]]
    crops: bool = False
    multi_class: bool = False
    needs_part_names: bool = True
    pairs_with: str | None = None
    peaks: str = "global"
    predictor: str = ""
    masks: bool = False


def _need(value, what: str, field: str) -> list:
    if not value:
        raise PosekitError(
            f"the model needs {what}: set {field} in the config or pass a skeleton/labels "
            f"that provide them"
        )
    return list(value)


def _parts(cfg, given: HeadInputs, field: str) -> list[str]:
    return _need(cfg.part_names or given.part_names, "part names", f"{field}.part_names")


def _with_mask(heads: list[Head], cfg) -> list[Head]:
    """A pose model's heads plus the optional mask head on the same backbone
    (`segmentation` of its confidence-map config, posekit-only)."""
    seg = getattr(cfg, "segmentation", None)
    return heads if seg is None else [*heads, _segmentation_head(seg)]


def _single_instance(cfg, given: HeadInputs, field: str):
    names = _parts(cfg, given, field)
    head = SingleInstanceConfmapsHead(cfg.output_stride, cfg.loss_weight, cfg.sigma, names)
    return _with_mask([head], cfg), cfg, names


def _centroid(cfg, given: HeadInputs, field: str):
    head = CentroidConfmapsHead(cfg.output_stride, cfg.loss_weight, cfg.sigma, cfg.anchor_part)
    return [head], cfg, [cfg.anchor_part or "centroid"]


def _centered_instance(cfg, given: HeadInputs, field: str):
    names = _parts(cfg, given, field)
    head = CenteredInstanceConfmapsHead(
        cfg.output_stride, cfg.loss_weight, cfg.sigma, names, cfg.anchor_part
    )
    return _with_mask([head], cfg), cfg, names


def _multi_instance(cfg, given: HeadInputs, field: str):
    c, p = cfg.confmaps, cfg.pafs
    names = _parts(c, given, f"{field}.confmaps")
    edges = _need(p.edges or given.edges, "skeleton edges", f"{field}.pafs.edges")
    heads = [
        MultiInstanceConfmapsHead(c.output_stride, c.loss_weight, c.sigma, names),
        PartAffinityFieldsHead(p.output_stride, p.loss_weight, p.sigma, [tuple(e) for e in edges]),
    ]
    return heads, c, names


def _multi_class_bottomup(cfg, given: HeadInputs, field: str):
    c, k = cfg.confmaps, cfg.class_maps
    names = _parts(c, given, f"{field}.confmaps")
    classes = _need(
        k.classes or given.classes, "class names (tracks)", f"{field}.class_maps.classes"
    )
    heads = [
        MultiInstanceConfmapsHead(c.output_stride, c.loss_weight, c.sigma, names),
        ClassMapsHead(k.output_stride, k.loss_weight, k.sigma, classes),
    ]
    return heads, c, names


def _multi_class_topdown(cfg, given: HeadInputs, field: str):
    c, k = cfg.confmaps, cfg.class_vectors
    names = _parts(c, given, f"{field}.confmaps")
    classes = _need(
        k.classes or given.classes, "class names (tracks)", f"{field}.class_vectors.classes"
    )
    heads = [
        CenteredInstanceConfmapsHead(c.output_stride, c.loss_weight, c.sigma, names, c.anchor_part),
        ClassVectorsHead(
            k.output_stride,
            k.loss_weight,
            None,
            classes,
            k.num_fc_layers,
            k.num_fc_units,
            k.global_pool,
        ),
    ]
    return heads, c, names


def _segmentation_head(cfg) -> SegmentationHead:
    return SegmentationHead(
        cfg.output_stride,
        cfg.loss_weight,
        None,
        cfg.bce_weight,
        cfg.dice_weight,
        cfg.bce_pos_weight,
        cfg.target_maxpool,
    )


def _centered_instance_segmentation(cfg, given: HeadInputs, field: str):
    c = cfg.segmentation
    head = SegmentationHead(c.output_stride, c.loss_weight, None, anchor_part=c.anchor_part)
    return [head], None, []


def _semantic_segmentation(cfg, given: HeadInputs, field: str):
    return [_segmentation_head(cfg.segmentation)], None, []


def _bottomup_segmentation(cfg, given: HeadInputs, field: str):
    c, o = cfg.center, cfg.offsets
    heads = [
        _segmentation_head(cfg.segmentation),
        InstanceCenterHead(c.output_stride, c.loss_weight, c.sigma),
        CenterOffsetHead(o.output_stride, o.loss_weight, None),
    ]
    return heads, None, []


def _embedding(cfg, given: HeadInputs, field: str):
    e = cfg.embedding
    classes = list(e.classes or given.classes or [])  # targets only: training checks them
    head = EmbeddingHead(
        e.output_stride,
        e.loss_weight,
        None,
        e.embedding_dim,
        e.num_fc_layers,
        e.num_fc_units,
        e.pool,
        e.normalize,
        e.temperature,
        e.anchor_part,
        classes,
        e.centroid_method,
        e.standardize,
    )
    return [head], None, []


_PREDICTORS = "posekit.inference.predictors"

#: Every model type, by its `HeadsConfig` field name.
MODEL_TYPES: dict[str, ModelType] = {
    t.name: t
    for t in (
        ModelType(
            "single_instance",
            "one animal per frame: one confidence map per part",
            _single_instance,
            predictor=f"{_PREDICTORS}.single_instance:SingleInstancePredictor",
        ),
        ModelType(
            "centroid",
            "finds each animal's anchor point (first half of top-down)",
            _centroid,
            needs_part_names=False,
            peaks="local",
            predictor=f"{_PREDICTORS}.topdown:TopDownPredictor",
        ),
        ModelType(
            "centered_instance",
            "all parts of the animal centred in a crop (second half of top-down)",
            _centered_instance,
            crops=True,
            pairs_with="centroid",
            predictor=f"{_PREDICTORS}.topdown:TopDownPredictor",
        ),
        ModelType(
            "multi_instance",
            "bottom-up: every part of every animal, grouped with part affinity fields",
            _multi_instance,
            peaks="local",
            predictor=f"{_PREDICTORS}.bottomup:BottomUpPredictor",
        ),
        ModelType(
            "multi_class_bottomup",
            "bottom-up with identity class maps (animals told apart by appearance)",
            _multi_class_bottomup,
            multi_class=True,
            peaks="local",
            predictor=f"{_PREDICTORS}.bottomup:BottomUpMultiClassPredictor",
        ),
        ModelType(
            "multi_class_topdown",
            "top-down centred-instance model with identity class vectors",
            _multi_class_topdown,
            crops=True,
            multi_class=True,
            pairs_with="centroid",
            predictor=f"{_PREDICTORS}.topdown:TopDownMultiClassPredictor",
        ),
        ModelType(
            "semantic_segmentation",
            "one foreground mask per frame (no instances)",
            _semantic_segmentation,
            needs_part_names=False,
            predictor=f"{_PREDICTORS}.segmentation:SemanticSegmentationPredictor",
            masks=True,
        ),
        ModelType(
            "bottomup_segmentation",
            "one mask per animal: foreground, instance centres and centre offsets, grouped",
            _bottomup_segmentation,
            needs_part_names=False,
            peaks="local",
            predictor=f"{_PREDICTORS}.segmentation:BottomUpSegmentationPredictor",
            masks=True,
        ),
        ModelType(
            "centered_instance_segmentation",
            "the mask of the animal centred in a crop (second half of top-down masks)",
            _centered_instance_segmentation,
            crops=True,
            needs_part_names=False,
            pairs_with="centroid",
            predictor=f"{_PREDICTORS}.segmentation:TopDownSegmentationPredictor",
            masks=True,
        ),
        ModelType(
            "embedding",
            "an identity vector per animal crop, for re-identification by the trackers",
            _embedding,
            crops=True,
            multi_class=True,
            needs_part_names=False,
            predictor="posekit.inference.embeddings:EmbeddingPredictor",
        ),
    )
}


def has_mask_head(heads: list[Head]) -> bool:
    """Whether a pose model also predicts masks: a `SegmentationHead` beside its
    confidence maps (a pose head config's `segmentation`)."""
    return any(isinstance(h, SegmentationHead) for h in heads)


def model_type(name: str | ModelType) -> ModelType:
    """The registry entry for `name` (a `HeadsConfig` field), with a clear error if unknown."""
    if isinstance(name, ModelType):
        return name
    try:
        return MODEL_TYPES[name]
    except KeyError:
        raise PosekitError(
            f"unknown model type {name!r}; known types: {', '.join(MODEL_TYPES)}"
        ) from None


def make_heads(
    heads_config: Any,
    part_names: list[str] | None = None,
    edges: list[tuple[str, str]] | None = None,
    classes: list[str] | None = None,
) -> tuple[str, list[Head]]:
    """The model type and head descriptions for a `HeadsConfig`, in SLEAP's output order.

    `part_names`, `edges` and `classes` fill in what the config leaves null (from the
    skeleton and tracks of the labels). An offset-refinement head follows the confidence
    maps when their config asks for one.
    """
    cfg = heads_config.which_oneof()
    if cfg is None:
        raise PosekitError(
            "the config has no heads: set one of model.heads."
            + ", model.heads.".join(type(heads_config).model_fields)
        )
    name = heads_config.which_oneof_attrib_name()
    entry = model_type(name)
    given = HeadInputs(part_names, edges, classes)
    heads, offset_cfg, offset_parts = entry.build_heads(cfg, given, f"model.heads.{name}")
    if offset_cfg is not None and getattr(offset_cfg, "offset_refinement", False):
        heads.append(
            OffsetRefinementHead(
                offset_cfg.output_stride, offset_cfg.loss_weight, None, offset_parts
            )
        )
    return name, heads


def allowed_combinations() -> list[frozenset[str]]:
    """Every set of model types that runs as one predictor: each type alone, and each crop
    model with the model it pairs with."""
    combos = [frozenset({name}) for name in MODEL_TYPES]
    combos += [frozenset({t.pairs_with, t.name}) for t in MODEL_TYPES.values() if t.pairs_with]
    return combos


def predictor_path(types: set[str] | list[str]) -> str:
    """Import path of the predictor that runs models of these types together.

    A crop model and the model it pairs with (centroid) run as the crop model's (top-down)
    predictor; either one alone is allowed too (the other's part then comes from ground
    truth, or is left out).
    """
    types = set(types)
    for name in types:
        entry = model_type(name)
        if types - {name} <= {entry.pairs_with}:
            return entry.predictor
    order = list(MODEL_TYPES).index
    valid = "; ".join(" + ".join(sorted(c, key=order)) for c in allowed_combinations())
    raise PosekitError(
        f"cannot combine models of types {sorted(types)}: give one model, or a crop model "
        f"with the model it pairs with. Valid sets: {valid}"
    )
