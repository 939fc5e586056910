"""Hugging Face's hierarchical backbones (ConvNeXt, ConvNeXtV2, ResNet; Swinv2 in
`hf_swinv2`) without transformers.

sleap-nn's `pretrained` backbone builds these with `transformers.AutoBackbone` and taps
every entry of the config's `stage_names` (`stem`, `stage1` ... `stage4`; or its
`out_indices`). posekit builds the same networks from timm's ConvNeXt stages and
torchvision's ResNet blocks, so a sleap-nn checkpoint (or a Hugging Face weights file)
loads by renaming keys (`hf_to_posekit`). What has to match Hugging Face, and does:

- ConvNeXt(V2): a `patch_size` stem conv + channel LayerNorm; stage 0 keeps the stem's
  width and stride; later stages start with LayerNorm + 2x2 stride-2 conv. Blocks: 7x7
  depthwise conv, LayerNorm, MLP x4 with exact GELU (V2: global response norm after the
  GELU), layer scale (V1, when `layer_scale_init_value` > 0). Every LayerNorm has eps
  1e-6 whatever `layer_norm_eps` says (that one is the classifier's). `AutoBackbone`
  adds one more channel LayerNorm per tapped stage (`hidden_states_norms`), applied to
  the map it returns: kept, with their Hugging Face names;
- ResNet: 7x7 stride-2 conv, BatchNorm, ReLU, 3x3 stride-2 max pool (the `stem` map,
  stride 4), then stages of basic or bottleneck blocks (stride on the 3x3 conv, as
  torchvision's), stage 0 at stride 1 unless `downsample_in_first_stage`. No extra norms.

Sizes come from `config.json` (a local folder or the Hugging Face cache, see
`dinov2.hf_config`) or, for the published ids, from `hf_hierarchical_sizes`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

from posekit.architectures.hf_hub import invert_rules, rename_by_rules
from posekit.errors import PosekitError

#: Hugging Face `model_type`s posekit builds as hierarchical `pretrained` encoders.
HF_HIERARCHICAL_TYPES = ("convnext", "convnextv2", "resnet", "swinv2")

_CONVNEXT = {  # size name -> (depths, hidden_sizes), as the published configs say
    "atto": ([2, 2, 6, 2], [40, 80, 160, 320]),
    "femto": ([2, 2, 6, 2], [48, 96, 192, 384]),
    "pico": ([2, 2, 6, 2], [64, 128, 256, 512]),
    "nano": ([2, 2, 8, 2], [80, 160, 320, 640]),
    "tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "small": ([3, 3, 27, 3], [96, 192, 384, 768]),
    "base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
    "large": ([3, 3, 27, 3], [192, 384, 768, 1536]),
    "xlarge": ([3, 3, 27, 3], [256, 512, 1024, 2048]),
    "huge": ([3, 3, 27, 3], [352, 704, 1408, 2816]),
}
_RESNET = {  # depth -> (layer_type, depths, hidden_sizes)
    18: ("basic", [2, 2, 2, 2], [64, 128, 256, 512]),
    34: ("basic", [3, 4, 6, 3], [64, 128, 256, 512]),
    50: ("bottleneck", [3, 4, 6, 3], [256, 512, 1024, 2048]),
    101: ("bottleneck", [3, 4, 23, 3], [256, 512, 1024, 2048]),
    152: ("bottleneck", [3, 8, 36, 3], [256, 512, 1024, 2048]),
}


def hf_hierarchical_sizes(model_name: str) -> dict | None:
    """The config of a published id (`facebook/convnext-tiny-224`,
    `facebook/convnextv2-nano-22k-224`, `microsoft/resnet-50`,
    `microsoft/swinv2-tiny-patch4-window8-256`), else None."""
    from posekit.architectures.hf_swinv2 import swinv2_sizes

    if model_name.startswith("microsoft/swinv2-"):
        return swinv2_sizes(model_name)
    m = re.fullmatch(r"facebook/convnext(v2)?-([a-z]+)-[\w-]+", model_name)
    if m and m.group(2) in _CONVNEXT:
        depths, sizes = _CONVNEXT[m.group(2)]
        return {
            "model_type": "convnext" + (m.group(1) or ""),
            "depths": depths,
            "hidden_sizes": sizes,
        }
    m = re.fullmatch(r"microsoft/resnet-(\d+)", model_name)
    if m and int(m.group(1)) in _RESNET:
        kind, depths, sizes = _RESNET[int(m.group(1))]
        return {"model_type": "resnet", "layer_type": kind, "depths": depths, "hidden_sizes": sizes}
    return None


def _stage_names(cfg: Mapping) -> list[str]:
    return ["stem"] + [f"stage{i}" for i in range(1, len(cfg["depths"]) + 1)]


class _Stages(nn.Module):
    """A stem, then `stages`; `forward(x)` returns `tap(i, map)` for the tapped entries
    of `stage_names` (0: the stem's output), running no stage after the last one."""

    indices: list[int]
    stage_names: list[str]

    def tap(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # noqa: D102
        x = self.stem(x)
        hidden = [x]
        for stage in self.stages[: max(self.indices)]:
            x = stage(x)
            hidden.append(x)
        return [self.tap(i, hidden[i]) for i in self.indices]


class HFConvNeXt(_Stages):
    """Hugging Face's `ConvNextBackbone` / `ConvNextV2Backbone` (see the module docstring);
    `forward(x)` returns the maps of the tapped stages (indices into `stage_names`)."""

    def __init__(self, cfg: Mapping, indices: list[int]) -> None:
        from timm.layers import LayerNorm, LayerNorm2d
        from timm.models.convnext import ConvNeXtStage

        super().__init__()
        v2 = cfg["model_type"] == "convnextv2"
        depths = [int(d) for d in cfg.get("depths", [3, 3, 9, 3])]
        sizes = [int(c) for c in cfg.get("hidden_sizes", [96, 192, 384, 768])]
        patch = int(cfg.get("patch_size", 4))
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise PosekitError(
                f"hidden_act={cfg['hidden_act']!r}: posekit builds ConvNeXt with gelu"
            )
        scale = None if v2 else float(cfg.get("layer_scale_init_value", 1e-6))
        norm2d, norm = partial(LayerNorm2d, eps=1e-6), partial(LayerNorm, eps=1e-6)
        self.stem = nn.Sequential(
            nn.Conv2d(int(cfg.get("num_channels", 3)), sizes[0], kernel_size=patch, stride=patch),
            norm2d(sizes[0]),
        )
        self.stages = nn.ModuleList(
            ConvNeXtStage(
                sizes[max(i - 1, 0)],
                c,
                stride=2 if i else 1,
                depth=d,
                ls_init_value=scale if scale else None,
                use_grn=v2,
                norm_layer=norm2d,
                norm_layer_cl=norm,
            )
            for i, (d, c) in enumerate(zip(depths, sizes, strict=True))
        )
        self.stage_names = _stage_names(cfg)
        self.channels = [sizes[0], *sizes]
        self.strides = [patch] + [patch * 2**i for i in range(len(sizes))]
        self.indices = indices
        self.hidden_states_norms = nn.ModuleDict(
            {self.stage_names[i]: norm2d(self.channels[i]) for i in indices}
        )

    def tap(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Hugging Face's output LayerNorm of that stage."""
        return self.hidden_states_norms[self.stage_names[i]](x)


class HFResNet(_Stages):
    """Hugging Face's `ResNetBackbone` on torchvision's blocks (see the module docstring)."""

    def __init__(self, cfg: Mapping, indices: list[int]) -> None:
        from torchvision.models.resnet import BasicBlock, Bottleneck

        super().__init__()
        kind = cfg.get("layer_type", "bottleneck")
        if cfg.get("hidden_act", "relu") != "relu" or cfg.get("downsample_in_bottleneck"):
            raise PosekitError(
                "posekit builds Hugging Face ResNets with relu and the stride on the 3x3 conv "
                "(hidden_act: relu, downsample_in_bottleneck: false)"
            )
        stem = int(cfg.get("embedding_size", 64))
        depths = [int(d) for d in cfg.get("depths", [3, 4, 6, 3])]
        sizes = [int(c) for c in cfg.get("hidden_sizes", [256, 512, 1024, 2048])]
        self.stem = nn.Sequential(
            nn.Conv2d(int(cfg.get("num_channels", 3)), stem, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        first = 2 if cfg.get("downsample_in_first_stage", False) else 1
        self.stages = nn.ModuleList()
        c_in, stride = stem, 4
        self.strides = [stride]
        for i, (depth, c_out) in enumerate(zip(depths, sizes, strict=True)):
            s = first if i == 0 else 2
            blocks = []
            for j in range(depth):
                s_j, c_j = (s, c_in) if j == 0 else (1, c_out)
                down = None
                if c_j != c_out or s_j != 1:
                    down = nn.Sequential(
                        nn.Conv2d(c_j, c_out, 1, stride=s_j, bias=False), nn.BatchNorm2d(c_out)
                    )
                if kind == "bottleneck":
                    blocks.append(Bottleneck(c_j, c_out // 4, stride=s_j, downsample=down))
                else:
                    blocks.append(BasicBlock(c_j, c_out, stride=s_j, downsample=down))
            self.stages.append(nn.Sequential(*blocks))
            c_in, stride = c_out, stride * s
            self.strides.append(stride)
        self.stage_names = _stage_names(cfg)
        self.channels = [stem, *sizes]
        self.indices = indices


def build_hf_hierarchical(cfg: Mapping, out_indices: list[int] | None) -> nn.Module:
    """The encoder for `cfg` (a Hugging Face config), tapping `out_indices` of its
    `stage_names` (all by default, as sleap-nn asks)."""
    n = len(cfg.get("depths", [3, 3, 9, 3])) + 1
    indices = sorted({int(i) % n for i in out_indices}) if out_indices else list(range(n))
    if cfg.get("model_type") == "resnet":
        return HFResNet(cfg, indices)
    if cfg.get("model_type") == "swinv2":
        from posekit.architectures.hf_swinv2 import HFSwinv2

        return HFSwinv2(cfg, indices)
    return HFConvNeXt(cfg, indices)


# (Hugging Face pattern, posekit replacement), tried in order on the key below the prefix
_CONVNEXT_KEYS = [
    (r"embeddings\.patch_embeddings\.", "stem.0."),
    (r"embeddings\.layernorm\.", "stem.1."),
    (r"encoder\.stages\.(\d+)\.downsampling_layer\.", r"stages.\1.downsample."),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.dwconv\.", r"stages.\1.blocks.\2.conv_dw."),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layernorm\.", r"stages.\1.blocks.\2.norm."),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.pwconv1\.", r"stages.\1.blocks.\2.mlp.fc1."),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.pwconv2\.", r"stages.\1.blocks.\2.mlp.fc2."),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.grn\.", r"stages.\1.blocks.\2.mlp.grn."),
    (
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer_scale_parameter$",
        r"stages.\1.blocks.\2.gamma",
    ),
    (r"hidden_states_norms\.", "hidden_states_norms."),
]
_RESNET_KEYS = [
    (r"embedder\.embedder\.convolution\.", "stem.0."),
    (r"embedder\.embedder\.normalization\.", "stem.1."),
    (
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.",
        r"stages.\1.\2.downsample.0.",
    ),
    (
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.",
        r"stages.\1.\2.downsample.1.",
    ),
    (
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.convolution\.",
        r"stages.\1.\2.conv@\3.",
    ),
    (
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.normalization\.",
        r"stages.\1.\2.bn@\3.",
    ),
]
#: Hugging Face weights an AutoBackbone drops: the classifier and its pooled norm.
_NOT_BACKBONE = ("classifier.", "layernorm.", "pooler.")


def hf_to_posekit(state: Mapping[str, torch.Tensor], encoder: nn.Module, prefix: str = "") -> dict:
    """posekit's keys (relative to `encoder`) for Hugging Face's keys under `prefix`.
    A classifier's head and pooled norm are dropped; any other unknown key is an error."""
    if encoder.__class__.__name__ == "HFSwinv2":
        from posekit.architectures.hf_swinv2 import hf_to_posekit as swinv2_keys

        return swinv2_keys(state, prefix)
    resnet = isinstance(encoder, HFResNet)
    table = _RESNET_KEYS if resnet else _CONVNEXT_KEYS
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name.startswith(_NOT_BACKBONE):
            continue
        for pattern, repl in table:
            new, hits = re.subn("^" + pattern, repl, name)
            if hits:
                break
        else:
            unknown.append(key)
            continue
        if "@" in new:  # torchvision numbers a block's convs from 1
            new = re.sub(r"(conv|bn)@(\d)", lambda m: f"{m[1]}{int(m[2]) + 1}", new)
        if ".mlp.grn." in new:  # Hugging Face's GRN parameters are (1, 1, 1, C)
            value = value.reshape(-1)
        out[new] = value
    if unknown:
        kind = "ResNet" if resnet else "ConvNeXt"
        raise PosekitError(
            f"{len(unknown)} weights have no place in posekit's Hugging Face {kind} (e.g. "
            f"{unknown[0]}); is the config the one the weights were trained with?"
        )
    return out


_CONVNEXT_BACK = invert_rules(_CONVNEXT_KEYS)
_RESNET_BACK = invert_rules(_RESNET_KEYS)


def posekit_to_hf(state: Mapping[str, torch.Tensor], encoder: nn.Module) -> dict:
    """`hf_to_posekit` backwards: Hugging Face's keys for posekit's weights of `encoder`
    (keys relative to it), as sleap-nn's checkpoints hold them."""
    if encoder.__class__.__name__ == "HFSwinv2":
        from posekit.architectures.hf_swinv2 import posekit_to_hf as swinv2_back

        return swinv2_back(state)
    resnet = isinstance(encoder, HFResNet)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        if resnet:  # torchvision's conv1..3 / bn1..3 are Hugging Face's layer.0..2
            name = re.sub(r"\.(conv|bn)(\d)\.", lambda m: f".{m[1]}@{int(m[2]) - 1}.", name)
        new = rename_by_rules(name, _RESNET_BACK if resnet else _CONVNEXT_BACK)
        if new is None:
            raise PosekitError(f"enc.{key} has no Hugging Face name; it cannot go to sleap-nn")
        out[new] = value.reshape(1, 1, 1, -1) if ".grn." in new else value
    return out


__all__ = [
    "HF_HIERARCHICAL_TYPES",
    "HFConvNeXt",
    "HFResNet",
    "build_hf_hierarchical",
    "hf_hierarchical_sizes",
    "hf_to_posekit",
    "posekit_to_hf",
]
