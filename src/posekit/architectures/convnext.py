"""ConvNeXt backbone as sleap-nn 0.3.5 builds it: torchvision's ConvNeXt blocks + a UNet decoder.

The encoder is torchvision's ConvNeXt (`CNBlock`: 7x7 depthwise conv, LayerNorm, 4x MLP
with GELU, layer scale 1e-6, residual; LayerNorm + 2x2 stride-2 conv between stages)
with sleap-nn's stem: a `stem_patch_kernel` conv with stride `stem_patch_stride` and
padding 1 (torchvision's is 4x4, stride 4, no padding), so the stages run at strides
2..16 by default instead of 4..32. Stochastic depth is off, as in sleap-nn. The layout
around it (skips, middle, decoder) is `hierarchical.HierarchicalUNet`'s.

ImageNet weights (`pre_trained_weights: ConvNeXt_Tiny_Weights`, ...) come from
torchvision's own download and cache, into the encoder only (the decoder starts from
scratch), as sleap-nn does. Parameter counts and outputs equal sleap-nn's for the same
config (`tests/architectures/test_sleapnn_backbones.py`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from torch import nn
from torchvision.models.convnext import CNBlock, LayerNorm2d

from posekit.architectures.hierarchical import (
    STAGES,
    HierarchicalUNet,
    LayerBlock,
    sleap_nn_key_map,
    sleap_nn_state_dict,
)

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import ConvNextConfig

LAYER_SCALE = 1e-6
NORM_EPS = 1e-6


class ConvNeXt(HierarchicalUNet):
    """ConvNeXt encoder with sleap-nn's middle and decoder (see the module docstring)."""

    def __init__(
        self,
        depths: list[int],
        channels: list[int],
        in_channels: int = 1,
        stem_patch_kernel: int = 4,
        **decoder,
    ) -> None:
        """`decoder`: `HierarchicalUNet`'s arguments (stem stride, decoder settings)."""
        super().__init__(**decoder)
        if len(depths) != STAGES or len(channels) != STAGES:
            raise ValueError(f"depths and channels need {STAGES} entries each")
        self.depths = [int(d) for d in depths]
        self.stage_channels = [int(c) for c in channels]
        self.stem_patch_kernel = int(stem_patch_kernel)
        self.in_channels = int(in_channels)
        self.build(in_channels)

    @classmethod
    def from_config(cls, config: ConvNextConfig, in_channels: int = 1) -> ConvNeXt:
        """Build from a `ConvNextConfig`; fetch ImageNet weights if it names them."""
        blocks = config.blocks
        net = cls(
            blocks["depths"],
            blocks["channels"],
            in_channels=in_channels,
            stem_patch_kernel=config.stem_patch_kernel,
            **cls.decoder_settings(config),
        )
        net.maybe_load_imagenet(config.pre_trained_weights)
        return net

    def stem_block(self, in_channels: int, prefix: str) -> LayerBlock:
        width = self.stage_channels[0]
        conv = nn.Conv2d(
            in_channels, width, self.stem_patch_kernel, stride=self.stem_stride, padding=1
        )
        return LayerBlock(
            [
                (f"{prefix}_patch_conv", conv),
                (f"{prefix}_patch_norm", LayerNorm2d(width, eps=NORM_EPS)),
            ],
            width,
            stride_factor=self.stem_stride,
            sleap_nn_names=["enc.features.0.0", "enc.features.0.1"],
        )

    def stage_block(self, k: int, prefix: str) -> LayerBlock:
        width = self.stage_channels[k]
        norm = partial(nn.LayerNorm, eps=NORM_EPS)
        return LayerBlock(
            [
                (f"{prefix}_block{j}", CNBlock(width, LAYER_SCALE, 0.0, norm))
                for j in range(self.depths[k])
            ],
            width,
            sleap_nn_names=[f"enc.features.{2 * k + 1}.{j}" for j in range(self.depths[k])],
        )

    def down_block(self, k: int, prefix: str) -> LayerBlock:
        width, wider = self.stage_channels[k], self.stage_channels[k + 1]
        return LayerBlock(
            [
                (f"{prefix}_norm", LayerNorm2d(width, eps=NORM_EPS)),
                (f"{prefix}_conv", nn.Conv2d(width, wider, kernel_size=2, stride=2)),
            ],
            wider,
            stride_factor=2,
            sleap_nn_names=[f"enc.features.{2 * k + 2}.0", f"enc.features.{2 * k + 2}.1"],
        )


__all__ = ["ConvNeXt", "sleap_nn_key_map", "sleap_nn_state_dict"]
