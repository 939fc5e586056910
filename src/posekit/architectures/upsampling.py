"""SLEAP's `UpsamplingStack`: the generic decoder put on top of ResNet encoders.

Each step doubles (or multiplies by `upsampling_stride`) the resolution with a strided
transposed convolution or bilinear interpolation, optionally fuses the encoder feature
found at the new stride (concatenation or addition), and refines with 3x3 convolutions.
The filter counts of step `i` are `int(filters * filters_rate ** i)`, as in SLEAP.

A step is the generic `SimpleUpsamplingBlock` of `encoder_decoder` configured with the
stack's attributes, so the two decoders cannot drift apart numerically. Only the layer
names differ: SLEAP's `UpsamplingStack` names its Keras layers
`upsample_s16_to_s8_trans_conv`, `..._bn`, `..._skip_conv1x1`, `..._refine0_conv`,
`..._refine0_bn` (the encoder-decoder blocks say `..._trans_conv_bn` and
`..._refine_conv0`), and posekit keeps SLEAP's names so that a SLEAP `.h5` loads by name.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import nn

from posekit.architectures.encoder_decoder import SimpleUpsamplingBlock
from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import UpsamplingConfig


def _rename_children(seq: nn.Sequential, names: dict[str, str]) -> nn.Sequential:
    """The same modules, in the same order, under new names (unknown names are kept)."""
    return nn.Sequential(
        OrderedDict((names.get(name, name), module) for name, module in seq.named_children())
    )


class _StackStep(SimpleUpsamplingBlock):
    """One step of an `UpsamplingStack`: a `SimpleUpsamplingBlock` under SLEAP's stack names.

    Renaming happens after the block is built and touches only the keys of its
    `nn.Sequential`s, so the computation is exactly the encoder-decoder block's.
    """

    def __init__(self, in_channels: int, skip_channels: int | None, **kwargs) -> None:
        super().__init__(in_channels, skip_channels, **kwargs)
        p = self.prefix
        names = {
            f"{p}_trans_conv_bn": f"{p}_bn",
            f"{p}_trans_conv_act_relu": f"{p}_relu",
            f"{p}_interp_bilinear": f"{p}_interp",
        }
        for i in range(self.refine_convs):
            names[f"{p}_refine_conv{i}"] = f"{p}_refine{i}_conv"
            names[f"{p}_refine_conv{i}_bn"] = f"{p}_refine{i}_bn"
            names[f"{p}_refine_conv{i}_act_relu"] = f"{p}_refine{i}_relu"
        self.upsample = _rename_children(self.upsample, names)
        self.refine = _rename_children(self.refine, names)


def _num_steps(current_stride: int, output_stride: int, upsampling_stride: int) -> int:
    """Upsampling steps from `current_stride` to `output_stride`, or a clear error.

    SLEAP computes `int(log(current / output) / log(upsampling_stride))`, which silently
    stops short of `output_stride` when the ratio is not a power of `upsampling_stride`
    (e.g. 32 -> 4 in steps of 4 ends at stride 8). posekit refuses that configuration.
    """
    if upsampling_stride < 2:
        raise PosekitError(
            f"UpsamplingStack: upsampling_stride={upsampling_stride} must be >= 2 "
            f"(block_stride in UpsamplingConfig)"
        )
    if output_stride > current_stride:
        raise PosekitError(
            f"UpsamplingStack: output_stride={output_stride} is larger than the input "
            f"stride {current_stride}; an upsampling stack can only reduce the stride"
        )
    steps, stride = 0, current_stride
    while stride > output_stride and stride % upsampling_stride == 0:
        stride //= upsampling_stride
        steps += 1
    if stride != output_stride:
        raise PosekitError(
            f"UpsamplingStack: cannot go from stride {current_stride} to output_stride="
            f"{output_stride} in steps of upsampling_stride={upsampling_stride}; choose an "
            f"output_stride equal to {current_stride} divided by a power of "
            f"{upsampling_stride}, or block_stride=2"
        )
    return steps


class UpsamplingStack(nn.Module):
    """Transposed-conv or bilinear upsampling steps with skips and refinement convs.

    Arguments are SLEAP's (`sleap.nn.architectures.upsampling.UpsamplingStack`) plus what
    a PyTorch module must know when it is built, which Keras read off its input tensors:

    - `in_channels`: channels of the low-resolution input;
    - `current_stride`: the input's stride (SLEAP's `make_stack(x, current_stride)`);
    - `skip_channels`: `{stride: channels}` of the skip sources `forward` will receive
      (SLEAP's `skip_sources`, already reduced to the first source per stride).

    The number of steps is set by `current_stride / output_stride` (a power of
    `upsampling_stride`). Step `i` goes from stride `s` to `s // upsampling_stride` and its
    layers are named `upsample_s{s}_to_s{s//u}_*` like SLEAP's.

    `forward(x, skip_sources)` returns `(output, {stride: tensor})`; the dict holds the
    input (at `current_stride`) and the output of every step, the last one being the
    output. `feature_channels` gives the channels of those entries.
    """

    def __init__(
        self,
        output_stride: int,
        upsampling_stride: int = 2,
        transposed_conv: bool = True,
        transposed_conv_filters: int = 64,
        transposed_conv_filters_rate: float = 1,
        transposed_conv_kernel_size: int = 4,
        transposed_conv_batchnorm: bool = True,
        make_skip_connection: bool = True,
        skip_add: bool = False,
        refine_convs: int = 2,
        refine_convs_filters: int = 64,
        refine_convs_filters_rate: float = 1,
        refine_convs_batchnorm: bool = True,
        *,
        in_channels: int,
        current_stride: int,
        skip_channels: dict[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.output_stride = int(output_stride)
        self.upsampling_stride = int(upsampling_stride)
        self.transposed_conv = bool(transposed_conv)
        self.transposed_conv_filters = int(transposed_conv_filters)
        self.transposed_conv_filters_rate = transposed_conv_filters_rate
        self.transposed_conv_kernel_size = int(transposed_conv_kernel_size)
        self.transposed_conv_batchnorm = bool(transposed_conv_batchnorm)
        self.make_skip_connection = bool(make_skip_connection)
        self.skip_add = bool(skip_add)
        self.refine_convs = int(refine_convs)
        self.refine_convs_filters = int(refine_convs_filters)
        self.refine_convs_filters_rate = refine_convs_filters_rate
        self.refine_convs_batchnorm = bool(refine_convs_batchnorm)
        self.in_channels = int(in_channels)
        self.current_stride = int(current_stride)
        self.skip_channels = {int(k): int(v) for k, v in (skip_channels or {}).items()}

        steps = _num_steps(self.current_stride, self.output_stride, self.upsampling_stride)
        stride, channels = self.current_stride, self.in_channels
        self._feature_channels = {stride: channels}
        blocks = []
        for i in range(steps):
            new_stride = stride // self.upsampling_stride
            skip = self.skip_channels.get(new_stride) if self.make_skip_connection else None
            block = _StackStep(
                channels,
                skip,
                prefix="upsample",
                current_stride=stride,
                upsampling_stride=self.upsampling_stride,
                transposed_conv=self.transposed_conv,
                transposed_conv_filters=int(
                    self.transposed_conv_filters * self.transposed_conv_filters_rate**i
                ),
                transposed_conv_kernel_size=self.transposed_conv_kernel_size,
                transposed_conv_batch_norm=self.transposed_conv_batchnorm,
                interp_method="bilinear",
                skip_connection=self.make_skip_connection,
                skip_add=self.skip_add,
                refine_convs=self.refine_convs,
                refine_convs_filters=int(
                    self.refine_convs_filters * self.refine_convs_filters_rate**i
                ),
                refine_convs_kernel_size=3,
                refine_convs_batch_norm=self.refine_convs_batchnorm,
            )
            blocks.append(block)
            stride, channels = new_stride, block.out_channels
            self._feature_channels[stride] = channels
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = channels

    @classmethod
    def from_config(
        cls,
        config: UpsamplingConfig,
        output_stride: int,
        *,
        in_channels: int,
        current_stride: int,
        skip_channels: dict[int, int] | None = None,
    ) -> UpsamplingStack:
        """Build from an `UpsamplingConfig`, mapping its fields as SLEAP does.

        `filters`/`filters_rate` feed both the transposed convs and the refinement convs,
        `batch_norm` both BatchNorm switches, `skip_connections` (None / "add" /
        "concatenate") the skip switches and `block_stride` the upsampling stride.
        """
        return cls(
            output_stride=output_stride,
            upsampling_stride=config.block_stride,
            transposed_conv=config.method == "transposed_conv",
            transposed_conv_filters=config.filters,
            transposed_conv_filters_rate=config.filters_rate,
            transposed_conv_kernel_size=config.transposed_conv_kernel_size,
            transposed_conv_batchnorm=config.batch_norm,
            make_skip_connection=config.skip_connections is not None,
            skip_add=config.skip_connections == "add",
            refine_convs=config.refine_convs,
            refine_convs_filters=config.filters,
            refine_convs_filters_rate=config.filters_rate,
            refine_convs_batchnorm=config.batch_norm,
            in_channels=in_channels,
            current_stride=current_stride,
            skip_channels=skip_channels,
        )

    @property
    def num_blocks(self) -> int:
        """Number of upsampling steps."""
        return len(self.blocks)

    @property
    def feature_channels(self) -> dict[int, int]:
        """`{stride: channels}` of the input and of each step's output."""
        return dict(self._feature_channels)

    def forward(
        self, x: torch.Tensor, skip_sources: dict[int, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Upsample `x` (at `current_stride`); skips are looked up by stride."""
        skip_sources = skip_sources or {}
        stride = self.current_stride
        features = {stride: x}
        for block in self.blocks:
            stride //= block.upsampling_stride
            skip = None
            if block.uses_skip:
                skip = skip_sources.get(stride)
                if skip is None:
                    raise PosekitError(
                        f"UpsamplingStack: step {block.prefix} was built with a "
                        f"{block.skip_channels}-channel skip source at stride {stride}, but "
                        f"forward got none at that stride (got strides "
                        f"{sorted(skip_sources)})"
                    )
            x = block(x, skip)
            features[stride] = x
        return x, features

    def extra_repr(self) -> str:
        return (
            f"stride {self.current_stride} -> {self.output_stride} in {self.num_blocks} "
            f"step(s) of {self.upsampling_stride}, "
            f"{'transposed conv' if self.transposed_conv else 'bilinear'}"
        )


__all__ = ["UpsamplingStack"]
