"""Swin Transformer blocks rewritten for CPU inference: both halves, same outputs.

torchvision's `SwinTransformerBlock` (sleap-nn's Swin encoder) is
``x = x + attn(norm1(x)); x = x + mlp(norm2(x))`` on NHWC tensors.

**MLP half** (two thirds of a Swin-T block's multiply-adds): `_modules.ResidualMLP`,
norm2's affine map folded into the first Linear, GELU and the residual add as oneDNN
post-ops, no bias copies.

**Attention half** (`WindowAttention`): torchvision's `shifted_window_attention` pads the
map to whole windows, rolls it by half a window, copies it into windows, runs the qkv
Linear, scales q, gathers the relative-position bias from its table, builds the shift
mask, adds both, softmax, ``@ v``, the output Linear, copies the windows back, rolls back
and crops: four full copies of the map and two table builds on every call. Here

- norm1's affine map and q's ``head_dim ** -0.5`` are folded into the qkv Linear (float64,
  once), which runs on the unpadded map. Linears act token by token, so they commute with
  the pad / roll / window permutation of tokens; a padded token's q, k, v are the
  original qkv bias (torchvision pads norm1's output with zeros), put back exactly;
- pad, roll and window partition are ONE gather of qkv rows with an index computed once
  per input size (and batch size), and the way back (reverse windows, roll, crop) is one
  gather too;
- the relative-position bias is gathered once, at rewrite time (inference weights are
  frozen), and added to the shift mask as one additive mask built once per input size.
  Only windows along the last row / column of windows hold several shift regions, so
  windows are grouped by mask (at most four groups: interior, last column, last row,
  corner) and each group gets one (heads, n, n) mask: memory independent of the map and
  batch size (a mask per window and image was 16 MB per block at 160 px, ~0.6 GB at
  1024 px);
- attention is `scaled_dot_product_attention`, one call per group, on strided views of
  the gathered qkv (on CPUs torch's flash-attention kernel, fp32 and bf16: q @ k^T,
  mask, softmax and @ v in one pass over 49-token windows, no score tensor in memory). Per block, against
  torchvision's attention half (4 x 80 x 80 x 96 ... 4 x 10 x 10 x 768, one thread, best
  of 12 interleaved calls on a loaded machine): 1.0-1.7x unshifted, 1.8-3.4x shifted;
  the same steps with explicit matmuls + softmax gained only 0.93-1.6x;
- both Linears run as oneDNN calls (bias inside the GEMM: 1.0-1.8x `F.linear` here), the
  output one on the cropped map with the residual add as its post-op.

Outputs equal torchvision's to float32 rounding.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from posekit.optimize._modules import (
    linear_pointwise_op,
    onednn_linear_applies,
    residual_mlp_class,
    set_submodule,
)

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def _is_plain_swin_block(m: nn.Module) -> bool:
    """torchvision's (v1) `SwinTransformerBlock` with its standard attention and MLP."""
    from torch import nn
    from torchvision.models.swin_transformer import ShiftedWindowAttention, SwinTransformerBlock

    if type(m) is not SwinTransformerBlock or type(m.attn) is not ShiftedWindowAttention:
        return False
    if any(type(n) is not nn.LayerNorm or len(n.normalized_shape) != 1 for n in (m.norm1, m.norm2)):
        return False
    mlp = list(m.mlp)
    kinds = (nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.Dropout)
    return (
        len(mlp) == len(kinds)
        and all(type(layer) is kind for layer, kind in zip(mlp, kinds, strict=True))
        and mlp[1].approximate == "none"
    )


