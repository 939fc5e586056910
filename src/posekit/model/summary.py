"""`posekit summary`: parameters, output shapes, strides, FLOPs and receptive field of a config.

The network is built on PyTorch's meta device: tensors there have shapes but no storage,
so even a 138M-parameter UNet is "built" and "run" in well under a second and without
allocating its weights. Everything reported is computed from shapes:

- parameter counts follow Keras (SLEAP) conventions: `non_trainable_params` holds frozen
  weights plus BatchNorm moving mean/variance (not PyTorch's `num_batches_tracked`),
  and `total_params = trainable_params + non_trainable_params`;
- `gflops` is per frame: 2 x multiply-adds of every Conv2d, ConvTranspose2d and Linear
  layer (a transposed conv is counted over its whole uncropped output, which is what it
  computes); activations, BatchNorm, pooling and interpolation are not counted;
- `receptive_field` is theoretical, in input pixels along the height: the size of the
  input window that can influence one output pixel, following every path through the
  network. Each convolution or pooling adds `(effective kernel - 1) * jump` (jump: the
  distance in input pixels between neighbouring pixels of its input) and multiplies the
  jump by its stride; a transposed convolution adds `(ceil(k / s) - 1) * jump` and divides
  the jump by `s`; bilinear upsampling adds one input step, nearest none; a global
  pooling makes it the whole image; concatenation and addition take the largest of their
  inputs. The effective receptive field (where gradients are actually large) is smaller.
  Attention (Swin's windows) mixes tokens by content: past it there is none (None).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError

DEFAULT_SIZE = 256
_ATTENTION = "receptive field: none through attention layers (their reach depends on content)"
PLACEHOLDER_PARTS = [f"p{i}" for i in range(5)]
PLACEHOLDER_EDGES = [(f"p{i}", f"p{i + 1}") for i in range(4)]
PLACEHOLDER_CLASSES = ["class0", "class1"]


# --------------------------------------------------------------------------- loading


def _load(config_or_path: Any) -> tuple[Any, str]:
    """Config object (and a description of where it came from)."""
    from torch import nn

    if isinstance(config_or_path, nn.Module):
        return config_or_path, type(config_or_path).__name__
    if isinstance(config_or_path, str | Path):
        from posekit.config.job import load_config

        return load_config(config_or_path), str(config_or_path)
    if isinstance(config_or_path, dict):
        return _from_tree(config_or_path), "dict"
    return config_or_path, type(config_or_path).__name__


def _from_tree(data: Any) -> Any:
    from posekit.config.model import BackboneConfig, ModelConfig

    if not isinstance(data, dict):
        raise PosekitError("a config must be a mapping (JSON object)")
    if "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    if set(data) & {"backbone", "heads", "base_checkpoint"}:
        return ModelConfig.model_validate(data)
    return BackboneConfig.model_validate(data)


# --------------------------------------------------------------------------- building


def _backbone_config(config: Any) -> Any:
    """The specific backbone config (UNetConfig, ...) inside any config object."""
    from posekit.config.model import BackboneConfig, ModelConfig

    model_cfg = getattr(config, "model", None)
    if isinstance(model_cfg, ModelConfig):
        config = model_cfg
    if isinstance(config, ModelConfig):
        config = config.backbone
    if isinstance(config, BackboneConfig):
        config = config.which_oneof()
    return config


def _missing_names(heads_cfg: Any) -> list[str]:
    """Fields (part_names, edges, classes) the head config leaves null."""
    from pydantic import BaseModel

    missing: list[str] = []

    def visit(cfg: Any) -> None:
        if not isinstance(cfg, BaseModel):
            return
        for name in type(cfg).model_fields:
            value = getattr(cfg, name)
            if name in ("part_names", "edges", "classes") and value is None:
                missing.append(name)
            else:
                visit(value)

    visit(heads_cfg)
    return sorted(set(missing))


def _default_channels(config: Any) -> int:
    from torch import nn

    from posekit.architectures.registry import spec_for

    if isinstance(config, nn.Module):
        return int(getattr(config, "in_channels", 1))
    data = getattr(config, "data", None)
    pre = getattr(data, "preprocessing", None)
    if pre is not None and getattr(pre, "ensure_rgb", False):
        return 3
    backbone = _backbone_config(config)
    if backbone is None:
        return 1  # building it will say what is missing
    return int(spec_for(backbone).default_in_channels(backbone))


def _skeleton_names(config: Any) -> tuple[list[str] | None, list[tuple[str, str]] | None]:
    data = getattr(config, "data", None)
    skeletons = getattr(getattr(data, "labels", None), "skeletons", None) or []
    if not skeletons:
        return None, None
    sk = skeletons[0]
    return list(sk.node_names), [tuple(e) for e in getattr(sk, "edges", [])]


def _build(config: Any, in_channels: int, notes: list[str], input_size=None):
    """Build the module on the meta device: a `Model` for model/job configs, else a backbone."""
    import copy

    import torch
    from torch import nn

    if isinstance(config, nn.Module):
        # Already built: summarise a meta-device copy so nothing is computed for real.
        if any(not p.is_meta for p in config.parameters()):
            config = copy.deepcopy(config).to("meta")
        return config, hasattr(config, "head_layers")

    from posekit.config.model import ModelConfig

    model_cfg = getattr(config, "model", None)
    is_model = isinstance(model_cfg, ModelConfig) or isinstance(config, ModelConfig)
    if is_model:
        mc = model_cfg if isinstance(model_cfg, ModelConfig) else config
        if mc.heads.which_oneof() is None:
            notes.append("the config has no heads: summarising the backbone alone")
            is_model = False
    with torch.device("meta"):
        if not is_model:
            from posekit.architectures import build_backbone

            return build_backbone(_backbone_config(config), in_channels=in_channels), False
        from posekit.model.network import build

        parts, edges = _skeleton_names(config)
        missing = _missing_names(mc.heads)
        if parts is None and ({"part_names", "edges"} & set(missing)):
            parts, edges = PLACEHOLDER_PARTS, PLACEHOLDER_EDGES
            notes.append(
                "the config names no body parts: using 5 placeholder parts p0..p4 with "
                "chain edges (output channels depend on the real skeleton)"
            )
        classes = None
        if "classes" in missing:
            classes = PLACEHOLDER_CLASSES
            notes.append("the config names no classes: using 2 placeholder classes")
        model = build(
            mc,
            in_channels=in_channels,
            part_names=parts,
            edges=edges,
            classes=classes,
            input_size=input_size,
        )
        return model, True


# --------------------------------------------------------------------------- measuring


class _ReceptiveFieldMode:
    """Propagates (receptive field, jump) along the H axis through every torch op."""

    ATTR = "_posekit_rf"

    def __init__(self) -> None:
        from torch.overrides import TorchFunctionMode

        attr = self.ATTR

        def info(obj):
            return getattr(obj, attr, None)

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                import torch
                from torch.utils._pytree import tree_flatten

                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                flat, _ = tree_flatten((args, kwargs))
                infos = [info(t) for t in flat if isinstance(t, torch.Tensor)]
                infos = [i for i in infos if i is not None]
                if not infos:
                    return out
                rfs = [i[0] for i in infos]
                rf = math.nan if any(math.isnan(r) for r in rfs) else max(rfs)
                jump = min(i[1] for i in infos)
                x = next(t for t in flat if isinstance(t, torch.Tensor) and info(t) is not None)
                name = getattr(func, "__name__", "")
                rf, jump = _rf_step(name, func, args, kwargs, x, out, rf, jump)
                outs, _ = tree_flatten(out)
                for t in outs:
                    if isinstance(t, torch.Tensor) and t is not x and info(t) is None:
                        try:
                            setattr(t, attr, (rf, jump))
                        except (AttributeError, RuntimeError):
                            pass
                    elif isinstance(t, torch.Tensor) and t is x and name.endswith("_"):
                        setattr(t, attr, (rf, jump))  # in-place op
                return out

        self.mode = Mode()


def _arg(args, kwargs, index: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _first(v) -> int:
    return int(v[0]) if isinstance(v, list | tuple) else int(v)


def _rf_step(name, func, args, kwargs, x, out, rf, jump):
    """How one op changes (receptive field, jump); see the module docstring."""
    import torch

    if name == "conv2d":
        weight = _arg(args, kwargs, 1, "weight")
        stride = _first(_arg(args, kwargs, 3, "stride", 1))
        dilation = _first(_arg(args, kwargs, 5, "dilation", 1))
        k = (int(weight.shape[-2]) - 1) * dilation + 1
        return rf + (k - 1) * jump, jump * stride
    if name == "conv_transpose2d":
        weight = _arg(args, kwargs, 1, "weight")
        stride = _first(_arg(args, kwargs, 3, "stride", 1))
        k = int(weight.shape[-2])
        return rf + (math.ceil(k / stride) - 1) * jump, jump / stride
    if name in ("matmul", "bmm", "baddbmm", "scaled_dot_product_attention"):
        return math.nan, jump  # attention mixes tokens: no theoretical receptive field
    if "adaptive" in name and "pool" in name:
        return math.inf, jump  # global pooling: every output sees the whole image
    if name in ("mean", "amax", "sum", "max") and (
        isinstance(out, torch.Tensor) and out.ndim < x.ndim
    ):
        return math.inf, jump
    if "max_pool2d" in name or "avg_pool2d" in name:
        k = _first(_arg(args, kwargs, 1, "kernel_size"))
        stride = _arg(args, kwargs, 2, "stride", None)
        stride = k if stride in (None, [], ()) else _first(stride)
        return rf + (k - 1) * jump, jump * stride
    if name == "interpolate" and isinstance(out, torch.Tensor) and out.ndim == 4:
        scale = out.shape[-2] / x.shape[-2]
        mode = _arg(args, kwargs, 3, "mode", "nearest")
        extra = {"bilinear": 1, "bicubic": 3}.get(mode, 0)
        return rf + extra * jump, jump / scale
    return rf, jump


def _layer_groups(backbone: Any) -> tuple[str, ...]:
    """The registry's row patterns for this backbone class (SLEAP's names if unknown)."""
    from posekit.architectures.registry import BACKBONES, SLEAP_LAYER_GROUPS

    builder = f"{type(backbone).__module__}:{type(backbone).__name__}"
    for spec in BACKBONES.values():
        if spec.builder == builder:
            return spec.layer_groups
    return SLEAP_LAYER_GROUPS


def _group_of(path: str, patterns: list[re.Pattern]) -> str:
    """The summary row of a layer: the first block name (leaf up) a pattern matches."""
    parts = path.split(".")
    for part in reversed(parts):
        for pattern in patterns:
            m = pattern.match(part)
            if m:
                return m.group(1)
    return ".".join(parts[:-1][:3]) or path


def _macs(module, inputs, output) -> int:
    from torch import nn

    x = inputs[0]
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = module.kernel_size
        per_in = module.out_channels // module.groups * kh * kw
        return int(x[0].numel()) * per_in
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_out = module.in_channels // module.groups * kh * kw
        return int(output[0].numel()) * per_out
    if isinstance(module, nn.Linear):
        return int(output.numel() // output.shape[0]) * module.in_features
    return 0


def _unhooked_records(hooked: dict, fired: dict) -> list[dict]:
    """Rows for weighted layers whose module never ran: a parent used their weights itself.

    torchvision's Swin attention calls `F.linear` with its `qkv` and `proj` weights, so
    their hooks never fire. Their parameters still count, and a Linear's multiply-adds
    are taken per token of the nearest parent that ran (its output without the last axis).
    """
    rows = []
    for path, (module, group) in hooked.items():
        params = list(module.parameters(recurse=False))
        if path in fired or not params:
            continue
        parent = next(
            (fired[p] for p in sorted(fired, key=len, reverse=True) if path.startswith(p + ".")),
            None,
        )
        macs = 0
        if parent and module.__class__.__name__ == "Linear":
            macs = math.prod(parent[:-1]) * module.in_features * module.out_features
        rows.append(
            dict(
                group=group,
                shape=None,
                trainable=sum(p.numel() for p in params if p.requires_grad),
                non_trainable=sum(p.numel() for p in params if not p.requires_grad),
                macs=macs,
                weighted=True,
            )
        )
    return rows


def _is_bn(module) -> bool:
    from torch.nn.modules.batchnorm import _BatchNorm

    return isinstance(module, _BatchNorm)


def _param_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = 0
    for m in model.modules():
        if _is_bn(m):
            for name in ("running_mean", "running_var"):
                buf = getattr(m, name, None)
                if buf is not None:
                    stats += buf.numel()
    return trainable, frozen + stats


def summary(config_or_path: Any, input_shape: Any = None) -> dict:
    """Summarise the network a config describes, without allocating its weights.

    Args:
        config_or_path: a config object (`TrainingJobConfig`, `ModelConfig`,
            `BackboneConfig` or a single backbone config), a dict, a path to a JSON/YAML
            config (a SLEAP `training_config.json` or profile works), or an already built
            backbone / `Model` (summarised on a meta-device copy).
        input_shape: `(H, W, C)` or `(H, W)` of one frame. Default: the config's crop size
            (top-down) or 256 x 256, rounded up to the maximum stride; channels from
            `ensure_rgb` (3 for ResNet/pretrained encoders, else 1).

    Returns:
        A JSON-serialisable dict: `total_params`, `trainable_params`,
        `non_trainable_params`, `outputs` (`name`, `shape` [N, C, H, W], `stride`,
        `receptive_field`), `max_stride`, `output_stride`, `gflops`, `receptive_field`,
        `input_shape` [H, W, C], `layers` (rows per layer group), `model`, `source`,
        `notes`. See the module docstring for how FLOPs and receptive fields are computed.
    """
    import torch
    from torch import nn

    from posekit.model.registry import model_type

    config, source = _load(config_or_path)
    notes: list[str] = []

    # Input shape.
    channels = None
    height = width = None
    if input_shape is not None:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise PosekitError(
                f"input_shape={input_shape!r} must be H,W or H,W,C positive integers "
                f"(e.g. 384,384,1)"
            )
        height, width = shape[:2]
        if len(shape) == 3:
            channels = shape[2]
    if channels is None:
        channels = _default_channels(config)

    model, is_model = _build(
        config, channels, notes, input_size=(height, width) if height is not None else None
    )
    backbone = model.backbone if is_model else model
    max_stride = int(backbone.maximum_stride)
    output_stride = int(backbone.output_stride)

    if height is None:
        crop = None
        cropping = getattr(getattr(config, "data", None), "instance_cropping", None)
        kind = getattr(model, "model_type", None) if is_model else None
        if cropping is not None and kind is not None and model_type(kind).crops:
            crop = cropping.crop_size
        height = width = int(crop or DEFAULT_SIZE)
    ph = math.ceil(height / max_stride) * max_stride
    pw = math.ceil(width / max_stride) * max_stride
    if (ph, pw) != (height, width):
        notes.append(
            f"input {height}x{width} padded to {ph}x{pw} (multiples of the maximum stride "
            f"{max_stride}), as preprocessing does"
        )
        height, width = ph, pw

    # Hooks: per-leaf output shapes, parameters and multiply-adds.
    records: list[dict] = []
    handles = []
    hooked: dict[str, tuple[Any, str]] = {}  # path -> (module, row)
    fired: dict[str, list[int] | None] = {}  # path -> output shape, for hooks that ran
    patterns = [re.compile(p) for p in _layer_groups(backbone)]
    for path, module in model.named_modules():
        # Leaves, and containers with weights of their own (ConvNeXt's layer scale,
        # Swin's relative position table); empty containers are no layer.
        own_params = any(True for _ in module.parameters(recurse=False))
        if any(True for _ in module.children()) and not own_params:
            continue
        if isinstance(module, nn.Sequential | nn.ModuleList | nn.ModuleDict) and not own_params:
            continue
        group = _group_of(path or type(module).__name__, patterns)
        hooked[path] = (module, group)

        def hook(mod, inputs, output, group=group, path=path):
            shape = list(output.shape) if isinstance(output, torch.Tensor) else None
            fired[path] = shape
            own = list(mod.parameters(recurse=False))
            stats = 0
            if _is_bn(mod):
                stats = sum(b.numel() for b in (mod.running_mean, mod.running_var) if b is not None)
            records.append(
                dict(
                    group=group,
                    shape=shape,
                    trainable=sum(p.numel() for p in own if p.requires_grad),
                    non_trainable=sum(p.numel() for p in own if not p.requires_grad) + stats,
                    macs=_macs(mod, inputs, output),
                    weighted=bool(own),
                )
            )

        handles.append(module.register_forward_hook(hook))

    x = torch.zeros(1, channels, height, width, device="meta")
    setattr(x, _ReceptiveFieldMode.ATTR, (1, 1))
    rf_mode = _ReceptiveFieldMode().mode
    try:
        with torch.no_grad(), rf_mode:
            if is_model and hasattr(model, "forward_stacks"):
                raw = model.forward_stacks(x)
                stacks = len(next(iter(raw.values()))) if raw else 1
                named = []
                for name, outs in raw.items():
                    for i, out in enumerate(outs):
                        named.append((name if stacks == 1 else f"{name}_{i}", out))
            elif is_model:
                named = list(model(x).items())
            else:
                feats = model.forward_features(x)
                named = [
                    ("backbone" if len(feats) == 1 else f"backbone_stack{i}", f[output_stride])
                    for i, f in enumerate(feats)
                ]
    finally:
        for h in handles:
            h.remove()
    records += _unhooked_records(hooked, fired)

    outputs = []
    for name, out in named:
        stride = None
        if out.ndim == 4 and out.shape[-2]:
            stride = int(round(height / out.shape[-2]))
        rf_info = getattr(out, _ReceptiveFieldMode.ATTR, None)
        rf = None
        if rf_info is not None and math.isfinite(rf_info[0]):
            rf = int(round(rf_info[0]))
        if rf_info is not None and math.isnan(rf_info[0]) and not notes[-1:] == [_ATTENTION]:
            notes.append(_ATTENTION)
        outputs.append(dict(name=name, shape=list(out.shape), stride=stride, receptive_field=rf))
    map_rfs = [o["receptive_field"] for o in outputs if o["receptive_field"] is not None]

    # Layer groups, in execution order.
    groups: dict[str, dict] = {}
    for r in records:
        g = groups.setdefault(
            r["group"],
            dict(name=r["group"], layers=0, params=0, trainable_params=0, macs=0, shape=None),
        )
        g["layers"] += int(r["weighted"])
        g["params"] += r["trainable"] + r["non_trainable"]
        g["trainable_params"] += r["trainable"]
        g["macs"] += r["macs"]
        if r["shape"] is not None:
            g["shape"] = r["shape"]
    layers = []
    for g in groups.values():
        shape = g["shape"]
        stride = None
        if shape is not None and len(shape) == 4 and shape[-2]:
            stride = int(round(height / shape[-2]))
        layers.append(
            dict(
                name=g["name"],
                weighted_layers=g["layers"],
                output_shape=shape,
                stride=stride,
                params=int(g["params"]),
                trainable_params=int(g["trainable_params"]),
                gflops=2 * g["macs"] / 1e9,
            )
        )

    trainable, non_trainable = _param_counts(model)
    return dict(
        model=type(model).__name__,
        backbone=type(backbone).__name__,
        source=source,
        input_shape=[height, width, channels],
        total_params=int(trainable + non_trainable),
        trainable_params=int(trainable),
        non_trainable_params=int(non_trainable),
        outputs=outputs,
        max_stride=max_stride,
        output_stride=output_stride,
        gflops=2 * sum(r["macs"] for r in records) / 1e9,
        receptive_field=max(map_rfs) if map_rfs else None,
        layers=layers,
        notes=notes,
    )


def print_summary(info: dict, console: Any = None) -> None:
    """Print `summary()`'s result: a table per layer group, then outputs and totals."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    h, w, c = info["input_shape"]
    table = Table(title=f"{info['model']} ({info['backbone']}) on {h}x{w}x{c} input")
    table.add_column("Layer group")
    table.add_column("Weighted layers", justify="right")
    table.add_column("Output shape (NCHW)")
    table.add_column("Stride", justify="right")
    table.add_column("Params", justify="right")
    table.add_column("GFLOPs", justify="right")
    for row in info["layers"]:
        table.add_row(
            row["name"],
            str(row["weighted_layers"]),
            "x".join(str(v) for v in row["output_shape"]) if row["output_shape"] else "-",
            "-" if row["stride"] is None else str(row["stride"]),
            f"{row['params']:,}",
            f"{row['gflops']:.3f}",
        )
    console.print(table)

    outs = Table(title="Outputs")
    outs.add_column("Name")
    outs.add_column("Shape (NCHW)")
    outs.add_column("Stride", justify="right")
    outs.add_column("Receptive field", justify="right")
    for o in info["outputs"]:
        outs.add_row(
            o["name"],
            "x".join(str(v) for v in o["shape"]),
            "-" if o["stride"] is None else str(o["stride"]),
            f"{o['receptive_field']} px"
            if o["receptive_field"] is not None
            else ("-" if _ATTENTION in info["notes"] else "global"),
        )
    console.print(outs)

    console.print(f"Total params:         {info['total_params']:,}")
    console.print(f"Trainable params:     {info['trainable_params']:,}")
    console.print(
        f"Non-trainable params: {info['non_trainable_params']:,} "
        f"(frozen weights + BatchNorm moving statistics)"
    )
    console.print(f"Max stride: {info['max_stride']}   Output stride: {info['output_stride']}")
    console.print(f"GFLOPs per frame: {info['gflops']:.3f} (2 x multiply-adds of conv/linear)")
    rf = info["receptive_field"]
    console.print(f"Receptive field: {'-' if rf is None else f'{rf} px'} (theoretical)")
    for note in info.get("notes", []):
        console.print(f"Note: {note}")


__all__ = ["print_summary", "summary"]
