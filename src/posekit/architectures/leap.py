"""LEAP CNN (Pereira et al. 2019) as SLEAP builds it.

Encoder: `down_blocks` blocks of `down_convs_per_block` 3x3 convs followed by 2x2 max
pooling, filters `filters * filters_rate ** i`. Decoder: `up_blocks` upsampling blocks
(transposed conv or bilinear) without skip connections, each followed by
`up_convs_per_block` 3x3 convs; block `j` (counting down from `up_blocks`) has
`filters * filters_rate ** j` filters. Note the decoder's first block therefore has
*more* filters than the encoder's last one when `up_blocks == down_blocks` (SLEAP's
choice, kept for parity).
"""

from __future__ import annotations

import math

from posekit.architectures.common import init_keras_
from posekit.architectures.encoder_decoder import (
    BlockSpec,
    EncoderDecoder,
    SimpleConvBlock,
    SimpleUpsamplingBlock,
)
from posekit.errors import PosekitError


class LeapCNN(EncoderDecoder):
    """LEAP CNN backbone; arguments are SLEAP's attributes plus `in_channels`."""

    kernel_size = 3

    def __init__(
        self,
        stacks: int = 1,
        filters: int = 64,
        filters_rate: float = 2,
        down_blocks: int = 3,
        down_convs_per_block: int = 3,
        up_blocks: int = 3,
        up_interpolate: bool = False,
        up_convs_per_block: int = 2,
        in_channels: int = 1,
    ) -> None:
        super().__init__(stacks=stacks)
        self.filters = int(filters)
        self.filters_rate = filters_rate
        self.down_blocks = int(down_blocks)
        self.down_convs_per_block = int(down_convs_per_block)
        self.up_blocks = int(up_blocks)
        self.up_interpolate = bool(up_interpolate)
        self.up_convs_per_block = int(up_convs_per_block)
        self.in_channels = int(in_channels)
        if self.up_blocks > self.down_blocks:
            raise PosekitError(
                f"LeapCNN: up_blocks={self.up_blocks} is more than down_blocks="
                f"{self.down_blocks}; the decoder would go below stride 1"
            )
        self.build(self.in_channels)
        init_keras_(self)

    def _filters(self, level: int) -> int:
        return int(self.filters * (self.filters_rate**level))

    def encoder_block_specs(self) -> list[BlockSpec]:  # noqa: D102
        return [
            BlockSpec(
                SimpleConvBlock,
                dict(
                    num_convs=self.down_convs_per_block,
                    filters=self._filters(i),
                    kernel_size=self.kernel_size,
                    use_bias=True,
                    batch_norm=False,
                    activation="relu",
                    pooling_stride=2,
                ),
            )
            for i in range(self.down_blocks)
        ]

    def decoder_block_specs(self) -> list[BlockSpec]:  # noqa: D102
        return [
            BlockSpec(
                SimpleUpsamplingBlock,
                dict(
                    upsampling_stride=2,
                    transposed_conv=not self.up_interpolate,
                    transposed_conv_filters=self._filters(level),
                    transposed_conv_use_bias=True,
                    transposed_conv_kernel_size=self.kernel_size,
                    transposed_conv_batch_norm=False,
                    transposed_conv_activation="relu",
                    interp_method="bilinear",
                    skip_connection=False,
                    refine_convs=self.up_convs_per_block,
                    refine_convs_filters=self._filters(level),
                    refine_convs_kernel_size=self.kernel_size,
                    refine_convs_batch_norm=False,
                    refine_convs_activation="relu",
                ),
            )
            for level in range(self.up_blocks, 0, -1)
        ]

    @classmethod
    def from_config(cls, config, in_channels: int = 1) -> LeapCNN:
        """Build from a `LEAPConfig` as SLEAP does: 3 convs down, 2 convs up per block,
        `down_blocks = log2(max_stride)`, `up_blocks = log2(max_stride / output_stride)`."""
        return cls(
            stacks=config.stacks,
            filters=config.filters,
            filters_rate=config.filters_rate,
            down_blocks=int(math.log2(config.max_stride)),
            down_convs_per_block=3,
            up_blocks=int(math.log2(config.max_stride / config.output_stride)),
            up_interpolate=config.up_interpolate,
            up_convs_per_block=2,
            in_channels=in_channels,
        )


__all__ = ["LeapCNN"]
