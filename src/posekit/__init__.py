"""posekit: SLEAP's pose-estimation networks in PyTorch.

The top-level names are imported lazily so that `import posekit` stays fast (torch,
Lightning and sleap-io load only when something needs them).
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "build": "posekit.model.network",
    "summary": "posekit.model.summary",
    "Model": "posekit.model.network",
    "load_model": "posekit.model.folder",
    "load_predictor": "posekit.inference.predictors.loading",
    "train": "posekit.training.run",
    "evaluate": "posekit.evaluation",
    "track": "posekit.tracking.api",
    "suggest": "posekit.tracking.suggest",
    "filter_labels": "posekit.tracking.trajectories",
    "system_report": "posekit.model.system",
    "TrainingJobConfig": "posekit.config.job",
    "ModelConfig": "posekit.config.model",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
