"""Export to ONNX, checked with onnxruntime before the file is moved into place.

`torch.onnx.export`'s TorchScript-based exporter (opset >= 17) is used, falling back to the
dynamo exporter (which needs the `onnxscript` package) only if that fails. The result is
checked with onnxruntime (optional dependency, `pip install posekit[export]`) on the
example input and, for dynamic exports, on a second size. The file is written to a
temporary name and renamed (`posekit.io.atomic`), so an interrupted export never leaves a
broken model; the contract (`posekit.export.contract`) goes into the file's metadata and
beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from posekit.errors import PosekitError
from posekit.export import DEFAULT_OPSET
from posekit.export.contract import build_contract, write_sidecar
from posekit.export.graph import DEFAULT_MAX_PEAKS, quiet_tracing
from posekit.export.verify import (
    as_numpy,
    compare,
    prepare,
)
from posekit.io.atomic import atomic_path


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
        dynamic: dynamic batch, height and width (see `posekit.export.contract` for the
            exception).
        include_postprocessing: add peak finding (`posekit.export.graph`). Default False:
            the raw head outputs.
        include_preprocessing: take uint8 NHWC frames and preprocess in the graph.
            Default: same as `include_postprocessing`.
        batch_size: batch of the example input (the fixed batch when not dynamic).
        opset: ONNX opset (>= 17).
        frame_channels: channels of the frames when preprocessing is included (default:
            the model's; 3 -> 1 converts to grayscale, 1 -> 3 repeats).
        peak_threshold: peaks below this are dropped (default SLEAP's,
            `posekit.ops.peaks.DEFAULT_PEAK_THRESHOLD`).
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
    if int(opset) < 17:
        raise PosekitError(f"opset={opset} is too old; posekit exports need opset >= 17")
    path = Path(path)
    ort = _import_onnxruntime(required=verify is True) if verify else None
    prep = prepare(
        model,
        input_shape,
        batch_size,
        dynamic,
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
    module, inputs, refs = prep.module, prep.inputs, prep.refs
    inp, outputs, axes = prep.inp, prep.outputs, prep.axes
    opset = int(opset)
    with atomic_path(path) as tmp:
        meta = {"opset": opset, "exporter": _write(module, inputs[0], tmp, axes, opset)}
        _add_metadata(tmp, build_contract(module, "onnx", path.name, inp, outputs, meta))
        if ort is not None:
            _check(ort, tmp, module, inputs, refs, atol)
        extra = {**meta, "verified": ort is not None}
        contract = build_contract(module, "onnx", path.name, inp, outputs, extra)
    write_sidecar(path, contract)
    return path


def _write(module, example, tmp: Path, axes, opset: int) -> str:
    """Export with the classic exporter, else the dynamo one; returns which one worked."""
    names = module.output_names
    with quiet_tracing(), torch.no_grad():
        try:
            torch.onnx.export(
                module,
                (example,),
                str(tmp),
                input_names=[module.input_name],
                output_names=names,
                dynamic_axes={k: v for k, v in axes.items() if v} or None,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
            return "torchscript"
        except Exception as classic_error:  # noqa: BLE001 - fall back, then re-raise
            try:
                _write_dynamo(module, example, tmp, names, axes, opset)
            except Exception as dynamo_error:  # noqa: BLE001
                raise PosekitError(
                    f"ONNX export failed with both exporters: {classic_error!r}; "
                    f"dynamo: {dynamo_error!r}"
                ) from dynamo_error
            return "dynamo"


def _write_dynamo(module, example, tmp: Path, names, axes, opset: int) -> None:
    """The torch.export-based exporter, used only when the classic one fails."""
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


def _add_metadata(tmp: Path, contract: dict) -> None:
    """Embed the contract in the ONNX file's metadata too (when the onnx package exists)."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx comes with the export extra
        return
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key = "posekit"
    entry.value = json.dumps(contract)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))


def _check(ort, tmp: Path, module, inputs, refs, atol: float) -> None:
    """Run the written file with onnxruntime on every example; raise on a mismatch."""
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    for i, (x, ref) in enumerate(zip(inputs, refs)):
        got = session.run(None, {module.input_name: x.numpy()})
        compare(
            module.output_names,
            as_numpy(ref),
            [g.astype("float32") for g in got],
            atol,
            module.peak_kind,
            f"the exported ONNX model (check {i + 1}, input {tuple(x.shape)})",
        )
