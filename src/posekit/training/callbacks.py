"""Callbacks of a training run: schedule, outputs, pictures, progress.

Run folder (`outputs.runs_folder/<run name>`), written by global rank 0 only:

    training_config.json   the job config as trained (SLEAP's format; SLEAP reads it)
    initial_config.json    the config as given, before labels filled in part names etc.
    config.yaml            the trained config again, as YAML (easier to read and edit)
    metrics.csv            one row per epoch: losses per head, learning rate, times
    training_curve.png     loss and learning rate per epoch (redrawn every epoch)
    best_model/            posekit model folder of the lowest validation loss so far
    latest_model/          posekit model folder of the last finished epoch
    checkpoints/last.ckpt  Lightning checkpoint of the last finished epoch (resume)
    viz/validation.epochNNNN.png   predicted vs true points on a validation frame

Every file and model folder is written to a temporary name and renamed into place, so
a run killed at any moment leaves complete files only. `last.ckpt` is written last in
each epoch: it is the commit point that `--resume` continues from (metrics rows after it
are dropped and redone).

The schedule follows Keras' callbacks, which SLEAP uses: `KerasReduceLROnPlateau`
reproduces Keras' `ReduceLROnPlateau` counting (Lightning/torch count patience one
epoch later and apply cooldown differently), and early stopping uses Lightning's
`EarlyStopping`, whose patience and `min_delta` counting match Keras'.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import RichProgressBar, Timer

from posekit.training.lightning_module import TRAIN_LOSS, VAL_LOSS

CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"


def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    """Path of the resume checkpoint of a run folder."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CKPT


def _metric(trainer: L.Trainer, name: str) -> float | None:
    value = trainer.callback_metrics.get(name)
    if value is None:
        return None
    return float(value.detach().cpu()) if isinstance(value, torch.Tensor) else float(value)


def _current_lr(trainer: L.Trainer) -> float | None:
    if not trainer.optimizers:
        return None
    return float(trainer.optimizers[0].param_groups[0]["lr"])


# --------------------------------------------------------------------------- schedule


