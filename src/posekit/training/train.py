"""`train()`: from a config and labels to a trained posekit model folder.

What happens, in order (SLEAP's `Trainer` does the same steps):

1. The config is loaded (file, dict or object), `overrides` and the explicit arguments
   (`epochs`, `batch_size`, `run_name`, ...) are applied; with `resume` the run folder's
   own `training_config.json` is used instead.
2. Labels are loaded with sleap-io (`posekit.data.labels`): user instances only, moved
   videos found through `search_path_hints`, a seeded validation split when no
   validation labels are given. Mistakes fail here with one clear message: no user
   instances, config part names / edges / anchor not in the skeleton, a validation set
   with another skeleton, a frame that cannot be decoded.
3. With `auto`, `posekit.training.recommend` picks scaling, crop size, batch size, learning
   rate schedule and epochs from the labels and the hardware (user overrides still win).
4. The config is completed from the labels, like SLEAP's `update_config`: the skeleton
   goes into `data.labels.skeletons`, part names / edges / classes into the heads,
   `pad_to_stride` defaults to the backbone's max stride and top-down models store their
   automatic crop size in `data.instance_cropping.crop_size`, so the saved config alone
   rebuilds the model and its preprocessing.
5. The model is built (`Model.from_config`), optionally initialised from
   `model.base_checkpoint` (a posekit or SLEAP model folder; tensors are copied by name
   where shapes agree), and trained with Lightning on the requested devices. Only global
   rank 0 writes the run folder (see `posekit.training.callbacks` for its layout).

Distributed runs: Lightning's DDP launcher starts the other ranks by running the same
command again; they receive the run folder of rank 0 through the `POSEKIT_RUN_DIR`
environment variable, so every rank agrees on it. Jobs started by SLURM or torchrun
(every rank starts at once) need a fixed `run_name`, or get one from the job id.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path
from typing import Any

from posekit._lazy import callable_module
from posekit.errors import PosekitError

RUN_DIR_ENV = "POSEKIT_RUN_DIR"
MULTI_CLASS = ("multi_class_bottomup", "multi_class_topdown")
TOPDOWN = ("centered_instance", "multi_class_topdown")


# --------------------------------------------------------------------------- config


def as_job_config(config: Any):
    """A fresh `TrainingJobConfig` from a path, a shipped config name, a dict or an object."""
    from posekit.config.job import TrainingJobConfig, load_config
    from posekit.config.model import ModelConfig

    if config is None:
        raise PosekitError(
            "no config: pass a training config (a SLEAP training_config.json, a posekit "
            "YAML, or a shipped name such as 'single_instance_unet')"
        )
    if isinstance(config, str | os.PathLike):
        config = load_config(config)
    elif isinstance(config, dict):
        from pydantic import ValidationError

        from posekit.config.base import format_validation_error

        try:
            config = TrainingJobConfig.model_validate(config)
        except ValidationError as err:
            raise PosekitError(format_validation_error(err, "the config dict")) from err
    if isinstance(config, ModelConfig):
        config = TrainingJobConfig(model=config)
    if not isinstance(config, TrainingJobConfig):
        raise PosekitError(
            f"training needs a full job config (data, model, optimization, outputs); got a "
            f"{type(config).__name__}. Put it under `model:` in a job config."
        )
    return config.model_copy(deep=True)


def _heads(config: Any) -> tuple[str, Any]:
    heads = config.model.heads
    model_type = heads.which_oneof_attrib_name()
    if model_type is None:
        from posekit.config.model import HeadsConfig

        raise PosekitError(
            "the config has no heads: set one of model.heads."
            + ", model.heads.".join(HeadsConfig.model_fields)
        )
    return model_type, heads.which_oneof()


def _confmaps_config(head_cfg: Any) -> Any:
    return getattr(head_cfg, "confmaps", head_cfg)


def _config_part_names(config: Any) -> list[str] | None:
    model_type, cfg = _heads(config)
    if model_type == "centroid":
        return None
    names = _confmaps_config(cfg).part_names
    return list(names) if names else None


def _config_classes(config: Any) -> list[str] | None:
    model_type, cfg = _heads(config)
    if model_type == "multi_class_bottomup":
        return list(cfg.class_maps.classes) if cfg.class_maps.classes else None
    if model_type == "multi_class_topdown":
        return list(cfg.class_vectors.classes) if cfg.class_vectors.classes else None
    return None


def update_config(config: Any, pipeline: Any, skeleton: Any, max_stride: int) -> None:
    """Write what the labels decided into the config (in place), as SLEAP does."""
    model_type, cfg = _heads(config)
    config.data.labels.skeletons = [skeleton]
    confmaps = _confmaps_config(cfg)
    if model_type != "centroid" and not confmaps.part_names:
        confmaps.part_names = list(pipeline.part_names)
    if model_type == "multi_instance" and not cfg.pafs.edges:
        names = pipeline.part_names
        cfg.pafs.edges = [(names[a], names[b]) for a, b in pipeline.edge_inds]
    if model_type == "multi_class_bottomup" and not cfg.class_maps.classes:
        cfg.class_maps.classes = list(pipeline.class_names)
    if model_type == "multi_class_topdown" and not cfg.class_vectors.classes:
        cfg.class_vectors.classes = list(pipeline.class_names)
    pre = config.data.preprocessing
    if pre.pad_to_stride is None:
        pre.pad_to_stride = int(max_stride)
    if model_type in TOPDOWN:
        config.data.instance_cropping.crop_size = int(pipeline.crop_size)


# --------------------------------------------------------------------------- labels


def _load_labels(config: Any, labels: Any, val_labels: Any, seed: int) -> tuple[Any, Any]:
    from posekit.data.labels import PoseLabels, load_labels, load_training_labels, split_labels

    model_type, _ = _heads(config)
    kw = dict(
        part_names=_config_part_names(config),
        class_names=_config_classes(config),
        require_track=model_type in MULTI_CLASS,
    )
    preload = bool(config.optimization.preload_data)
    lab_cfg = config.data.labels
    hints = list(lab_cfg.search_path_hints or [])
    if isinstance(labels, PoseLabels):
        train = labels.preload() if preload else labels
        if val_labels is None and lab_cfg.validation_labels is None:
            train, val = split_labels(train, lab_cfg.validation_fraction or 0.1, seed)
        else:
            val = val_labels if val_labels is not None else lab_cfg.validation_labels
    else:
        cfg = lab_cfg.model_dump()
        if val_labels is not None and not isinstance(val_labels, PoseLabels):
            cfg["validation_labels"] = val_labels
        splits = load_training_labels(cfg, training_labels=labels, seed=seed, preload=preload, **kw)
        train, val = splits["train"], splits["val"]
        if isinstance(val_labels, PoseLabels):
            val = val_labels
    if not isinstance(val, PoseLabels):
        kw["class_names"] = kw["class_names"] or train.class_names
        val = load_labels(val, hints, preload=preload, **kw)
    if val.node_names != train.node_names:
        raise PosekitError(
            f"skeleton mismatch: the validation labels have nodes {val.node_names} but the "
            f"training labels have {train.node_names}; use labels with the same skeleton"
        )
    if not preload:
        _check_frames_readable(train)
        _check_frames_readable(val)
    return train, val


def _check_frames_readable(labels: Any) -> None:
    """Fail now, not mid-training, on frames that cannot be read (when not preloading).

    Decodes the first labelled frame of every video and checks, without decoding, that
    no labelled frame lies beyond the end of its video.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, entry in enumerate(labels.entries):
        first.setdefault(entry.video_index, i)
        last[entry.video_index] = max(last.get(entry.video_index, -1), int(entry.frame_idx))
    for video_index, i in first.items():
        labels.read_entry(i)
        video = labels.labels.videos[video_index]
        shape = getattr(video, "shape", None)
        if shape is not None and shape[0] and last[video_index] >= int(shape[0]):
            raise PosekitError(
                f"could not read frame {last[video_index]} of video {video.filename!r}: the "
                f"video has only {int(shape[0])} frames; the labels do not belong to this "
                f"video, or it is incomplete"
            )


