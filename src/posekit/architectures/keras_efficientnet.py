"""EfficientNet-B0..B7 as the Keras `efficientnet` package (1.0.0) builds it for SLEAP.

Graph facts (checked layer by layer against SLEAP's EfficientNet-B0 backbone in
`shared/reference/keras_numeric_pretrained`):

- stem: 3x3 stride-2 conv ("same", TF padding), BN, swish;
- MBConv blocks `block{stage}{a,b,...}_`: optional 1x1 `expand_conv`/`expand_bn`/swish
  (expand ratio != 1), `dwconv` depthwise kxk ("same"), `bn`, swish, squeeze-excitation
  (`se_reduce` 1x1 conv with bias + swish, `se_expand` 1x1 conv with bias + sigmoid, on the
  global average), `project_conv`/`project_bn` (linear), and a residual add (after a
  drop-connect that is the identity at inference) when the stride is 1 and the channels
  are unchanged;
- top: 1x1 `top_conv`, `top_bn`, swish;
- BatchNorm epsilon 1e-3, momentum 0.99.

B1..B7 scale widths (rounded to multiples of 8) and repeats (`ceil`) by the published
coefficients. segmentation_models taps the expansion activations of blocks 6a, 4a, 3a and
2a for the decoder, so those feed the skips (1952 = 1280 + 672 input channels of
`decoder_stage0a_conv` in B0).

ImageNet weights: smp's `efficientnet-b{i}` encoder (Luke Melas-Kyriazi's port of the
TensorFlow checkpoints, TF "same" padding like Keras) has the same tensors in the same
order; `smp_pairs` names them for `copy_mapped`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.keras_encoders import (
    KerasConv2d,
    KerasEncoder,
    init_keras_conv,
    keras_bn,
)


@dataclass(frozen=True)
class _Stage:
    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand: int
    stride: int


# EfficientNet-B0's stages (efficientnet's DEFAULT_BLOCKS_ARGS; SE ratio 0.25 everywhere).
_B0_STAGES = (
    _Stage(3, 1, 32, 16, 1, 1),
    _Stage(3, 2, 16, 24, 6, 2),
    _Stage(5, 2, 24, 40, 6, 2),
    _Stage(3, 3, 40, 80, 6, 2),
    _Stage(5, 3, 80, 112, 6, 1),
    _Stage(5, 4, 112, 192, 6, 2),
    _Stage(3, 1, 192, 320, 6, 1),
)
_SE_RATIO = 0.25

# (width, depth) coefficients of B0..B7.
COEFFICIENTS = {
    0: (1.0, 1.0),
    1: (1.0, 1.1),
    2: (1.1, 1.2),
    3: (1.2, 1.4),
    4: (1.4, 1.8),
    5: (1.6, 2.2),
    6: (1.8, 2.6),
    7: (2.0, 3.1),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by `width`, to a multiple of 8, never more than 10% below."""
    filters = filters * width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


class MBConv(nn.Module):
    """One mobile inverted-bottleneck block; its layers carry the Keras names."""

    def __init__(
        self, prefix: str, filters_in: int, filters_out: int, expand: int, kernel: int, stride: int
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.expands = expand != 1
        filters = filters_in * expand
        if self.expands:
            self.add_module(f"{prefix}expand_conv", KerasConv2d(filters_in, filters, 1))
            self.add_module(f"{prefix}expand_bn", keras_bn(filters))
        self.add_module(
            f"{prefix}dwconv", KerasConv2d(filters, filters, kernel, stride, groups=filters)
        )
        self.add_module(f"{prefix}bn", keras_bn(filters))
        reduced = max(1, int(filters_in * _SE_RATIO))
        self.add_module(f"{prefix}se_reduce", KerasConv2d(filters, reduced, 1, bias=True))
        self.add_module(f"{prefix}se_expand", KerasConv2d(reduced, filters, 1, bias=True))
        self.add_module(f"{prefix}project_conv", KerasConv2d(filters, filters_out, 1))
        self.add_module(f"{prefix}project_bn", keras_bn(filters_out))
        self.residual = stride == 1 and filters_in == filters_out

    def _layer(self, name: str) -> nn.Module:
        return getattr(self, self.prefix + name)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """`{prefix}expand_activation` (the input itself when the block does not expand)."""
        if not self.expands:
            return x
        return F.silu(self._layer("expand_bn")(self._layer("expand_conv")(x)))

    def finish(self, x: torch.Tensor, expanded: torch.Tensor) -> torch.Tensor:
        """The block's output from its input `x` and its expansion activation."""
        h = F.silu(self._layer("bn")(self._layer("dwconv")(expanded)))
        s = h.mean(dim=(2, 3), keepdim=True)
        s = F.silu(self._layer("se_reduce")(s))
        h = h * torch.sigmoid(self._layer("se_expand")(s))
        h = self._layer("project_bn")(self._layer("project_conv")(h))
        return h + x if self.residual else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.expand(x))


