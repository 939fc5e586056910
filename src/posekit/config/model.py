"""Model configuration: backbones and heads, with SLEAP's class names, fields and defaults.

Every class here mirrors a class of `sleap.nn.config.model` so that a SLEAP
`training_config.json` loads as is and means the same thing. Validation happens when a
config is created or assigned, so an impossible stride or an unknown encoder is caught
before any network is built, with the field, the value and what is allowed.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from posekit.config.base import ConfigBase, OneOfConfig
from posekit.config.checks import _check_output_vs_max, _positive_sigma, check_stride
from posekit.config.hierarchical import (
    CONVNEXT_PRESETS,
    CONVNEXT_WEIGHTS,
    SWINT_PRESETS,
    SWINT_WEIGHTS,
    ConvNextConfig,
    PretrainedConfig,
    SwinTConfig,
)
from posekit.errors import unknown_choice

RESNET_VERSIONS = ("ResNet50", "ResNet101", "ResNet152")
RESNET_WEIGHTS = ("random", "frozen", "tunable")

PRETRAINED_ENCODERS = (
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50",
    "resnext101",
    "inceptionv3",
    "inceptionresnetv2",
    "densenet121",
    "densenet169",
    "densenet201",
    "seresnet18",
    "seresnet34",
    "seresnet50",
    "seresnet101",
    "seresnet152",
    "seresnext50",
    "seresnext101",
    "senet154",
    "mobilenet",
    "mobilenetv2",
    "efficientnetb0",
    "efficientnetb1",
    "efficientnetb2",
    "efficientnetb3",
    "efficientnetb4",
    "efficientnetb5",
    "efficientnetb6",
    "efficientnetb7",
)


# --------------------------------------------------------------------------- backbones


class LEAPConfig(ConfigBase):
    """LEAP CNN backbone: plain conv blocks with pooling, then upsampling without skips."""

    max_stride: int = 8
    output_stride: int = 1
    filters: int = Field(64, ge=1)
    filters_rate: float = Field(2, gt=0)
    up_interpolate: bool = False
    stacks: int = Field(1, ge=1)

    _v_strides = field_validator("max_stride", "output_stride")(
        lambda v, info: check_stride(info.field_name, v)
    )

    @model_validator(mode="after")
    def _strides(self) -> LEAPConfig:
        _check_output_vs_max(type(self).__name__, self.output_stride, self.max_stride)
        return self


class UNetConfig(ConfigBase):
    """UNet backbone: conv blocks, pooling, and an upsampling path with skip connections."""

    stem_stride: int | None = None
    max_stride: int = 16
    output_stride: int = 1
    filters: int = Field(64, ge=1)
    filters_rate: float = Field(2, gt=0)
    middle_block: bool = True
    up_interpolate: bool = False
    stacks: int = Field(1, ge=1)

    _v_strides = field_validator("stem_stride", "max_stride", "output_stride")(
        lambda v, info: check_stride(info.field_name, v)
    )

    @model_validator(mode="after")
    def _strides(self) -> UNetConfig:
        _check_output_vs_max(type(self).__name__, self.output_stride, self.max_stride)
        if self.stem_stride is not None and self.stem_stride > self.max_stride:
            raise ValueError(
                f"UNetConfig: stem_stride={self.stem_stride} is larger than "
                f"max_stride={self.max_stride}; the stem is part of the downsampling"
            )
        return self


class HourglassConfig(ConfigBase):
    """Stacked hourglass backbone (Associative Embedding variant).

    The seed's prose calls the filter step `filters_increase`; SLEAP's attribute is
    `filter_increase`. Both are accepted; `filter_increase` is written.
    """

    _aliases: ClassVar[dict[str, str]] = {"filters_increase": "filter_increase"}

    stem_stride: int = 4
    max_stride: int = 64
    output_stride: int = 4
    stem_filters: int = Field(128, ge=1)
    filters: int = Field(256, ge=1)
    filter_increase: int = Field(128, ge=0)
    stacks: int = Field(3, ge=1)

    _v_strides = field_validator("stem_stride", "max_stride", "output_stride")(
        lambda v, info: check_stride(info.field_name, v)
    )

    @model_validator(mode="after")
    def _strides(self) -> HourglassConfig:
        _check_output_vs_max(type(self).__name__, self.output_stride, self.max_stride)
        if self.stem_stride > self.max_stride:
            raise ValueError(
                f"HourglassConfig: stem_stride={self.stem_stride} is larger than "
                f"max_stride={self.max_stride}"
            )
        return self


class UpsamplingConfig(ConfigBase):
    """Decoder (upsampling stack) used on top of ResNet encoders.

    SLEAP's attribute is `batch_norm`; its documentation calls it `conv_batchnorm`. Both
    are accepted; `batch_norm` is written.
    """

    _aliases: ClassVar[dict[str, str]] = {"conv_batchnorm": "batch_norm"}

    method: Literal["interpolation", "transposed_conv"] = "interpolation"
    skip_connections: Literal["add", "concatenate"] | None = None
    block_stride: int = 2
    filters: int = Field(64, ge=1)
    filters_rate: float = Field(1, gt=0)
    refine_convs: int = Field(2, ge=0)
    batch_norm: bool = True
    transposed_conv_kernel_size: int = Field(4, ge=1)

    _v_strides = field_validator("block_stride")(lambda v, info: check_stride(info.field_name, v))


class ResNetConfig(ConfigBase):
    """ResNet v1 (50/101/152) backbone with optional upsampling decoder."""

    version: str = "ResNet50"
    weights: str = "frozen"
    upsampling: UpsamplingConfig | None = None
    max_stride: int = 32
    output_stride: int = 4

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if v not in RESNET_VERSIONS:
            raise ValueError(f"version={v!r} is not a known ResNet; use one of {RESNET_VERSIONS}")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        if v not in RESNET_WEIGHTS:
            raise ValueError(f"weights={v!r} is not allowed; use one of {RESNET_WEIGHTS}")
        return v

    _v_strides = field_validator("max_stride", "output_stride")(
        lambda v, info: check_stride(info.field_name, v)
    )

    @model_validator(mode="after")
    def _strides(self) -> ResNetConfig:
        if not 4 <= self.max_stride <= 32:
            raise ValueError(
                f"ResNetConfig: max_stride={self.max_stride} is outside 4..32; ResNet "
                f"reaches stride 32 at most"
            )
        _check_output_vs_max(type(self).__name__, self.output_stride, self.max_stride)
        return self


class PretrainedEncoderConfig(ConfigBase):
    """UNet-like backbone on an ImageNet-pretrained encoder (segmentation-models style)."""

    encoder: str = "efficientnetb0"
    pretrained: bool = True
    decoder_filters: int = Field(256, ge=1)
    decoder_filters_rate: float = Field(1.0, gt=0)
    output_stride: int = 2
    decoder_batchnorm: bool = True

    @field_validator("encoder")
    @classmethod
    def _encoder(cls, v: str) -> str:
        if v not in PRETRAINED_ENCODERS:
            raise ValueError(unknown_choice("encoder", v, PRETRAINED_ENCODERS, "encoder"))
        return v

    @field_validator("output_stride")
    @classmethod
    def _stride(cls, v: int) -> int:
        check_stride("output_stride", v)
        if v > 32:
            raise ValueError(f"output_stride={v} is larger than the encoders' stride of 32")
        return v


# sleap-nn 0.3.5's backbones: its class names, field names and defaults, so its YAML
# `backbone_config` sections load as they are.


class BackboneConfig(OneOfConfig):
    """Which backbone to build: exactly one field set."""

    leap: LEAPConfig | None = None
    unet: UNetConfig | None = None
    hourglass: HourglassConfig | None = None
    resnet: ResNetConfig | None = None
    pretrained_encoder: PretrainedEncoderConfig | None = None
    convnext: ConvNextConfig | None = None
    swint: SwinTConfig | None = None
    pretrained: PretrainedConfig | None = None

    @model_serializer(mode="wrap")
    def _sleap_keys(self, handler):
        """sleap-nn's backbones are written only when set: SLEAP 1.4 files keep SLEAP's keys."""
        data = handler(self)
        for name in ("convnext", "swint", "pretrained"):
            if isinstance(data, dict) and name in data and data[name] is None:
                del data[name]
        return data


# --------------------------------------------------------------------------- heads


class _MapHeadConfig(ConfigBase):
    """Checks shared by heads that output maps at a stride.

    The fields themselves are declared by each head, in SLEAP's order, so that configs
    are written with SLEAP's key order (inherited fields would come first).

    `sigma` is the spread of a head's Gaussians in pixels of its output grid: targets are
    drawn with ``sigma * output_stride`` input pixels, because SLEAP's code does so (its
    documentation says input pixels; see README "Parity with SLEAP"). The PAF `sigma` is
    not multiplied by the stride; it weighs squared input-pixel distances to an edge
    (`posekit.data.targets.part_affinity_fields`), which is why its values are large.
    """

    _v_sigma = field_validator("sigma", check_fields=False)(lambda v: _positive_sigma(v))
    _v_strides = field_validator("output_stride", check_fields=False)(
        lambda v, info: check_stride(info.field_name, v)
    )

    @model_serializer(mode="wrap")
    def _posekit_only_keys(self, handler):
        """A pose head's `segmentation` (posekit-only) is written only when set, so SLEAP
        configs are written back with SLEAP's keys."""
        data = handler(self)
        if isinstance(data, dict) and "segmentation" in data and data["segmentation"] is None:
            del data["segmentation"]
        return data