def _record_label_paths(config: Any, train: Any, val: Any, val_given: Any) -> None:
    """Keep the label files in the config (SLEAP does too), so `--resume` finds them."""
    labels_cfg = config.data.labels
    if train.path is not None:
        labels_cfg.training_labels = str(Path(train.path).resolve())
    if val_given is not None and val.path is not None:
        labels_cfg.validation_labels = str(Path(val.path).resolve())


# --------------------------------------------------------------------------- run folder

RUN_INFO = "posekit_run.json"


def _write_run_info(run_dir: Path, seed: int) -> None:
    """What the config does not hold but a resumed run needs (the seed fixes the split)."""
    import json

    from posekit import __version__

    text = json.dumps({"seed": int(seed), "posekit_version": __version__}, indent=2)
    tmp = run_dir / f".{RUN_INFO}.tmp"
    tmp.write_text(text)
    os.replace(tmp, run_dir / RUN_INFO)


def _read_run_info(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / RUN_INFO
    return json.loads(path.read_text()) if path.exists() else {}


def _env_rank() -> int:
    """Global rank announced by a launcher (Lightning child, torchrun, SLURM); 0 if none."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "PMI_RANK"):
        value = os.environ.get(var)
        if value not in (None, "", "0"):
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def _externally_launched() -> bool:
    """True when every rank was started at once by SLURM or torchrun."""
    ntasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return ntasks > 1 or world > 1


def _auto_run_name(model_type: str, n: int) -> str:
    """SLEAP's run name: `<yymmdd_HHMMSS>.<model type>.n=<labelled frames>`.

    In a job whose ranks start independently the timestamp would differ between ranks,
    so the job id is used instead.
    """
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
    stamp = (
        job if (job and _externally_launched()) else _dt.datetime.now().strftime("%y%m%d_%H%M%S")
    )
    return f"{stamp}.{model_type}.n={n}"


def _choose_run_dir(config: Any, n_frames: int) -> Path:
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and _env_rank() != 0:
        return Path(inherited)
    outputs = config.outputs
    model_type, _ = _heads(config)
    if outputs.run_name is None:
        outputs.run_name = _auto_run_name(model_type, n_frames)
    base = Path(outputs.runs_folder).expanduser()
    if outputs.run_name_suffix is None:
        outputs.run_name_suffix = ""
        if not _externally_launched():
            i = 0
            while (
                base / (outputs.run_name_prefix + outputs.run_name + outputs.run_name_suffix)
            ).exists():
                i += 1
                outputs.run_name_suffix = f"_{i}"
    return Path(outputs.run_path).expanduser().resolve()


def _write_configs(run_dir: Path, config: Any, initial: Any | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if initial is not None:
        initial.model_copy(deep=True).save_json(run_dir / "initial_config.json")
    config.model_copy(deep=True).save_json(run_dir / "training_config.json")
    config.model_copy(deep=True).save_yaml(run_dir / "config.yaml")


# --------------------------------------------------------------------------- model


def load_base_checkpoint(model: Any, path: str | os.PathLike) -> tuple[int, int]:
    """Copy weights from a posekit or SLEAP model folder into `model`, by name and shape.

    Returns (tensors copied, tensors in `model`). Heads whose shape differs (another
    skeleton) keep their fresh initialisation; if no backbone tensor matches it is an
    error (a different architecture: only coincidences like a bias could be copied).
    """
    import torch

    from posekit.io.model_folder import load_model

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


def _accelerator(device: str | None) -> str:
    device = (device or "auto").lower()
    return {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu", "mps": "mps", "auto": "auto"}.get(
        device, device
    )


def _max_time(max_time: Any) -> _dt.timedelta | None:
    """Lightning's `max_time` from any form `budget_seconds` accepts ("600" included)."""
    from posekit.training.recommend import budget_seconds

    seconds = budget_seconds(max_time)
    return None if seconds is None else _dt.timedelta(seconds=seconds)


# --------------------------------------------------------------------------- train


def _quiet_lightning() -> None:
    """Keep Lightning's banners and advertising tips out of the user's console.

    Device facts still show in posekit's own progress output; warnings stay visible.
    """
    import logging

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")


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
        progress: show the rich progress bar.
    """
    import lightning as L
    import torch

    from posekit.data.dataset import DataPipeline
    from posekit.data.preprocessing import Preprocessor
    from posekit.model import Model
    from posekit.training.callbacks import (
        AugmentationGenerator,
        PosekitProgressBar,
        RunOutputs,
        last_checkpoint,
        optimization_callbacks,
        remove_run_temporaries,
    )
    from posekit.training.datamodule import PoseDataModule
    from posekit.training.lightning_module import NonFiniteLossError, PoseLightningModule
    from posekit.training.overrides import apply_overrides, parse_overrides

    user_overrides = parse_overrides(overrides)
    recipe_callbacks: list[Any] = []  # posekit-only training recipe of --auto (budgeted)
    ckpt_path = None
    if resume is not None:
        run_dir = Path(resume).expanduser().resolve()
        ckpt_path = last_checkpoint(run_dir)
        if not ckpt_path.exists():
            raise PosekitError(
                f"cannot resume {run_dir}: it has no {ckpt_path.relative_to(run_dir)} (the "
                f"run did not finish an epoch, or this is not a posekit run folder)"
            )
        from posekit.config.job import TrainingJobConfig

        config = TrainingJobConfig.load_json(run_dir / "training_config.json")
        initial = None
        info = _read_run_info(run_dir)
        seed = int(info.get("seed", seed))
    else:
        config = as_job_config(config)
    config = apply_overrides(config, user_overrides)

    def explicit(cfg):
        if epochs is not None:
            cfg.optimization.epochs = int(epochs)
        if batch_size is not None:
            cfg.optimization.batch_size = int(batch_size)
        if resume is None:
            if run_name is not None:
                cfg.outputs.run_name = run_name
            if runs_folder is not None:
                cfg.outputs.runs_folder = str(runs_folder)
        return cfg

    config = explicit(config).with_resolved_paths()
    if resume is None:
        initial = config.model_copy(deep=True)
    model_type, _ = _heads(config)

    # ---- labels (checks happen here)
    L.seed_everything(seed, workers=True, verbose=False)
    train_labels, val_set = _load_labels(config, labels, val_labels, seed)
    _record_label_paths(config, train_labels, val_set, val_labels)

    if auto and resume is None:
        from posekit.training.recommend import detect_hardware, recommend

        planned = dict(user_overrides)  # the user's choices are part of the plan
        if epochs is not None:
            planned["optimization.epochs"] = int(epochs)
        if batch_size is not None:
            planned["optimization.batch_size"] = int(batch_size)
        rec = recommend(
            config, train_labels, detect_hardware(device), max_time=max_time, overrides=planned
        )
        recipe_callbacks = rec.callbacks()
        config = explicit(apply_overrides(apply_overrides(config, rec.overrides), user_overrides))
        if num_workers is None:
            num_workers = rec.num_workers
        if precision is None:
            precision = rec.precision
        if _env_rank() == 0:
            print("posekit: --auto settings:\n" + rec.describe())

    # ---- model and data pipeline
    skeleton = train_labels.skeleton
    used = sorted({e.video_index for e in train_labels.entries})
    channels = {train_labels.frame_shape(i)[2] for i in used}
    frame_c = channels.pop() if len(channels) == 1 else 3
    in_channels = Preprocessor.from_config(config.data.preprocessing).output_channels(frame_c)
    part_names = _config_part_names(config) or list(skeleton.node_names)
    model = Model.from_config(
        config.model,
        in_channels=in_channels,
        part_names=part_names,
        edges=[tuple(e) for e in skeleton.edges],
        classes=_config_classes(config) or list(train_labels.class_names) or None,
    )
    stride = model.maximum_stride
    pipeline = DataPipeline.from_config(config, train_labels, max_stride=stride, seed=seed)
    update_config(config, pipeline, skeleton, stride)
    datamodule = PoseDataModule(
        pipeline, train_labels, val_set, config.optimization, num_workers=num_workers, seed=seed
    )
    if pipeline.is_topdown:
        input_size = (pipeline.crop_size, pipeline.crop_size)
    else:
        s = pipeline.preprocessor.input_scaling
        hw = datamodule.train_dataset.frame_hw
        pad = int(pipeline.preprocessor.pad_to_stride or 1)
        input_size = tuple(-(-int(v * s) // pad) * pad for v in hw)
    if any(not getattr(h, "global_pool", True) for h in model.heads):
        # A flattening class-vectors head needs the feature size: rebuild with it.
        model = Model.from_config(config.model, in_channels=in_channels, input_size=input_size)
    model.input_size = tuple(int(v) for v in input_size)
    model.config = config
    model.skeleton = skeleton.to_sleap_io()

    if resume is None and config.model.base_checkpoint:
        copied, total = load_base_checkpoint(model, config.model.base_checkpoint)
        if _env_rank() == 0:
            print(
                f"posekit: initialised {copied}/{total} tensors from {config.model.base_checkpoint}"
            )

    # ---- run folder (rank 0 writes)
    if resume is None:
        run_dir = _choose_run_dir(config, len(train_labels) + len(val_set))
    save = bool(config.outputs.save_outputs)
    if _env_rank() == 0:
        if resume is not None:
            remove_run_temporaries(run_dir)
            config.model_copy(deep=True).save_json(run_dir / "training_config.json")
        else:
            _write_configs(run_dir, config, initial)
            _write_run_info(run_dir, seed)

    # ---- Lightning
    augment_rng = AugmentationGenerator(seed)

    def train_transform(batch):
        return pipeline.process(batch, augment=True, generator=augment_rng.generator)

    def eval_transform(batch):
        return pipeline.process(batch, augment=False)

    module = PoseLightningModule(
        model, config, train_transform=train_transform, eval_transform=eval_transform
    )
    cbs: list[Any] = optimization_callbacks(config.optimization)
    cbs.append(
        RunOutputs(
            run_dir,
            config,
            save_visualizations=save and bool(config.outputs.save_visualizations),
            keep_viz_images=bool(config.outputs.keep_viz_images),
            checkpointing=config.outputs.checkpointing,
            plot_curve=save,
            log_to_csv=bool(config.outputs.log_to_csv),
        )
    )
    cbs.append(augment_rng)
    cbs.extend(recipe_callbacks)
    if progress:
        cbs.append(PosekitProgressBar())
    cbs.extend(callbacks or [])
    accelerator = _accelerator(device)
    _quiet_lightning()
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices if devices is not None else 1,
        num_nodes=int(num_nodes or 1),
        strategy=strategy or "auto",
        max_epochs=int(config.optimization.epochs),
        max_time=_max_time(max_time),
        precision=precision or "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=cbs,
        default_root_dir=str(run_dir),
        benchmark=torch.cuda.is_available() and accelerator in ("gpu", "auto"),
    )
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
    if config.outputs.zip_outputs and trainer.is_global_zero:
        import shutil

        shutil.make_archive(str(run_dir), "zip", root_dir=str(run_dir))
    return run_dir


__all__ = ["as_job_config", "load_base_checkpoint", "train", "update_config"]


callable_module(__name__, "train")
