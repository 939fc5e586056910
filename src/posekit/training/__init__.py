"""Training: labels to a trained posekit model folder, on one CPU or many GPUs.

`train(config, labels, ...)` is the entry point (`posekit train` on the command line).
Submodules load lazily so `import posekit.training` does not import torch or Lightning:
`run` (`train`, its steps in order), `inputs` (job config and labels, checked and
completed), `run_folder` (where a run writes, which rank writes), `lightning_module`
(losses per head, optimizer), `losses` (MSE, OHKM, Keras cross-entropy), `datamodule`
(epoch lengths, rank shards), `callbacks` (run outputs, schedule, progress), `plots`
(per-epoch pictures), `recommend` (`--auto` settings). Overrides (`key.path=value`) are
`posekit.config.overrides`; the command line is `posekit.cli.train`.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "train": "posekit.training.run",
    "load_base_checkpoint": "posekit.training.run",
    "PoseLightningModule": "posekit.training.lightning_module",
    "NonFiniteLossError": "posekit.training.lightning_module",
    "PoseDataModule": "posekit.training.datamodule",
    "EpochSampler": "posekit.training.datamodule",
    "KerasReduceLROnPlateau": "posekit.training.callbacks",
    "RunOutputs": "posekit.training.callbacks",
    "recommend": "posekit.training.recommend",
    "apply_overrides": "posekit.config.overrides",
    "parse_overrides": "posekit.config.overrides",
    "ohkm_loss": "posekit.training.losses",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
