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


def onednn_op(name: str):
    """oneDNN's operator `torch.ops.mkldnn.<name>`, or None where this build lacks it."""
    import torch

    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return getattr(torch.ops.mkldnn, name)
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return None


def fused_conv_relu_op():
    """oneDNN's convolution with a fused post-op, or None where this build lacks it."""
    return onednn_op("_convolution_pointwise")


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


def linear_pointwise_op():
    """oneDNN's linear with a fused post-op (GELU, or a residual add), or None where this
    build lacks it."""
    return onednn_op("_linear_pointwise")


def onednn_linear_applies(op, weight, *tensors) -> bool:
    """Whether oneDNN's fused linear `op` may run on `tensors` with `weight`: the op
    exists, everything is on the CPU in the weight's dtype, and neither autograd nor
    autocast is on (they need the ordinary calls)."""
    import torch

    return (
        op is not None
        and all(t.device.type == "cpu" and t.dtype == weight.dtype for t in tensors)
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )


#: `ResidualMLP` runs whole when its hidden activation (rows x 4 x width) is at most this
#: many bytes, else in row blocks of about `MLP_CHUNK_BYTES` of hidden activation each:
#: the hidden rows are then read back by the second Linear from the cache instead of
#: memory. Measured (2-core AMD EPYC, Zen 4: 2 MiB L2 per core, 32 MiB L3; 2 threads):
#: ConvNeXt-T's first-stage MLP (96 -> 384 -> 96) on 25,600 rows (160 px, batch 4; 39 MB
#: hidden) 34.2 -> 24.2 ms, on 65,536 rows (256 px) 87.8 -> 60.6 ms with blocks of 2,048 to
#: 4,096 rows; the second stage's (19.6 MB hidden) and smaller ones gained nothing.
MLP_WHOLE_BYTES = 16 << 20
MLP_CHUNK_BYTES = 4 << 20


@functools.cache
def residual_mlp_class():
    """The `ResidualMLP` module class (built once, on first use: torch loads lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ResidualMLP(nn.Module):
        """``residual + scale * fc2(gelu(fc1(layer_norm(h))))`` over the last dimension,
        the MLP half of ConvNeXt and Swin blocks, as two oneDNN calls on CPUs.

        The LayerNorm's affine map is folded into `fc1` and the layer scale into `fc2`
        (in float64), the bias and GELU run as `fc1`'s post-op and the residual add as
        `fc2`'s, so the three elementwise passes over the 4x-wide hidden activation and
        the bias copies of `F.linear` disappear. Elsewhere (GPU, autograd, autocast) the
        same folded weights run as ordinary calls. Outputs agree to float32 rounding.
        """

        def __init__(self, norm: nn.LayerNorm, fc1: nn.Linear, fc2: nn.Linear, scale=None):
            super().__init__()
            self.eps = float(norm.eps)
            self.width = int(fc1.in_features)
            with torch.no_grad():
                w1, b1 = fc1.weight.double(), _bias(fc1).double()
                if norm.weight is not None:
                    w1 = w1 * norm.weight.double()
                if norm.bias is not None:
                    b1 = b1 + fc1.weight.double() @ norm.bias.double()
                w2, b2 = fc2.weight.double(), _bias(fc2).double()
                if scale is not None:
                    s = scale.double().reshape(-1)
                    w2, b2 = w2 * s[:, None], b2 * s
                dtype = fc1.weight.dtype
                self.fc1 = nn.Linear(fc1.in_features, fc1.out_features, device=w1.device)
                self.fc2 = nn.Linear(fc2.in_features, fc2.out_features, device=w2.device)
                for layer, w, b in ((self.fc1, w1, b1), (self.fc2, w2, b2)):
                    layer.weight = nn.Parameter(w.to(dtype), requires_grad=False)
                    layer.bias = nn.Parameter(b.to(dtype), requires_grad=False)
            self._op = linear_pointwise_op()

        def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
            """`h`, `residual`: (..., width); the result has their shape, contiguous."""
            w1, w2 = self.fc1.weight, self.fc2.weight
            if not onednn_linear_applies(self._op, w1, h, residual):
                h = F.layer_norm(h, (self.width,), eps=self.eps)
                return residual + F.linear(
                    F.gelu(F.linear(h, w1, self.fc1.bias)), w2, self.fc2.bias
                )
            flat = h.reshape(-1, self.width)
            res = residual.contiguous().reshape(-1, self.width)
            rows = flat.shape[0]
            hidden_row = w1.shape[0] * w1.element_size()
            if rows * hidden_row > MLP_WHOLE_BYTES:
                # larger than the CPU's caches: row blocks, each block's normalised and
                # hidden rows read back while still in cache (LayerNorm and both Linears
                # act row by row)
                step = max(MLP_CHUNK_BYTES // hidden_row, 256)
                out = flat.new_empty(rows, self.width)
                for i in range(0, rows, step):
                    out[i : i + step] = self._mlp(flat[i : i + step], res[i : i + step])
                return out.view(residual.shape)
            return self._mlp(flat, res).view(residual.shape)

        def _mlp(self, rows: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
            """The two oneDNN calls on (n, width) rows."""
            x = F.layer_norm(rows, (self.width,), eps=self.eps)
            hidden = self._op(x, self.fc1.weight, self.fc1.bias, "gelu", [], "none")
            return self._op.binary(hidden, residual, self.fc2.weight, self.fc2.bias, "add")

    def _bias(layer: nn.Linear) -> torch.Tensor:
        if layer.bias is not None:
            return layer.bias
        return torch.zeros(layer.out_features, device=layer.weight.device)

    return ResidualMLP