class KerasEfficientNet(KerasEncoder):
    """EfficientNet-B`variant` encoder with Keras' layers and names (no classifier)."""

    skip_layers = (
        "block6a_expand_activation",
        "block4a_expand_activation",
        "block3a_expand_activation",
        "block2a_expand_activation",
    )

    def __init__(self, variant: int = 0, in_channels: int = 3) -> None:
        super().__init__()
        width, depth = COEFFICIENTS[variant]
        self.keras_name = f"efficientnetb{variant}"
        stem = round_filters(32, width)
        self.stem_conv = KerasConv2d(in_channels, stem, 3, 2)
        self.stem_bn = keras_bn(stem)
        blocks = []
        for i, stage in enumerate(_B0_STAGES):
            f_in = round_filters(stage.filters_in, width)
            f_out = round_filters(stage.filters_out, width)
            for j in range(int(math.ceil(depth * stage.repeats))):
                blocks.append(
                    MBConv(
                        f"block{i + 1}{chr(ord('a') + j)}_",
                        f_in if j == 0 else f_out,
                        f_out,
                        stage.expand,
                        stage.kernel,
                        stage.stride if j == 0 else 1,
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        top = round_filters(1280, width)
        self.top_conv = KerasConv2d(round_filters(320, width), top, 1)
        self.top_bn = keras_bn(top)
        skip_ch = [
            self.keras_layer(name.replace("_activation", "_bn")).num_features
            for name in self.skip_layers
        ]
        self.out_channels = [in_channels, *reversed(skip_ch), top]
        init_keras_conv(self, mode="efficientnet")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`[input, block2a/3a/4a/6a expand activations, top activation]`."""
        feats = [x]
        taps = {name.split("_")[0] + "_" for name in self.skip_layers}
        x = F.silu(self.stem_bn(self.stem_conv(x)))
        for block in self.blocks:
            if block.prefix in taps:
                expanded = block.expand(x)
                feats.append(expanded)
                x = block.finish(x, expanded)
            else:
                x = block(x)
        feats.append(F.silu(self.top_bn(self.top_conv(x))))
        return feats


def smp_pairs(encoder: KerasEfficientNet) -> Iterator[tuple[str, str]]:
    """(Keras layer, smp `efficientnet-b*` prefix) for every weighted layer."""
    yield "stem_conv", "_conv_stem"
    yield "stem_bn", "_bn0"
    for k, block in enumerate(encoder.blocks):
        p, q = block.prefix, f"_blocks.{k}."
        if block.expands:
            yield p + "expand_conv", q + "_expand_conv"
            yield p + "expand_bn", q + "_bn0"
        yield p + "dwconv", q + "_depthwise_conv"
        yield p + "bn", q + "_bn1"
        yield p + "se_reduce", q + "_se_reduce"
        yield p + "se_expand", q + "_se_expand"
        yield p + "project_conv", q + "_project_conv"
        yield p + "project_bn", q + "_bn2"
    yield "top_conv", "_conv_head"
    yield "top_bn", "_bn1"


BUILDERS = {f"efficientnetb{i}": partial(lambda v, c: KerasEfficientNet(v, c), i) for i in range(8)}
