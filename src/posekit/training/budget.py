"""Training against a clock: the plan that keeps a `--max-time` promise, and its progress.

`BudgetPlan` measures the time of the first steps and epochs and re-plans the epoch count
and the learning-rate schedule (warm-up, then cosine to a floor over the budget's elapsed
fraction) so that training ends in the last few percent of the budget, whatever the
machine turns out to be; `RecipeLoss` switches confidence-map heads to the recipe's loss;
`PosekitProgressBar` prints losses and rates in scientific notation, the epoch out of the
planned epochs and the time left of the budget; `EpochLineProgress` says the same in one
plain line per epoch where the output is a file, not a terminal (`progress_bar` chooses).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, Timer

from posekit.training.callbacks import _current_lr


def budget_learning_rate(
    progress: float, step: int, lr: float, floor: float, warmup_steps: int
) -> float:
    """Learning rate of a budgeted run: linear warm-up, then cosine to `floor` by time.

    `progress` is the elapsed fraction of the budget (0..1), `step` the optimizer steps
    done. The first `warmup_steps` steps ramp from ``lr / 10`` to `lr` (Adam's first
    moments are noisy and a fresh network's maps jump); then ``floor + (lr - floor)
    (1 + cos(pi progress)) / 2``: the rate falls smoothly and reaches the floor exactly
    when the budget ends, however fast the machine turns out to be.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    rate = floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if warmup_steps > 0 and step < warmup_steps:
        rate *= 0.1 + 0.9 * (step + 1) / warmup_steps
    return float(rate)


def planned_epochs(epochs_done: int, elapsed: float, budget: float, epoch_seconds: float) -> int:
    """Epochs the budget holds, from the measured time of an epoch (validation included).

    ``epochs_done + round(remaining / epoch_seconds)``: training ends at the epoch end
    nearest to the budget, at most half an epoch early (an epoch later than that is cut
    by the clock, Lightning's `max_time`). With the ~30 epochs `--auto` plans that is
    within the last 2% of the budget, and the last epoch is validated (best model).
    """
    remaining = max(float(budget) - float(elapsed), 0.0)
    per_epoch = max(float(epoch_seconds), 1e-6)
    return int(epochs_done + math.floor(remaining / per_epoch + 0.5))


class BudgetPlan(L.Callback):
    """Keeps a time-budgeted run's promise: the budget is spent, the LR follows it.

    - Learning rate: `budget_learning_rate` every step (warm-up, cosine to `floor_ratio`
      x the initial rate over the budget's elapsed fraction). Replaces reduce-on-plateau,
      which on short noisy validations halves the rate long before the end.
    - Epochs: after `measure_steps` optimizer steps the seconds per step are measured and
      `trainer.fit_loop.max_epochs` is set from them; after every epoch it is set again
      from the measured epoch time (validation and saving included). A plan made from a
      guessed GFLOP/s, or for settings the user then overrode, cannot end training early.

    `replan_epochs=False` (the user fixed the epochs) leaves `max_epochs` alone.
    `clock` (default `time.monotonic`) is injectable for tests. `plan` (read-only) holds
    the measured seconds per step and the current planned epochs.
    """

    def __init__(
        self,
        budget_s: float,
        lr: float | None = None,
        floor_ratio: float = 0.01,
        warmup_steps: int = 50,
        measure_steps: int = 10,
        schedule_lr: bool = True,
        replan_epochs: bool = True,
        clock: Any = None,
    ):
        self.budget_s = float(budget_s)
        self.lr = lr
        self.floor_ratio = float(floor_ratio)
        self.warmup_steps = int(warmup_steps)
        self.measure_steps = int(measure_steps)
        self.schedule_lr = bool(schedule_lr)
        self.replan_epochs = bool(replan_epochs)
        self.clock = clock or time.monotonic
        self._t0: float | None = None
        self._steps = 0
        self._first_step_t: float | None = None
        self._epoch_t0 = 0.0
        self._epochs_done = 0
        self.plan: dict[str, float] = {}

    # the budget's clock
    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else self.clock() - self._t0

    def progress(self) -> float:
        return min(1.0, self.elapsed() / max(self.budget_s, 1e-9))

    def time_left(self) -> float:
        return max(0.0, self.budget_s - self.elapsed())

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._epoch_t0 = self.clock()
        if self.lr is None:
            self.lr = _current_lr(trainer) or 1e-3
        self._steps = 0
        self._epochs_done = 0
        self._set_lr(trainer)

    def _set_lr(self, trainer: L.Trainer) -> None:
        if not self.schedule_lr:
            return
        rate = budget_learning_rate(
            self.progress(),
            self._steps,
            float(self.lr),
            float(self.lr) * self.floor_ratio,
            self.warmup_steps,
        )
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = rate

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._set_lr(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._steps += 1
        if self._steps == 1:
            self._first_step_t = self.clock()  # the first step pays for warm-up costs
        elif self._steps == 1 + self.measure_steps and self._first_step_t is not None:
            per_step = (self.clock() - self._first_step_t) / self.measure_steps
            bpe = max(1, int(trainer.num_training_batches or 1))
            val = trainer.num_val_batches
            n_val = sum(val) if isinstance(val, list) else int(val or 0)
            # validation steps cost about a third of a training step (no backward pass)
            epoch_s = per_step * (bpe + n_val / 3.0)
            self.plan.update(seconds_per_step=per_step, epoch_seconds=epoch_s)
            self._replan(trainer, epoch_s, self._epoch_fraction(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # From one epoch end to the next: validation and the previous epoch's saving count.
        now = self.clock()
        epoch_s, self._epoch_t0 = now - self._epoch_t0, now
        self._epochs_done += 1
        self.plan["epoch_seconds"] = epoch_s
        self._replan(trainer, epoch_s)

    @staticmethod
    def _epoch_fraction(trainer: L.Trainer) -> float:
        total = max(1, int(trainer.num_training_batches or 1))
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        return min(1.0, done / total)

    def _replan(self, trainer: L.Trainer, epoch_s: float, fraction_done: float = 1.0) -> None:
        """max_epochs from the time left; the current epoch is `fraction_done` finished."""
        if not self.replan_epochs:
            return
        epochs = planned_epochs(
            trainer.current_epoch + 1,
            self.elapsed() + (1.0 - fraction_done) * epoch_s,
            self.budget_s,
            epoch_s,
        )
        trainer.fit_loop.max_epochs = int(epochs)
        self.plan["planned_epochs"] = float(epochs)


# --------------------------------------------------------------------------- recipe loss


class RecipeLoss(L.Callback):
    """Switches the model's confidence-map heads to `losses.balanced_mse` (posekit-only).

    Set at fit start on the head objects (instance attribute ``loss_function``), so the
    config, the saved model and inference are unchanged.
    """

    HEADS = (
        "SingleInstanceConfmapsHead",
        "CentroidConfmapsHead",
        "CenteredInstanceConfmapsHead",
        "MultiInstanceConfmapsHead",
    )

    def __init__(self, loss: str = "balanced_mse"):
        self.loss = loss

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for head in getattr(pl_module.model, "heads", []):
            if head.name in self.HEADS:
                head.loss_function = self.loss


class TrainCrop(L.Callback):
    """Trains a single-instance model on crops around the animal (posekit-only, rule 14).

    Sets the data pipeline's `train_crop_size` at fit start: training batches are cut to
    `size` scaled px around the animal (at a random place in the crop); validation and
    inference keep whole frames (the network is fully convolutional).
    """

    def __init__(self, size: int):
        self.size = int(size)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pipeline = getattr(getattr(trainer, "datamodule", None), "pipeline", None)
        if pipeline is not None and hasattr(pipeline, "train_crop_size"):
            pipeline.train_crop_size = self.size


class SigmaSchedule(L.Callback):
    """Wide training Gaussians that narrow to the config's sigma (posekit-only, rule 15).

    The training targets of the confidence-map heads are drawn with ``scale x sigma``;
    `scale` falls from `start` to 1 along a half cosine over the first `until` of the
    budget's time and stays 1 after. A fresh network finds a wide blob sooner (more of
    the map carries signal) and the narrow final peak is what localises; validation
    targets always use the config's sigma, so validation losses compare across epochs.
    """

    def __init__(self, budget_s: float, start: float = 2.0, until: float = 0.5, clock: Any = None):
        self.budget_s = float(budget_s)
        self.start = float(start)
        self.until = float(until)
        self.clock = clock or time.monotonic
        self._t0: float | None = None
        self._pipeline: Any = None

    def scale(self, progress: float) -> float:
        """The sigma multiple at `progress` (elapsed fraction of the budget)."""
        t = min(max(progress / max(self.until, 1e-9), 0.0), 1.0)
        return 1.0 + (self.start - 1.0) * 0.5 * (1.0 + math.cos(math.pi * t))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self.clock()
        self._pipeline = getattr(getattr(trainer, "datamodule", None), "pipeline", None)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pipeline is None or self._t0 is None:
            return
        progress = (self.clock() - self._t0) / max(self.budget_s, 1e-9)
        self._pipeline.train_sigma_scale = self.scale(progress)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pipeline is not None:
            self._pipeline.train_sigma_scale = 1.0


# --------------------------------------------------------------------------- augmentation


# --------------------------------------------------------------------------- progress


def format_metric(value: Any) -> str:
    """A progress-bar number: scientific notation with 3 significant digits.

    Losses of confidence maps are ~1e-5..1e-2 and learning rates ~1e-8..1e-3, so a fixed
    ``.3f`` prints all of them as 0.000; ``4.52e-05`` shows both size and change.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, torch.Tensor):
        value = float(value.detach().cpu())
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.2e}"


class PosekitProgressBar(RichProgressBar):
    """Rich progress bar: epoch out of the planned epochs, metrics readable, time left.

    - The description is ``Epoch e/E`` counted from 1, `E` the trainer's current
      `max_epochs` (re-planned by `BudgetPlan` in budgeted runs, so not a placeholder).
    - Every metric is printed by `format_metric` (scientific notation).
    - `left`: time left of a wall-clock budget (`max_time`, from `BudgetPlan` or
      Lightning's `Timer`); without a budget `eta` extrapolates the mean epoch time
      (validation included) over the epochs still to run.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("leave", True)
        super().__init__(**kwargs)
        self._fit_t0: float | None = None
        self._epochs_done = 0

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        self._fit_t0 = time.monotonic()
        self._epochs_done = 0

    def on_train_epoch_end(self, trainer, pl_module):
        super().on_train_epoch_end(trainer, pl_module)
        self._epochs_done += 1

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            text += f"/{self.trainer.max_epochs}"
        if len(self.validation_description) > len(text):
            text = f"{text:{len(self.validation_description)}}"
        return text

    @staticmethod
    def budget_left(trainer) -> float | None:
        """Seconds left of the run's wall-clock budget, None without one."""
        for cb in trainer.callbacks:
            if isinstance(cb, BudgetPlan) and cb._t0 is not None:
                return cb.time_left()
        for cb in trainer.callbacks:
            if isinstance(cb, Timer) and cb.time_remaining() is not None:
                return max(float(cb.time_remaining()), 0.0)
        return None

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items = {k: format_metric(v) for k, v in items.items()}
        left = self.budget_left(trainer)
        if left is not None:
            items["left"] = _hms(left)
            return items
        if self._fit_t0 is not None and trainer.max_epochs and trainer.max_epochs > 0:
            total_batches = self.total_train_batches or 0
            frac = (self.train_progress_bar_id is not None and total_batches) and (
                trainer.fit_loop.epoch_loop.batch_progress.current.ready / total_batches
            )
            done = self._epochs_done + float(frac or 0.0)
            if done > 0:
                elapsed = time.monotonic() - self._fit_t0
                first = trainer.current_epoch - self._epochs_done
                remaining = max(trainer.max_epochs - first - done, 0.0)
                items["eta"] = _hms(elapsed / done * remaining)
        return items


class EpochLineProgress(ProgressBar):
    """One plain line per epoch: ``Epoch 3/50: loss ..., val_loss ..., lr ..., left 0:02:10``.

    For output that is not a terminal (``> train.log``, a SLURM job's output file): there
    a live bar cannot redraw itself, and each refresh lands in the file as a block of
    lines cut at 80 columns. A `ProgressBar`, so Lightning adds no bar of its own.
    """

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._t0: float | None = None
        self._first_epoch = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module):
        self._t0 = time.monotonic()
        self._first_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if not (self._enabled and trainer.is_global_zero):
            return
        from posekit.training.lightning_module import TRAIN_LOSS, VAL_LOSS

        epoch = trainer.current_epoch + 1
        planned = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        parts = []
        metrics = trainer.callback_metrics
        for name, key in (("loss", TRAIN_LOSS), ("val_loss", VAL_LOSS)):
            if key in metrics:
                parts.append(f"{name} {format_metric(metrics[key])}")
        lr = _current_lr(trainer)
        if lr is not None:
            parts.append(f"lr {format_metric(lr)}")
        left = PosekitProgressBar.budget_left(trainer)
        if left is None and planned and self._t0 is not None:
            done = epoch - self._first_epoch
            left = (time.monotonic() - self._t0) / done * max(planned - epoch, 0)
        if left is not None:
            parts.append(f"left {_hms(left)}")
        head = f"Epoch {epoch}/{planned}" if planned else f"Epoch {epoch}"
        print(f"{head}: {', '.join(parts)}", flush=True)


def progress_bar() -> ProgressBar:
    """The live bar in a terminal, one line per epoch anywhere else (a log file)."""
    interactive = getattr(sys.stdout, "isatty", lambda: False)()
    return PosekitProgressBar() if interactive else EpochLineProgress()


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --------------------------------------------------------------------------- run folder


__all__ = [
    "BudgetPlan",
    "EpochLineProgress",
    "PosekitProgressBar",
    "RecipeLoss",
    "budget_learning_rate",
    "format_metric",
    "planned_epochs",
    "progress_bar",
]
