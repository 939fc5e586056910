"""Winograd F(4x4, 3x3): 3x3 convolutions with 4x fewer multiplications, for CPU inference.

A 3x3 convolution computes each output pixel from 9 input pixels per channel pair. The
Winograd minimal-filtering algorithm (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016) computes a 4x4 block of outputs from a 6x6 block of inputs with
36 multiplications per channel pair instead of 144: input tiles and filters are mapped
by fixed small integer/rational matrices into a 36-point "transform domain", where the
convolution becomes 36 independent matrix products (tiles x C_in) @ (C_in x C_out),
then mapped back. The filters' transform is done once, when the module is built.

oneDNN (PyTorch's CPU convolution library) no longer ships a Winograd kernel for x86,
and its direct convolution already runs near this machine's matmul peak, so Winograd is
the remaining large saving for the deep layers of SLEAP's UNets (many channels, small
maps): measured 1.7-2.5x faster per layer on this project's CPU for 128-768 channels.
Where channels are few the transforms (memory-bound) cost more than they save, so
`worthwhile` only accepts layers whose transform overhead is a small share of the work.

Accuracy: the transforms amplify float32 rounding a little (max abs error ~1e-5
relative to the output's scale per layer, against ~1e-7 for direct convolution). That is
far below anything that moves a predicted peak, but it is not bit-exact, which is why
this is a separate, named step of `optimize_for_inference` (``winograd=False`` turns it
off) and only used for float32 on CPUs, without gradients, outside autocast.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from posekit.optimize._modules import conv_relu_class, set_submodule

# Imported only when a model is optimised for inference (torch is loaded by then).
__all__ = ["WinogradConv2d", "transform_filters", "use_winograd", "winograd_conv3x3", "worthwhile"]

# Transform-domain work is 36 * C_in * C_out multiply-adds per 4x4 output tile; the
# input and output transforms add about 36 * 36 * C_in and 16 * 36 * C_out. Measured on
# this project's CPU, Winograd wins clearly once those add under ~45% to the product
# (e.g. 128 -> 128 channels: 41%, 1.6x) and loses at 64 -> 64 (81%) or 192 -> 64 (65%).
MAX_TRANSFORM_OVERHEAD = 0.45
# The transform-domain tensors of one call (36 points per tile, C_in + C_out channels)
# must stay small enough for the memory-bound transforms to run from cache: measured,
# 128 -> 128 channels on 4 x 128 x 128 maps (162 MiB) ran 2.3x slower than direct
# convolution, one image at a time (40 MiB) 1.2x faster. Larger batches are split.
MAX_TRANSFORM_BYTES = 48 << 20


def worthwhile(conv: nn.Module) -> bool:
    """Whether `conv` is a 3x3, stride-1, pad-1, dense `nn.Conv2d` that Winograd speeds up."""

    if type(conv) is not nn.Conv2d:
        return False
    shape_ok = (
        conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.padding == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )
    if not shape_ok:
        return False
    overhead = 36 / conv.out_channels + 16 / conv.in_channels
    return overhead <= MAX_TRANSFORM_OVERHEAD


@functools.cache
def _matrices():
    """(input transform kron(B^T, B^T) 36x36, output transform kron(A^T, A^T) 16x36, G)."""

    bt = torch.tensor(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        dtype=torch.float64,
    )
    g = torch.tensor(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        dtype=torch.float64,
    )
    at = torch.tensor(
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
        dtype=torch.float64,
    )
    # Row-major vec(X^T d X) = kron(X^T, X^T) vec(d): one matmul transforms every tile.
    # Their entries are small integers, exact in float32.
    return torch.kron(bt, bt).float(), torch.kron(at, at).float(), g


def transform_filters(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) filters -> (36, C_in, C_out) transform-domain filters (G w G^T),
    computed in float64 so the only float32 rounding left is the final cast."""

    _, _, g = _matrices()
    u = torch.einsum("ij,ocjk,lk->ilco", g, weight.detach().cpu().double(), g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()


def winograd_conv3x3(
    x: torch.Tensor,
    u: torch.Tensor,
    bias: torch.Tensor | None,
    relu: bool,
    transforms: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Same-padded 3x3 convolution of an NCHW-shaped batch with transformed filters `u`.

    Works in NHWC memory (channels-last input is read without a copy) and returns a
    channels-last tensor. `transforms` (input 36x36, output 16x36) default to the
    module-level ones; `WinogradConv2d` passes its own buffers so `torch.compile` sees
    plain tensors.
    """

    kb, ka = transforms if transforms is not None else _matrices()[:2]
    n, c, h, w = x.shape
    c_out = u.shape[2]
    th, tw = -(-h // 4), -(-w // 4)  # 4x4 output tiles per column / row
    nhwc = x.permute(0, 2, 3, 1)
    # conv padding of 1, plus zeros up to a whole number of tiles
    padded = F.pad(nhwc, (0, 0, 1, 4 * tw + 1 - w, 1, 4 * th + 1 - h))
    tiles = padded.unfold(1, 6, 4).unfold(2, 6, 4)  # (n, th, tw, c, 6, 6), overlapping
    t = n * th * tw
    d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(36, t * c)
    v = (kb @ d).view(36, t, c)
    m = torch.bmm(v, u)  # the 36 transform-domain products
    m = m.view(36, t * c_out)
    # the bias joins the output transform's matmul (one value per channel, every tile)
    y = torch.addmm(bias.repeat(t), ka, m) if bias is not None else ka @ m
    if relu:
        y.relu_()
    y = y.view(4, 4, n, th, tw, c_out).permute(2, 3, 0, 4, 1, 5)  # (n, th, 4, tw, 4, c)
    out = y.reshape(n, 4 * th, 4 * tw, c_out)
    if (4 * th, 4 * tw) != (h, w):
        out = out[:, :h, :w].contiguous()
    return out.permute(0, 3, 1, 2)


class WinogradConv2d(nn.Module):
    """A 3x3 same convolution (optionally followed by ReLU) run as Winograd F(4x4, 3x3)
    for float32 CPU inference; the wrapped convolution everywhere else (GPUs, other
    dtypes, autocast, gradients), so the module stays a drop-in replacement."""

    def __init__(self, conv: nn.Conv2d, relu: bool = False):
        super().__init__()
        if not worthwhile(conv):
            raise ValueError(f"not a Winograd-friendly 3x3 convolution: {conv}")
        self.conv = conv
        self.relu = bool(relu)
        self.register_buffer("filters", transform_filters(conv.weight), persistent=False)
        kb, ka, _ = _matrices()
        self.register_buffer("input_transform", kb.clone(), persistent=False)
        self.register_buffer("output_transform", ka.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        c = self.conv
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.filters.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        ):
            n, _, h, w = x.shape
            tile_bytes = 36 * 4 * (c.in_channels + c.out_channels)
            per_image = tile_bytes * -(-h // 4) * -(-w // 4)
            chunk = MAX_TRANSFORM_BYTES // per_image
            if chunk >= n:
                return winograd_conv3x3(x, self.filters, c.bias, self.relu, self._transforms())
            if chunk >= 1:
                parts = [
                    winograd_conv3x3(
                        x[i : i + chunk], self.filters, c.bias, self.relu, self._transforms()
                    )
                    for i in range(0, n, chunk)
                ]
                return torch.cat(parts).contiguous(memory_format=torch.channels_last)
        y = c(x)
        return F.relu(y) if self.relu else y

    def _transforms(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input_transform, self.output_transform

    def extra_repr(self) -> str:  # noqa: D102
        return f"relu={self.relu}"


def use_winograd(model: nn.Module) -> list[str]:
    """Replace every worthwhile 3x3 convolution of `model` (alone, or fused with its ReLU
    by `posekit.optimize.fuse_conv_relu`) by a `WinogradConv2d`, in place.

    Returns:
        The module paths replaced.
    """
    conv_relu = conv_relu_class()
    done: list[str] = []
    # module paths whose insides are already Winograd (from an earlier call, or just now)
    wrapped = [p for p, m in model.named_modules() if isinstance(m, WinogradConv2d)]
    for path, module in list(model.named_modules()):
        if not path or path in wrapped or any(path.startswith(p + ".") for p in wrapped):
            continue
        fused = isinstance(module, conv_relu)
        conv = module.conv if fused else module
        if worthwhile(conv):
            set_submodule(model, path, WinogradConv2d(conv, relu=fused))
            done.append(path)
            wrapped.append(path)
    return done
