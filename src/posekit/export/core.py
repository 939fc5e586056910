"""Export posekit models to ONNX and TorchScript, optionally with pre- and post-processing.

A real-time rig should not need posekit (or even Python) to run a trained network, so an
export can carry the whole per-frame pipeline:

    uint8 frames --[preprocessing]--> network --[peak finding]--> peaks in frame pixels

Each part is optional; the network alone is the default.

**The contract** (also written next to the exported file as `<file>.json`, and inside a
TorchScript archive as `extra/posekit_export.json`):

Input (exactly one):
  - ``image`` float32 (N, C, H, W): the network input, already preprocessed (values as
    `Model.preprocess` makes them; H and W multiples of ``max_stride``). Used when
    preprocessing is not included.
  - ``frames`` uint8 (N, H, W, C_frames): raw video frames, NHWC as video readers give
    them. The graph converts to float [0, 1], to the model's channel count (TensorFlow's
    grayscale weights), applies ImageNet normalisation when the model was trained with it,
    resizes by ``input_scale`` (bilinear, half-pixel centres, size truncated) and zero-pads
    bottom/right to a multiple of ``pad_to_stride``; exactly `Model.preprocess`.

Outputs, network only: one tensor per head, in ``model.heads`` order, named after the
head class (``CentroidConfmapsHead``, ``PartAffinityFieldsHead``, ...). Map heads are
(N, channels, H / stride, W / stride) float32 where H, W is the network input size; a
class-vectors head is (N, classes) probabilities.

Outputs with peak finding (``include_postprocessing=True``):
  - single-instance and centered-instance models (also the confidence maps of top-down
    multi-class models): ``peaks`` (N, parts, 2) float32 (x, y) and ``peak_values``
    (N, parts) float32. The global maximum of each map, refined by integral regression
    over a 5 x 5 patch (or by the offset-refinement head when the model has one). A peak
    whose value is below ``peak_threshold`` has NaN coordinates but keeps its value.
  - centroid and multi-instance models (also multi-class bottom-up): ``peaks``
    (N, channels, K, 2) and ``peak_values`` (N, channels, K) with K = ``max_peaks``: the K
    strongest local maxima (strictly above all 8 neighbours and above
    ``peak_threshold``), strongest first, refined as above. Unused slots have NaN
    coordinates and value 0. Centroid models have one channel.
  - every other head's raw output follows, named after the head (PAFs for grouping,
    class maps, class vectors); the offset head is consumed by the refinement.

Peak coordinates are in pixels of the frame *before* input scaling (SLEAP's convention:
map pixel i sits at i * stride; with input scaling s != 1 the point is divided by s and
0.5 is added). For centered-instance models that frame is the crop: add the crop origin.

Shapes are dynamic in batch, height and width (sizes that are multiples of the stride for
``image``; any size for ``frames``) unless ``dynamic=False`` or the model has a
class-vectors head without global pooling (its dense layer fixes the feature size), in
which case only the batch is dynamic.

ONNX export uses `torch.onnx.export`'s TorchScript-based exporter (opset >= 17), falling
back to the dynamo exporter (which needs the `onnxscript` package) only if that fails. The
result is checked with onnxruntime (optional dependency, `pip install posekit[export]`) on
the example input and, for dynamic exports, on a second size before the file is moved into
place. Files are written to a temporary name and renamed, so an interrupted export never
leaves a broken model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

DEFAULT_OPSET = 17
DEFAULT_MAX_PEAKS = 32
SIDECAR_SUFFIX = ".json"
TORCHSCRIPT_EXTRA_FILE = "posekit_export.json"
CONTRACT_VERSION = 1

_GLOBAL_PEAK_HEADS = ("SingleInstanceConfmapsHead", "CenteredInstanceConfmapsHead")
_LOCAL_PEAK_HEADS = ("CentroidConfmapsHead", "MultiInstanceConfmapsHead")
_OFFSET_HEAD = "OffsetRefinementHead"


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the contract JSON of an exported file goes: `<file>.json` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


# --------------------------------------------------------------------------- the graph


def _preprocessing_settings(model) -> dict[str, Any]:
    """What `Model.preprocess` does for this model, as plain values."""
    pre = model.config.data.preprocessing if getattr(model, "config", None) is not None else None
    stride = int(model.maximum_stride)
    if pre is not None and pre.pad_to_stride:
        stride = max(stride, int(pre.pad_to_stride))
    return {
        "in_channels": int(getattr(model, "in_channels", 1)),
        "input_scale": float(model.input_scale),
        "pad_to_stride": stride,
        "imagenet_mode": getattr(pre, "imagenet_mode", None),
    }


def _has_flatten_head(model) -> bool:
    from posekit.heads import ClassVectorsHead

    return any(isinstance(h, ClassVectorsHead) and not h.global_pool for h in model.heads)


def _make_export_module(
    model,
    include_preprocessing: bool,
    include_postprocessing: bool,
    frame_channels: int | None,
    peak_threshold: float,
    max_peaks: int,
    refinement: str | None,
    integral_patch_size: int,
    use_offsets: bool,
):
    """Build the traceable wrapper (a class defined lazily so torch loads only here)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from posekit.model.preprocessing import grayscale_to_rgb, normalize_imagenet, rgb_to_grayscale

    class ExportModule(nn.Module):
        """`model` with optional in-graph preprocessing and peak finding (see module doc).

        Everything in `forward` is written so that tracing records shape arithmetic as
        graph operations (no Python branches on sizes), which keeps the exported graph
        valid for every input size.
        """

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.head_names = [h.name for h in model.heads]
            self.include_preprocessing = bool(include_preprocessing)
            self.include_postprocessing = bool(include_postprocessing)
            pre = _preprocessing_settings(model)
            self.in_channels = pre["in_channels"]
            self.frame_channels = int(frame_channels or self.in_channels)
            if self.frame_channels not in (1, 3) and self.frame_channels != self.in_channels:
                raise PosekitError(
                    f"frame_channels={self.frame_channels}: frames must have 1 or 3 channels, "
                    f"or as many as the model takes ({self.in_channels})"
                )
            self.input_scale = pre["input_scale"]
            self.pad_stride = pre["pad_to_stride"]
            self.imagenet_mode = pre["imagenet_mode"]
            self.peak_threshold = float(peak_threshold)
            self.max_peaks = int(max_peaks)
            self.patch = int(integral_patch_size)

            self.peak_kind: str | None = None
            self.cms_name: str | None = None
            self.offset_name: str | None = None
            self.cms_stride = 1
            self.passthrough = list(self.head_names)
            if self.include_postprocessing:
                for head in model.heads:
                    if head.name in _GLOBAL_PEAK_HEADS + _LOCAL_PEAK_HEADS:
                        self.cms_name = head.name
                        self.cms_stride = int(head.output_stride)
                        self.peak_kind = "global" if head.name in _GLOBAL_PEAK_HEADS else "local"
                        break
                if self.cms_name is None:  # pragma: no cover - every model type has one
                    raise PosekitError(
                        f"{model.model_type} model has no confidence-map head to find peaks on"
                    )
                offset_head = next((h for h in model.heads if h.name == _OFFSET_HEAD), None)
                if offset_head is not None and use_offsets:
                    if int(offset_head.output_stride) != self.cms_stride:
                        raise PosekitError(  # pragma: no cover - heads share the stride
                            "the offset-refinement head must have the confidence maps' stride"
                        )
                    self.offset_name = offset_head.name
                self.refinement = "offsets" if self.offset_name else refinement
                self.passthrough = [
                    n for n in self.head_names if n not in (self.cms_name, _OFFSET_HEAD)
                ]
            else:
                self.refinement = None

            p = self.patch
            g = torch.arange(p, dtype=torch.float32) - (p - 1) / 2
            rows, cols = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
            # Buffers (not constants) so `.to(device)` moves them with the module.
            self.register_buffer("patch_g", g, persistent=False)
            self.register_buffer("patch_rows", rows.reshape(-1), persistent=False)
            self.register_buffer("patch_cols", cols.reshape(-1), persistent=False)

        # ---- names

        @property
        def input_name(self) -> str:
            return "frames" if self.include_preprocessing else "image"

        @property
        def output_names(self) -> list[str]:
            if not self.include_postprocessing:
                return list(self.head_names)
            return ["peaks", "peak_values", *self.passthrough]

        # ---- preprocessing

        def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
            x = frames.permute(0, 3, 1, 2).to(torch.float32) / 255.0
            if self.in_channels == 3 and self.frame_channels == 1:
                x = grayscale_to_rgb(x)
            elif self.in_channels == 1 and self.frame_channels == 3:
                x = rgb_to_grayscale(x)
            x = normalize_imagenet(x, self.imagenet_mode)
            if self.input_scale != 1.0:
                # Output size floor(size * scale), coordinates mapped with the size ratio:
                # what `resize_images` does with an explicit size, but traceable.
                x = F.interpolate(
                    x,
                    scale_factor=self.input_scale,
                    mode="bilinear",
                    align_corners=False,
                    recompute_scale_factor=True,
                    antialias=False,
                )
            s = self.pad_stride
            if s > 1:
                h, w = x.shape[-2], x.shape[-1]
                x = F.pad(x, (0, (s - w % s) % s, 0, (s - h % s) % s))
            return x

        # ---- peak finding (grid units -> frame pixels)

        def _refine(
            self,
            cms: torch.Tensor,
            offsets: torch.Tensor | None,
            idx: torch.Tensor,
            xs: torch.Tensor,
            ys: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            """(dx, dy) for peaks at flat index `idx` (N, C, K) of `cms` (N, C, H, W)."""
            n, c, h, w = cms.shape
            k = idx.shape[-1]
            if offsets is not None:
                off = offsets.reshape(n, c, 2, h * w)
                sel = idx.unsqueeze(2).expand(-1, -1, 2, -1)
                got = torch.gather(off, 3, sel)
                return got[:, :, 0].to(torch.float32), got[:, :, 1].to(torch.float32)
            if self.refinement != "integral":
                zero = xs.to(torch.float32) * 0.0
                return zero, zero
            p = self.patch
            half = p // 2
            padded = F.pad(cms, (half, half, half, half)).to(torch.float32)
            wp = w + 2 * half
            base = ys * wp + xs  # top-left of the patch in padded coordinates
            rel = self.patch_rows * wp + self.patch_cols  # (p * p,)
            where = (base.unsqueeze(-1) + rel).reshape(n, c, k * p * p)
            patches = torch.gather(padded.reshape(n, c, -1), 2, where).reshape(n, c, k, p, p)
            z = patches.sum(dim=(3, 4))
            dx = (patches * self.patch_g).sum(dim=(3, 4)) / z
            dy = (patches * self.patch_g.unsqueeze(-1)).sum(dim=(3, 4)) / z
            return dx, dy

        def _to_frame(self, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
            pts = torch.stack([gx, gy], dim=-1) * float(self.cms_stride)
            if self.input_scale != 1.0:
                pts = pts / self.input_scale + 0.5
            return pts

        def global_peaks(self, cms: torch.Tensor, offsets: torch.Tensor | None):
            n, c, h, w = cms.shape
            values, idx = cms.reshape(n, c, h * w).max(dim=-1)
            idx = idx.unsqueeze(-1)
            ys = torch.div(idx, w, rounding_mode="floor")
            xs = idx - ys * w
            dx, dy = self._refine(cms, offsets, idx, xs, ys)
            pts = self._to_frame((xs + dx).squeeze(-1), (ys + dy).squeeze(-1))
            below = (values < self.peak_threshold).unsqueeze(-1)
            pts = torch.where(below, float("nan"), pts)
            return pts, values

        def local_peaks(self, cms: torch.Tensor, offsets: torch.Tensor | None):
            n, c, h, w = cms.shape
            k = self.max_peaks
            padded = F.pad(cms, (1, 1, 1, 1), value=float("-inf"))
            neighbours = None
            for dy in range(3):
                for dx in range(3):
                    if dy == 1 and dx == 1:
                        continue
                    view = padded[:, :, dy : dy + h, dx : dx + w]
                    neighbours = view if neighbours is None else torch.maximum(neighbours, view)
            is_peak = (cms > neighbours) & (cms > self.peak_threshold)
            scores = torch.where(is_peak, cms, float("-inf")).reshape(n, c, h * w)
            # K extra -inf slots make top-k valid on maps with fewer than K pixels.
            scores = F.pad(scores, (0, k), value=float("-inf"))
            values, idx = torch.topk(scores, k, dim=-1)
            valid = values > float("-inf")
            idx = torch.where(valid, idx, 0)
            ys = torch.div(idx, w, rounding_mode="floor")
            xs = idx - ys * w
            ddx, ddy = self._refine(cms, offsets, idx, xs, ys)
            pts = self._to_frame(xs + ddx, ys + ddy)
            pts = torch.where(valid.unsqueeze(-1), pts, float("nan"))
            values = torch.where(valid, values, 0.0)
            return pts, values

        def forward(self, x: torch.Tensor):
            if self.include_preprocessing:
                x = self.preprocess(x)
            out = self.model(x)
            if not self.include_postprocessing:
                return tuple(out[name] for name in self.head_names)
            cms = out[self.cms_name]
            offsets = out[self.offset_name] if self.offset_name else None
            if self.peak_kind == "global":
                pts, values = self.global_peaks(cms, offsets)
            else:
                pts, values = self.local_peaks(cms, offsets)
            return (pts, values, *(out[name] for name in self.passthrough))

    return ExportModule()


def build_export_module(
    model,
    include_postprocessing: bool = False,
    include_preprocessing: bool | None = None,
    *,
    frame_channels: int | None = None,
    peak_threshold: float | None = None,
    max_peaks: int = DEFAULT_MAX_PEAKS,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    use_offsets: bool = True,
    fold_batchnorm: bool = True,
):
    """The module that gets exported: `model` (a copy, eval, on the CPU) plus options.

    Its `forward` takes the input named by `.input_name` and returns a tuple in
    `.output_names` order. Useful to run exactly what an export contains in PyTorch.
    Arguments are those of `export_onnx`.
    """
    from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD

    if include_preprocessing is None:
        include_preprocessing = include_postprocessing
    if refinement not in ("integral", None):
        raise PosekitError(f"refinement={refinement!r} cannot be exported; use 'integral' or None")
    if integral_patch_size < 1 or integral_patch_size % 2 == 0:
        raise PosekitError(
            f"integral_patch_size={integral_patch_size} must be a positive odd number"
        )
    if int(max_peaks) < 1:
        raise PosekitError(f"max_peaks={max_peaks} must be at least 1")
    if include_preprocessing and getattr(model, "config", None) is None:
        raise PosekitError(
            "including preprocessing needs the model's job config (input scaling, "
            "padding); load the model with posekit.load_model or set model.config"
        )
    net = copy.deepcopy(model).cpu().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if fold_batchnorm:
        from posekit.optimize import fold_batchnorms

        fold_batchnorms(net, _example_image(net, None, 1))
    return _make_export_module(
        net,
        include_preprocessing=bool(include_preprocessing),
        include_postprocessing=bool(include_postprocessing),
        frame_channels=frame_channels,
        peak_threshold=DEFAULT_PEAK_THRESHOLD if peak_threshold is None else peak_threshold,
        max_peaks=int(max_peaks),
        refinement=refinement,
        integral_patch_size=int(integral_patch_size),
        use_offsets=use_offsets,
    ).eval()


# --------------------------------------------------------------------------- inputs


def _network_size(model, input_shape) -> tuple[int, int]:
    """Network input (H, W) for an example: given, the model's own size, or 4 x stride."""
    stride = int(model.maximum_stride)
    if input_shape is not None:
        h, w = int(input_shape[0]), int(input_shape[1])
    elif getattr(model, "input_size", None):
        h, w = (int(v) for v in model.input_size)
    else:
        h = w = 4 * stride
    return -(-h // stride) * stride, -(-w // stride) * stride


def _example_image(model, input_shape, batch: int) -> torch.Tensor:
    import torch

    h, w = _network_size(model, input_shape)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, int(model.in_channels), h, w, generator=gen)


def _reference_outputs(module, examples) -> list[tuple]:
    """PyTorch's outputs on the examples, or a clear error when the input does not fit."""
    import torch

    try:
        with torch.no_grad():
            return [module(x) for x in examples]
    except (RuntimeError, ValueError) as err:
        shape = tuple(examples[0].shape)
        hint = ""
        if _has_flatten_head(module.model):
            hint = (
                f" The class-vectors head flattens its feature, so the network input must be "
                f"exactly {tuple(module.model.input_size or ())}; leave input_shape unset."
            )
        raise PosekitError(
            f"the model cannot run on an example {module.input_name} of shape {shape}: {err}.{hint}"
        ) from err


def _parse_input_shape(input_shape) -> tuple[int, int] | None:
    if input_shape is None:
        return None
    if isinstance(input_shape, str):
        input_shape = [v for v in input_shape.replace("x", ",").split(",") if v.strip()]
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise PosekitError(
            f"input_shape={input_shape!r} must be (height, width) or (height, width, "
            f"channels) of one input image, e.g. (384, 384)"
        )
    return shape[0], shape[1]


def _examples(module, input_shape, batch: int, dynamic: bool) -> list[torch.Tensor]:
    """The tracing input, plus a differently shaped one to verify dynamic exports."""
    import torch

    model = module.model
    static_size = _has_flatten_head(model)
    gen = torch.Generator().manual_seed(0)
    if module.include_preprocessing:
        scale = module.input_scale
        if input_shape is not None:
            fh, fw = input_shape
        else:
            nh, nw = _network_size(model, None)
            fh, fw = round(nh / scale), round(nw / scale)
        shapes = [(batch, fh, fw)]
        if dynamic:
            step = module.pad_stride
            shapes.append(
                (batch + 1, fh, fw)
                if static_size
                else (batch + 1, fh + step + 3, fw + 2 * step - 5)
            )
        return [
            torch.randint(0, 256, (*s, module.frame_channels), dtype=torch.uint8, generator=gen)
            for s in shapes
        ]
    h, w = _network_size(model, input_shape)
    shapes = [(batch, h, w)]
    if dynamic:
        s = int(model.maximum_stride)
        shapes.append((batch + 1, h, w) if static_size else (batch + 1, h + s, w + 2 * s))
    return [torch.rand(n, int(model.in_channels), hh, ww, generator=gen) for n, hh, ww in shapes]


# --------------------------------------------------------------------------- contract


def _dims(module, dynamic: bool, example_out, example_in) -> tuple[dict, list[dict], dict]:
    """Input spec, output specs and ONNX dynamic axes."""
    model = module.model
    static_size = _has_flatten_head(model) or not dynamic
    batch = "batch" if dynamic else int(example_in.shape[0])

    def size(sym: str, value: int):
        return value if static_size else sym

    if module.include_preprocessing:
        fh, fw = int(example_in.shape[1]), int(example_in.shape[2])
        inp = {
            "name": "frames",
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": [
                batch,
                size("frame_height", fh),
                size("frame_width", fw),
                module.frame_channels,
            ],
            "description": "raw frames, 0..255",
        }
        in_axes = {0: "batch"} if dynamic else {}
        if not static_size:
            in_axes.update({1: "frame_height", 2: "frame_width"})
    else:
        h, w = int(example_in.shape[2]), int(example_in.shape[3])
        inp = {
            "name": "image",
            "dtype": "float32",
            "layout": "NCHW",
            "shape": [batch, module.in_channels, size("height", h), size("width", w)],
            "description": (
                "preprocessed network input (Model.preprocess); height and width multiples "
                f"of {module.pad_stride}"
            ),
        }
        in_axes = {0: "batch"} if dynamic else {}
        if not static_size:
            in_axes.update({2: "height", 3: "width"})

    heads = {h.name: h for h in model.heads}
    outputs: list[dict] = []
    axes: dict[str, dict[int, str]] = {inp["name"]: in_axes}
    for name, tensor in zip(module.output_names, example_out):
        shape = list(tensor.shape)
        spec: dict[str, Any] = {"name": name, "dtype": str(tensor.dtype).replace("torch.", "")}
        out_axes = {0: "batch"} if dynamic else {}
        if name in ("peaks", "peak_values"):
            sym = [batch, *shape[1:]]
            spec["stride"] = module.cms_stride
            spec["source_head"] = module.cms_name
            spec["channels"] = _channel_names(heads[module.cms_name])
            if name == "peaks":
                spec["description"] = (
                    "(x, y) in frame pixels before input scaling; NaN where no peak"
                )
            else:
                spec["description"] = "confidence-map value at each peak (0 in empty slots)"
            if module.peak_kind == "local":
                spec["max_peaks"] = module.max_peaks
        else:
            head = heads[name]
            spec["stride"] = int(head.output_stride)
            spec["channels"] = _channel_names(head)
            if len(shape) == 4:
                s = int(head.output_stride)
                sym = [
                    batch,
                    shape[1],
                    size(f"height/{s}", shape[2]),
                    size(f"width/{s}", shape[3]),
                ]
                spec["layout"] = "NCHW"
                if not static_size:
                    out_axes.update({2: f"{name}_height", 3: f"{name}_width"})
            else:
                sym = [batch, *shape[1:]]
        spec["shape"] = sym
        outputs.append(spec)
        axes[name] = out_axes
    return inp, outputs, axes


def _channel_names(head) -> list[str]:
    from posekit.heads import (
        ClassMapsHead,
        ClassVectorsHead,
        OffsetRefinementHead,
        PartAffinityFieldsHead,
    )

    if isinstance(head, PartAffinityFieldsHead):
        return [f"{a}-{b}_{xy}" for a, b in head.edges for xy in ("x", "y")]
    if isinstance(head, ClassMapsHead | ClassVectorsHead):
        return list(head.classes)
    if isinstance(head, OffsetRefinementHead):
        return [f"{p}_{d}" for p in head.part_names for d in ("dx", "dy")]
    names = getattr(head, "part_names", None)
    if names:
        return list(names)
    anchor = getattr(head, "anchor_part", None)
    return [anchor or "centroid"]


def _contract(module, fmt: str, file_name: str, inp, outputs, extra: dict) -> dict:
    import posekit

    model = module.model
    part_names = model.part_names
    return {
        "contract_version": CONTRACT_VERSION,
        "format": fmt,
        "file": file_name,
        "posekit_version": posekit.__version__,
        "model_type": model.model_type,
        "part_names": part_names,
        "edges": [[part_names[a], part_names[b]] for a, b in model.edges],
        "classes": model.classes,
        "anchor_part": model.anchor_part,
        "crop_size": model.crop_size,
        "in_channels": module.in_channels,
        "input_scale": module.input_scale,
        "max_stride": int(model.maximum_stride),
        "pad_to_stride": module.pad_stride,
        "imagenet_mode": module.imagenet_mode,
        "strides": {h.name: int(h.output_stride) for h in model.heads},
        "includes_preprocessing": module.include_preprocessing,
        "includes_postprocessing": module.include_postprocessing,
        "postprocessing": (
            {
                "peak_kind": module.peak_kind,
                "peak_threshold": module.peak_threshold,
                "max_peaks": module.max_peaks if module.peak_kind == "local" else None,
                "refinement": module.refinement,
                "integral_patch_size": module.patch,
                "coordinates": (
                    "frame pixels: (grid index + refinement) * stride, then / input_scale "
                    "+ 0.5 when input_scale != 1"
                    + ("; relative to the crop" if model.crop_size else "")
                ),
            }
            if module.include_postprocessing
            else None
        ),
        "inputs": [inp],
        "outputs": outputs,
        **extra,
    }


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _quiet_tracing():
    """Silence the warnings tracing always produces for this code (documented above)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*requires_grad.*")
        warnings.filterwarnings("ignore", message="Constant folding")
        yield


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = _tmp_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _as_numpy(outputs) -> list[np.ndarray]:
    return [o.detach().cpu().float().numpy() for o in outputs]


def _canonical(name: str, arrays: dict[str, np.ndarray], kind: str | None) -> np.ndarray:
    """Local peaks sorted by position within each (sample, channel): order-insensitive."""
    import numpy as np

    a = arrays[name]
    if kind != "local" or name not in ("peaks", "peak_values"):
        return a
    pts = arrays["peaks"]
    x = np.where(np.isnan(pts[..., 0]), np.inf, pts[..., 0])
    y = np.where(np.isnan(pts[..., 1]), np.inf, pts[..., 1])
    order = np.lexsort((y, x), axis=-1)
    if name == "peaks":
        return np.take_along_axis(a, order[..., None], axis=-2)
    return np.take_along_axis(a, order, axis=-1)


def _compare(
    names: list[str], ref: list[np.ndarray], got: list[np.ndarray], atol: float, kind, what: str
) -> None:
    """Raise when an exported model's outputs differ from PyTorch's."""
    import numpy as np

    if len(ref) != len(got):
        raise PosekitError(f"{what} returned {len(got)} outputs, PyTorch {len(ref)}")
    ref_d, got_d = dict(zip(names, ref)), dict(zip(names, got))
    for name in names:
        r = _canonical(name, ref_d, kind)
        g = _canonical(name, got_d, kind)
        if r.shape != g.shape:
            raise PosekitError(
                f"{what}: output {name} has shape {g.shape}, PyTorch gives {r.shape}"
            )
        nan_r, nan_g = np.isnan(r), np.isnan(g)
        if not np.array_equal(nan_r, nan_g):
            raise PosekitError(f"{what}: output {name} has NaNs where PyTorch has none")
        if r.size == 0 or nan_r.all():
            continue
        scale = max(1.0, float(np.nanmax(np.abs(r))))
        err = float(np.nanmax(np.abs(r - g)))
        if err > atol * scale:
            raise PosekitError(
                f"{what}: output {name} differs from PyTorch by up to {err:.3g} "
                f"(tolerance {atol * scale:.3g})"
            )


def _import_onnxruntime(required: bool):
    try:
        import onnxruntime
    except ImportError as err:
        if required:
            raise PosekitError(
                "checking an ONNX export needs onnxruntime: pip install 'posekit[export]' "
                "(or onnxruntime), or pass verify=False"
            ) from err
        return None
    return onnxruntime


# --------------------------------------------------------------------------- ONNX


def export_onnx(
    model,
    path: str | os.PathLike,
    input_shape: Any = None,
    dynamic: bool = True,
    include_postprocessing: bool = False,
    include_preprocessing: bool | None = None,
    *,
    batch_size: int = 1,
    opset: int = DEFAULT_OPSET,
    frame_channels: int | None = None,
    peak_threshold: float | None = None,
    max_peaks: int = DEFAULT_MAX_PEAKS,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    use_offsets: bool = True,
    fold_batchnorm: bool = True,
    verify: bool | str = "auto",
    atol: float = 1e-4,
) -> Path:
    """Export `model` to an ONNX file at `path` (+ `<path>.json`, the contract).

    Args:
        model: a posekit `Model` (e.g. from `posekit.load_model`).
        path: the `.onnx` file to write (parents are created).
        input_shape: (height, width) of the example input: network input size, or frame
            size when preprocessing is included. Default: the model's input size (the
            crop size for top-down models). With `dynamic=False` this is the fixed size.
        dynamic: dynamic batch, height and width (see module doc for the exception).
        include_postprocessing: add peak finding (module doc). Default False: the raw
            head outputs.
        include_preprocessing: take uint8 NHWC frames and preprocess in the graph.
            Default: same as `include_postprocessing`.
        batch_size: batch of the example input (the fixed batch when not dynamic).
        opset: ONNX opset (>= 17).
        frame_channels: channels of the frames when preprocessing is included (default:
            the model's; 3 -> 1 converts to grayscale, 1 -> 3 repeats).
        peak_threshold: peaks below this are dropped (default SLEAP's 0.2).
        max_peaks: K, the fixed number of local-peak slots (centroid / multi-instance).
        refinement: "integral" or None (grid-aligned) when there is no offset head.
        integral_patch_size: odd patch size of integral refinement.
        use_offsets: use the offset-refinement head when the model has one (SLEAP does).
        fold_batchnorm: fold conv -> BatchNorm pairs first (`posekit.optimize`); outputs
            do not change beyond float rounding.
        verify: run the file with onnxruntime and compare with PyTorch; "auto" verifies
            when onnxruntime is installed, True requires it.
        atol: verification tolerance (relative to the output's magnitude when > 1).

    Returns:
        The path written.
    """
    import torch

    if int(opset) < 17:
        raise PosekitError(f"opset={opset} is too old; posekit exports need opset >= 17")
    path = Path(path)
    ort = _import_onnxruntime(required=verify is True) if verify else None
    opts = dict(
        frame_channels=frame_channels,
        peak_threshold=peak_threshold,
        max_peaks=max_peaks,
        refinement=refinement,
        integral_patch_size=integral_patch_size,
        use_offsets=use_offsets,
        fold_batchnorm=fold_batchnorm,
    )
    if batch_size < 1:
        raise PosekitError(f"batch_size={batch_size} must be at least 1")
    module = build_export_module(
        model,
        include_postprocessing=include_postprocessing,
        include_preprocessing=include_preprocessing,
        **opts,
    )
    dynamic = bool(dynamic)
    examples = _examples(module, _parse_input_shape(input_shape), int(batch_size), dynamic)
    refs = _reference_outputs(module, examples)
    inp, outputs, axes = _dims(module, dynamic, refs[0], examples[0])
    names = module.output_names

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    exporter = "torchscript"
    try:
        with _quiet_tracing(), torch.no_grad():
            try:
                torch.onnx.export(
                    module,
                    (examples[0],),
                    str(tmp),
                    input_names=[module.input_name],
                    output_names=names,
                    dynamic_axes={k: v for k, v in axes.items() if v} or None,
                    opset_version=int(opset),
                    do_constant_folding=True,
                    dynamo=False,
                )
            except Exception as classic_error:  # noqa: BLE001 - fall back, then re-raise
                exporter = "dynamo"
                try:
                    _export_onnx_dynamo(module, examples[0], tmp, names, axes, int(opset))
                except Exception as dynamo_error:  # noqa: BLE001
                    raise PosekitError(
                        f"ONNX export failed with both exporters: {classic_error!r}; "
                        f"dynamo: {dynamo_error!r}"
                    ) from dynamo_error
        _add_onnx_metadata(tmp, module, inp, outputs, exporter, int(opset), path.name)
        if ort is not None:
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            for i, (x, ref) in enumerate(zip(examples, refs)):
                got = session.run(None, {module.input_name: x.numpy()})
                _compare(
                    names,
                    _as_numpy(ref),
                    [g.astype("float32") for g in got],
                    atol,
                    module.peak_kind,
                    f"the exported ONNX model (check {i + 1}, input {tuple(x.shape)})",
                )
        contract = _contract(
            module,
            "onnx",
            path.name,
            inp,
            outputs,
            {"opset": int(opset), "exporter": exporter, "verified": ort is not None},
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _write_text_atomic(sidecar_path(path), json.dumps(contract, indent=2) + "\n")
    return path


def _export_onnx_dynamo(module, example, tmp: Path, names, axes, opset: int) -> None:
    """The torch.export-based exporter, used only when the classic one fails."""
    import torch

    in_axes = next(iter(axes.values()))
    shapes = {"x": {i: torch.export.Dim.AUTO for i in in_axes}} if in_axes else None
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        dynamic_shapes=shapes,
        opset_version=opset,
        input_names=[module.input_name],
        output_names=names,
        verbose=False,
    )
    program.save(str(tmp))


def _add_onnx_metadata(tmp: Path, module, inp, outputs, exporter, opset, name) -> None:
    """Embed the contract in the ONNX file's metadata too (when the onnx package exists)."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx comes with the export extra
        return
    proto = onnx.load(str(tmp))
    contract = _contract(module, "onnx", name, inp, outputs, {"opset": opset, "exporter": exporter})
    entry = proto.metadata_props.add()
    entry.key = "posekit"
    entry.value = json.dumps(contract)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))


# --------------------------------------------------------------------------- TorchScript


def export_torchscript(
    model,
    path: str | os.PathLike,
    input_shape: Any = None,
    dynamic: bool = True,
    include_postprocessing: bool = False,
    include_preprocessing: bool | None = None,
    *,
    batch_size: int = 1,
    frame_channels: int | None = None,
    peak_threshold: float | None = None,
    max_peaks: int = DEFAULT_MAX_PEAKS,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    use_offsets: bool = True,
    fold_batchnorm: bool = True,
    verify: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export `model` as a traced TorchScript archive at `path` (+ `<path>.json`).

    Same arguments as `export_onnx`. The archive returns a tuple in the contract's output
    order and carries the contract as the extra file `posekit_export.json`. It is traced
    on the CPU; load it on a GPU with `torch.jit.load(path, map_location="cuda")`.
    Verification reloads the saved archive and compares it with PyTorch on the example
    input and, for dynamic exports, on a second size.

    Returns:
        The path written.
    """
    import torch

    path = Path(path)
    if batch_size < 1:
        raise PosekitError(f"batch_size={batch_size} must be at least 1")
    module = build_export_module(
        model,
        include_postprocessing=include_postprocessing,
        include_preprocessing=include_preprocessing,
        frame_channels=frame_channels,
        peak_threshold=peak_threshold,
        max_peaks=max_peaks,
        refinement=refinement,
        integral_patch_size=integral_patch_size,
        use_offsets=use_offsets,
        fold_batchnorm=fold_batchnorm,
    )
    dynamic = bool(dynamic)
    examples = _examples(module, _parse_input_shape(input_shape), int(batch_size), dynamic)
    refs = _reference_outputs(module, examples)
    inp, outputs, _ = _dims(module, dynamic, refs[0], examples[0])
    names = module.output_names
    contract = _contract(module, "torchscript", path.name, inp, outputs, {"verified": bool(verify)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with _quiet_tracing(), torch.no_grad():
            traced = torch.jit.trace(module, (examples[0],), check_trace=False, strict=False)
            torch.jit.save(
                traced, str(tmp), _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(contract)}
            )
        if verify:
            with _quiet_tracing(), torch.no_grad():
                loaded = torch.jit.load(str(tmp), map_location="cpu")
                for i, (x, ref) in enumerate(zip(examples, refs)):
                    _compare(
                        names,
                        _as_numpy(ref),
                        _as_numpy(loaded(x)),
                        atol,
                        module.peak_kind,
                        f"the exported TorchScript model (check {i + 1}, input {tuple(x.shape)})",
                    )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _write_text_atomic(sidecar_path(path), json.dumps(contract, indent=2) + "\n")
    return path


def load_contract(path: str | os.PathLike) -> dict:
    """The contract of an exported file: its sidecar JSON (or a TorchScript archive's)."""
    path = Path(path)
    side = sidecar_path(path)
    if side.exists():
        return json.loads(side.read_text())
    if path.exists() and path.suffix in (".pt", ".ts", ".torchscript"):
        import torch

        extra = {TORCHSCRIPT_EXTRA_FILE: ""}
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        if extra[TORCHSCRIPT_EXTRA_FILE]:
            return json.loads(extra[TORCHSCRIPT_EXTRA_FILE])
    raise PosekitError(f"no export contract found for {path} (expected {side})")


# --------------------------------------------------------------------------- CLI


__all__ = [
    "build_export_module",
    "export_onnx",
    "export_torchscript",
    "load_contract",
    "sidecar_path",
]