class SegmentationHeadConfig(_MapHeadConfig):
    """Foreground mask (sleap-nn's name): one logit map, trained with BCE + Dice.

    `bce_weight` and `dice_weight` weigh the two loss terms; `bce_pos_weight` up-weights
    foreground pixels in the BCE (thin or rare foreground); `target_maxpool` marks a
    stride cell foreground when any of its pixels is (instead of more than half).
    """

    output_stride: int = 2
    loss_weight: float = 1.0
    bce_weight: float = Field(0.5, ge=0)
    dice_weight: float = Field(0.5, ge=0)
    bce_pos_weight: float | None = Field(None, gt=0)
    target_maxpool: bool = False


class PoseMaskHeadConfig(SegmentationHeadConfig):
    """A pose model's mask head (`segmentation` of a pose head config, posekit-only).

    Its `loss_weight` defaults to 0.01: BCE + Dice is ~0.5 when confidence-map MSE is
    ~1e-3, so at 1.0 the mask takes the shared backbone from the poses (measured on the
    synthetic two-animal test, 300 steps: pose error 6.7 px at 1.0, 0.97 px at 0.01,
    1.2 px without a mask head; mask IoU 0.85 and 0.81).
    """

    loss_weight: float = 0.01


class SingleInstanceConfmapsHeadConfig(_MapHeadConfig):
    """One confidence map per part; one instance per image (global peak).

    `segmentation` (posekit-only, default None) adds a foreground-mask head on the same
    backbone: the model then also predicts the animal's mask (README "Segmentation masks").
    """

    part_names: list[str] | None = None
    sigma: float = 5.0
    output_stride: int = 1
    loss_weight: float = 1.0
    offset_refinement: bool = False
    segmentation: PoseMaskHeadConfig | None = None


