"""What a training run starts from: the job config and the labels, checked and completed.

`posekit.training.run` calls these in order: `as_job_config` turns whatever the user gave
into a `TrainingJobConfig`; `load_label_splits` loads the training and validation labels
(failing early, with one clear message, on labels that cannot train this config); after
the model is built, `update_config` writes what the labels decided back into the config,
like SLEAP's `update_config`, so the saved config alone rebuilds the model.

The config's part names, edges and classes live in different sections per model type
(``confmaps.part_names``, ``pafs.edges``, ``class_maps.classes``, ...). They are found by
field name (`_name_fields`), so nothing here compares model-type names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError

#: Config fields that name things the labels can supply when the config leaves them null.
_NAME_FIELDS = ("part_names", "edges", "classes")


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


def heads_config(config: Any) -> tuple[str, Any]:
    """The model type a job config sets and its head config, or a clear error if none."""
    heads = config.model.heads
    model_type = heads.which_oneof_attrib_name()
    if model_type is None:
        from posekit.config.model import HeadsConfig

        raise PosekitError(
            "the config has no heads: set one of model.heads."
            + ", model.heads.".join(HeadsConfig.model_fields)
        )
    return model_type, heads.which_oneof()


def _name_fields(head_cfg: Any) -> Iterator[tuple[Any, str]]:
    """(section, field) of every part-name, edge and class list in a head config.

    A head config holds them itself (single instance, centered instance) or in its
    sections (``confmaps``, ``pafs``, ``class_maps``, ``class_vectors``).
    """
    sections = [head_cfg] + [getattr(head_cfg, f) for f in type(head_cfg).model_fields]
    for section in sections:
        fields = getattr(type(section), "model_fields", {})
        for name in _NAME_FIELDS:
            if name in fields:
                yield section, name


def config_names(config: Any, field: str) -> list | None:
    """The config's own `part_names` or `classes` (None when it leaves them to the labels)."""
    _, head_cfg = heads_config(config)
    for section, name in _name_fields(head_cfg):
        if name == field:
            value = getattr(section, name)
            return list(value) if value else None
    return None


def update_config(
    config: Any,
    heads: Sequence[Any],
    skeleton: Any,
    max_stride: int,
    crop_size: int | None = None,
) -> None:
    """Write what the labels decided into the config (in place), as SLEAP does.

    The skeleton goes into `data.labels.skeletons`; part names, edges and classes the
    config leaves null are taken from the model's `heads` (which were built with them);
    `pad_to_stride` defaults to the backbone's `max_stride`; models trained on crops store
    their (possibly automatic) `crop_size`.
    """
    from posekit.model import registry

    model_type, head_cfg = heads_config(config)
    config.data.labels.skeletons = [skeleton]
    for section, name in _name_fields(head_cfg):
        if getattr(section, name):
            continue
        value = next((getattr(h, name) for h in heads if getattr(h, name, None)), None)
        if value:
            setattr(section, name, [tuple(v) if name == "edges" else v for v in value])
    pre = config.data.preprocessing
    if pre.pad_to_stride is None:
        pre.pad_to_stride = int(max_stride)
    if registry.model_type(model_type).crops:
        config.data.instance_cropping.crop_size = int(crop_size)


# --------------------------------------------------------------------------- labels


def load_label_splits(config: Any, labels: Any, val_labels: Any, seed: int) -> tuple[Any, Any]:
    """Training and validation `PoseLabels`, checked against the config.

    `labels` / `val_labels` may be paths, `sleap_io.Labels` or `PoseLabels`; missing ones
    come from `data.labels`, and without validation labels a seeded `validation_fraction`
    split is made. Identity models keep only tracked instances. Mistakes fail here: no
    user instances, config names not in the skeleton, a validation set with another
    skeleton, and (when not preloading) a frame that cannot be decoded.
    """
    from posekit.data.labels import PoseLabels, load_labels, load_training_labels, split_labels
    from posekit.model import registry

    model_type, _ = heads_config(config)
    kw = dict(
        part_names=config_names(config, "part_names"),
        class_names=config_names(config, "classes"),
        require_track=registry.model_type(model_type).multi_class,
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


def record_label_paths(config: Any, train: Any, val: Any, val_given: Any) -> None:
    """Keep the label files in the config (SLEAP does too), so `--resume` finds them."""
    labels_cfg = config.data.labels
    if train.path is not None:
        labels_cfg.training_labels = str(Path(train.path).resolve())
    if val_given is not None and val.path is not None:
        labels_cfg.validation_labels = str(Path(val.path).resolve())


__all__ = [
    "as_job_config",
    "config_names",
    "heads_config",
    "load_label_splits",
    "record_label_paths",
    "update_config",
]
