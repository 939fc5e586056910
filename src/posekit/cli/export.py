"""`posekit export MODEL_DIR --format onnx|torchscript ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posekit.errors import PosekitError
from posekit.export.contract import load_contract, sidecar_path
from posekit.export.graph import DEFAULT_MAX_PEAKS
from posekit.export.onnx import DEFAULT_OPSET, export_onnx
from posekit.export.torchscript import export_torchscript


def run_export(args) -> int:
    """`posekit export MODEL_DIR --format onnx|torchscript [-o PATH]`.

    Optional attributes of `args` (set by the CLI when it offers them): `input_shape`
    ("H,W"), `static` (fixed shapes), `with_peaks` (include preprocessing and peak
    finding), `max_peaks`, `peak_threshold`, `batch_size`, `opset`.
    """
    from posekit.model.folder import load_model

    fmt = str(getattr(args, "format", "onnx") or "onnx").lower()
    if fmt not in ("onnx", "torchscript"):
        raise PosekitError(f"--format {fmt!r} is not supported; use onnx or torchscript")
    folder = Path(args.model_dir)
    model = load_model(folder)
    base = folder if folder.is_dir() else folder.parent
    default_name = "model.onnx" if fmt == "onnx" else "model.torchscript.pt"
    out = Path(getattr(args, "output", None) or base / default_name)
    with_peaks = bool(getattr(args, "with_peaks", False))
    kwargs: dict[str, Any] = dict(
        input_shape=getattr(args, "input_shape", None),
        dynamic=not bool(getattr(args, "static", False)),
        include_postprocessing=with_peaks,
        include_preprocessing=with_peaks,
        batch_size=int(getattr(args, "batch_size", None) or 1),
        max_peaks=int(getattr(args, "max_peaks", None) or DEFAULT_MAX_PEAKS),
        peak_threshold=getattr(args, "peak_threshold", None),
    )
    if fmt == "onnx":
        opset = getattr(args, "opset", None)
        path = export_onnx(model, out, opset=int(opset or DEFAULT_OPSET), **kwargs)
    else:
        path = export_torchscript(model, out, **kwargs)
    contract = load_contract(path)
    print(f"wrote {path} ({model.model_type}, {fmt})")
    print(f"contract: {sidecar_path(path)}")
    for spec in contract["inputs"]:
        print(f"  input  {spec['name']}: {spec['dtype']} {spec['shape']}")
    for spec in contract["outputs"]:
        print(f"  output {spec['name']}: {spec['dtype']} {spec['shape']}")
    return 0