class CentroidsHeadConfig(_MapHeadConfig):
    """One map of instance centroids (anchor part or bounding-box midpoint)."""

    anchor_part: str | None = None
    sigma: float = 5.0
    output_stride: int = 1
    loss_weight: float = 1.0
    offset_refinement: bool = False


class CenteredInstanceConfmapsHeadConfig(_MapHeadConfig):
    """Confidence maps of the instance centred in a crop (top-down second stage).

    `segmentation` (posekit-only, default None) adds a head on the same backbone for the
    mask of the crop's animal, predicted beside its pose and linked to it.
    """

    anchor_part: str | None = None
    part_names: list[str] | None = None
    sigma: float = 5.0
    output_stride: int = 1
    loss_weight: float = 1.0
    offset_refinement: bool = False
    segmentation: PoseMaskHeadConfig | None = None


class MultiInstanceConfmapsHeadConfig(_MapHeadConfig):
    """Confidence maps with one peak per instance per part (bottom-up)."""

    part_names: list[str] | None = None
    sigma: float = 5.0
    output_stride: int = 1
    loss_weight: float = 1.0
    offset_refinement: bool = False


class PartAffinityFieldsHeadConfig(_MapHeadConfig):
    """Part affinity fields: 2 channels (x, y of the unit vector) per skeleton edge."""

    edges: list[tuple[str, str]] | None = None
    sigma: float = 15.0
    output_stride: int = 1
    loss_weight: float = 1.0


class ClassMapsHeadConfig(_MapHeadConfig):
    """Class (identity) maps around each landmark, one channel per class."""

    classes: list[str] | None = None
    sigma: float = 5.0
    output_stride: int = 1
    loss_weight: float = 1.0


