"""Swin Transformer backbone as sleap-nn 0.3.5 builds it: torchvision's Swin blocks + a UNet decoder.

The encoder is torchvision's Swin-T/S/B (`SwinTransformerBlock`: windowed multi-head
attention with relative position bias, shifted by half a window in every second block,
and a 4x MLP; `PatchMerging` between stages; LayerNorm eps 1e-5; stochastic depth rising
linearly to 0.1, active only in training) with sleap-nn's stem: a `patch_size` conv with
stride `stem_patch_stride` and padding 1, then LayerNorm. The last stage ends in a
LayerNorm. Swin works channels-last; each block here takes and returns NCHW (the skips
and the decoder are convolutional), which permutes more often than sleap-nn but computes
the same numbers. Layout around it: `hierarchical.HierarchicalUNet`.

ImageNet weights (`pre_trained_weights: Swin_T_Weights`, ...) come from torchvision's
own download and cache, into the encoder only.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from torch import nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torchvision.ops.misc import Permute

from posekit.architectures.hierarchical import (
    STAGES,
    HierarchicalUNet,
    LayerBlock,
    sleap_nn_key_map,
    sleap_nn_state_dict,
)

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import SwinTConfig

NORM_EPS = 1e-5
MLP_RATIO = 4.0
STOCHASTIC_DEPTH = 0.1


def _nhwc(prefix: str) -> tuple[str, nn.Module]:
    return f"{prefix}_to_nhwc", Permute([0, 2, 3, 1])


def _nchw(prefix: str) -> tuple[str, nn.Module]:
    return f"{prefix}_to_nchw", Permute([0, 3, 1, 2])


class SwinT(HierarchicalUNet):
    """Swin Transformer encoder with sleap-nn's middle and decoder (see the module docstring)."""

    def __init__(
        self,
        embed: int,
        depths: list[int],
        num_heads: list[int],
        in_channels: int = 1,
        patch_size: int = 4,
        window_size: int = 7,
        **decoder,
    ) -> None:
        """`decoder`: `HierarchicalUNet`'s arguments (stem stride, decoder settings)."""
        super().__init__(**decoder)
        if len(depths) != STAGES or len(num_heads) != STAGES:
            raise ValueError(f"depths and num_heads need {STAGES} entries each")
        self.depths = [int(d) for d in depths]
        self.num_heads = [int(h) for h in num_heads]
        self.stage_channels = [int(embed) * 2**k for k in range(STAGES)]
        self.patch_size = int(patch_size)
        self.window_size = int(window_size)
        self.in_channels = int(in_channels)
        self.build(in_channels)

    @classmethod
    def from_config(cls, config: SwinTConfig, in_channels: int = 1) -> SwinT:
        """Build from a `SwinTConfig`; fetch ImageNet weights if it names them."""
        blocks = config.blocks
        net = cls(
            blocks["embed"],
            blocks["depths"],
            blocks["num_heads"],
            in_channels=in_channels,
            patch_size=config.patch_size,
            window_size=config.window_size,
            **cls.decoder_settings(config),
        )
        net.maybe_load_imagenet(config.pre_trained_weights)
        return net

    def stem_block(self, in_channels: int, prefix: str) -> LayerBlock:
        width = self.stage_channels[0]
        conv = nn.Conv2d(in_channels, width, self.patch_size, stride=self.stem_stride, padding=1)
        return LayerBlock(
            [
                (f"{prefix}_patch_conv", conv),
                _nhwc(prefix),
                (f"{prefix}_patch_norm", nn.LayerNorm(width, eps=NORM_EPS)),
                _nchw(prefix),
            ],
            width,
            stride_factor=self.stem_stride,
            sleap_nn_names=["enc.features.0.0", None, "enc.features.0.2", None],
        )

    def stage_block(self, k: int, prefix: str) -> LayerBlock:
        width = self.stage_channels[k]
        total = sum(self.depths)
        first = sum(self.depths[:k])
        window = [self.window_size, self.window_size]
        layers = [_nhwc(prefix)]
        names: list[str | None] = [None]
        for j in range(self.depths[k]):
            block = SwinTransformerBlock(
                width,
                self.num_heads[k],
                window_size=window,
                shift_size=[0 if j % 2 == 0 else w // 2 for w in window],
                mlp_ratio=MLP_RATIO,
                stochastic_depth_prob=STOCHASTIC_DEPTH * (first + j) / (total - 1),
                norm_layer=partial(nn.LayerNorm, eps=NORM_EPS),
            )
            layers.append((f"{prefix}_block{j}", block))
            names.append(f"enc.features.{2 * k + 1}.{j}")
        if k == STAGES - 1:
            layers.append((f"{prefix}_norm", nn.LayerNorm(width, eps=NORM_EPS)))
            names.append("enc.norm")
        layers.append(_nchw(prefix))
        names.append(None)
        return LayerBlock(layers, width, sleap_nn_names=names)

    def down_block(self, k: int, prefix: str) -> LayerBlock:
        width = self.stage_channels[k]
        merge = PatchMerging(width, partial(nn.LayerNorm, eps=NORM_EPS))
        return LayerBlock(
            [_nhwc(prefix), (f"{prefix}_merge", merge), _nchw(prefix)],
            2 * width,
            stride_factor=2,
            sleap_nn_names=[None, f"enc.features.{2 * k + 2}", None],
        )


__all__ = ["SwinT", "sleap_nn_key_map", "sleap_nn_state_dict"]
