"""`train()`: from a config and labels to a trained posekit model folder.

`train` runs these steps, in SLEAP's `Trainer` order, each a small function below:

1. `_resolve_job`: the config is loaded (file, dict or object), `overrides` and the
   explicit arguments (`epochs`, `batch_size`, `run_name`, ...) are applied; with
   `resume` the run folder's own `training_config.json` and seed are used instead.
2. `_load_labels`: labels are loaded with sleap-io (`posekit.training.inputs`), checked
   against the config and split (see `load_label_splits`).
3. `_plan` (only with `auto`): `posekit.training.recommend` picks scaling, crop size,
   batch size, learning-rate schedule and epochs from the labels and the hardware; the
   user's overrides and arguments still win.
4. `_build_model`: the model is built once (`Model.from_config`); its heads, with the
   part names, edges and classes of the config or the labels, are what the later steps
   use.
5. `_build_data`: the data pipeline makes targets for exactly those heads; the config is
   completed from the labels (`update_config`), so the saved config alone rebuilds the
   model and its preprocessing.
6. `_initialise_weights`: optionally from `model.base_checkpoint` (a posekit or SLEAP
   model folder; tensors are copied by name where shapes agree).
7. `_prepare_run_folder`: rank 0 writes the configs (`posekit.training.run_folder`).
8. `_lightning_module`, `_callbacks`, `_trainer`: Lightning on the requested devices;
   `RunOutputs` (`posekit.training.callbacks`) writes the models and metrics; the
   loggers (`posekit.training.logs`: TensorBoard into ``<run>/logs/`` when
   `outputs.tensorboard.write_logs`, Weights & Biases with `wandb`) log the same values.
   Config settings posekit does not act on are named in one warning before training.
9. `_fit`, then `_finish` (the optional zip of the run folder).
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError
from posekit.training.inputs import (
    as_job_config,
    config_names,
    heads_config,
    load_label_splits,
    record_label_paths,
    update_config,
)
from posekit.training.run_folder import (
    RUN_DIR_ENV,
    check_resume_changes,
    choose_run_dir,
    env_rank,
    resumed_run,
    write_configs,
    write_run_info,
)


def train(
    config: Any = None,
    labels: Any = None,
    val_labels: Any = None,
    run_name: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    devices: int | str | list[int] | None = None,
    num_nodes: int = 1,
    strategy: str | None = None,
    resume: str | os.PathLike | None = None,
    overrides: Any = None,
    max_time: Any = None,
    *,
    runs_folder: str | os.PathLike | None = None,
    auto: bool = False,
    seed: int = 0,
    num_workers: int | None = None,
    precision: str | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    wandb: str | None = None,
) -> Path:
    """Train a model; returns the run folder (its `best_model/` is the trained model).

    Args:
        config: `TrainingJobConfig`, a config file / shipped name, or a dict. Ignored
            when resuming (the run's own config is used).
        labels: training labels (path, `sleap_io.Labels` or `PoseLabels`); default
            `data.labels.training_labels`.
        val_labels: validation labels; default `data.labels.validation_labels`, else a
            seeded `validation_fraction` split.
        run_name: run folder name (default: SLEAP's `<timestamp>.<model type>.n=<N>`).
        epochs, batch_size: override `optimization.epochs` / `batch_size`.
        device: "auto", "cpu", "cuda" or "mps".
        devices: devices per node (default 1); num_nodes, strategy ("ddp", ...): passed
            to `lightning.Trainer`.
        resume: a run folder; training continues after its last finished epoch.
        overrides: ``["key.path=value", ...]`` or ``{"key.path": value}``.
        max_time: wall-clock limit (seconds, timedelta or "DD:HH:MM:SS").
        runs_folder: overrides `outputs.runs_folder`.
        auto: let `posekit.training.recommend` choose data-dependent settings.
        seed: seeds weights, split, shuffling and augmentation.
        num_workers: DataLoader workers per rank (default: by core count).
        precision: Lightning precision ("32-true", "bf16-mixed", "16-mixed").
        callbacks: extra Lightning callbacks.
        progress: show progress (a live bar in a terminal, else a line per epoch).
        wandb: a Weights & Biases project to log to (needs ``posekit[wandb]``).
    """
    import lightning as L

    from posekit.model.device import resolve_device

    # a device this machine lacks fails before any file is written
    if resolve_device(device) == "cpu":
        from posekit.optimize.allocator import keep_freed_memory

        keep_freed_memory()  # activations and gradients reused, not re-faulted, per step
    arguments = _Arguments(epochs, batch_size, run_name, runs_folder, resume is not None)
    job = _resolve_job(config, resume, overrides, seed, arguments)
    _require_loggers(job.config, wandb)
    L.seed_everything(job.seed, workers=True, verbose=False)
    train_labels, val_set = _load_labels(job, labels, val_labels)
    if auto and not job.resuming:
        num_workers, precision = _plan(job, train_labels, device, max_time, num_workers, precision)
    _warn_ignored(job.config)
    model = _build_model(job.config, train_labels)
    datamodule = _build_data(job, model, train_labels, val_set, num_workers)
    _initialise_weights(job, model)
    run_dir = _prepare_run_folder(job, len(train_labels) + len(val_set))
    module, augment_rng = _lightning_module(job, model, datamodule.pipeline)
    trainer = _trainer(
        job.config,
        run_dir,
        _callbacks(
            job.config, run_dir, augment_rng, progress, [*job.recipe_callbacks, *(callbacks or [])]
        ),
        device=device,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        max_time=max_time,
        precision=precision,
        progress=progress,
        loggers=_loggers(job.config, run_dir, wandb),
    )
    _fit(trainer, module, datamodule, run_dir, job.ckpt_path)
    _evaluate(job, run_dir, val_set, device)
    _finish(job.config, trainer, run_dir)
    return run_dir


# --------------------------------------------------------------------------- 1. the job


@dataclass(frozen=True)
class _Arguments:
    """`train()`'s explicit settings: they win over the config, and over `--auto` too."""

    epochs: int | None
    batch_size: int | None
    run_name: str | None
    runs_folder: str | os.PathLike | None
    resuming: bool  # a resumed run keeps its own folder: run_name/runs_folder are ignored

    def overrides(self) -> dict[str, Any]:
        """The arguments as dotted config overrides (what `--auto` must plan around)."""
        out: dict[str, Any] = {}
        if self.epochs is not None:
            out["optimization.epochs"] = int(self.epochs)
        if self.batch_size is not None:
            out["optimization.batch_size"] = int(self.batch_size)
        return out

    def apply(self, config: Any) -> Any:
        """Set the given arguments on `config` (in place) and return it."""
        if self.epochs is not None:
            config.optimization.epochs = int(self.epochs)
        if self.batch_size is not None:
            config.optimization.batch_size = int(self.batch_size)
        if not self.resuming:
            if self.run_name is not None:
                config.outputs.run_name = self.run_name
            if self.runs_folder is not None:
                config.outputs.runs_folder = str(self.runs_folder)
        return config


@dataclass
class _Job:
    """The resolved job, handed from step to step.

    Attributes:
        config: the `TrainingJobConfig`; later steps complete it in place.
        seed: the run's seed (a resumed run keeps the seed it started with).
        overrides: the user's overrides, parsed (re-applied after `--auto`).
        arguments: the explicit arguments (re-applied after `--auto`).
        initial: the config as given, saved as `initial_config.json` (None on resume).
        run_dir: the run folder (known at once when resuming, else chosen later).
        ckpt_path: the Lightning checkpoint to continue from (None for a new run).
        recipe_callbacks: what `--auto` adds to training with a budget (the recipe's loss
            and the plan that corrects itself from measured step times).
    """

    config: Any
    seed: int
    overrides: dict[str, Any]
    arguments: _Arguments
    initial: Any = None
    run_dir: Path | None = None
    ckpt_path: Path | None = None
    recipe_callbacks: list = field(default_factory=list)  # `--auto`'s budget plan, loss

    @property
    def resuming(self) -> bool:
        return self.ckpt_path is not None


def _resolve_job(
    config: Any, resume: Any, overrides: Any, seed: int, arguments: _Arguments
) -> _Job:
    """One config for the whole run: the user's (or the resumed run's) plus overrides.

    Label and checkpoint paths become absolute (relative ones are relative to the config
    file). A config without heads fails here, before any labels are read.
    """
    from posekit.config.overrides import apply_overrides, parse_overrides

    user_overrides = parse_overrides(overrides)
    run_dir = ckpt_path = None
    if resume is not None:
        run_dir, ckpt_path, config, info = resumed_run(resume)
        seed = int(info.get("seed", seed))
    else:
        config = as_job_config(config)
    changed = arguments.apply(apply_overrides(config, user_overrides))
    if resume is not None:
        check_resume_changes(run_dir, config, changed, user_overrides)
    config = changed.with_resolved_paths()
    heads_config(config)
    initial = None if resume is not None else config.model_copy(deep=True)
    return _Job(config, seed, user_overrides, arguments, initial, run_dir, ckpt_path)


# --------------------------------------------------------------------------- 2-3. labels, plan


def _load_labels(job: _Job, labels: Any, val_labels: Any) -> tuple[Any, Any]:
    """Training and validation labels, checked; their files are recorded for `--resume`."""
    train_labels, val_set = load_label_splits(job.config, labels, val_labels, job.seed)
    record_label_paths(job.config, train_labels, val_set, val_labels)
    return train_labels, val_set


def _plan(
    job: _Job,
    train_labels: Any,
    device: str | None,
    max_time: Any,
    num_workers: int | None,
    precision: str | None,
) -> tuple[int | None, str | None]:
    """`--auto`: settings from the labels and the hardware, under the user's own.

    Returns the DataLoader workers and precision to use (the user's when given).
    """
    from posekit.config.overrides import apply_overrides
    from posekit.training.hardware import detect_hardware
    from posekit.training.recommend import recommend

    # The user's choices are part of the plan: the recipe re-plans around them.
    given = {**job.overrides, **job.arguments.overrides()}
    rec = recommend(
        job.config, train_labels, detect_hardware(device), max_time=max_time, overrides=given
    )
    job.recipe_callbacks = rec.callbacks()
    _user_schedule_wins(job)
    planned = apply_overrides(apply_overrides(job.config, rec.overrides), job.overrides)
    job.config = job.arguments.apply(planned)
    if env_rank() == 0:
        print("posekit: --auto settings:\n" + rec.describe())
    return (
        rec.num_workers if num_workers is None else num_workers,
        rec.precision if precision is None else precision,
    )


def _user_schedule_wins(job: _Job) -> None:
    """A `step_lr` / `cosine_annealing_warmup` in the user's config sets the learning rate;
    a budgeted `--auto` run's `BudgetPlan` then only plans the epochs."""
    schedule = job.config.optimization.learning_rate_schedule.fixed_schedule
    if schedule is None:
        return
    for cb in job.recipe_callbacks:
        if getattr(cb, "schedule_lr", False):
            cb.schedule_lr = False
            if env_rank() == 0:
                print(
                    "posekit: the config's learning-rate schedule "
                    f"({type(schedule).__name__}) replaces --auto's budget schedule"
                )


def _warn_ignored(config: Any) -> None:
    """One warning naming the config settings posekit does not act on (rank 0)."""
    from posekit.training.logs import ignored_settings_message

    message = ignored_settings_message(config)
    if message and env_rank() == 0:
        warnings.warn(message, UserWarning, stacklevel=3)


# --------------------------------------------------------------------------- 4-6. model, data


def _build_model(config: Any, train_labels: Any) -> Any:
    """The model, built once; its heads carry the names every later step uses.

    Part names and classes come from the config, else from the labels (skeleton nodes,
    tracks); edges from the skeleton where the config leaves them null. The input
    channels follow the frames (a mix of gray and color videos trains on color;
    `posekit.data.channels`).
    """
    from posekit.data.channels import frame_channels
    from posekit.model.network import Model
    from posekit.model.preprocessing import Preprocessor
    from posekit.model.registry import model_type

    skeleton = train_labels.skeleton
    frame_c = frame_channels(train_labels)
    in_channels = Preprocessor.from_config(config.data.preprocessing).output_channels(frame_c)
    classes = config_names(config, "classes") or list(train_labels.class_names) or None
    kind = config.model.heads.which_oneof_attrib_name()
    if not classes and model_type(kind).multi_class:  # identities are its targets
        raise PosekitError(
            f"a {kind} model learns identities from tracked animals, and the training labels "
            f"have no tracks: track them first (posekit track, or SLEAP's proofreading) or set "
            f"the classes in model.heads.{kind}"
        )
    return Model.from_config(
        config.model,
        in_channels=in_channels,
        part_names=config_names(config, "part_names") or list(skeleton.node_names),
        edges=[tuple(e) for e in skeleton.edges],
        classes=classes,
    )


def _build_data(
    job: _Job, model: Any, train_labels: Any, val_set: Any, num_workers: int | None
) -> Any:
    """The data pipeline for the model's heads, and the config and model completed by it.

    The pipeline fixes what the labels decide (automatic crop size, padding); that goes
    into the config (`update_config`), and the model records the config, its skeleton
    and its input size, so the saved model folder is self-contained.
    """
    from posekit.data.dataset import DataPipeline
    from posekit.training.datamodule import PoseDataModule

    config = job.config
    stride = model.maximum_stride
    pipeline = DataPipeline.from_config(
        config, train_labels, model.head_specs, max_stride=stride, seed=job.seed
    )
    update_config(config, model.head_specs, train_labels.skeleton, stride, pipeline.crop_size)
    datamodule = PoseDataModule(
        pipeline, train_labels, val_set, config.optimization, num_workers=num_workers, seed=job.seed
    )
    if pipeline.is_topdown:
        input_size = (pipeline.crop_size, pipeline.crop_size)
    else:
        s = pipeline.preprocessor.input_scaling
        pad = int(pipeline.preprocessor.pad_to_stride or 1)
        input_size = tuple(-(-int(v * s) // pad) * pad for v in datamodule.train_dataset.frame_hw)
    model.input_size = tuple(int(v) for v in input_size)
    model.config = config
    model.skeleton = train_labels.skeleton.to_sleap_io()
    return datamodule


def _initialise_weights(job: _Job, model: Any) -> None:
    """Start a new run from `model.base_checkpoint` when the config names one."""
    source = job.config.model.base_checkpoint
    if job.resuming or not source:
        return
    copied, total = load_base_checkpoint(model, source)
    if env_rank() == 0:
        print(f"posekit: initialised {copied}/{total} tensors from {source}")


def load_base_checkpoint(model: Any, path: str | os.PathLike) -> tuple[int, int]:
    """Copy weights from a posekit or SLEAP model folder into `model`, by name and shape.

    Returns (tensors copied, tensors in `model`). Heads whose shape differs (another
    skeleton) keep their fresh initialisation; if no backbone tensor matches it is an
    error (a different architecture: only coincidences like a bias could be copied).
    """
    import torch

    from posekit.model.folder import load_model

    source = load_model(path)
    src = source.state_dict()
    dst = model.state_dict()
    matched = {k: v for k, v in src.items() if k in dst and dst[k].shape == v.shape}
    backbone = [k for k in dst if k.startswith("backbone.")]
    if not matched or (backbone and not any(k.startswith("backbone.") for k in matched)):
        raise PosekitError(
            f"model.base_checkpoint {str(path)!r}: none of its weights fit this model "
            f"(different backbone?); use a checkpoint of the same architecture"
        )
    with torch.no_grad():
        model.load_state_dict(matched, strict=False)
    return len(matched), len(dst)


# --------------------------------------------------------------------------- 7. run folder


def _prepare_run_folder(job: _Job, n_frames: int) -> Path:
    """The run folder, with the configs written (by rank 0 only).

    A new run gets a fresh folder with `initial_config.json`, the completed config and
    the seed; a resumed run loses a killed run's temporary files and gets its config
    rewritten (overrides may have changed it).
    """
    from posekit.training.callbacks import remove_run_temporaries

    if job.run_dir is None:
        job.run_dir = choose_run_dir(job.config, n_frames)
    if env_rank() == 0:
        if job.resuming:
            remove_run_temporaries(job.run_dir)
            job.config.model_copy(deep=True).save_json(job.run_dir / "training_config.json")
        else:
            write_configs(job.run_dir, job.config, job.initial)
            write_run_info(job.run_dir, job.seed)
    return job.run_dir


# --------------------------------------------------------------------------- 8. Lightning


def _lightning_module(job: _Job, model: Any, pipeline: Any) -> tuple[Any, Any]:
    """The LightningModule, finishing each batch on the device through the pipeline.

    Training batches are augmented with each rank's own generator (the returned
    `AugmentationGenerator` callback makes it at fit start); validation batches are not.
    """
    from posekit.training.callbacks import AugmentationGenerator
    from posekit.training.lightning_module import PoseLightningModule

    augment_rng = AugmentationGenerator(job.seed)

    def train_transform(batch):
        return pipeline.process(batch, augment=True, generator=augment_rng.generator)

    def eval_transform(batch):
        return pipeline.process(batch, augment=False)

    module = PoseLightningModule(
        model, job.config, train_transform=train_transform, eval_transform=eval_transform
    )
    return module, augment_rng


def _callbacks(
    config: Any, run_dir: Path, augment_rng: Any, progress: bool, extra: list[Any] | None
) -> list[Any]:
    """The config's schedule and early stopping, the run folder's writer, then the user's."""
    from posekit.training.budget import progress_bar
    from posekit.training.callbacks import RunOutputs, optimization_callbacks

    outputs = config.outputs
    save = bool(outputs.save_outputs)
    cbs: list[Any] = optimization_callbacks(config.optimization)
    cbs.append(
        RunOutputs(
            run_dir,
            config,
            save_visualizations=save and bool(outputs.save_visualizations),
            keep_viz_images=bool(outputs.keep_viz_images),
            checkpointing=outputs.checkpointing,
            plot_curve=save,
            log_to_csv=bool(outputs.log_to_csv),
        )
    )
    cbs.append(augment_rng)
    if progress:
        cbs.append(progress_bar())
    cbs.extend(extra or [])
    return cbs


def _trainer(
    config: Any,
    run_dir: Path,
    callbacks: list[Any],
    *,
    device: str | None,
    devices: Any,
    num_nodes: int,
    strategy: str | None,
    max_time: Any,
    precision: str | None,
    progress: bool,
    loggers: list[Any] | None = None,
) -> Any:
    """`lightning.Trainer` for the run; checkpoints and files are posekit's own (RunOutputs),
    `loggers` (TensorBoard, W&B) get what the module logs."""
    import lightning as L
    import torch

    from posekit.training.hardware import runnable_precision
    from posekit.training.logs import log_every_n_steps

    accelerator = _accelerator(device)
    _quiet_lightning()
    return L.Trainer(
        accelerator=accelerator,
        devices=devices if devices is not None else 1,
        num_nodes=int(num_nodes or 1),
        strategy=strategy or "auto",
        max_epochs=int(config.optimization.epochs),
        max_time=_max_time(max_time),
        precision=runnable_precision(precision or "32-true", accelerator),
        logger=loggers or False,
        log_every_n_steps=log_every_n_steps(config),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        benchmark=torch.cuda.is_available() and accelerator in ("gpu", "auto"),
    )


def _require_loggers(config: Any, wandb: str | None) -> None:
    """Fail before any work when a requested logger's package is missing."""
    from posekit.training.logs import require_logger_packages

    require_logger_packages(config, wandb)


def _loggers(config: Any, run_dir: Path, wandb: str | None) -> list[Any]:
    """TensorBoard (`outputs.tensorboard.write_logs`) and W&B (`wandb`) loggers."""
    from posekit.training.logs import training_loggers

    return training_loggers(config, run_dir, wandb)


def _accelerator(device: str | None) -> str:
    """posekit's device names ("cuda", ...) as Lightning's accelerator names ("gpu", ...)."""
    device = (device or "auto").lower()
    return {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu", "mps": "mps", "auto": "auto"}.get(
        device, device
    )


def _max_time(max_time: Any) -> _dt.timedelta | None:
    """Lightning's `max_time` from any form `budget_seconds` accepts ("600" included)."""
    from posekit.training.hardware import budget_seconds

    seconds = budget_seconds(max_time)
    return None if seconds is None else _dt.timedelta(seconds=seconds)


def _quiet_lightning() -> None:
    """Keep Lightning's banners and advertising tips out of the user's console.

    Device facts still show in posekit's own progress output; warnings stay visible.
    """
    import logging

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    # Short epochs with a logger: the epoch values are logged anyway (loss_frequency).
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


# --------------------------------------------------------------------------- 9. fit, finish


def _fit(trainer: Any, module: Any, datamodule: Any, run_dir: Path, ckpt_path: Any) -> None:
    """Train; the ranks Lightning starts find the run folder in `RUN_DIR_ENV`.

    A non-finite loss ends the run with where its last good model is and how to resume.
    """
    from posekit.training.callbacks import last_checkpoint
    from posekit.training.lightning_module import NonFiniteLossError

    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        with warnings.catch_warnings():
            # Lightning notes that the module's on_after_batch_transfer is used with a
            # datamodule; that is the design here (the device finishes each batch).
            warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")
            trainer.fit(
                module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None
            )
    except (KeyboardInterrupt, SystemExit) as err:
        # Lightning turns Ctrl-C into a graceful shutdown and `sys.exit(1)`, with SIGINT
        # left ignored; say what was kept and how to continue instead of a bare exit 1.
        if isinstance(err, SystemExit) and not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise TrainingInterrupted(_interrupted_note(run_dir)) from None
    except NonFiniteLossError as err:
        last = last_checkpoint(run_dir)
        where = (
            f" The last good model is {run_dir / 'latest_model'} (checkpoint {last}); "
            f"continue with `posekit train --resume {run_dir}` after fixing the cause."
            if last.exists()
            else " No epoch had finished, so there is no checkpoint."
        )
        raise NonFiniteLossError(str(err) + where) from None
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what was kept and how to resume."""


def _interrupted_note(run_dir: Path) -> str:
    """Where the last checkpoint is and the resume command, or that nothing was kept.

    A run stopped before its first checkpoint holds only its configs: the folder is
    removed, so that a later run with the same name does not find a half-made run.
    """
    import shutil

    from posekit.training.callbacks import last_checkpoint

    last = last_checkpoint(run_dir)
    if last.exists():
        best = run_dir / "best_model"
        kept = f"; the best model so far is {best}" if best.exists() else ""
        return (
            f"training stopped; the last checkpoint is {last}{kept}. Continue with "
            f"`posekit train --resume {run_dir}`"
        )
    if env_rank() == 0:
        shutil.rmtree(run_dir, ignore_errors=True)
    return (
        f"training stopped before its first checkpoint, so nothing was kept; the run folder "
        f"{run_dir} (configs only) was removed"
    )


def _evaluate(job: _Job, run_dir: Path, val_set: Any, device: str | None) -> None:
    """Predict the validation split (and `data.labels.test_labels`) with the trained model
    and score it: `metrics.val.json`, a one-line summary, the worst frames' picture.

    A training run is judged by what it finds, not by its loss: an all-zero map has a low
    loss and finds nothing, and this line says so at once (rank 0 only; never fails the
    finished run).
    """
    from posekit.training.final_eval import evaluate_run

    if env_rank() != 0 or not len(val_set):
        return
    test = job.config.data.labels.test_labels
    from posekit.model.device import resolve_device

    where = resolve_device(device or "auto")
    print("posekit: " + evaluate_run(run_dir, val_set, test_labels=test, device=where))
    from posekit.training.more_time import more_time_advice

    advice = more_time_advice(run_dir / "metrics.csv")
    if advice:
        print("posekit: " + advice)


def _finish(config: Any, trainer: Any, run_dir: Path) -> None:
    """Zip the run folder next to it when `outputs.zip_outputs` asks (rank 0 only)."""
    if config.outputs.zip_outputs and trainer.is_global_zero:
        import shutil

        shutil.make_archive(str(run_dir), "zip", root_dir=str(run_dir))


__all__ = ["load_base_checkpoint", "train"]