class ClassVectorsHeadConfig(ConfigBase):
    """Class (identity) vector per crop: pooled features -> dense layers -> logits."""

    classes: list[str] | None = None
    num_fc_layers: int = Field(1, ge=0)
    num_fc_units: int = Field(64, ge=1)
    global_pool: bool = True
    output_stride: int = 1
    loss_weight: float = 1.0

    _v_strides = field_validator("output_stride")(lambda v, info: check_stride(info.field_name, v))


class MultiInstanceConfig(ConfigBase):
    """Bottom-up: multi-instance confidence maps + part affinity fields."""

    confmaps: MultiInstanceConfmapsHeadConfig = Field(
        default_factory=MultiInstanceConfmapsHeadConfig
    )
    pafs: PartAffinityFieldsHeadConfig = Field(default_factory=PartAffinityFieldsHeadConfig)


class MultiClassBottomUpConfig(ConfigBase):
    """Bottom-up with identities: multi-instance confidence maps + class maps."""

    confmaps: MultiInstanceConfmapsHeadConfig = Field(
        default_factory=MultiInstanceConfmapsHeadConfig
    )
    class_maps: ClassMapsHeadConfig = Field(default_factory=ClassMapsHeadConfig)


class MultiClassTopDownConfig(ConfigBase):
    """Top-down with identities: centered-instance confidence maps + class vectors."""

    confmaps: CenteredInstanceConfmapsHeadConfig = Field(
        default_factory=CenteredInstanceConfmapsHeadConfig
    )
    class_vectors: ClassVectorsHeadConfig = Field(default_factory=ClassVectorsHeadConfig)

    @model_validator(mode="after")
    def _no_mask_head(self) -> MultiClassTopDownConfig:
        if self.confmaps.segmentation is not None:
            raise ValueError(
                "confmaps.segmentation: a mask head beside class vectors is not supported; "
                "use model.heads.centered_instance.segmentation, or remove it"
            )
        return self


class InstanceCenterConfig(_MapHeadConfig):
    """Map of instance-mask centres (bottom-up segmentation); `sigma` in output-grid
    pixels like the confidence-map heads (sleap-nn draws ``sigma * output_stride``)."""

    sigma: float = 4.0
    output_stride: int = 2
    loss_weight: float = 1.0


class CenterOffsetConfig(_MapHeadConfig):
    """(dx, dy) from each foreground pixel to its instance's centre, in input pixels."""

    output_stride: int = 2
    loss_weight: float = 0.1


class CenteredInstanceSegmentationHeadConfig(_MapHeadConfig):
    """Mask of the animal centred in a crop (top-down, after a centroid model).

    `anchor_part` centres the crops as the centroid model's does (None: the middle of
    the visible points' bounding box, posekit's and SLEAP's rule). sleap-nn's
    `centroid_method` / `centroid_fallback` are accepted as "anchor" / "bbox_center"
    (what posekit crops on) or null.
    """

    output_stride: int = 2
    loss_weight: float = 1.0
    anchor_part: str | None = None
    centroid_method: str | None = None
    centroid_fallback: str | None = None

    @field_validator("centroid_method", "centroid_fallback")
    @classmethod
    def _centroid_rule(cls, v, info):
        if v not in (None, "anchor", "bbox_center"):
            raise ValueError(
                f"{info.field_name}={v!r}: posekit crops at the anchor part or the bounding-box "
                "centre; use 'anchor', 'bbox_center' or null"
            )
        return v


class CenteredInstanceSegmentationConfig(ConfigBase):
    """Top-down instance segmentation: the centred animal's mask in each centroid crop."""

    segmentation: CenteredInstanceSegmentationHeadConfig = Field(
        default_factory=CenteredInstanceSegmentationHeadConfig
    )


class SemanticSegmentationConfig(ConfigBase):
    """Semantic segmentation: one foreground map over the whole frame, no instances."""

    segmentation: SegmentationHeadConfig = Field(default_factory=SegmentationHeadConfig)


class BottomUpSegmentationConfig(ConfigBase):
    """Bottom-up instance segmentation: foreground + instance centres + centre offsets,
    grouped into one mask per animal."""

    segmentation: SegmentationHeadConfig = Field(default_factory=SegmentationHeadConfig)
    center: InstanceCenterConfig = Field(default_factory=InstanceCenterConfig)
    offsets: CenterOffsetConfig = Field(default_factory=CenterOffsetConfig)


