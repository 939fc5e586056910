"""Export to a traced TorchScript archive, reloaded and checked before it is moved into place.

The archive carries the contract (`posekit.export.contract`) as an extra file, and a copy
goes beside it. It is traced on the CPU; nothing in the graph pins that device, so it
loads on a GPU with `torch.jit.load(path, map_location="cuda")`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from posekit.export.contract import (
    TORCHSCRIPT_EXTRA_FILE,
    build_contract,
    write_sidecar,
)
from posekit.export.graph import DEFAULT_MAX_PEAKS, quiet_tracing
from posekit.export.verify import (
    as_numpy,
    compare,
    prepare,
)
from posekit.io.atomic import atomic_path


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

    Same arguments as `posekit.export.onnx.export_onnx`. The archive returns a tuple in
    the contract's output order and carries the contract as the extra file
    `posekit_export.json`. It is traced on the CPU; load it on a GPU with
    `torch.jit.load(path, map_location="cuda")`. Verification reloads the saved archive
    and compares it with PyTorch on the example input and, for dynamic exports, on a
    second size.

    Returns:
        The path written.
    """
    path = Path(path)
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
    inp, outputs = prep.inp, prep.outputs
    contract = build_contract(
        module, "torchscript", path.name, inp, outputs, {"verified": bool(verify)}
    )
    with atomic_path(path) as tmp:
        with quiet_tracing(), torch.no_grad():
            traced = torch.jit.trace(module, (inputs[0],), check_trace=False, strict=False)
            torch.jit.save(
                traced, str(tmp), _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(contract)}
            )
        if verify:
            _check(tmp, module, inputs, refs, atol)
    write_sidecar(path, contract)
    return path


def _check(tmp: Path, module, inputs, refs, atol: float) -> None:
    """Reload the saved archive and compare it with PyTorch on every example."""
    with quiet_tracing(), torch.no_grad():
        loaded = torch.jit.load(str(tmp), map_location="cpu")
        for i, (x, ref) in enumerate(zip(inputs, refs)):
            compare(
                module.output_names,
                as_numpy(ref),
                as_numpy(loaded(x)),
                atol,
                module.peak_kind,
                f"the exported TorchScript model (check {i + 1}, input {tuple(x.shape)})",
            )
