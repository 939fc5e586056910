"""What every backbone exposes, and the small layers that make Keras parity exact.

A backbone is an `nn.Module` (subclass `Backbone`) with:

- `forward(x)`: the output tensor, or a list with one tensor per stack when stacks > 1.
- `forward_features(x)`: a list (one entry per stack) of `{stride: tensor}` holding the
  decoder's intermediate features and the final output, so a head at any of those
  strides can attach (SLEAP's `IntermediateFeature`s).
- `feature_channels`: `{stride: channels}` for the entries of `forward_features`.
- `stacks`, `maximum_stride` (what the input size must be divisible by) and
  `output_stride`.

The layers here exist because the obvious PyTorch equivalent of a Keras layer is not
numerically the same: `SameConvTranspose2d` (Keras `Conv2DTranspose(padding="same")`),
`SameMaxPool2d` (Keras `MaxPool2D(padding="same")`) and `batch_norm` (Keras' epsilon and
momentum). Every family of backbones builds on them so that a SLEAP `.h5` loads by name and
reproduces SLEAP's outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from posekit.errors import PosekitError

# Keras BatchNormalization defaults: epsilon 1e-3, momentum 0.99 (running = 0.99 * running
# + 0.01 * batch). PyTorch's momentum is the weight of the *new* value, hence 0.01.
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class IntermediateFeature:
    """A feature map's place in the network: its stride and channel count."""

    stride: int
    channels: int


def batch_norm(channels: int, eps: float = KERAS_BN_EPS) -> nn.BatchNorm2d:
    """BatchNorm2d with Keras' epsilon and momentum, so imported statistics mean the same."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=KERAS_BN_MOMENTUM)


class _Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "linear": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "swish": _Swish,
    "silu": _Swish,
    "gelu": nn.GELU,
}


def activation(name: str | None) -> nn.Module:
    """The torch module for a Keras activation name ("relu", "linear", ...)."""
    key = "linear" if name is None else str(name).lower()
    if key not in _ACTIVATIONS:
        raise PosekitError(
            f"activation={name!r} is not supported; use one of {', '.join(sorted(_ACTIVATIONS))}"
        )
    return _ACTIVATIONS[key]()


class SameConv2d(nn.Conv2d):
    """Keras `Conv2D(padding="same")` for any kernel size and stride.

    TensorFlow's "same" pads `max((ceil(H / s) - 1) * s + k - H, 0)` pixels in total and
    puts the odd one at the bottom/right. PyTorch's symmetric `padding=k // 2` agrees only
    for stride 1 and odd kernels; a stride-2 7x7 conv (the hourglass stem) would be
    shifted by one pixel. This pads explicitly in `forward`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        dilation: int = 1,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0,
            dilation=dilation,
            bias=bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pads = []
        for dim, size in ((1, x.shape[-1]), (0, x.shape[-2])):
            k = (self.kernel_size[dim] - 1) * self.dilation[dim] + 1
            s = self.stride[dim]
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


