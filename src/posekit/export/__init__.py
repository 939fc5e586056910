"""Export a trained model to ONNX or TorchScript, with a JSON contract beside it.

- `graph`: the exported module (optionally with preprocessing and peak finding inside);
- `onnx` and `torchscript`: one writer per format, each checking the written file
  against PyTorch;
- `contract`: the JSON sidecar describing inputs and outputs, and its reader.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "build_export_module": ".core",
    "export_onnx": ".core",
    "export_torchscript": ".core",
    "load_contract": ".core",
    "sidecar_path": ".core",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
