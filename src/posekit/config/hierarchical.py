"""sleap-nn's hierarchical backbones (ConvNeXt, Swin, timm encoders): their configs.

SLEAP 1.4 has no such backbones; sleap-nn 0.3.5 does, and its configs name them
`convnext`, `swint` and `pretrained` with the fields and defaults kept here, so that a
sleap-nn YAML means the same thing in posekit. The networks are in
`posekit.architectures.convnext`, `swin` and `timm_backbone`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from posekit.config.base import ConfigBase
from posekit.config.checks import _check_output_vs_max, check_stride
from posekit.errors import unknown_choice

CONVNEXT_PRESETS: dict[str, dict[str, list[int]]] = {
    "tiny": {"depths": [3, 3, 9, 3], "channels": [96, 192, 384, 768]},
    "small": {"depths": [3, 3, 27, 3], "channels": [96, 192, 384, 768]},
    "base": {"depths": [3, 3, 27, 3], "channels": [128, 256, 512, 1024]},
    "large": {"depths": [3, 3, 27, 3], "channels": [192, 384, 768, 1536]},
}
CONVNEXT_WEIGHTS = (
    "ConvNeXt_Tiny_Weights",
    "ConvNeXt_Small_Weights",
    "ConvNeXt_Base_Weights",
    "ConvNeXt_Large_Weights",
)
SWINT_PRESETS: dict[str, dict] = {
    "tiny": {"embed": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "small": {"embed": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
    "base": {"embed": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
}
SWINT_WEIGHTS = ("Swin_T_Weights", "Swin_S_Weights", "Swin_B_Weights")
# Both networks have 4 stages (3 downsamplings after the stem) and one extra pooling.
HIERARCHICAL_STAGES = 4


def _four_positive(name: str, value: object) -> list[int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != HIERARCHICAL_STAGES
        or not all(isinstance(v, int) and v >= 1 for v in value)
    ):
        raise ValueError(
            f"arch.{name}={value!r} must be {HIERARCHICAL_STAGES} positive integers, one "
            f"per stage, e.g. {CONVNEXT_PRESETS['tiny'][name]}"
        )
    return list(value)


class _HierarchicalConfig(ConfigBase):
    """Checks shared by the ConvNeXt and Swin configs (sleap-nn's decoder settings).

    The network's deepest stride is `stem_patch_stride * 16` (the stem, 3 downsamplings
    and one pooling), whatever `max_stride` says: sleap-nn ignores that field when it
    builds these backbones, and so does posekit (it is kept so configs round-trip).
    `convs_per_block` must be >= 2: with 1, sleap-nn 0.3.5 builds a middle block that
    cannot run (it expects the channels of the expansion it leaves out).
    """

    pre_trained_weights: str | None = None
    arch: dict | None = None
    stem_patch_stride: int = 2
    in_channels: int = Field(1, ge=1)
    kernel_size: int = Field(3, ge=1)
    filters_rate: float = Field(2, gt=0)
    convs_per_block: int = Field(2, ge=2)
    up_interpolate: bool = True
    output_stride: int = 1
    max_stride: int = 32

    _v_strides = field_validator("stem_patch_stride", "output_stride", "max_stride")(
        lambda v, info: check_stride(info.field_name, v)
    )

    @property
    def built_max_stride(self) -> int:
        """The deepest stride of the network this config builds."""
        return self.stem_patch_stride * 2 ** (HIERARCHICAL_STAGES - 1) * 2

    @model_validator(mode="after")
    def _strides(self) -> _HierarchicalConfig:
        _check_output_vs_max(type(self).__name__, self.output_stride, self.built_max_stride)
        return self

    @field_validator("pre_trained_weights")
    @classmethod
    def _weights(cls, v: str | None) -> str | None:
        allowed = CONVNEXT_WEIGHTS if cls.__name__ == "ConvNextConfig" else SWINT_WEIGHTS
        if v is not None and v not in allowed:
            raise ValueError(unknown_choice("pre_trained_weights", v, allowed, "weights name"))
        return v


class ConvNextConfig(_HierarchicalConfig):
    """ConvNeXt encoder (torchvision's blocks) with sleap-nn's UNet-style decoder.

    `model_type` picks a preset (tiny, small, base, large); any other name builds the
    custom `arch` (`{"depths": [4 ints], "channels": [4 ints]}`), or tiny when `arch` is
    None, as sleap-nn does. `pre_trained_weights` names torchvision's ImageNet weights
    for the encoder (then the input has 3 channels).
    """

    model_type: str = "tiny"
    stem_patch_kernel: int = Field(4, ge=1)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: dict | None) -> dict | None:
        if v is None:
            return v
        if set(v) != {"depths", "channels"}:
            raise ValueError(
                f"arch={v!r} must have exactly the keys 'depths' and 'channels', e.g. "
                f"{CONVNEXT_PRESETS['tiny']}"
            )
        return {
            "depths": _four_positive("depths", v["depths"]),
            "channels": _four_positive("channels", v["channels"]),
        }

    @property
    def blocks(self) -> dict[str, list[int]]:
        """The depths and channels this config builds (preset, else `arch`, else tiny)."""
        if self.model_type in CONVNEXT_PRESETS:
            return CONVNEXT_PRESETS[self.model_type]
        return self.arch or CONVNEXT_PRESETS["tiny"]


class SwinTConfig(_HierarchicalConfig):
    """Swin Transformer encoder (torchvision's blocks) with sleap-nn's decoder.

    Only the presets tiny, small and base build (sleap-nn's rule); `arch` is accepted
    for sleap-nn's files but has no effect. `patch_size` and `window_size` are square.
    """

    model_type: Literal["tiny", "small", "base"] = "tiny"
    patch_size: int = Field(4, ge=1)
    window_size: int = Field(7, ge=1)

    @property
    def blocks(self) -> dict:
        """Embedding width, depths and attention heads of the chosen preset."""
        return SWINT_PRESETS[self.model_type]


class PretrainedConfig(ConfigBase):
    """sleap-nn's `pretrained` backbone: an ImageNet encoder from timm under sleap-nn's decoder.

    sleap-nn loads these through Hugging Face `transformers`; posekit builds the hierarchical
    ones (ConvNeXt(V2), ResNet, SwinV2, ...) from timm by name: `model_name` is a timm
    model (`timm/convnextv2_nano.fcmae_ft_in22k_in1k` or `convnextv2_nano`), and DINOv2
    ViTs with sleap-nn's ViT neck (`layers`, `vit_neck`, `neck_channels`, `token_stride`)
    from a Hugging Face id (`facebook/dinov2-small`, or one whose config.json is in a
    folder or the Hugging Face cache), as are Hugging Face ConvNeXt, ConvNeXtV2, ResNet
    and Swinv2 ids (`facebook/convnextv2-nano-22k-224`, `microsoft/resnet-50`: sleap-nn's
    AutoBackbone networks, whose checkpoints load). `mode: encoder` (no decoder: the
    encoder's last map, for pooled heads) is built for the Hugging Face and timm models; other
    Hugging Face ids are not; `detail_stem` (sleap-nn's detail stream beside a plain ViT) is
    built for DINOv2 and timm ViTs;
    `gradient_checkpointing`, `encoder_lr_scale`, `layer_decay` and `revision` are kept
    for sleap-nn's files and not acted on.
    """

    source: str = "hf"
    model_name: str = "facebook/convnextv2-nano-22k-224"
    weights: bool = True
    mode: Literal["auto", "decoder", "encoder"] = "auto"
    freeze: bool = False
    revision: str | None = None
    normalize: bool = True
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    out_indices: list[int] | None = None
    in_channels: int = Field(3, ge=1)
    filters_rate: float = Field(2.0, gt=0)
    convs_per_block: int = Field(2, ge=1)
    kernel_size: int = Field(3, ge=1)
    up_interpolate: bool = True
    output_stride: int = 2
    max_stride: int = 32
    layers: list[int] | None = None
    vit_neck: str = "dpt"
    neck_channels: list[int] | None = None
    token_stride: int | None = None
    gradient_checkpointing: bool = False
    encoder_lr_scale: float = 1.0
    layer_decay: float | None = None
    detail_stem: bool = False
    detail_channels: list[int] | None = None

    _v_strides = field_validator("output_stride", "max_stride")(
        lambda v, info: check_stride(info.field_name, v)
    )

    @property
    def timm_name(self) -> str:
        """The timm model name (without the `timm/` hub prefix)."""
        return self.model_name.removeprefix("timm/")
