"""posekit: SLEAP's pose-estimation networks in PyTorch.

The top-level names are imported lazily so that `import posekit` stays fast (torch,
Lightning and sleap-io load only when something needs them).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"
_LAZY = {
    "build": "posekit.model:build",
    "summary": "posekit.summary:summary",
    "Model": "posekit.model:Model",
    "load_model": "posekit.io.model_folder:load_model",
    "load_predictor": "posekit.inference.predictors:load_predictor",
    "TrainingJobConfig": "posekit.config.job:TrainingJobConfig",
    "ModelConfig": "posekit.config.model:ModelConfig",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'posekit' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
