"""UNet, block for block as SLEAP builds it.

Structure (all layer names as in SLEAP):

- optional stem: `stem_blocks` conv blocks (kernel `stem_kernel_size`), each after the
  first pooling *before* its convolutions, then a pooling-only block;
- encoder: `down_blocks` conv blocks (pool before convs, except the first), a
  pooling-only block (`stack0_enc{n}_last_pool`), then an optional middle block
  (`_middle_expand` with `convs_per_block - 1` convs and `_middle_contract` with one);
- decoder: `up_blocks` upsampling blocks (transposed conv or bilinear), each
  concatenating `[skip, upsampled]` and refining with `convs_per_block` convs.

Skips come from the output of each encoder block's convolutions (before the next
pooling), so there is one at stride 1. With a stem, the skip at the stem's stride is the
stem's pooled output (SLEAP looks at the stem before the encoder).

Filter counts are `int(filters * filters_rate ** level)`, where the level counts stem
blocks too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from posekit.architectures.common import SameMaxPool2d, init_keras_
from posekit.architectures.encoder_decoder import (
    BlockSpec,
    EncoderBlock,
    EncoderDecoder,
    SimpleConvBlock,
    SimpleUpsamplingBlock,
)
from posekit.errors import PosekitError


class PoolingBlock(EncoderBlock):
    """Max pooling only (`{prefix}_last_pool`).

    UNet blocks pool *before* their convolutions so that a skip can be taken from the
    convolutions' output; the last level's pooling therefore needs a block of its own.
    """

    def __init__(
        self,
        in_channels: int,
        prefix: str = "conv_block",
        pool: bool = True,
        pooling_stride: int = 2,
    ) -> None:
        super().__init__(pool=pool, pooling_stride=pooling_stride)
        self.in_channels = self.out_channels = int(in_channels)
        self.layers = nn.Sequential()
        if self.pool:
            self.layers.add_module(f"{prefix}_last_pool", SameMaxPool2d(2, self.pooling_stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


class UNet(EncoderDecoder):
    """UNet encoder-decoder (Ronneberger et al. 2015) with SLEAP's options.

    Args are SLEAP's `UNet` attributes with its defaults, plus `in_channels`. The
    default (4 down/up blocks, 64 filters) has about 34.5M parameters.
    """

    def __init__(
        self,
        stacks: int = 1,
        filters: int = 64,
        filters_rate: float = 2,
        kernel_size: int = 3,
        stem_kernel_size: int = 3,
        convs_per_block: int = 2,
        stem_blocks: int = 0,
        down_blocks: int = 4,
        middle_block: bool = True,
        up_blocks: int = 4,
        up_interpolate: bool = False,
        block_contraction: bool = False,
        in_channels: int = 1,
    ) -> None:
        super().__init__(stacks=stacks)
        self.filters = int(filters)
        self.filters_rate = filters_rate
        self.kernel_size = int(kernel_size)
        self.stem_kernel_size = int(stem_kernel_size)
        self.convs_per_block = int(convs_per_block)
        self.stem_blocks = int(stem_blocks)
        self.down_blocks = int(down_blocks)
        self.middle_block = bool(middle_block)
        self.up_blocks = int(up_blocks)
        self.up_interpolate = bool(up_interpolate)
        self.block_contraction = bool(block_contraction)
        self.in_channels = int(in_channels)
        if self.stem_blocks < 0 or self.down_blocks < 0 or self.up_blocks < 0:
            raise PosekitError(
                f"UNet: stem_blocks={stem_blocks}, down_blocks={down_blocks} and "
                f"up_blocks={up_blocks} must all be >= 0"
            )
        levels = self.stem_blocks + self.down_blocks
        if self.up_blocks > levels:
            raise PosekitError(
                f"UNet: up_blocks={self.up_blocks} is more than the {levels} pooling steps "
                f"(stem_blocks + down_blocks); the decoder would go below stride 1. Use "
                f"up_blocks <= {levels}."
            )
        self.build(self.in_channels)
        init_keras_(self)

    def _level_filters(self, level: int) -> int:
        return int(self.filters * (self.filters_rate**level))

    def _conv_block(self, pool: bool, filters: int, kernel: int, **kw) -> BlockSpec:
        return BlockSpec(
            SimpleConvBlock,
            dict(
                pool=pool,
                pool_before_convs=kw.pop("pool_before_convs", True),
                pooling_stride=2,
                num_convs=kw.pop("num_convs", self.convs_per_block),
                filters=filters,
                kernel_size=kernel,
                use_bias=True,
                batch_norm=False,
                activation="relu",
                **kw,
            ),
        )

    def stem_block_specs(self) -> list[BlockSpec] | None:  # noqa: D102
        if self.stem_blocks == 0:
            return None
        blocks = [
            self._conv_block(i > 0, self._level_filters(i), self.stem_kernel_size)
            for i in range(self.stem_blocks)
        ]
        blocks.append(BlockSpec(PoolingBlock, dict(pool=True, pooling_stride=2)))
        return blocks

    def encoder_block_specs(self) -> list[BlockSpec]:  # noqa: D102
        blocks = [
            self._conv_block(i > 0, self._level_filters(i + self.stem_blocks), self.kernel_size)
            for i in range(self.down_blocks)
        ]
        blocks.append(BlockSpec(PoolingBlock, dict(pool=True, pooling_stride=2)))
        if self.middle_block:
            top = self.down_blocks + self.stem_blocks
            if self.convs_per_block > 1:
                blocks.append(
                    self._conv_block(
                        False,
                        self._level_filters(top),
                        self.kernel_size,
                        pool_before_convs=False,
                        num_convs=self.convs_per_block - 1,
                        block_prefix="_middle_expand",
                    )
                )
            contract = self._level_filters(top - 1 if self.block_contraction else top)
            blocks.append(
                self._conv_block(
                    False,
                    contract,
                    self.kernel_size,
                    pool_before_convs=False,
                    num_convs=1,
                    block_prefix="_middle_contract",
                )
            )
        return blocks

    def decoder_block_specs(self) -> list[BlockSpec]:  # noqa: D102
        blocks = []
        top = self.down_blocks + self.stem_blocks
        for i in range(self.up_blocks):
            filters_in = self._level_filters(top - 1 - i)
            filters_out = self._level_filters(top - 2 - i) if self.block_contraction else filters_in
            blocks.append(
                BlockSpec(
                    SimpleUpsamplingBlock,
                    dict(
                        upsampling_stride=2,
                        transposed_conv=not self.up_interpolate,
                        transposed_conv_filters=filters_in,
                        transposed_conv_kernel_size=self.kernel_size,
                        transposed_conv_batch_norm=False,
                        interp_method="bilinear",
                        skip_connection=True,
                        skip_add=False,
                        refine_convs=self.convs_per_block,
                        refine_convs_first_filters=filters_in,
                        refine_convs_filters=filters_out,
                        refine_convs_kernel_size=self.kernel_size,
                        refine_convs_batch_norm=False,
                    ),
                )
            )
        return blocks

    @classmethod
    def from_config(cls, config, in_channels: int = 1) -> UNet:
        """Build from a `UNetConfig` exactly as SLEAP does.

        Kernel 3, stem kernel 7, 2 convs per block; `stem_blocks = log2(stem_stride)`,
        `down_blocks = log2(max_stride) - stem_blocks`,
        `up_blocks = log2(max_stride / output_stride)`.
        """
        stem_blocks = 0 if config.stem_stride is None else int(math.log2(config.stem_stride))
        down_blocks = int(math.log2(config.max_stride)) - stem_blocks
        up_blocks = int(math.log2(config.max_stride / config.output_stride))
        return cls(
            stacks=config.stacks,
            filters=config.filters,
            filters_rate=config.filters_rate,
            kernel_size=3,
            stem_kernel_size=7,
            convs_per_block=2,
            stem_blocks=stem_blocks,
            down_blocks=down_blocks,
            middle_block=config.middle_block,
            up_blocks=up_blocks,
            up_interpolate=config.up_interpolate,
            block_contraction=False,
            in_channels=in_channels,
        )


__all__ = ["PoolingBlock", "UNet"]
