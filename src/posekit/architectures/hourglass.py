"""Stacked hourglass (Associative Embedding variant) as SLEAP builds it.

- stem (run once): 7x7 conv (stride 2 when `stem_stride` is 4), 3x3 conv with twice the
  filters, 2x2 max pool (stride 2 unless `stem_stride` is 1), 3x3 conv to `filters`;
- per stack, encoder: `down_blocks` x (max pool, 3x3 conv) with
  `filters + i * filter_increase` filters;
- per stack, decoder: `up_blocks` x (3x3 conv -> upsample) + (3x3 conv of the skip),
  added; block `i` has `filters + (down_blocks - 1 - i) * filter_increase` filters.

Every conv is conv -> ReLU -> BatchNorm (not conv -> BN -> ReLU), as in SLEAP. Skips come
from the stem output and each encoder block output, matched by stride.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from posekit.architectures.common import (
    SameMaxPool2d,
    batch_norm,
    init_keras_,
    same_conv2d,
)
from posekit.architectures.encoder_decoder import (
    BlockSpec,
    DecoderBlock,
    EncoderBlock,
    EncoderDecoder,
    Interpolate,
)
from posekit.errors import PosekitError


def conv(
    in_channels: int,
    filters: int,
    kernel_size: int = 3,
    stride: int = 1,
    prefix: str = "conv",
) -> nn.Sequential:
    """Conv ("same") -> ReLU -> BatchNorm, named `{prefix}_conv`, `{prefix}_relu`, `{prefix}_bn`.

    In Keras the ReLU is the conv layer's own activation, so it has no weights or name of
    its own; here it is a separate module.
    """
    block = nn.Sequential()
    block.add_module(f"{prefix}_conv", same_conv2d(in_channels, filters, kernel_size, stride))
    block.add_module(f"{prefix}_relu", nn.ReLU())
    block.add_module(f"{prefix}_bn", batch_norm(filters))
    return block


class StemBlock(EncoderBlock):
    """Stem of the hourglass (not repeated across stacks).

    `pooling_stride` 4: the 7x7 conv has stride 2 and the pool stride 2; 2: only the pool
    has stride 2; 1: nothing downsamples (the pool then has stride 1, as in SLEAP).
    """

    def __init__(
        self,
        in_channels: int,
        prefix: str = "stem",
        pool: bool = True,
        pooling_stride: int = 4,
        filters: int = 128,
        output_filters: int = 256,
    ) -> None:
        super().__init__(pool=pool, pooling_stride=pooling_stride)
        if self.pooling_stride not in (1, 2, 4):
            raise PosekitError(
                f"StemBlock: pooling_stride={pooling_stride} is not supported; use 1, 2 or 4"
            )
        self.in_channels = int(in_channels)
        self.filters = int(filters)
        self.output_filters = int(output_filters)
        first_stride = 2 if (self.pool and self.pooling_stride == 4) else 1
        pool_stride = 2 if (self.pool and self.pooling_stride > 1) else 1
        self.layers = nn.Sequential()
        self.layers.add_module(
            f"{prefix}_conv7x7",
            conv(self.in_channels, self.filters, 7, first_stride, prefix=f"{prefix}_conv7x7"),
        )
        self.layers.add_module(
            f"{prefix}_conv3x3",
            conv(self.filters, 2 * self.filters, prefix=f"{prefix}_conv3x3"),
        )
        self.layers.add_module(f"{prefix}_pool", SameMaxPool2d(2, pool_stride))
        self.layers.add_module(
            f"{prefix}_conv3x3_out",
            conv(2 * self.filters, self.output_filters, prefix=f"{prefix}_conv3x3_out"),
        )
        self.out_channels = self.output_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


class DownsamplingBlock(EncoderBlock):
    """Max pool (stride 2) -> conv block: the hourglass' encoder step."""

    def __init__(
        self,
        in_channels: int,
        prefix: str = "downsample",
        pool: bool = True,
        pooling_stride: int = 2,
        filters: int = 256,
    ) -> None:
        super().__init__(pool=pool, pooling_stride=pooling_stride)
        self.in_channels = int(in_channels)
        self.filters = int(filters)
        self.layers = nn.Sequential()
        if self.pool:
            self.layers.add_module(f"{prefix}_pool", SameMaxPool2d(2, self.pooling_stride))
        self.layers.add_module(
            f"{prefix}_conv", conv(self.in_channels, self.filters, prefix=f"{prefix}_conv")
        )
        self.out_channels = self.filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


