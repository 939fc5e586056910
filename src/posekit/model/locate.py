"""Which model folder(s) a path means: the one answer `predict`, `load_model` and
`load_predictor` share.

A path may be a model folder (config + weights), the weights file inside one, a training
run folder (its ``best_model``, else ``latest_model``) or the folder of a top-down pair
that `posekit train` made (``<run>/centroid`` and ``<run>/centered_instance``). A SLEAP
user's model folder *is* the run folder, so whatever `posekit predict` accepts, the
library accepts too.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CONFIG_FILES", "WEIGHT_FILES", "is_model_path", "model_folders"]

CONFIG_FILES = ("training_config.json", "initial_config.json", "training_config.yaml")
WEIGHT_FILES = ("best_model.h5", "model.safetensors", "best.ckpt")  # SLEAP, posekit, sleap-nn


def is_model_path(path: str | os.PathLike) -> bool:
    """A model folder (config + weights) or the weights file inside one."""
    p = Path(path)
    if p.is_file() and p.name in WEIGHT_FILES:
        p = p.parent
    if not p.is_dir():
        return False
    has_config = any((p / name).is_file() for name in CONFIG_FILES)
    return has_config and any((p / name).is_file() for name in WEIGHT_FILES)


def model_folders(path: str | os.PathLike) -> list[str]:
    """The model folders a path stands for: a model folder itself, a training run folder
    (its ``best_model``, else ``latest_model``), or a folder of runs that `posekit train`
    made for one model type (a top-down pair: centroid first); [] when none of these.

    So the folder `posekit train` printed goes straight into `posekit predict`.
    """
    p = Path(path)
    if is_model_path(p):
        return [str(p)]
    if not p.is_dir():
        return []
    run = _run_model(p)
    if run is not None:
        return [run]
    runs = [m for m in (_run_model(sub) for sub in sorted(p.iterdir()) if sub.is_dir()) if m]
    # the centroid model finds the animals: list it first (readable; the predictor sorts)
    return sorted(runs, key=lambda m: "centroid" not in Path(m).parent.name)


def _run_model(folder: Path) -> str | None:
    """A training run folder's model (``best_model``, else ``latest_model``), or None."""
    for name in ("best_model", "latest_model"):
        if is_model_path(folder / name):
            return str(folder / name)
    return None