def same_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """A Conv2d with Keras "same" padding; a plain `nn.Conv2d` whenever that is exact."""
    if stride == 1 and kernel_size % 2 == 1:
        return nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )
    return SameConv2d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """Keras `Conv2DTranspose(kernel_size, strides, padding="same")` in PyTorch.

    Keras computes the full transposed convolution (size `(H - 1) * s + k`) and keeps a
    window of `s * H` starting at `max(k - s, 0) // 2`. PyTorch's `padding=p` crops `p`
    pixels from *both* sides, so `ConvTranspose2d(3, 2, padding=1, output_padding=1)` keeps
    the window starting at 1 where Keras starts at 0: the output is shifted by one pixel.
    Here the convolution runs with `padding=0` and the crop is explicit. For k=3, s=2 the
    crop starts at 0 (top-left); for k=4, s=2 at 1.

    It is a `ConvTranspose2d` (same weight layout `(in, out, kh, kw)`), so weight import,
    parameter counting and FLOP hooks treat it as one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 2,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias
        )

    @property
    def crop_start(self) -> int:
        """First row/column of the full transposed convolution that Keras keeps."""
        return max(self.kernel_size[0] - self.stride[0], 0) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h, w = x.shape[-2:]
        out_h, out_w = h * self.stride[0], w * self.stride[1]
        y = super().forward(x)
        top = max(self.kernel_size[0] - self.stride[0], 0) // 2
        left = max(self.kernel_size[1] - self.stride[1], 0) // 2
        y = y[..., top : top + out_h, left : left + out_w]
        if y.shape[-2] < out_h or y.shape[-1] < out_w:
            # Kernel smaller than the stride: the full output is short; the pixels that no
            # kernel reaches hold only the bias.
            pad = (0, out_w - y.shape[-1], 0, out_h - y.shape[-2])
            if self.bias is None:
                y = F.pad(y, pad)
            else:
                b = self.bias.view(1, -1, 1, 1)
                y = F.pad(y - b, pad) + b
        return y


class TorchPaddedConvTranspose2d(SameConvTranspose2d):
    """Transposed convolution as sleap-nn builds it: `padding=1, output_padding=1`.

    sleap-nn (PyTorch) keeps the window of the full transposed convolution starting at
    row/column 1, where Keras' "same" (`SameConvTranspose2d`) starts at 0 for k=3, s=2:
    the same weights give maps shifted by one pixel. Models loaded from sleap-nn folders
    use this layer so their outputs equal sleap-nn's.
    """

    @property
    def crop_start(self) -> int:  # noqa: D102
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, padding=1, output_padding=1
        )


class SameMaxPool2d(nn.Module):
    """Keras `MaxPool2D(pool_size, strides, padding="same")`.

    On sizes divisible by the stride (the normal case: inputs are padded to a multiple of
    the backbone's maximum stride) this is plain `MaxPool2d`. Otherwise TensorFlow pads
    at the bottom/right first (with -inf), which is reproduced here.
    """

    def __init__(self, pool_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.pool_size = int(pool_size)
        self.stride = int(stride)

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}, stride={self.stride}, padding='same'"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h, w = x.shape[-2:]
        pads = []
        for size in (w, h):
            out = math.ceil(size / self.stride)
            total = max((out - 1) * self.stride + self.pool_size - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.pool_size, self.stride)


def check_input_size(x: torch.Tensor, stride: int) -> None:
    """Raise a clear error when H or W of `x` is not a multiple of `stride`."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % stride or w % stride:
        raise ValueError(
            f"input size {h}x{w} (HxW) is not divisible by the backbone's maximum stride "
            f"{stride}; pad it to {math.ceil(h / stride) * stride}x"
            f"{math.ceil(w / stride) * stride} first, e.g. with "
            f"posekit.architectures.common.pad_to_stride(x, {stride})"
        )


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Zero-pad `x` (..., H, W) at the bottom and right up to multiples of `stride`.

    Padding at the bottom/right keeps pixel coordinates unchanged, which is what SLEAP's
    preprocessing does, so predicted peaks need no offset correction.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    pad_h = (-h) % stride
    pad_w = (-w) % stride
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def init_keras_(module: nn.Module) -> nn.Module:
    """Initialise weights as Keras does: Glorot-uniform kernels, zero biases.

    BatchNorm keeps PyTorch's defaults, which equal Keras' (gamma 1, beta 0, mean 0,
    variance 1). Training from scratch then starts where SLEAP's does.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


_SKIP_IMAGENET: ContextVar[bool] = ContextVar("posekit_skip_imagenet", default=False)


@contextmanager
def skip_imagenet_weights() -> Iterator[None]:
    """Build pretrained backbones without fetching ImageNet weights, in this block.

    For importing a trained model (a SLEAP `best_model.h5`, a posekit checkpoint): the
    network must have the `pretrained: true` structure (an RGB stem fed by the tiled
    grayscale input) but every weight comes from the file, so downloading ImageNet weights
    first would be wasted time, and fail offline.
    """
    token = _SKIP_IMAGENET.set(True)
    try:
        yield
    finally:
        _SKIP_IMAGENET.reset(token)


class Backbone(nn.Module):
    """Base of every backbone: the stride/feature contract shared by all families.

    Subclasses implement `forward_features` and the `maximum_stride`, `output_stride`,
    `stacks` and `feature_channels` attributes; `forward` picks the final output out of
    the features, so the two can never disagree.
    """

    stacks: int = 1

    @property
    def maximum_stride(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def output_stride(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def feature_channels(self) -> dict[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def out_channels(self) -> int:
        """Channels of the final output."""
        return self.feature_channels[self.output_stride]

    def forward_features(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """The final output (one tensor per stack when `stacks > 1`)."""
        outputs = [feats[self.output_stride] for feats in self.forward_features(x)]
        return outputs[0] if self.stacks == 1 else outputs


__all__ = [
    "Backbone",
    "IntermediateFeature",
    "KERAS_BN_EPS",
    "KERAS_BN_MOMENTUM",
    "SameConv2d",
    "SameConvTranspose2d",
    "SameMaxPool2d",
    "TorchPaddedConvTranspose2d",
    "activation",
    "batch_norm",
    "check_input_size",
    "init_keras_",
    "pad_to_stride",
    "same_conv2d",
    "skip_imagenet_weights",
]
