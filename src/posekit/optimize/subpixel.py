"""Transposed convolutions as one ordinary convolution + pixel shuffle, for inference.

A stride-s transposed convolution writes each input pixel's k x k footprint into an
output s times larger. Every output pixel of phase (a, b) = (row mod s, col mod s) is a
small ordinary convolution of the input, with the kernel taps that land on that phase.
Stacking the s*s phase kernels as output channels gives one forward convolution on the
input grid, and `pixel_shuffle` interleaves the phases into the output: the "sub-pixel
convolution" identity (Shi et al., CVPR 2016). The result is the same up to float32
rounding (~1e-6).

Why: PyTorch's CPU transposed convolution runs far from the machine's peak on the
shapes of SLEAP's UNet decoders (SLEAP's default `up_interpolate: false`); measured on
this project's CPU, 1.05-2.5x faster for kernel 3, stride 2 at the same outputs, and
the forward convolution can take its ReLU as a fused post-op. Only
`SameConvTranspose2d` (Keras "same" transposed convolution, posekit's only transposed
layer) is converted, and only when its kernel is at least its stride.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from posekit.optimize._modules import set_submodule

# Imported only when a model is optimised for inference (torch is loaded by then).
__all__ = ["SubpixelConvTranspose2d", "convertible", "subpixel_weights", "use_subpixel_convs"]


def convertible(module: nn.Module) -> bool:
    """Whether `module` is a dense `SameConvTranspose2d` with kernel >= stride."""
    from posekit.architectures.common import SameConvTranspose2d

    return (
        type(module) is SameConvTranspose2d
        and module.groups == 1
        and module.dilation == (1, 1)
        and module.output_padding == (0, 0)
        and all(k >= s for k, s in zip(module.kernel_size, module.stride, strict=True))
    )


def _taps(k: int, s: int, p: int) -> tuple[int, int, list[list[tuple[int, int]]]]:
    """For one axis: (d_min, d_max, per phase a the (kernel index r, tap t) pairs).

    Output ``o = s*m + a`` reads input ``m - d`` through tap ``t = s*d + a + p`` (``p`` the
    Keras crop start); the forward kernel's index ``r = d_max - d`` covers inputs
    ``m - d_max .. m - d_min``.
    """
    offsets = {a: [d for d in range(-k, k + 1) if 0 <= s * d + a + p < k] for a in range(s)}
    d_min = min(min(v) for v in offsets.values())
    d_max = max(max(v) for v in offsets.values())
    pairs = [[(d_max - d, s * d + a + p) for d in offsets[a]] for a in range(s)]
    return d_min, d_max, pairs


def subpixel_weights(module: nn.Module) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """(forward-conv weight (C_out * sy * sx, C_in, KH, KW), F.pad tuple) for `module`."""

    w = module.weight.detach().double()  # (C_in, C_out, kh, kw)
    c_in, c_out, kh, kw = w.shape
    (sy, sx), (py, px) = module.stride, (module.crop_start, max(kw - module.stride[1], 0) // 2)
    ymin, ymax, yt = _taps(kh, sy, py)
    xmin, xmax, xt = _taps(kw, sx, px)
    k = torch.zeros(c_out, sy, sx, c_in, ymax - ymin + 1, xmax - xmin + 1, dtype=w.dtype)
    for a in range(sy):
        for b in range(sx):
            for r, ty in yt[a]:
                for c, tx in xt[b]:
                    k[:, a, b, :, r, c] = w[:, :, ty, tx].T
    weight = k.reshape(c_out * sy * sx, c_in, *k.shape[-2:]).to(module.weight.dtype)
    pad = (max(xmax, 0), max(-xmin, 0), max(ymax, 0), max(-ymin, 0))
    return weight, pad


class SubpixelConvTranspose2d(nn.Module):
    """A `SameConvTranspose2d` run as pad -> `conv` -> pixel shuffle (module doc).

    `conv` is a plain `nn.Conv2d`, so BatchNorm folding has already happened and ReLU
    fusion (`posekit.optimize.fuse_conv_relu`) can wrap it: a ReLU commutes with the
    pixel shuffle.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        if not convertible(module):
            raise ValueError(f"cannot run {module} as a sub-pixel convolution")
        weight, self.pad = subpixel_weights(module)
        self.stride = tuple(module.stride)
        self.conv = nn.Conv2d(
            weight.shape[1], weight.shape[0], tuple(weight.shape[-2:]),
            bias=module.bias is not None,
        ).to(module.weight.device)  # fmt: skip
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if module.bias is not None:
                self.conv.bias.copy_(module.bias.repeat_interleave(math.prod(self.stride)))
        self.conv.requires_grad_(module.weight.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.conv(F.pad(x, self.pad))
        sy, sx = self.stride
        if sy == sx:
            return F.pixel_shuffle(y, sy)
        n, c, h, w = y.shape
        y = y.view(n, c // (sy * sx), sy, sx, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(n, c // (sy * sx), h * sy, w * sx)


def use_subpixel_convs(model: nn.Module) -> list[str]:
    """Replace every convertible transposed convolution of `model` in place.

    Returns:
        The module paths replaced.
    """
    done = []
    for path, module in list(model.named_modules()):
        if path and convertible(module):
            set_submodule(model, path, SubpixelConvTranspose2d(module))
            done.append(path)
    return done
