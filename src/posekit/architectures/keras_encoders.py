"""Encoders rebuilt layer for layer from the Keras networks SLEAP's `segmentation_models` uses.

SLEAP's `UnetPretrainedEncoder` takes its encoders from the Keras `segmentation_models`
package, which gets them from `efficientnet` (EfficientNet-B0..B7), `keras_applications`
(MobileNetV2) and `classification_models` (ResNet18..152, pre-activation ResNets ported
from MXNet). The PyTorch networks of the same names (timm, torchvision, smp) are different
graphs: their skip connections come from other layers (block outputs instead of the
expansion activations Keras' decoder taps), the ResNets are post-activation without the
input BatchNorm, and stride-2 convolutions pad symmetrically where Keras pads bottom/right.
So the decoder convolutions had other widths (432 vs 1952 input channels in
`decoder_stage0a_conv` for EfficientNet-B0) and SLEAP-trained weights could not load.

The encoders here are those Keras graphs: every weighted layer is a module whose name is
the Keras layer name (`stem_conv`, `block6a_expand_conv`, `stage2_unit1_bn1`, ...), so a
SLEAP `.h5` loads by name (`posekit.io.load_keras_weights`) and the parameter counts are
SLEAP's. Each encoder's `forward` returns smp's layout, `[input, s2, s4, s8, s16, s32]`,
where the four skip entries are the activations `segmentation_models` feeds the decoder
(`skip_layers`, deepest first, as segmentation_models lists them).

This module holds the pieces they share and the registry; the networks are in
`keras_efficientnet.py`, `keras_mobilenet.py` and `keras_resnet.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from posekit.errors import PosekitError


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) zero padding of TensorFlow's `padding="same"` along one axis.

    TF pads so the output has `ceil(size / stride)` positions and puts the odd pixel at
    the end: a 3x3 stride-2 conv on an even size pads (0, 1), PyTorch's `padding=1` pads
    (1, 1) and samples other pixels.
    """
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class KerasConv2d(nn.Conv2d):
    """`nn.Conv2d` with Keras' padding: "valid", or "same" padded the TensorFlow way.

    Stride-1 "same" convs (odd kernels) pad symmetrically, which `nn.Conv2d` does itself;
    strided "same" convs pad bottom/right-heavy, computed per input size in `forward`.
    Keras' `ZeroPadding2D((0, 1))` + "valid" conv (MobileNetV2's stride-2 blocks) is the
    same thing on the even sizes SLEAP feeds. Depthwise convs are `groups=channels`.
    Set `tf_same = False` and `padding` to use PyTorch's symmetric padding instead
    (what torchvision's MobileNetV2 was trained with; used by tests of the weight mapping).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: str = "same",
        bias: bool = False,
        groups: int = 1,
    ) -> None:
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', not {padding!r}")
        symmetric = kernel_size // 2 if padding == "same" and stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel_size, stride, symmetric, bias=bias, groups=groups
        )
        self.tf_same = padding == "same" and stride > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_same:
            top, bottom = tf_same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = tf_same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class BatchNormNoScale(nn.BatchNorm2d):
    """Keras `BatchNormalization(scale=False)`: a learned offset (beta) but no gamma.

    classification_models' ResNets start with one (`bn_data`) on the input; Keras counts
    its beta as trainable and its moving statistics as non-trainable, and has no gamma to
    count, so the module has no `weight`.
    """

    def __init__(self, channels: int, eps: float, momentum: float) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight = None  # F.batch_norm treats a missing weight as 1


def keras_bn(channels: int, eps: float = 1e-3, momentum: float = 0.99) -> nn.BatchNorm2d:
    """Keras BatchNormalization (`momentum` in Keras' convention: weight of the old value)."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=1.0 - momentum)


class KerasEncoder(nn.Module):
    """Base of the Keras-graph encoders.

    Subclasses set `keras_name` (the segmentation_models backbone name), `skip_layers`
    (segmentation_models' decoder skip layers, strides 16, 8, 4, 2) and `out_channels`
    (channels at strides 1, 2, 4, 8, 16, 32 in the `forward` list, like smp's encoders).
    """

    keras_name: str = ""
    skip_layers: tuple[str, ...] = ()
    out_channels: list[int]

    def keras_layer(self, name: str) -> nn.Module:
        """The module carrying Keras layer `name` (a clear error if there is none)."""
        for full, module in self.named_modules():
            if full.rsplit(".", 1)[-1] == name:
                return module
        raise PosekitError(f"{type(self).__name__} has no layer named {name!r}")


def init_keras_conv(module: nn.Module, mode: str = "he_uniform") -> None:
    """Re-initialise every conv like the Keras networks do (random weights, pretrained=False).

    The Keras encoders use He-uniform (classification_models) or a scaled normal
    (EfficientNet's `CONV_KERNEL_INITIALIZER`, variance scaling 2.0 fan_out) kernels and
    zero biases; this keeps freshly built posekit encoders statistically like SLEAP's.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if mode == "he_uniform":
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            else:  # EfficientNet: normal(0, sqrt(2 / fan_out)), fan_out of a Keras kernel
                kh, kw = m.kernel_size
                fan_out = kh * kw * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def copy_mapped(
    target: nn.Module,
    source: dict[str, torch.Tensor],
    pairs: Iterable[tuple[str, str]],
    what: str,
) -> None:
    """Copy `source[f"{src}.{attr}"]` into Keras layer `dst` of `target` for each pair.

    `pairs` are `(keras layer, source prefix)`; conv weights, biases and BatchNorm
    parameters/statistics are copied as they are (torch layouts on both sides), every
    tensor of `target` must be filled and every shape must agree, else one error names
    what differs.
    """
    layers = {name.rsplit(".", 1)[-1]: m for name, m in target.named_modules()}
    filled: set[str] = set()
    problems: list[str] = []
    for dst, src in pairs:
        module = layers.get(dst)
        if module is None:
            problems.append(f"no layer {dst!r}")
            continue
        tensors = dict(module.named_parameters(recurse=False))
        tensors.update(
            (k, v) for k, v in module.named_buffers(recurse=False) if k != "num_batches_tracked"
        )
        for attr, tensor in tensors.items():
            key = f"{src}.{attr}"
            value = source.get(key)
            if value is None:
                problems.append(f"{key} (for {dst}.{attr}) is missing")
            elif tuple(value.shape) != tuple(tensor.shape):
                problems.append(
                    f"{key} has shape {tuple(value.shape)}, {dst}.{attr} {tuple(tensor.shape)}"
                )
            else:
                with torch.no_grad():
                    tensor.copy_(value)
        filled.add(dst)
    weighted = {n for n, m in layers.items() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and n}
    if weighted - filled:
        problems.append(f"layers without a source: {sorted(weighted - filled)[:5]}")
    if problems:
        raise PosekitError(
            f"cannot map the {what} weights onto the Keras graph: " + "; ".join(problems[:5])
        )


KERAS_ENCODERS: tuple[str, ...] = (
    *(f"efficientnetb{i}" for i in range(8)),
    "mobilenetv2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
)
"""SLEAP encoder names posekit builds as the Keras graph (the others come from smp/timm)."""


__all__ = [
    "KERAS_ENCODERS",
    "BatchNormNoScale",
    "KerasConv2d",
    "KerasEncoder",
    "copy_mapped",
    "keras_bn",
    "tf_same_pads",
]