def _window_plan(height: int, width: int, window: list[int], shift: list[int]) -> dict:
    """Where each window slot reads its token from, for one map size, with the windows
    grouped by their shift mask.

    The shift torchvision applies (none along a side that fits in one window) makes
    tokens of different regions in a window ignore each other (-100 added to their
    scores). Only the windows along the last row / column of windows hold several
    regions, so there are at most four distinct masks. Windows are ordered by mask
    (stable, so one group without a shift), and each group's attention runs as one call
    with one (heads, n, n) mask, instead of a mask per window repeated per image.

    Returns ``src``: (windows, n) token index per slot in that order, -1 for padding;
    ``groups``: (window count, bool "tokens apart" (n, n) or None) per group.
    """
    import torch

    wh, ww = window
    ph, pw = -(-height // wh) * wh, -(-width // ww) * ww
    sh = 0 if wh >= ph else shift[0]
    sw = 0 if ww >= pw else shift[1]
    ids = torch.full((ph, pw), -1, dtype=torch.long)
    ids[:height, :width] = torch.arange(height * width).view(height, width)
    ids = torch.roll(ids, shifts=(-sh, -sw), dims=(0, 1))

    def windows(grid):  # (ph, pw) -> (windows, wh * ww), torchvision's window order
        return grid.view(ph // wh, wh, pw // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)

    src = windows(ids)
    if not (sh or sw):
        return {"src": src, "groups": [(src.shape[0], None)]}
    grid = torch.zeros(ph, pw, dtype=torch.long)  # torchvision's nine regions (rolled frame)
    count = 0
    for h0, h1 in ((0, -wh), (-wh, -sh), (-sh, None)):
        for w0, w1 in ((0, -ww), (-ww, -sw), (-sw, None)):
            grid[h0:h1, w0:w1] = count
            count += 1
    labels = windows(grid)
    apart = labels[:, None, :] != labels[:, :, None]  # (windows, n, n)
    masks, kind = torch.unique(apart.flatten(1), dim=0, return_inverse=True)
    order = torch.argsort(kind, stable=True)
    sizes = torch.bincount(kind, minlength=masks.shape[0]).tolist()
    n = wh * ww
    return {"src": src[order], "groups": [(k, m.view(n, n)) for k, m in zip(sizes, masks)]}


def _batch_indices(plan: dict, batch: int, tokens: int) -> dict:
    """`_window_plan`'s gather for `batch` images stacked as rows of one (batch * tokens,
    ...) tensor: windows ordered group, image, window (so each group's windows are
    contiguous rows), pad slots reading row 0 and listed in ``pad``; ``back`` gives each
    token's row in that order (reverse windows, roll back and crop in one gather)."""
    import torch

    rows = []
    start = 0
    for size in plan["sizes"]:
        part = plan["src"][start : start + size]
        base = torch.arange(batch, device=part.device).view(-1, 1, 1) * tokens
        rows.append(torch.where(part >= 0, part + base, -1).reshape(-1))
        start += size
    flat = torch.cat(rows)
    real = flat >= 0
    back = torch.empty(batch * tokens, dtype=torch.long, device=flat.device)
    back[flat[real]] = torch.arange(flat.numel(), device=flat.device)[real]
    pad = (~real).nonzero().reshape(-1)
    return {"src": flat.clamp(min=0), "pad": pad if pad.numel() else None, "back": back}


@functools.cache
def window_attention_class():
    """The `WindowAttention` module class (built once, on first use: torch loads lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class WindowAttention(nn.Module):
        """``x + attn(norm1(x))`` of a v1 Swin block with less work (module doc).

        Inference only: dropout is dropped. The weights are copied (and folded) when the
        module is built; later changes to the original block do not reach it. Cached per
        input size: the gather indices (per batch size too) and the bias + shift masks
        (rebuilt when the module moves to another dtype or device, as
        `.to(torch.bfloat16)` does).
        """

        def __init__(self, norm: nn.LayerNorm, attn: nn.Module):
            super().__init__()
            width = int(attn.qkv.in_features)
            self.width, self.eps = width, float(norm.eps)
            self.heads = int(attn.num_heads)
            self.window = [int(w) for w in attn.window_size]
            self.shift = [int(s) for s in attn.shift_size]
            head_dim = width // self.heads
            with torch.no_grad():
                dtype, dev = attn.qkv.weight.dtype, attn.qkv.weight.device
                w = attn.qkv.weight.double()
                b = attn.qkv.bias
                b = b.double() if b is not None else torch.zeros(3 * width, device=dev).double()
                q_scale = torch.ones(3 * width, dtype=torch.float64, device=dev)
                q_scale[:width] = head_dim**-0.5
                # the qkv of a padded token: the bias alone (norm1's output padded with 0)
                pad_qkv = b * q_scale
                w1, b1 = w, b
                if norm.weight is not None:
                    w1 = w1 * norm.weight.double()
                if norm.bias is not None:
                    b1 = b1 + w @ norm.bias.double()
                w1, b1 = w1 * q_scale[:, None], b1 * q_scale
                self.qkv = nn.Linear(width, 3 * width, device=dev, dtype=dtype)
                self.qkv.weight = nn.Parameter(w1.to(dtype), requires_grad=False)
                self.qkv.bias = nn.Parameter(b1.to(dtype), requires_grad=False)
                self.proj = nn.Linear(width, width, device=dev, dtype=dtype)
                self.proj.weight = nn.Parameter(attn.proj.weight.clone(), requires_grad=False)
                pb = attn.proj.bias
                pb = pb.clone() if pb is not None else torch.zeros(width, device=dev, dtype=dtype)
                self.proj.bias = nn.Parameter(pb, requires_grad=False)
                bias = attn.get_relative_position_bias().detach().clone()  # (1, heads, n, n)
            self.register_buffer("pad_qkv", pad_qkv.to(dtype), persistent=False)
            self.register_buffer("position_bias", bias[0], persistent=False)
            self._plans: dict = {}
            self._op = linear_pointwise_op()

        def _plan(self, height: int, width: int, batch: int, like: torch.Tensor) -> dict:
            """Gather indices and one additive mask (position bias + shift mask) per
            window group for this input size (cached; indices per batch size)."""
            bias = self.position_bias
            key = (height, width, like.device, bias.dtype)
            plan = self._plans.get(key)
            if plan is None:
                windows = _window_plan(height, width, self.window, self.shift)
                masks = []
                for _, apart in windows["groups"]:
                    mask = bias
                    if apart is not None:  # -100 between regions, as torchvision adds
                        shift = torch.zeros(apart.shape).masked_fill(apart, -100.0)
                        mask = (bias.float() + shift.to(bias.device)).to(bias.dtype)
                    masks.append(mask[None].to(like.device))
                plan = {
                    "src": windows["src"].to(like.device),
                    "sizes": [size for size, _ in windows["groups"]],
                    "masks": masks,
                    "per_batch": {},
                }
                self._plans[key] = plan
            if batch not in plan["per_batch"]:
                plan["per_batch"][batch] = _batch_indices(plan, batch, height * width)
            return plan

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """`x`: (B, H, W, C) NHWC; returns ``x + attn(norm1(x))``, contiguous."""
            batch, height, width, c = x.shape
            plan = self._plan(height, width, batch, x)
            rows = plan["per_batch"][batch]
            n, heads = self.window[0] * self.window[1], self.heads
            h = F.layer_norm(x, (c,), eps=self.eps).reshape(-1, c)
            w, b = self.qkv.weight, self.qkv.bias
            if onednn_linear_applies(self._op, w, h):  # bias inside the GEMM, not copied first
                qkv = self._op(h, w, b, "none", [], "")
            else:
                qkv = F.linear(h, w, b)
            # pad + roll + window partition in one gather of token rows
            qkv = qkv.index_select(0, rows["src"])
            if rows["pad"] is not None:
                qkv[rows["pad"]] = self.pad_qkv.to(qkv.dtype)
            outs, start = [], 0
            for size, mask in zip(plan["sizes"], plan["masks"], strict=True):
                count = size * batch * n
                part = qkv[start : start + count].view(-1, n, 3, heads, c // heads)
                q, k, v = part.permute(2, 0, 3, 1, 4)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=1.0)
                outs.append(out.transpose(1, 2).reshape(-1, c))
                start += count
            out = outs[0] if len(outs) == 1 else torch.cat(outs)
            # reverse windows + roll back + crop in one gather of token rows
            return self._project(out.index_select(0, rows["back"]), x)

        def _project(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            w, b = self.proj.weight, self.proj.bias
            if not onednn_linear_applies(self._op, w, out, x):
                return x + F.linear(out, w, b).view(x.shape)
            res = x.contiguous().reshape(-1, self.width)
            y = self._op.binary(out, res, w, b, "add")
            return y.view(x.shape)

    return WindowAttention


@functools.cache
def fused_swin_block_class():
    """The `FusedSwinBlock` module class (built once, on first use: torch loads lazily)."""
    import torch
    from torch import nn

    class FusedSwinBlock(nn.Module):
        """A Swin block with its attention half (`WindowAttention`), its MLP half
        (`ResidualMLP`) or both rewritten (module doc); a half not rewritten runs as
        torchvision's. Inference only: stochastic depth and dropout are dropped
        (identities in eval mode)."""

        def __init__(self, block: nn.Module, mlp: bool = True, attention: bool = True):
            super().__init__()
            if attention:
                self.attn = window_attention_class()(block.norm1, block.attn)
            else:
                self.norm1, self.attn = block.norm1, block.attn
            if mlp:
                self.mlp = residual_mlp_class()(block.norm2, block.mlp[0], block.mlp[3])
            else:
                self.norm2, self.mlp = block.norm2, block.mlp
            self.fused_attention, self.fused_mlp = bool(attention), bool(mlp)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            x = self.attn(x) if self.fused_attention else x + self.attn(self.norm1(x))
            return self.mlp(x, x) if self.fused_mlp else x + self.mlp(self.norm2(x))

    return FusedSwinBlock


def fuse_swin_blocks(model: nn.Module, mlp: bool = True, attention: bool = True) -> list[str]:
    """Replace every standard `SwinTransformerBlock` of `model` by a `FusedSwinBlock`
    with the MLP half (`mlp`) and / or the attention half (`attention`) rewritten, in
    place. For inference only. Returns the replaced paths (none when both are off); a
    second run replaces nothing (blocks already replaced stay as they are)."""
    if not (mlp or attention):
        return []
    paths = [name for name, m in model.named_modules() if _is_plain_swin_block(m)]
    cls = fused_swin_block_class()
    for path in paths:
        set_submodule(model, path, cls(model.get_submodule(path), mlp, attention))
    return paths
