"""Training logs (TensorBoard, Weights & Biases) and the config settings posekit ignores.

- TensorBoard: SLEAP's `outputs.tensorboard.write_logs` writes event files into
  ``<run>/logs/`` through Lightning's `TensorBoardLogger` (needs `tensorboard`:
  ``pip install 'posekit[logs]'``). `loss_frequency: batch` logs every step, `epoch`
  every 50 steps plus the epoch values.
- Weights & Biases: SLEAP 1.4 has no setting for it (sleap-nn has
  `trainer_config.use_wandb` / `wandb.*`); posekit takes it from the command line or
  `train()`: ``posekit train ... --wandb PROJECT`` (``train(..., wandb="PROJECT")``),
  through Lightning's `WandbLogger`, saving into ``<run>/wandb/``. Needs `wandb`
  (``pip install 'posekit[wandb]'``); ``WANDB_MODE=offline`` logs without an account.
- `ignored_settings`: fields a SLEAP config may set that posekit accepts and does not
  act on; `train()` names those set to a non-default value in one warning.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError

#: The folder inside a run folder that TensorBoard's event files go to.
TENSORBOARD_DIR = "logs"


def _require(module: str, extra: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise PosekitError(
            f"{what} needs the {module!r} package, which is not installed; install it with "
            f"pip install 'posekit[{extra}]' (or pip install {module})"
        )


def require_logger_packages(config: Any, wandb: str | None = None) -> None:
    """A clear `PosekitError` before any work when a requested logger's package is missing."""
    if config.outputs.tensorboard.write_logs and importlib.util.find_spec("tensorboardX") is None:
        _require("tensorboard", "logs", "outputs.tensorboard.write_logs=true")
    if wandb:
        _require("wandb", "wandb", f"--wandb {wandb}")


def tensorboard_logger(run_dir: str | os.PathLike) -> Any:
    """Lightning's `TensorBoardLogger` writing into ``<run_dir>/logs/``."""
    if importlib.util.find_spec("tensorboardX") is None:
        _require("tensorboard", "logs", "outputs.tensorboard.write_logs=true")
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(
        save_dir=str(run_dir), name=TENSORBOARD_DIR, version="", default_hp_metric=False
    )


def wandb_logger(project: str, run_dir: str | os.PathLike, run_name: str | None = None) -> Any:
    """Lightning's `WandbLogger` for `project`; its files go into ``<run_dir>/wandb/``."""
    _require("wandb", "wandb", f"--wandb {project}")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        project=str(project), name=run_name or Path(run_dir).name, save_dir=str(run_dir)
    )


def training_loggers(
    config: Any, run_dir: str | os.PathLike, wandb: str | None = None
) -> list[Any]:
    """The loggers the config (`outputs.tensorboard.write_logs`) and `wandb` ask for."""
    loggers: list[Any] = []
    if config.outputs.tensorboard.write_logs:
        loggers.append(tensorboard_logger(run_dir))
    if wandb:
        loggers.append(wandb_logger(wandb, run_dir))
    return loggers


def log_every_n_steps(config: Any) -> int:
    """Lightning's step-logging interval for `outputs.tensorboard.loss_frequency`."""
    return 1 if config.outputs.tensorboard.loss_frequency == "batch" else 50


# --------------------------------------------------------------------------- ignored fields

#: (dotted field, why posekit ignores it); reported when set to a non-default value.
_IGNORED: tuple[tuple[str, str], ...] = (
    ("outputs.zmq.subscribe_to_controller", "SLEAP GUI messages"),
    ("outputs.zmq.publish_updates", "SLEAP GUI messages"),
    ("outputs.tensorboard.architecture_graph", "TensorBoard graph not written"),
    ("outputs.tensorboard.profile_graph", "TensorBoard profiler not run"),
    ("optimization.augmentation_config.random_crop", "random crops not implemented"),
    ("optimization.online_shuffling", "posekit always shuffles the training set"),
    ("optimization.shuffle_buffer_size", "posekit shuffles the whole training set"),
    ("data.preprocessing.target_height", "frames are not resized to a target size"),
    ("data.preprocessing.target_width", "frames are not resized to a target size"),
    ("data.labels.split_by_inds", "splits come from validation_labels or validation_fraction"),
    ("data.labels.training_inds", "splits come from validation_labels or validation_fraction"),
    ("data.labels.validation_inds", "splits come from validation_labels or validation_fraction"),
    ("data.labels.test_inds", "test frames come from data.labels.test_labels"),
)

#: SLEAP's plateau settings, unused when a step or cosine schedule is set.
_PLATEAU_FIELDS = (
    "reduction_factor",
    "plateau_min_delta",
    "plateau_patience",
    "plateau_cooldown",
    "min_learning_rate",
)


def _get(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _default(config: Any, dotted: str) -> Any:
    *path, leaf = dotted.split(".")
    section = _get(config, ".".join(path)) if path else config
    return type(section).model_fields[leaf].get_default(call_default_factory=True)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def ignored_settings(config: Any) -> list[str]:
    """``"field=value (why)"`` for each setting posekit does not act on that differs from
    its default (a default value changes nothing, so it is not worth a warning)."""
    out = []
    for dotted, why in _IGNORED:
        value = _get(config, dotted)
        if value != _default(config, dotted):
            out.append(f"{dotted}={_show(value)} ({why})")
    lrs = config.optimization.learning_rate_schedule
    if lrs.fixed_schedule is not None:
        name = "step_lr" if lrs.step_lr is not None else "cosine_annealing_warmup"
        for leaf in _PLATEAU_FIELDS:
            dotted = f"optimization.learning_rate_schedule.{leaf}"
            value = _get(config, dotted)
            if value != _default(config, dotted):
                out.append(f"{dotted}={_show(value)} ({name} replaces the plateau reduction)")
    # A sleap-nn config names its own settings that had no posekit counterpart.
    out.extend(f"{s} (sleap-nn setting)" for s in getattr(config, "unused_settings", []))
    return out


def ignored_settings_message(config: Any) -> str | None:
    """The one warning `train()` prints, or None when nothing is ignored."""
    items = ignored_settings(config)
    if not items:
        return None
    return "posekit ignores these config settings: " + "; ".join(items)


__all__ = [
    "TENSORBOARD_DIR",
    "ignored_settings",
    "ignored_settings_message",
    "log_every_n_steps",
    "require_logger_packages",
    "tensorboard_logger",
    "training_loggers",
    "wandb_logger",
]
