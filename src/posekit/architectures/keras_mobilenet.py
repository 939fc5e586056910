"""MobileNetV2 (alpha 1.0) as `keras_applications` builds it for SLEAP's segmentation_models.

Graph facts (checked layer by layer against SLEAP's MobileNetV2 backbone in
`shared/reference/keras_numeric_pretrained`):

- `Conv1` 3x3 stride 2 after `Conv1_pad` = ZeroPadding2D((0, 1), (0, 1)), `bn_Conv1`, ReLU6;
- `expanded_conv_` (no expansion) and `block_1_` .. `block_16_`: 1x1 `expand` + `expand_BN`
  + ReLU6, 3x3 `depthwise` (stride-2 blocks pad (0, 1) first, like TF "same"),
  `depthwise_BN` + ReLU6, 1x1 `project` + `project_BN` (linear), residual add when the
  stride is 1 and the channels are unchanged;
- `Conv_1` 1x1 to 1280, `Conv_1_bn`, ReLU6 (`out_relu`);
- BatchNorm epsilon 1e-3, momentum 0.999.

segmentation_models feeds the decoder from `block_13_expand_relu`, `block_6_expand_relu`,
`block_3_expand_relu` and `block_1_expand_relu` (strides 16, 8, 4, 2).

ImageNet weights: torchvision's `mobilenet_v2` (smp's `mobilenet_v2` encoder) has the same
tensors in the same order (`smp_pairs`). It was trained with symmetric padding and
BatchNorm epsilon 1e-5, so with those weights the features are torchvision's network's
sampled one pixel differently at each stride-2 layer (and normalised with epsilon 1e-3):
a good initialisation for training, as Keras' own ImageNet weights are, not the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from posekit.architectures.keras_encoders import (
    KerasConv2d,
    KerasEncoder,
    init_keras_conv,
    keras_bn,
)

# (filters, stride, expansion) of blocks 0 (expanded_conv) .. 16.
_BLOCKS = (
    (16, 1, 1),
    (24, 2, 6),
    (24, 1, 6),
    (32, 2, 6),
    (32, 1, 6),
    (32, 1, 6),
    (64, 2, 6),
    (64, 1, 6),
    (64, 1, 6),
    (64, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (160, 2, 6),
    (160, 1, 6),
    (160, 1, 6),
    (320, 1, 6),
)
_MOMENTUM = 0.999


def _bn(channels: int) -> nn.BatchNorm2d:
    return keras_bn(channels, 1e-3, _MOMENTUM)


class InvertedResidual(nn.Module):
    """keras_applications' `_inverted_res_block`; layers carry the Keras names."""

    def __init__(self, block_id: int, in_channels: int, filters: int, stride: int, expansion: int):
        super().__init__()
        self.prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
        self.expands = block_id > 0
        hidden = in_channels * expansion
        p = self.prefix
        if self.expands:
            self.add_module(p + "expand", KerasConv2d(in_channels, hidden, 1))
            self.add_module(p + "expand_BN", _bn(hidden))
        self.add_module(p + "depthwise", KerasConv2d(hidden, hidden, 3, stride, groups=hidden))
        self.add_module(p + "depthwise_BN", _bn(hidden))
        self.add_module(p + "project", KerasConv2d(hidden, filters, 1))
        self.add_module(p + "project_BN", _bn(filters))
        self.residual = stride == 1 and in_channels == filters

    def _layer(self, name: str) -> nn.Module:
        return getattr(self, self.prefix + name)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """`{prefix}expand_relu` (the input itself for `expanded_conv`)."""
        if not self.expands:
            return x
        return torch.clamp(self._layer("expand_BN")(self._layer("expand")(x)), 0.0, 6.0)

    def finish(self, x: torch.Tensor, expanded: torch.Tensor) -> torch.Tensor:
        """The block's output from its input `x` and its expansion activation."""
        h = self._layer("depthwise_BN")(self._layer("depthwise")(expanded))
        h = self._layer("project_BN")(self._layer("project")(torch.clamp(h, 0.0, 6.0)))
        return h + x if self.residual else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.expand(x))


class KerasMobileNetV2(KerasEncoder):
    """MobileNetV2 encoder with Keras' layers and names (no classifier)."""

    keras_name = "mobilenetv2"
    skip_layers = (
        "block_13_expand_relu",
        "block_6_expand_relu",
        "block_3_expand_relu",
        "block_1_expand_relu",
    )

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv1 = KerasConv2d(in_channels, 32, 3, 2)
        self.bn_Conv1 = _bn(32)
        blocks, channels = [], 32
        for i, (filters, stride, expansion) in enumerate(_BLOCKS):
            blocks.append(InvertedResidual(i, channels, filters, stride, expansion))
            channels = filters
        self.blocks = nn.ModuleList(blocks)
        self.Conv_1 = KerasConv2d(channels, 1280, 1, padding="valid")
        self.Conv_1_bn = _bn(1280)
        self._taps = {int(name.split("_")[1]) for name in self.skip_layers}
        skip_ch = [self.blocks[i]._layer("expand_BN").num_features for i in sorted(self._taps)]
        self.out_channels = [in_channels, *skip_ch, 1280]
        init_keras_conv(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`[input, block_1/3/6/13 expand activations, out_relu]`."""
        feats = [x]
        x = torch.clamp(self.bn_Conv1(self.Conv1(x)), 0.0, 6.0)
        for i, block in enumerate(self.blocks):
            if i in self._taps:
                expanded = block.expand(x)
                feats.append(expanded)
                x = block.finish(x, expanded)
            else:
                x = block(x)
        feats.append(torch.clamp(self.Conv_1_bn(self.Conv_1(x)), 0.0, 6.0))
        return feats


def smp_pairs(encoder: KerasMobileNetV2) -> Iterator[tuple[str, str]]:
    """(Keras layer, torchvision/smp `mobilenet_v2` prefix) for every weighted layer."""
    yield "Conv1", "features.0.0"
    yield "bn_Conv1", "features.0.1"
    for i, block in enumerate(encoder.blocks):
        p, q = block.prefix, f"features.{i + 1}.conv."
        # torchvision: [expand ConvBNReLU,] depthwise ConvBNReLU, project conv, project BN
        k = 0
        if block.expands:
            yield p + "expand", f"{q}0.0"
            yield p + "expand_BN", f"{q}0.1"
            k = 1
        yield p + "depthwise", f"{q}{k}.0"
        yield p + "depthwise_BN", f"{q}{k}.1"
        yield p + "project", f"{q}{k + 1}"
        yield p + "project_BN", f"{q}{k + 2}"
    yield "Conv_1", "features.18.0"
    yield "Conv_1_bn", "features.18.1"


BUILDERS = {"mobilenetv2": KerasMobileNetV2}
