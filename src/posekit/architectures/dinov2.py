"""DINOv2 vision transformers as Hugging Face `transformers` builds them, without transformers.

sleap-nn's `pretrained` backbone loads plain ViTs such as `facebook/dinov2-base` through
`transformers.AutoModel` and reads their hidden states. posekit builds the same network
from timm's transformer blocks (`timm.layers` attention, MLP / SwiGLU, layer scale) and
its own embeddings, so that a sleap-nn checkpoint (or a Hugging Face weights file) loads
by renaming keys; `transformers` is never imported.

What has to match Hugging Face exactly, and does here:

- embeddings: a patch convolution, a CLS token, then the position embeddings (CLS + a
  square grid) added, then (`dinov2_with_registers`) the register tokens inserted after
  CLS without position embeddings. The grid is resized to the input's patch grid by
  bicubic interpolation (`align_corners=False`; with antialiasing for the
  with-registers models, as their Hugging Face code does), except when the patch count
  equals the grid's and the input is square. `mask_token` is kept (never used at
  inference) so the weights and the parameter count are Hugging Face's;
- blocks: pre-norm attention and MLP (GELU; SwiGLU for `use_swiglu_ffn`, giant), each
  scaled by a layer scale; LayerNorm eps from the config (1e-6);
- `hidden_states[i]` is the output of block i (0: the embeddings), before the final
  LayerNorm (`layernorm`, kept for its weights).

Sizes come from `DINOV2_SIZES` for Meta's published ids, else from the model's
`config.json` (a local directory, or the Hugging Face cache: see `hf_config`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.hf_hub import hf_model_dir, split_qkv, stack_qkv
from posekit.errors import PosekitError

_BASE = dict(patch_size=14, image_size=518, mlp_ratio=4, layerscale_value=1.0)
_SIZES = {
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "giant": dict(
        hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True
    ),
}
#: Meta's DINOv2 checkpoints on the Hugging Face hub: the fields of their config.json
#: that decide the network (the rest are Hugging Face's defaults).
DINOV2_SIZES: dict[str, dict] = {
    **{f"facebook/dinov2-{s}": {"model_type": "dinov2", **_BASE, **v} for s, v in _SIZES.items()},
    **{
        f"facebook/dinov2-with-registers-{s}": {
            "model_type": "dinov2_with_registers",
            "num_register_tokens": 4,
            **_BASE,
            **v,
        }
        for s, v in _SIZES.items()
    },
}
DINOV2_TYPES = ("dinov2", "dinov2_with_registers")


def hf_config(model_name: str, revision: str | None = None) -> dict | None:
    """`model_name`'s Hugging Face config: the table for Meta's DINOv2 ids, else its
    `config.json` in a local directory or the cache, else the table of published
    hierarchical ids (`hf_convnets.hf_hierarchical_sizes`); None when none has it."""
    if model_name in DINOV2_SIZES:
        return dict(DINOV2_SIZES[model_name])
    folder = hf_model_dir(model_name, revision)
    if folder is None or not (folder / "config.json").is_file():
        from posekit.architectures.hf_convnets import hf_hierarchical_sizes

        return hf_hierarchical_sizes(model_name)
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PosekitError(f"cannot read {folder / 'config.json'}: {err}") from err


def require_hf_config(model_name: str, revision: str | None = None) -> dict:
    """`hf_config`, or one error line saying where the config.json must go."""
    hf = hf_config(model_name, revision)
    if hf is None:
        raise PosekitError(
            f"model_name={model_name!r}: no config.json in that folder or in the Hugging "
            f"Face cache; put the model's config.json there"
        )
    return hf


class Dinov2Embeddings(nn.Module):
    """Patch embedding, CLS / register tokens and resized position embeddings (see the
    module docstring). Parameter names are Hugging Face's."""

    def __init__(self, cfg: Mapping) -> None:
        super().__init__()
        dim, patch = int(cfg["hidden_size"]), int(cfg["patch_size"])
        grid = int(cfg["image_size"]) // patch
        self.patch_size = patch
        self.registers = int(cfg.get("num_register_tokens", 0))
        self.antialias = cfg["model_type"] == "dinov2_with_registers"
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        if self.registers:
            self.register_tokens = nn.Parameter(torch.zeros(1, self.registers, dim))
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.projection = nn.Conv2d(
            int(cfg.get("num_channels", 3)), dim, kernel_size=patch, stride=patch
        )
        nn.init.trunc_normal_(self.position_embeddings, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def position(self, h: int, w: int, height: int, width: int) -> torch.Tensor:
        """Position embeddings for an `h` x `w` patch grid (input `height` x `width`)."""
        pos = self.position_embeddings
        n = pos.shape[1] - 1
        if h * w == n and height == width:
            return pos
        side = int(n**0.5)
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid.float(),
            size=(h, w),
            mode="bicubic",
            align_corners=False,
            antialias=self.antialias,
        ).to(pos.dtype)
        return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, _, height, width = x.shape
        x = self.projection(x)
        h, w = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.position(h, w, height, width)
        if self.registers:
            x = torch.cat([x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]], dim=1)
        return x


