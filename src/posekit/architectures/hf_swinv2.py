"""Hugging Face's Swinv2 backbone (`Swinv2Backbone`) on timm's blocks, without transformers.

sleap-nn's `pretrained` backbone taps every entry of `stage_names` of a Swinv2 (`stem`:
the patch embeddings, stride 4; `stage{i}`: stage i's output before its patch merging).
posekit builds the same network from timm's Swin V2 pieces (`WindowAttention` with
cosine attention and the continuous position bias MLP, post-norm blocks, `PatchMerging`)
so that a sleap-nn checkpoint loads by renaming keys (`hf_to_posekit`; Hugging Face's
separate query / key / value become timm's fused `qkv` with `q_bias` / `v_bias`).

What differs from timm and follows Hugging Face here:

- a block's window and shift come from the config's `image_size` (the stage's grid at
  that size: a window never larger than it, no shift when the grid fits one window),
  not from the input; odd blocks shift by `window_size // 2`;
- the map is padded to whole windows *before* the cyclic shift, and the shift mask is
  built on the padded map; the mask is added twice (-200), as transformers 5 does;
- the merging after stage i is Hugging Face's (stage i + 1 in timm);
- no LayerNorm on the returned maps (Swinv2Backbone has none); LayerNorm eps
  `layer_norm_eps` in blocks, 1e-5 in the embeddings and mergings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.hf_hub import invert_rules, rename_by_rules, split_qkv, stack_qkv
from posekit.errors import PosekitError

_SWINV2 = {  # size -> (embed_dim, depths, num_heads)
    "tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24]),
    "small": (96, [2, 2, 18, 2], [3, 6, 12, 24]),
    "base": (128, [2, 2, 18, 2], [4, 8, 16, 32]),
    "large": (192, [2, 2, 18, 2], [6, 12, 24, 48]),
}


def swinv2_sizes(model_name: str) -> dict | None:
    """The config of a published id trained at its own window (e.g.
    `microsoft/swinv2-tiny-patch4-window8-256`), else None."""
    m = re.fullmatch(r"microsoft/swinv2-([a-z]+)-patch4-window(\d+)-(\d+)", model_name)
    if not m or m.group(1) not in _SWINV2:
        return None
    embed, depths, heads = _SWINV2[m.group(1)]
    return {
        "model_type": "swinv2",
        "embed_dim": embed,
        "depths": depths,
        "num_heads": heads,
        "window_size": int(m.group(2)),
        "image_size": int(m.group(3)),
    }


def _block_class():
    from timm.models.swin_transformer_v2 import (
        SwinTransformerV2Block,
        window_partition,
        window_reverse,
    )

    class HFSwinv2Block(SwinTransformerV2Block):
        """timm's post-norm block with Hugging Face's pad-then-shift window attention."""

        def _attn(self, x: torch.Tensor) -> torch.Tensor:
            _, h, w, c = x.shape
            (wh, ww), (sh, sw) = self.window_size, self.shift_size
            x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
            hp, wp = x.shape[1:3]
            if sh or sw:
                x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
            mask = self.get_attn_mask(x)
            windows = window_partition(x, self.window_size).view(-1, wh * ww, c)
            out = self.attn(windows, mask=None if mask is None else 2 * mask)
            out = window_reverse(out.view(-1, wh, ww, c), self.window_size, (hp, wp))
            if sh or sw:
                out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
            return out[:, :h, :w, :]

    return HFSwinv2Block


class HFSwinv2(nn.Module):
    """Hugging Face's `Swinv2Backbone` (see the module docstring); `forward(x)` returns
    the maps of the tapped stages (indices into `stage_names`), as (B, C, H, W)."""

    def __init__(self, cfg: Mapping, indices: list[int]) -> None:
        from timm.models.swin_transformer_v2 import PatchMerging

        super().__init__()
        block = _block_class()
        if cfg.get("use_absolute_embeddings") or cfg.get("hidden_act", "gelu") != "gelu":
            raise PosekitError(
                "posekit builds Hugging Face Swinv2 without absolute position embeddings and "
                "with gelu (use_absolute_embeddings: false, hidden_act: gelu)"
            )
        embed = int(cfg.get("embed_dim", 96))
        depths = [int(d) for d in cfg.get("depths", [2, 2, 6, 2])]
        heads = [int(h) for h in cfg.get("num_heads", [3, 6, 12, 24])]
        window = int(cfg.get("window_size", 7))
        patch = int(cfg.get("patch_size", 4))
        grid = int(cfg.get("image_size", 224)) // patch
        pretrained = cfg.get("pretrained_window_sizes") or [0] * len(depths)
        eps = float(cfg.get("layer_norm_eps", 1e-5))
        self.patch_size = patch
        self.patch_embed = nn.Conv2d(int(cfg.get("num_channels", 3)), embed, patch, patch)
        self.patch_norm = nn.LayerNorm(embed)
        self.stages = nn.ModuleList()
        for i, (depth, n_heads) in enumerate(zip(depths, heads, strict=True)):
            dim, res = embed * 2**i, grid // 2**i
            stage = nn.Module()
            stage.blocks = nn.ModuleList(
                block(
                    dim,
                    input_resolution=res,
                    num_heads=n_heads,
                    window_size=window,
                    shift_size=window // 2 if j % 2 else 0,
                    dynamic_mask=True,
                    mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
                    qkv_bias=bool(cfg.get("qkv_bias", True)),
                    norm_layer=partial(nn.LayerNorm, eps=eps),
                    pretrained_window_size=int(pretrained[i]),
                )
                for j in range(depth)
            )
            stage.downsample = PatchMerging(dim) if i < len(depths) - 1 else None
            self.stages.append(stage)
        self.stage_names = ["stem"] + [f"stage{i}" for i in range(1, len(depths) + 1)]
        self.channels = [embed] + [embed * 2**i for i in range(len(depths))]
        self.strides = [patch] + [patch * 2**i for i in range(len(depths))]
        self.indices = indices

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # noqa: D102
        h, w = x.shape[-2:]
        p = self.patch_size
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.patch_norm(self.patch_embed(x).permute(0, 2, 3, 1))  # (B, H, W, C)
        hidden = [x]
        for stage in self.stages[: max(self.indices)]:
            for blk in stage.blocks:
                x = blk(x)
            hidden.append(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return [hidden[i].permute(0, 3, 1, 2).contiguous() for i in self.indices]


_KEYS = [
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed."),
    (r"embeddings\.norm\.", "patch_norm."),
    (r"encoder\.layers\.(\d+)\.downsample\.", r"stages.\1.downsample."),
    (
        r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.logit_scale$",
        r"B\1.\2.attn.logit_scale",
    ),
    (
        r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.continuous_position_bias_mlp\.",
        r"B\1.\2.attn.cpb_mlp.",
    ),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.output\.dense\.", r"B\1.\2.attn.proj."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_before\.", r"B\1.\2.norm1."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.intermediate\.dense\.", r"B\1.\2.mlp.fc1."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.output\.dense\.", r"B\1.\2.mlp.fc2."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_after\.", r"B\1.\2.norm2."),
]
_QKV = re.compile(
    r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.(query|key|value)\.(\w+)$"
)
_NOT_BACKBONE = ("classifier.", "layernorm.", "pooler.")


def hf_to_posekit(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
    """posekit's keys (relative to `HFSwinv2`) for Hugging Face's Swinv2 keys under
    `prefix`; query / key / value weights stacked into `qkv`, their biases `q_bias` /
    `v_bias` (the key has none). A classifier's head and pooled norm are dropped."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, list] = {}
    unknown = []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name.startswith(_NOT_BACKBONE):
            continue
        m = _QKV.fullmatch(name)
        if m:
            stage, blk, part, leaf = m.groups()
            base = f"stages.{stage}.blocks.{blk}.attn."
            if leaf == "weight":
                qkv.setdefault(base + "qkv.weight", [None] * 3)[
                    ("query", "key", "value").index(part)
                ] = value
            elif part != "key":
                out[base + f"{part[0]}_bias"] = value
            else:
                unknown.append(key)
            continue
        for pattern, repl in _KEYS:
            new, hits = re.subn("^" + pattern, repl, name)
            if hits:
                out[re.sub(r"^B(\d+)\.(\d+)\.", r"stages.\1.blocks.\2.", new)] = value
                break
        else:
            unknown.append(key)
    stack_qkv(qkv, out, unknown)
    if unknown:
        raise PosekitError(
            f"{len(unknown)} weights have no place in posekit's Hugging Face Swinv2 (e.g. "
            f"{unknown[0]}); is the config the one the weights were trained with?"
        )
    return out


_BACK = invert_rules(_KEYS)
_FUSED = re.compile(r"stages\.(\d+)\.blocks\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias)")


def posekit_to_hf(state: Mapping[str, torch.Tensor]) -> dict:
    """`hf_to_posekit` backwards: Hugging Face's Swinv2 keys for posekit's weights (keys
    relative to `HFSwinv2`); `qkv` split into query / key / value, the biases of query
    and value to theirs (the key has none)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _FUSED.fullmatch(key)
        if m:
            base = f"encoder.layers.{m[1]}.blocks.{m[2]}.attention.self."
            if m[3] == "qkv.weight":
                for part, tensor in zip(("query", "key", "value"), split_qkv(value), strict=True):
                    out[f"{base}{part}.weight"] = tensor
            else:
                out[f"{base}{'query' if m[3] == 'q_bias' else 'value'}.bias"] = value
            continue
        new = rename_by_rules(re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", r"B\1.\2.", key), _BACK)
        if new is None:
            raise PosekitError(f"enc.{key} has no Hugging Face name; it cannot go to sleap-nn")
        out[new] = value
    return out


__all__ = ["HFSwinv2", "hf_to_posekit", "posekit_to_hf", "swinv2_sizes"]
