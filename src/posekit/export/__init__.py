"""Export a trained model to ONNX or TorchScript, with a JSON contract beside it.

- `graph`: the exported module (optionally with preprocessing and peak finding inside),
  `build_export_module`;
- `onnx` (`export_onnx`) and `torchscript` (`export_torchscript`): one writer per format,
  each checking the written file against PyTorch (`verify`) before moving it into place;
- `contract`: the JSON sidecar describing inputs and outputs, and its reader.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

#: Peaks per channel an exported local-peak graph returns (fixed-size outputs).
DEFAULT_MAX_PEAKS = 32
#: ONNX opset of `export_onnx` (17: every operator the graphs use, onnxruntime >= 1.15).
DEFAULT_OPSET = 17

_LAZY = {
    "build_export_module": ".graph",
    "export_onnx": ".onnx",
    "export_torchscript": ".torchscript",
    "load_contract": ".contract",
    "sidecar_path": ".contract",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