class Dinov2(nn.Module):
    """A DINOv2 ViT (Hugging Face's `Dinov2Model` / `Dinov2WithRegistersModel`) whose
    `forward(x, layers)` returns the patch tokens after the given blocks (1-indexed, as
    `hidden_states`), as `(B, C, h, w)` maps; blocks after the last asked one do not run."""

    def __init__(self, cfg: Mapping) -> None:
        super().__init__()
        from timm.layers import SwiGLU
        from timm.models.vision_transformer import Block

        if cfg.get("model_type") not in DINOV2_TYPES:
            raise PosekitError(
                f"model_type={cfg.get('model_type')!r} is not a DINOv2 ViT; posekit builds "
                f"Hugging Face plain ViTs of types {', '.join(DINOV2_TYPES)}"
            )
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise PosekitError(f"hidden_act={cfg['hidden_act']!r}: posekit builds DINOv2 with gelu")
        dim = int(cfg["hidden_size"])
        ratio = float(cfg.get("mlp_ratio", 4))
        norm = partial(nn.LayerNorm, eps=float(cfg.get("layer_norm_eps", 1e-6)))
        if cfg.get("use_swiglu_ffn", False):
            hidden = (int(int(dim * ratio) * 2 / 3) + 7) // 8 * 8  # Hugging Face's rounding
            mlp = partial(_swiglu, SwiGLU, hidden)
        else:
            mlp = None
        self.embeddings = Dinov2Embeddings(cfg)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                int(cfg["num_attention_heads"]),
                mlp_ratio=ratio,
                qkv_bias=bool(cfg.get("qkv_bias", True)),
                init_values=float(cfg.get("layerscale_value", 1.0)),
                norm_layer=norm,
                **({"mlp_layer": mlp} if mlp else {}),
            )
            for _ in range(int(cfg["num_hidden_layers"]))
        )
        self.layernorm = norm(dim)
        self.prefix_tokens = 1 + self.embeddings.registers
        self.hidden_size = dim

    @property
    def patch_size(self) -> int:
        return self.embeddings.patch_size

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:  # noqa: D102
        b = x.shape[0]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.embeddings(x)
        hidden = {0: tokens}
        for i, block in enumerate(self.blocks[: max(layers)], start=1):
            tokens = block(tokens)
            hidden[i] = tokens
        out = []
        for layer in layers:
            grid = hidden[layer][:, self.prefix_tokens :]
            out.append(grid.transpose(1, 2).reshape(b, -1, h, w))
        return out

    def last_normed(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's patch tokens after the final LayerNorm, as a (B, C, h, w) map:
        what transformers' `Dinov2Backbone` gives with `apply_layernorm` and
        `reshape_hidden_states` (sleap-nn's encoder-only backbone)."""
        b = x.shape[0]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.embeddings(x)
        for block in self.blocks:
            tokens = block(tokens)
        grid = self.layernorm(tokens)[:, self.prefix_tokens :]
        return grid.transpose(1, 2).reshape(b, -1, h, w)

    def load_hf_state_dict(self, state: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
        """posekit's keys (relative to this module) for Hugging Face's `Dinov2Model` keys
        under `prefix`: transformers 5 names (`q_proj`, `gate_proj`) and 4 names
        (`attention.attention.query`, `weights_in`) both. Unknown keys are an error."""
        return hf_to_posekit(state, len(self.blocks), prefix)


def _swiglu(swiglu, hidden: int, in_features: int, hidden_features: int, **kwargs):
    """timm's SwiGLU (`fc1_g` gate, `fc1_x` value, `fc2`) at Hugging Face's hidden width."""
    kwargs.pop("act_layer", None)
    return swiglu(in_features, hidden, act_layer=nn.SiLU, bias=kwargs.get("bias", True))


_BLOCK_RENAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "attention.o_proj": "attn.proj",
    "attention.output.dense": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.gate_proj": "mlp.fc1_g",
    "mlp.up_proj": "mlp.fc1_x",
    "mlp.down_proj": "mlp.fc2",
    "mlp.weights_out": "mlp.fc2",
}
_QKV = {
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
    "attention.attention.query": 0,
    "attention.attention.key": 1,
    "attention.attention.value": 2,
}
_EMBEDDINGS = {
    "cls_token": "cls_token",
    "mask_token": "mask_token",
    "register_tokens": "register_tokens",
    "position_embeddings": "position_embeddings",
    "patch_embeddings.projection.weight": "projection.weight",
    "patch_embeddings.projection.bias": "projection.bias",
}


def hf_to_posekit(state: Mapping[str, torch.Tensor], depth: int, prefix: str = "") -> dict:
    """See `Dinov2.load_hf_state_dict`: q, k, v are stacked into timm's fused `qkv`;
    transformers 4's packed SwiGLU `weights_in` is split into gate and value."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, list] = {}
    unknown = []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name.startswith("embeddings.") and name[11:] in _EMBEDDINGS:
            out["embeddings." + _EMBEDDINGS[name[11:]]] = value
            continue
        if name.startswith("layernorm."):
            out[name] = value
            continue
        parts = name.split(".")
        if parts[:2] != ["encoder", "layer"] or len(parts) < 5 or not parts[2].isdigit():
            unknown.append(key)
            continue
        block, module, leaf = int(parts[2]), ".".join(parts[3:-1]), parts[-1]
        if module == "layer_scale1" or module == "layer_scale2":
            module, leaf = f"{module}.{leaf}", ""
        if module in _QKV:
            qkv.setdefault(f"blocks.{block}.attn.qkv.{leaf}", [None] * 3)[_QKV[module]] = value
        elif module == "mlp.weights_in":
            gate, val = value.chunk(2, dim=0)
            out[f"blocks.{block}.mlp.fc1_g.{leaf}"] = gate
            out[f"blocks.{block}.mlp.fc1_x.{leaf}"] = val
        elif module in _BLOCK_RENAMES:
            out[f"blocks.{block}.{_BLOCK_RENAMES[module]}" + (f".{leaf}" if leaf else "")] = value
        else:
            unknown.append(key)
    stack_qkv(qkv, out, unknown)
    if unknown:
        raise PosekitError(
            f"{len(unknown)} DINOv2 weights have no place in posekit's network (e.g. "
            f"{unknown[0]}); is it a Hugging Face Dinov2Model checkpoint?"
        )
    return out


def posekit_to_hf(state: Mapping[str, torch.Tensor]) -> dict:
    """`hf_to_posekit` backwards, in transformers 5's names (sleap-nn 0.3.5's): timm's
    fused `qkv` split into `q_proj` / `k_proj` / `v_proj`; a SwiGLU block's `fc1_g` /
    `fc1_x` / `fc2` as `gate_proj` / `up_proj` / `down_proj`."""
    embeddings = {ours: theirs for theirs, ours in _EMBEDDINGS.items()}
    swiglu = any(".mlp.fc1_g." in k for k in state)
    blocks = {
        "norm1": "norm1",
        "norm2": "norm2",
        "ls1.gamma": "layer_scale1.lambda1",
        "ls2.gamma": "layer_scale2.lambda1",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.down_proj" if swiglu else "mlp.fc2",
        "mlp.fc1_g": "mlp.gate_proj",
        "mlp.fc1_x": "mlp.up_proj",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("embeddings.") and key[11:] in embeddings:
            out["embeddings." + embeddings[key[11:]]] = value
            continue
        if key.startswith("layernorm."):
            out[key] = value
            continue
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
        rest = m[2] if m else ""
        layer = f"encoder.layer.{m[1] if m else ''}."
        if rest.startswith("attn.qkv."):
            leaf = rest.rsplit(".", 1)[1]
            for part, tensor in zip("qkv", split_qkv(value), strict=True):
                out[f"{layer}attention.{part}_proj.{leaf}"] = tensor
            continue
        module = next((b for b in blocks if rest == b or rest.startswith(b + ".")), None)
        if module is None:
            raise PosekitError(f"enc.{key} has no Hugging Face name; it cannot go to sleap-nn")
        out[layer + blocks[module] + rest[len(module) :]] = value
    return out


__all__ = [
    "DINOV2_SIZES",
    "Dinov2",
    "hf_config",
    "hf_to_posekit",
    "posekit_to_hf",
    "require_hf_config",
]