class UpsamplingBlock(DecoderBlock):
    """`upsample(conv(x)) + conv(skip)`: the hourglass' decoder step.

    The skip source is required (the hourglass is symmetric); `current_stride` is
    accepted for the common decoder-block signature but, as in SLEAP, not used in names.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int | None = None,
        prefix: str = "upsample",
        current_stride: int | None = None,
        upsampling_stride: int = 2,
        filters: int = 256,
        interp_method: str = "bilinear",
    ) -> None:
        super().__init__(upsampling_stride=upsampling_stride)
        if skip_channels is None:
            where = "" if current_stride is None else f" at stride {current_stride // 2}"
            raise PosekitError(
                f"{prefix}: the hourglass upsampling block needs a skip source{where} but "
                f"none exists; use up_blocks <= down_blocks + log2(stem_stride)"
            )
        self.in_channels = int(in_channels)
        self.skip_channels = int(skip_channels)
        self.filters = int(filters)
        self.interp_method = interp_method
        self.uses_skip = True
        self.main = nn.Sequential()
        self.main.add_module(
            f"{prefix}_conv", conv(self.in_channels, self.filters, prefix=f"{prefix}_conv")
        )
        self.main.add_module(
            f"{prefix}_{interp_method}", Interpolate(self.upsampling_stride, interp_method)
        )
        self.skip = conv(self.skip_channels, self.filters, prefix=f"{prefix}_skip")
        self.out_channels = self.filters

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        if skip is None:
            raise ValueError("hourglass UpsamplingBlock.forward needs the skip tensor")
        return self.main(x) + self.skip(skip)


class Hourglass(EncoderDecoder):
    """Stacked hourglass backbone; arguments are SLEAP's attributes plus `in_channels`."""

    def __init__(
        self,
        down_blocks: int = 4,
        up_blocks: int = 4,
        stem_filters: int = 128,
        stem_stride: int = 4,
        filters: int = 256,
        filter_increase: int = 128,
        interp_method: str = "nearest",
        stacks: int = 3,
        in_channels: int = 1,
    ) -> None:
        super().__init__(stacks=stacks)
        self.down_blocks = int(down_blocks)
        self.up_blocks = int(up_blocks)
        self.stem_filters = int(stem_filters)
        self.stem_stride = int(stem_stride)
        self.filters = int(filters)
        self.filter_increase = int(filter_increase)
        self.interp_method = interp_method
        self.in_channels = int(in_channels)
        self.build(self.in_channels)
        init_keras_(self)

    def stem_block_specs(self) -> list[BlockSpec]:  # noqa: D102
        return [
            BlockSpec(
                StemBlock,
                dict(
                    filters=self.stem_filters,
                    output_filters=self.filters,
                    pool=True,
                    pooling_stride=self.stem_stride,
                ),
            )
        ]

    def encoder_block_specs(self) -> list[BlockSpec]:  # noqa: D102
        return [
            BlockSpec(DownsamplingBlock, dict(filters=self.filters + i * self.filter_increase))
            for i in range(self.down_blocks)
        ]

    def decoder_block_specs(self) -> list[BlockSpec]:  # noqa: D102
        return [
            BlockSpec(
                UpsamplingBlock,
                dict(
                    filters=self.filters + (self.down_blocks - i - 1) * self.filter_increase,
                    interp_method=self.interp_method,
                ),
            )
            for i in range(self.up_blocks)
        ]

    @classmethod
    def from_config(cls, config, in_channels: int = 1) -> Hourglass:
        """Build from a `HourglassConfig` as SLEAP does (always nearest interpolation).

        `down_blocks = log2(max_stride) - log2(stem_stride)`,
        `up_blocks = log2(max_stride / output_stride)`.
        """
        stem_blocks = int(math.log2(config.stem_stride))
        return cls(
            down_blocks=int(math.log2(config.max_stride)) - stem_blocks,
            up_blocks=int(math.log2(config.max_stride / config.output_stride)),
            stem_filters=config.stem_filters,
            stem_stride=config.stem_stride,
            filters=config.filters,
            filter_increase=config.filter_increase,
            interp_method="nearest",
            stacks=config.stacks,
            in_channels=in_channels,
        )


__all__ = ["DownsamplingBlock", "Hourglass", "StemBlock", "UpsamplingBlock", "conv"]
