"""Swin Transformer blocks with their MLP half fused (CPU inference).

torchvision's `SwinTransformerBlock` (sleap-nn's Swin encoder) is
``x = x + attn(norm1(x)); x = x + mlp(norm2(x))`` on NHWC tensors, the MLP being
Linear (4x wider), GELU, Linear. `FusedSwinBlock` keeps the shifted-window attention as
it is and runs ``x + mlp(norm2(x))`` as `_modules.ResidualMLP`: norm2's affine map folded
into the first Linear, GELU and the residual add as oneDNN post-ops, no bias copies. The
MLP is two thirds of a Swin-T block's multiply-adds. Outputs equal to float32 rounding.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from posekit.optimize._modules import residual_mlp_class, set_submodule

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def _is_plain_swin_block(m: nn.Module) -> bool:
    """torchvision's (v1) `SwinTransformerBlock` with its standard MLP."""
    from torch import nn
    from torchvision.models.swin_transformer import SwinTransformerBlock

    if type(m) is not SwinTransformerBlock or type(m.norm2) is not nn.LayerNorm:
        return False
    mlp = list(m.mlp)
    kinds = (nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.Dropout)
    return (
        len(mlp) == len(kinds)
        and all(type(layer) is kind for layer, kind in zip(mlp, kinds, strict=True))
        and mlp[1].approximate == "none"
        and len(m.norm2.normalized_shape) == 1
    )


@functools.cache
def fused_swin_block_class():
    """The `FusedSwinBlock` module class (built once, on first use: torch loads lazily)."""
    import torch
    from torch import nn

    class FusedSwinBlock(nn.Module):
        """A Swin block with the MLP fused (module doc). Inference only: stochastic
        depth and dropout are dropped (identities in eval mode)."""

        def __init__(self, block: nn.Module):
            super().__init__()
            self.norm1 = block.norm1
            self.attn = block.attn
            self.mlp = residual_mlp_class()(block.norm2, block.mlp[0], block.mlp[3])

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            x = x + self.attn(self.norm1(x))
            return self.mlp(x, x)

    return FusedSwinBlock


def fuse_swin_blocks(model: nn.Module) -> list[str]:
    """Replace every standard `SwinTransformerBlock` of `model` by a `FusedSwinBlock`,
    in place. For inference only. Returns the replaced paths; a second run replaces
    nothing."""
    paths = [name for name, m in model.named_modules() if _is_plain_swin_block(m)]
    cls = fused_swin_block_class()
    for path in paths:
        set_submodule(model, path, cls(model.get_submodule(path)))
    return paths