class KerasReduceLROnPlateau(L.Callback):
    """Keras' `ReduceLROnPlateau` on the validation loss, step for step.

    After each validation: an improvement is ``val_loss < best - min_delta``; otherwise,
    outside cooldown, a counter grows and when it reaches `patience` the learning rate
    becomes ``max(lr * factor, min_lr)`` and a cooldown of `cooldown` epochs starts
    (during which the counter stays at zero).
    """

    def __init__(
        self,
        factor: float = 0.5,
        patience: int = 5,
        min_delta: float = 1e-6,
        cooldown: int = 3,
        min_lr: float = 1e-8,
        monitor: str = VAL_LOSS,
        verbose: bool = True,
    ):
        self.factor = float(factor)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.monitor = monitor
        self.verbose = verbose
        self.best = math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def step(self, current: float, optimizers: list[torch.optim.Optimizer]) -> bool:
        """Update with one epoch's monitored value; returns True when it lowered the LR."""
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if current < self.best - self.min_delta:
            self.best = current
            self.wait = 0
            return False
        if self.cooldown_counter > 0:
            return False
        self.wait += 1
        if self.wait < self.patience:
            return False
        reduced = False
        for opt in optimizers:
            for group in opt.param_groups:
                old = float(group["lr"])
                if old > np.float32(self.min_lr):
                    group["lr"] = max(old * self.factor, self.min_lr)
                    reduced = True
        if reduced:
            self.cooldown_counter = self.cooldown
            self.wait = 0
        return reduced

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        current = _metric(trainer, self.monitor)
        if current is None or not math.isfinite(current):
            return
        if self.step(current, trainer.optimizers) and self.verbose and trainer.is_global_zero:
            print(
                f"Epoch {trainer.current_epoch}: {self.monitor} has not improved for "
                f"{self.patience} epoch(s); learning rate -> {_current_lr(trainer):.3g}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict["best"])
        self.wait = int(state_dict["wait"])
        self.cooldown_counter = int(state_dict["cooldown_counter"])


def optimization_callbacks(optimization: Any) -> list[L.Callback]:
    """Schedule and early-stopping callbacks for an `OptimizationConfig`."""
    from lightning.pytorch.callbacks import EarlyStopping

    callbacks: list[L.Callback] = []
    lrs = optimization.learning_rate_schedule
    if lrs.reduce_on_plateau:
        callbacks.append(
            KerasReduceLROnPlateau(
                factor=lrs.reduction_factor,
                patience=lrs.plateau_patience,
                min_delta=lrs.plateau_min_delta,
                cooldown=lrs.plateau_cooldown,
                min_lr=lrs.min_learning_rate,
            )
        )
    es = optimization.early_stopping
    if es.stop_training_on_plateau:
        callbacks.append(
            EarlyStopping(
                monitor=VAL_LOSS,
                mode="min",
                patience=es.plateau_patience,
                min_delta=es.plateau_min_delta,
                check_on_train_epoch_end=False,
                verbose=False,
            )
        )
    return callbacks


# --------------------------------------------------------------------------- budget plan


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
            self.progress(), self._steps, float(self.lr), float(self.lr) * self.floor_ratio,
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


# --------------------------------------------------------------------------- augmentation


class AugmentationGenerator(L.Callback):
    """Each rank's own random stream for augmentation, on the training device.

    Made at fit start (when the device is known) and seeded with ``seed + 1000 x global
    rank``: ranks augment differently, and a run is reproducible. Random numbers (noise
    images included) are then drawn where the batch lives instead of on the CPU.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.generator: torch.Generator | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        try:
            gen = torch.Generator(device=pl_module.device)
        except RuntimeError:  # devices without their own generators
            gen = torch.Generator()
        gen.manual_seed(self.seed + 1000 * int(trainer.global_rank))
        self.generator = gen


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


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --------------------------------------------------------------------------- run folder


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunOutputs(L.Callback):
    """Writes the run folder: metrics, curves, model folders, resume checkpoint, pictures.

    Args:
        run_dir: the run folder (created by `train`).
        config: the `TrainingJobConfig` saved inside model folders.
        save_visualizations: draw predicted vs true points each epoch.
        keep_viz_images: keep every epoch's picture (else only the last one is kept).
        checkpointing: the `outputs.checkpointing` config (which extra model folders).
        plot_curve: redraw `training_curve.png` each epoch.
        log_to_csv: write `metrics.csv` (`outputs.log_to_csv`; the curve needs it).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: Any,
        save_visualizations: bool = True,
        keep_viz_images: bool = False,
        checkpointing: Any = None,
        plot_curve: bool = True,
        log_to_csv: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.config = config
        self.save_visualizations = save_visualizations
        self.keep_viz_images = keep_viz_images
        self.checkpointing = checkpointing
        self.log_to_csv = log_to_csv
        self.plot_curve = plot_curve and log_to_csv
        self.best_val = math.inf
        self.best_epoch = -1
        self.elapsed = 0.0  # seconds of finished epochs, across resumes
        self._epoch_t0 = 0.0
        self._epoch_lr: float | None = None
        self._validated = False
        self._columns: list[str] = []

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {"best_val": self.best_val, "best_epoch": self.best_epoch, "elapsed": self.elapsed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_val = float(state_dict.get("best_val", math.inf))
        self.best_epoch = int(state_dict.get("best_epoch", -1))
        self.elapsed = float(state_dict.get("elapsed", 0.0))

    @property
    def metrics_csv(self) -> Path:
        return self.run_dir / "metrics.csv"

    # ---------------------------------------------------------------- hooks

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        heads = list(pl_module.head_names)
        self._columns = (
            ["epoch", TRAIN_LOSS, VAL_LOSS]
            + [f"train/{h}" for h in heads]
            + [f"val/{h}" for h in heads]
            + ["lr", "epoch_time_s", "elapsed_s"]
        )
        if not trainer.is_global_zero:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # On resume, rows of epochs after the checkpoint are redone: drop them.
        start = trainer.current_epoch
        rows = []
        if self.metrics_csv.exists():
            with open(self.metrics_csv, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < start]
        if self.log_to_csv:
            self._write_rows(rows)
        ckpt = self.checkpointing
        if start == 0 and ckpt is not None and ckpt.initial_model:
            self._save_model(pl_module, "initial_model")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_t0 = time.monotonic()
        self._epoch_lr = _current_lr(trainer)
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        epoch_time = time.monotonic() - self._epoch_t0
        self.elapsed += epoch_time
        # An epoch cut short (max_time) has no validation: leave its val columns empty.
        validated = self._validated
        val = _metric(trainer, VAL_LOSS) if validated else None
        improved = val is not None and math.isfinite(val) and val < self.best_val
        if improved:
            self.best_val, self.best_epoch = val, epoch
        weights_ok = all(bool(torch.isfinite(p).all()) for p in pl_module.model.parameters())

        if trainer.is_global_zero:
            row = {c: "" for c in self._columns}
            row.update(epoch=epoch, lr=self._epoch_lr, epoch_time_s=round(epoch_time, 3))
            row["elapsed_s"] = round(self.elapsed, 3)
            for c in self._columns[1:-3]:
                v = _metric(trainer, c) if validated or not c.startswith("val") else None
                row[c] = "" if v is None else v
            if self.log_to_csv:
                self._append_row(row)
            if self.plot_curve:
                self._safe(lambda: self._plot_curve())
            if weights_ok:
                if improved and (self.checkpointing is None or self.checkpointing.best_model):
                    self._save_model(pl_module, "best_model")
                self._save_model(pl_module, "latest_model")
                if self.checkpointing is not None and self.checkpointing.every_epoch:
                    self._save_model(pl_module, f"model.epoch{epoch:04d}")
            if self.save_visualizations:
                self._safe(lambda: self._visualize(trainer, pl_module, epoch))

        if weights_ok:
            self._save_checkpoint(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if self.checkpointing is not None and self.checkpointing.final_model:
            self._save_model(pl_module, "final_model")
        if self.save_visualizations and not self.keep_viz_images:
            pngs = sorted((self.run_dir / "viz").glob("validation.epoch*.png"))
            for png in pngs[:-1]:
                png.unlink(missing_ok=True)

    # ---------------------------------------------------------------- writers

    def _write_rows(self, rows: list[dict]) -> None:
        tmp = self.metrics_csv.with_name(".metrics.csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.metrics_csv)

    def _append_row(self, row: dict) -> None:
        # Append-only with a flush: a crash loses at most the row being written, and the
        # resume step above rewrites the file from complete rows.
        with open(self.metrics_csv, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore").writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def _plot_curve(self) -> None:
        from posekit.training.plots import plot_training_curve

        plot_training_curve(self.metrics_csv, self.run_dir / "training_curve.png")

    def _save_model(self, pl_module: L.LightningModule, name: str) -> None:
        from posekit.io.model_folder import save_model

        save_model(pl_module.model, self.run_dir / name, self.config)

    def _save_checkpoint(self, trainer: L.Trainer) -> None:
        """Lightning checkpoint via a temporary file; every rank must call this."""
        path = last_checkpoint(self.run_dir)
        tmp = path.with_name(f".{path.name}.tmp")
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)  # rank 0 writes; all ranks meet
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("posekit_last_ckpt")

    @staticmethod
    def _safe(fn) -> None:
        """Pictures must never end a training run."""
        try:
            fn()
        except Exception as err:  # noqa: BLE001
            print(f"posekit: could not draw a training picture ({type(err).__name__}: {err})")

    def _visualize(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        from posekit.training.plots import map_peaks, plot_peaks_vs_truth

        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "viz_batch"):
            return
        batch = dm.viz_batch()
        if batch is None:
            return
        batch = {
            k: v.to(pl_module.device) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }
        if pl_module.eval_transform is not None:
            batch = pl_module.eval_transform(batch)
        head = next((h for h in pl_module.model.heads if h.is_map), None)
        if head is None or head.name not in batch:
            return
        if head.name in ("PartAffinityFieldsHead", "OffsetRefinementHead"):
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                pred = model(batch["image"][:1])[head.name][0].float().cpu().numpy()
        finally:
            model.train(was_training)
        true = batch[head.name][0].float().cpu().numpy()
        stride = head.output_stride
        image = batch["image"][0].float().cpu().numpy()
        png = self.run_dir / "viz" / f"validation.epoch{epoch:04d}.png"
        if head.name in ("MultiInstanceConfmapsHead", "CentroidConfmapsHead"):
            # Several animals per map: show every local peak of both maps, unpaired.
            from posekit.inference.peaks import find_local_peaks_rough

            pred_pts = find_local_peaks_rough(torch.from_numpy(pred[None]), 0.2)[0].numpy()
            true_pts = find_local_peaks_rough(torch.from_numpy(true[None]), 0.2)[0].numpy()
            title = f"epoch {epoch}: {head.name}, {len(pred_pts)} peaks ({len(true_pts)} true)"
            plot_peaks_vs_truth(image, true_pts * stride, pred_pts * stride, png, title, False)
            return
        pred_pts, _ = map_peaks(pred)
        true_pts, true_vals = map_peaks(true)
        true_pts[true_vals < 0.1] = np.nan
        err = np.linalg.norm((pred_pts - true_pts) * stride, axis=1)
        mean_err = float(np.nanmean(err)) if np.isfinite(err).any() else math.nan
        plot_peaks_vs_truth(
            image,
            true_pts * stride,
            pred_pts * stride,
            png,
            title=f"epoch {epoch}: {head.name}, mean peak error {mean_err:.1f} px",
        )


def remove_run_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete temporary files a killed run may have left (never complete outputs)."""
    run_dir = Path(run_dir)
    for tmp in list(run_dir.glob(".*.tmp")) + list((run_dir / CHECKPOINT_DIR).glob(".*.tmp")):
        tmp.unlink(missing_ok=True)
    for d in run_dir.glob(".*_model.*"):
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


__all__ = [
    "AugmentationGenerator",
    "BudgetPlan",
    "RecipeLoss",
    "budget_learning_rate",
    "format_metric",
    "planned_epochs",
    "KerasReduceLROnPlateau",
    "PosekitProgressBar",
    "RunOutputs",
    "last_checkpoint",
    "optimization_callbacks",
    "remove_run_temporaries",
]
