"""SLEAP's training profiles by name (`posekit train baseline.centroid ...`, `posekit configs`).

SLEAP ships eleven profiles (`sleap/training_profiles/*.json`) that its GUI offers as
starting points. They differ from `TrainingJobConfig`'s defaults in a handful of fields,
so each one is written here as those fields, on top of what every profile shares (15
degree rotation, batch 4, 200 epochs, plateau deltas of 1e-8). A test compares every
profile built here with SLEAP's own files when they are available.

The UNet families: `baseline` has a medium receptive field (max stride 16); `medium_rf`
and `large_rf` reach further (32 or 64), for animals that need more context to tell parts
apart. `pretrained.*` use an ImageNet EfficientNet-B0 encoder and a higher learning rate.
"""

from __future__ import annotations

import copy
from typing import Any

from posekit.errors import PosekitError

__all__ = ["PROFILES", "profile_fields", "profile_names"]

_COMMON: dict[str, Any] = {
    "optimization.augmentation_config.rotate": True,
    "optimization.augmentation_config.rotation_max_angle": 15.0,
    "optimization.augmentation_config.rotation_min_angle": -15.0,
    "optimization.batch_size": 4,
    "optimization.epochs": 200,
    "optimization.early_stopping.plateau_min_delta": 1e-8,
    "optimization.learning_rate_schedule.plateau_min_delta": 1e-8,
}


def _unet(max_stride: int, output_stride: int, filters: int, rate: float) -> dict[str, Any]:
    return {
        "model.backbone.unet": {
            "max_stride": max_stride,
            "output_stride": output_stride,
            "filters": filters,
            "filters_rate": rate,
            "middle_block": True,
            "up_interpolate": True,
            "stacks": 1,
        }
    }


def _efficientnet(decoder_filters: int, output_stride: int) -> dict[str, Any]:
    return {
        "model.backbone.pretrained_encoder": {
            "encoder": "efficientnetb0",
            "pretrained": True,
            "decoder_filters": decoder_filters,
            "decoder_filters_rate": 1.0,
            "output_stride": output_stride,
            "decoder_batchnorm": True,
        },
        "optimization.initial_learning_rate": 1e-3,
    }


def _head(kind: str, output_stride: int, pafs_stride: int | None = None) -> dict[str, Any]:
    maps = {"sigma": 2.5, "output_stride": output_stride, "loss_weight": 1.0}
    maps["offset_refinement"] = False
    if kind == "centroid":
        return {"model.heads.centroid": {"anchor_part": None, **maps}}
    if kind == "single_instance":
        return {"model.heads.single_instance": {"part_names": None, **maps}}
    if kind == "centered_instance":
        return {
            "model.heads.centered_instance": {"anchor_part": None, "part_names": None, **maps},
            "outputs.tensorboard.architecture_graph": True,
        }
    pafs = {"edges": None, "sigma": 75.0, "output_stride": pafs_stride, "loss_weight": 1.0}
    return {
        "model.heads.multi_instance": {"confmaps": {"part_names": None, **maps}, "pafs": pafs},
        "optimization.learning_rate_schedule.plateau_patience": 8,
    }


#: name -> (one line for `posekit configs`, the fields that differ from the defaults)
PROFILES: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline.centroid": (
        "top-down step 1: animal centres at half resolution (UNet, max stride 16)",
        {
            **_unet(16, 2, 16, 2.0),
            **_head("centroid", 2),
            "data.preprocessing.input_scaling": 0.5,
            "optimization.early_stopping.plateau_patience": 20,
        },
    ),
    "baseline_medium_rf.single": (
        "one animal per frame, medium receptive field (UNet, max stride 16)",
        {
            **_unet(16, 2, 16, 2.0),
            **_head("single_instance", 2),
            "optimization.min_val_batches_per_epoch": 20,
        },
    ),
    "baseline_medium_rf.topdown": (
        "top-down step 2: parts in crops around each animal (UNet, max stride 16)",
        {**_unet(16, 4, 24, 2.0), **_head("centered_instance", 4)},
    ),
    "baseline_medium_rf.bottomup": (
        "bottom-up: parts + part affinity fields, medium receptive field (max stride 32)",
        {**_unet(32, 4, 16, 2.0), **_head("multi_instance", 4, pafs_stride=8)},
    ),
    "baseline_large_rf.single": (
        "one animal per frame, large receptive field (UNet, max stride 32)",
        {
            **_unet(32, 4, 32, 1.5),
            **_head("single_instance", 4),
            "optimization.min_val_batches_per_epoch": 20,
            "optimization.learning_rate_schedule.plateau_min_delta": 1e-5,
        },
    ),
    "baseline_large_rf.topdown": (
        "top-down step 2, large receptive field (UNet, max stride 32)",
        {**_unet(32, 4, 24, 1.5), **_head("centered_instance", 4)},
    ),
    "baseline_large_rf.bottomup": (
        "bottom-up, large receptive field (UNet, max stride 64)",
        {**_unet(64, 4, 32, 1.5), **_head("multi_instance", 4, pafs_stride=8)},
    ),
    "pretrained.centroid": (
        "top-down step 1 on an ImageNet EfficientNet-B0 encoder, half resolution",
        {
            **_efficientnet(128, 2),
            **_head("centroid", 2),
            "data.preprocessing.input_scaling": 0.5,
        },
    ),
    "pretrained.single": (
        "one animal per frame on an ImageNet EfficientNet-B0 encoder",
        {
            **_efficientnet(256, 2),
            **_head("single_instance", 4),
            "optimization.min_val_batches_per_epoch": 20,
        },
    ),
    "pretrained.topdown": (
        "top-down step 2 on an ImageNet EfficientNet-B0 encoder",
        {**_efficientnet(256, 2), **_head("centered_instance", 2)},
    ),
    "pretrained.bottomup": (
        "bottom-up on an ImageNet EfficientNet-B0 encoder",
        {**_efficientnet(256, 4), **_head("multi_instance", 4, pafs_stride=8)},
    ),
}


def profile_names() -> list[str]:
    """Every profile name, for listings and "did you mean" errors."""
    return sorted(PROFILES)


def profile_fields(name: str) -> dict[str, Any]:
    """The dotted fields of SLEAP's profile `name` that differ from the defaults.

    A trailing ``.json`` is accepted, as SLEAP users often type the file name. Build the
    config with `posekit.config.job.load_profile`.
    """
    import difflib

    key = name[: -len(".json")] if name.endswith(".json") else name
    if key not in PROFILES:
        close = difflib.get_close_matches(key, PROFILES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PosekitError(
            f"no training profile named {name!r}.{hint} `posekit configs` lists them: "
            + ", ".join(profile_names())
        )
    return {**copy.deepcopy(_COMMON), **copy.deepcopy(PROFILES[key][1]), "outputs.run_name": key}
