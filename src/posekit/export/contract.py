"""The contract of an exported model: what goes in and what comes out, as JSON.

It is written next to the exported file as `<file>.json` (`sidecar_path`), inside a
TorchScript archive as the extra file `posekit_export.json` and into an ONNX file's
metadata, so a program without posekit can run the export correctly.

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
  - With preprocessing (``frames`` in) peaks are looked for on the frame only, not on
    the stride padding below/right of it, as posekit's predictors do; an ``image`` input
    is already padded, so its peaks come from the whole map.

Peak coordinates are in pixels of the frame *before* input scaling (SLEAP's convention:
map pixel i sits at i * stride; with input scaling s != 1 the point is divided by s and
0.5 is added). For centered-instance models that frame is the crop: add the crop origin.

Shapes are dynamic in batch, height and width (sizes that are multiples of the stride for
``image``; any size for ``frames``) unless ``dynamic=False`` or the model has a
class-vectors head without global pooling (its dense layer fixes the feature size), in
which case only the batch is dynamic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posekit.errors import PosekitError
from posekit.io.atomic import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from posekit.export.graph import ExportModule

SIDECAR_SUFFIX = ".json"
TORCHSCRIPT_EXTRA_FILE = "posekit_export.json"
CONTRACT_VERSION = 1


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the contract JSON of an exported file goes: `<file>.json` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | os.PathLike, contract: dict) -> None:
    """Write `contract` to the sidecar of the exported file `path`, atomically."""
    write_text_atomic(sidecar_path(path), json.dumps(contract, indent=2) + "\n")


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


# --------------------------------------------------------------------------- specs


def describe(
    module: ExportModule, dynamic: bool, example_out, example_in: torch.Tensor
) -> tuple[dict, list[dict], dict[str, dict[int, str]]]:
    """Input spec, output specs and ONNX dynamic axes of `module` traced on `example_in`.

    A dynamic size is a name (``"batch"``, ``"height"``, ``"height/4"``, ...), a fixed one
    the example's number.
    """
    static_size = module.fixed_size or not dynamic
    batch = "batch" if dynamic else int(example_in.shape[0])
    inp, in_axes = _input_spec(module, dynamic, static_size, batch, example_in)
    outputs: list[dict] = []
    axes: dict[str, dict[int, str]] = {inp["name"]: in_axes}
    for name, tensor in zip(module.output_names, example_out):
        spec, out_axes = _output_spec(module, name, tensor, dynamic, static_size, batch)
        outputs.append(spec)
        axes[name] = out_axes
    return inp, outputs, axes


def _input_spec(module, dynamic: bool, static_size: bool, batch, example_in):
    def size(sym: str, value: int):
        return value if static_size else sym

    in_axes = {0: "batch"} if dynamic else {}
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
        if not static_size:
            in_axes.update({1: "frame_height", 2: "frame_width"})
        return inp, in_axes
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
    if not static_size:
        in_axes.update({2: "height", 3: "width"})
    return inp, in_axes


def _output_spec(module, name: str, tensor, dynamic: bool, static_size: bool, batch):
    heads = {h.name: h for h in module.model.heads}
    shape = list(tensor.shape)
    spec: dict[str, Any] = {"name": name, "dtype": str(tensor.dtype).replace("torch.", "")}
    out_axes = {0: "batch"} if dynamic else {}
    if name in ("peaks", "peak_values"):
        sym = [batch, *shape[1:]]
        spec["stride"] = module.cms_stride
        spec["source_head"] = module.cms_name
        spec["channels"] = _channel_names(heads[module.cms_name])
        if name == "peaks":
            spec["description"] = "(x, y) in frame pixels before input scaling; NaN where no peak"
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
                shape[2] if static_size else f"height/{s}",
                shape[3] if static_size else f"width/{s}",
            ]
            spec["layout"] = "NCHW"
            if not static_size:
                out_axes.update({2: f"{name}_height", 3: f"{name}_width"})
        else:
            sym = [batch, *shape[1:]]
    spec["shape"] = sym
    return spec, out_axes


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


# --------------------------------------------------------------------------- contract


def build_contract(
    module: ExportModule, fmt: str, file_name: str, inp: dict, outputs: list[dict], extra: dict
) -> dict:
    """The contract of `module` exported as `fmt` to `file_name` (specs from `describe`)."""
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
        "postprocessing": _postprocessing(module) if module.include_postprocessing else None,
        "inputs": [inp],
        "outputs": outputs,
        **extra,
    }


def _postprocessing(module) -> dict:
    return {
        "peak_kind": module.peak_kind,
        "peak_threshold": module.peak_threshold,
        "max_peaks": module.max_peaks if module.peak_kind == "local" else None,
        "refinement": module.refinement,
        "integral_patch_size": module.patch,
        "coordinates": (
            "frame pixels: (grid index + refinement) * stride, then / input_scale "
            "+ 0.5 when input_scale != 1"
            + ("; relative to the crop" if module.model.crop_size else "")
        ),
    }
