"""Callbacks of a training run: schedule, outputs, pictures, progress.

Run folder (`outputs.runs_folder/<run name>`), written by global rank 0 only:

    training_config.json   the job config as trained (SLEAP's format; SLEAP reads it)
    initial_config.json    the config as given, before labels filled in part names etc.
    config.yaml            the trained config again, as YAML (easier to read and edit)
    training_config.sleap_nn.yaml  the same in sleap-nn's format (sleap-nn's backbones)
    metrics.csv            one row per epoch: losses per head, learning rate, times
    training_curve.png     loss and learning rate per epoch (redrawn every epoch)
    best_model/            posekit model folder of the lowest validation loss so far
    latest_model/          posekit model folder of the last finished epoch
    checkpoints/last.ckpt  Lightning checkpoint of the last finished epoch (resume)
    viz/validation.epochNNNN.png   predicted vs true points on a validation frame
    logs/                  TensorBoard event files (outputs.tensorboard.write_logs)
    wandb/                 Weights & Biases run files (`posekit train --wandb PROJECT`)

Every file and model folder is written to a temporary name and renamed into place, so
a run killed at any moment leaves complete files only. `last.ckpt` is written last in
each epoch: it is the commit point that `--resume` continues from (metrics rows after it
are dropped and redone).

The schedule follows Keras' callbacks, which SLEAP uses: `KerasReduceLROnPlateau`
reproduces Keras' `ReduceLROnPlateau` counting (Lightning/torch count patience one
epoch later and apply cooldown differently), and early stopping uses Lightning's
`EarlyStopping`, whose patience and `min_delta` counting match Keras'.
A `step_lr` or `cosine_annealing_warmup` schedule (sleap-nn's names) replaces the
plateau: `EpochLRSchedule` sets the rate at each epoch start from the epoch number.
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

from posekit.io.atomic import atomic_path
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


def scheduled_learning_rate(schedule: Any, epoch: int, lr: float, max_epochs: int) -> float:
    """The learning rate of `epoch` (0-based) under a `step_lr` or `cosine_annealing_warmup`.

    step: ``lr * gamma ** (epoch // step_size)``. Cosine with warm-up: linear from
    `warmup_start_lr` (epoch 0) towards `lr` over `warmup_epochs` epochs, then
    ``eta_min + (lr - eta_min) * (1 + cos(pi * t)) / 2`` with `t` going from 0 at the
    end of the warm-up to 1 at `max_epochs` (the schedule's own, else the run's).
    """
    if hasattr(schedule, "step_size"):
        return float(lr) * float(schedule.gamma) ** (int(epoch) // int(schedule.step_size))
    warm = int(schedule.warmup_epochs)
    if epoch < warm:
        start = float(schedule.warmup_start_lr)
        return start + (float(lr) - start) * epoch / warm
    total = int(schedule.max_epochs or max_epochs)
    t = min(1.0, (epoch - warm) / max(1, total - warm))
    eta = float(schedule.eta_min)
    return eta + (float(lr) - eta) * 0.5 * (1.0 + math.cos(math.pi * t))


class EpochLRSchedule(L.Callback):
    """Sets the learning rate at the start of every epoch from `scheduled_learning_rate`.

    Stateless (the epoch number decides), so a resumed run continues the same curve.
    `max_epochs` of a cosine schedule defaults to the trainer's, which a budgeted
    `--auto` run re-plans.
    """

    def __init__(self, schedule: Any, lr: float):
        self.schedule = schedule
        self.lr = float(lr)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        max_epochs = int(trainer.max_epochs or 1)
        rate = scheduled_learning_rate(self.schedule, trainer.current_epoch, self.lr, max_epochs)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = rate


def optimization_callbacks(optimization: Any) -> list[L.Callback]:
    """Schedule and early-stopping callbacks for an `OptimizationConfig`.

    A `step_lr` or `cosine_annealing_warmup` schedule replaces the plateau reduction.
    """
    from lightning.pytorch.callbacks import EarlyStopping

    callbacks: list[L.Callback] = []
    lrs = optimization.learning_rate_schedule
    if lrs.fixed_schedule is not None:
        callbacks.append(EpochLRSchedule(lrs.fixed_schedule, optimization.initial_learning_rate))
    elif lrs.reduce_on_plateau:
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
        with atomic_path(self.metrics_csv) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def _append_row(self, row: dict) -> None:
        # Append-only with a flush: a crash loses at most the row being written, and the
        # resume step above rewrites the file from complete rows.
        with open(self.metrics_csv, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore").writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def _plot_curve(self) -> None:
        from posekit.visualization import plot_training_curve

        plot_training_curve(self.metrics_csv, self.run_dir / "training_curve.png")

    def _save_model(self, pl_module: L.LightningModule, name: str) -> None:
        from posekit.model.folder import save_model

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
        from posekit.data.masks import MASK_HEADS
        from posekit.ops.peaks import find_global_peaks_rough, find_local_peaks_rough
        from posekit.training.plots import plot_peaks_vs_truth

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
        if head.name in ("PartAffinityFieldsHead", "OffsetRefinementHead", *MASK_HEADS):
            return  # no peaks to draw (mask runs are pictured by `posekit render`)
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
            pred_pts = find_local_peaks_rough(torch.from_numpy(pred[None]))[0].numpy()
            true_pts = find_local_peaks_rough(torch.from_numpy(true[None]))[0].numpy()
            title = f"epoch {epoch}: {head.name}, {len(pred_pts)} peaks ({len(true_pts)} true)"
            plot_peaks_vs_truth(image, true_pts * stride, pred_pts * stride, png, title, False)
            return
        pred_pts = find_global_peaks_rough(torch.from_numpy(pred[None]), 0.0)[0][0].numpy()
        true_pts, true_vals = find_global_peaks_rough(torch.from_numpy(true[None]), 0.0)
        true_pts, true_vals = true_pts[0].numpy(), true_vals[0].numpy()
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
    "EpochLRSchedule",
    "KerasReduceLROnPlateau",
    "RunOutputs",
    "last_checkpoint",
    "optimization_callbacks",
    "remove_run_temporaries",
    "scheduled_learning_rate",
]
