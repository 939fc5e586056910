"""Small module-surgery helpers shared by the inference-time rewrites.

BatchNorm folding, ReLU fusion, Winograd and sub-pixel rewrites all replace submodules in
place and all build the same fused convolution + ReLU module; they import these from here
(never from each other), so the rewrites stay independent of one another.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from posekit.model.device import device_type  # noqa: F401 - the rewrites ask it here

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted `path` of `root` by `module`."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def fused_conv_relu_op():
    """oneDNN's convolution with a fused post-op, or None where this build lacks it."""
    import torch

    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return None


@functools.cache
def conv_relu_class():
    """The `ConvReLU2d` module class (built once, on first use: torch loads lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvReLU2d(nn.Module):
        """``relu(conv(x))`` in one oneDNN call on CPUs (ReLU as the convolution's
        post-op, no second pass over the output); the two separate calls elsewhere.
        The post-op is the same ``max(0, y)``; oneDNN may pick another convolution
        kernel for the fused call, so outputs agree to float32 rounding (often exactly)."""

        def __init__(self, conv: nn.Conv2d, op):
            super().__init__()
            self.conv = conv
            self._op = op

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            c = self.conv
            if (
                self._op is not None
                and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.bfloat16)
                and x.dtype == c.weight.dtype
                and not torch.is_grad_enabled()
            ):
                bias = c.bias
                return self._op(
                    x, c.weight, bias, list(c.padding), list(c.stride), list(c.dilation),
                    c.groups, "relu", [], "",
                )  # fmt: skip
            return F.relu(c(x))

    return ConvReLU2d