class EmbeddingHeadConfig(ConfigBase):
    """Identity vector of the crop's animal for re-identification (sleap-nn's names).

    Pooled encoder feature (``pool``: avg, max or gem) -> `num_fc_layers` x (dense + ReLU)
    -> dense `embedding_dim` -> L2 normalisation (`normalize`). Trained with a contrastive
    loss (`loss`: supcon; `temperature`) on crops of tracked instances; `classes` are the
    training tracks (filled in from the labels, used only for the targets).

    Crops are centred on `anchor_part` when it is visible, else on `centroid_method` of
    the visible points: the middle of their bounding box (`bbox_center`, posekit's rule)
    or their mean (`center_of_mass`, sleap-nn's). `standardize` scales each crop to zero
    mean and unit standard deviation per channel before the network (sleap-nn's embedding
    models always do; it makes the vector blind to a crop's brightness and contrast).
    """

    embedding_dim: int = Field(128, ge=1)
    num_fc_layers: int = Field(1, ge=0)
    num_fc_units: int = Field(256, ge=1)
    pool: Literal["avg", "max", "gem"] = "avg"
    normalize: bool = True
    output_stride: int = 16
    loss_weight: float = 1.0
    loss: Literal["supcon"] = "supcon"
    temperature: float = Field(0.1, gt=0)
    anchor_part: str | None = None
    centroid_method: Literal["bbox_center", "center_of_mass"] = "bbox_center"
    standardize: bool = False
    classes: list[str] | None = None

    _v_strides = field_validator("output_stride")(lambda v, info: check_stride(info.field_name, v))


class EmbeddingConfig(ConfigBase):
    """Re-identification: an identity vector per animal crop (sleap-nn's `embedding`)."""

    embedding: EmbeddingHeadConfig = Field(default_factory=EmbeddingHeadConfig)


class HeadsConfig(OneOfConfig):
    """Which model type (head family) to build: exactly one field set."""

    single_instance: SingleInstanceConfmapsHeadConfig | None = None
    centroid: CentroidsHeadConfig | None = None
    centered_instance: CenteredInstanceConfmapsHeadConfig | None = None
    multi_instance: MultiInstanceConfig | None = None
    multi_class_bottomup: MultiClassBottomUpConfig | None = None
    multi_class_topdown: MultiClassTopDownConfig | None = None
    semantic_segmentation: SemanticSegmentationConfig | None = None
    bottomup_segmentation: BottomUpSegmentationConfig | None = None
    centered_instance_segmentation: CenteredInstanceSegmentationConfig | None = None
    embedding: EmbeddingConfig | None = None


class ModelConfig(ConfigBase):
    """Backbone + heads, and an optional model folder to initialise weights from."""

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    heads: HeadsConfig = Field(default_factory=HeadsConfig)
    base_checkpoint: str | None = None


__all__ = [
    "BackboneConfig",
    "BottomUpSegmentationConfig",
    "CenteredInstanceSegmentationConfig",
    "CenteredInstanceSegmentationHeadConfig",
    "CenterOffsetConfig",
    "CenteredInstanceConfmapsHeadConfig",
    "CentroidsHeadConfig",
    "ConvNextConfig",
    "ClassMapsHeadConfig",
    "ClassVectorsHeadConfig",
    "EmbeddingConfig",
    "EmbeddingHeadConfig",
    "HeadsConfig",
    "HourglassConfig",
    "InstanceCenterConfig",
    "LEAPConfig",
    "ModelConfig",
    "MultiClassBottomUpConfig",
    "MultiClassTopDownConfig",
    "MultiInstanceConfig",
    "MultiInstanceConfmapsHeadConfig",
    "PartAffinityFieldsHeadConfig",
    "PoseMaskHeadConfig",
    "PretrainedConfig",
    "PretrainedEncoderConfig",
    "ResNetConfig",
    "SegmentationHeadConfig",
    "SemanticSegmentationConfig",
    "SingleInstanceConfmapsHeadConfig",
    "SwinTConfig",
    "UNetConfig",
    "UpsamplingConfig",
    "CONVNEXT_PRESETS",
    "CONVNEXT_WEIGHTS",
    "PRETRAINED_ENCODERS",
    "RESNET_VERSIONS",
    "RESNET_WEIGHTS",
    "SWINT_PRESETS",
    "SWINT_WEIGHTS",
]
