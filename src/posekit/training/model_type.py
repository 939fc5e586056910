"""Which model type suits a set of labels, and a default config for each type.

`choose_model_type(labels)` reads only the labels (instances per frame, animal size
relative to the frame, overlap between animals, tracks):

1. **single instance** when no labelled frame has more than one animal: one map per
   part over the whole frame, the simplest and most accurate model for one animal.
2. With several animals per frame and ``identity=True`` and tracks on the instances, the
   multi-class variant of the choice below (``multi_class_topdown`` or
   ``multi_class_bottomup``): identities are learnt, not only poses. Without tracks an
   identity model cannot be trained, and the reason says so.
3. **top-down** (a centroid model plus a centered-instance model) when the animals are
   small relative to the frame (typical animal side < `SMALL_ANIMAL_FRACTION` of the
   frame's longer side) and rarely pile up: the centered-instance model then sees each
   animal at full resolution in a small crop, which is cheap and precise. Animals that
   touch are fine: the model learns to take the animal in the middle of its crop (the
   flies clip: boxes intersect in 88% of the frames, top-down reached OKS mAP 0.80).
4. **bottom-up** (confidence maps + part affinity fields) otherwise: large animals (a
   crop would be most of the frame anyway) or animals that pile up (centres closer than
   `OVERLAP_DISTANCE` typical animal sizes in more than `OVERLAP_FRAMES` of the
   multi-animal frames): two crops would then centre on the same place.

`default_configs(model_type)` returns the `TrainingJobConfig`s to train for a type (two
for top-down pairs): posekit's shipped `single_instance_unet` settings with the heads
and backbone strides of SLEAP's baseline profiles for that type (`baseline.centroid`,
`baseline_medium_rf.topdown`, `baseline_medium_rf.bottomup`). With `posekit train
--labels L --auto` and no config, the CLI can train these; `--auto` then adapts them to
the labels and the budget like any other config.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posekit.errors import PosekitError

#: Animals smaller than this fraction of the frame's longer side go top-down.
SMALL_ANIMAL_FRACTION = 0.25
#: Two animals overlap when their centres are closer than this many typical animal sizes.
OVERLAP_DISTANCE = 0.5
#: Fraction of multi-animal frames with overlapping animals above which bottom-up is chosen.
OVERLAP_FRAMES = 0.2

#: Share of a pair's time budget that the anchor model (the one that finds the animals)
#: gets; the crop model gets the rest. Finding animals is learnt early.
ANCHOR_BUDGET_SHARE = 0.4


def budget_share(head_type: str, pair: bool) -> float:
    """Fraction of the training budget a model of `head_type` gets (1.0 when alone).

    In a pair the registry says which model works on crops; the other is the anchor.
    """
    from posekit.model import registry

    if not pair:
        return 1.0
    crops = registry.model_type(head_type).crops
    return 1.0 - ANCHOR_BUDGET_SHARE if crops else ANCHOR_BUDGET_SHARE


#: The model types `choose_model_type` returns and the config heads each one trains.
MODEL_TYPE_HEADS: dict[str, tuple[str, ...]] = {
    "single_instance": ("single_instance",),
    "topdown": ("centroid", "centered_instance"),
    "bottomup": ("multi_instance",),
    "multi_class_topdown": ("centroid", "multi_class_topdown"),
    "multi_class_bottomup": ("multi_class_bottomup",),
    "semantic_segmentation": ("semantic_segmentation",),
    "bottomup_segmentation": ("bottomup_segmentation",),
    "topdown_segmentation": ("centroid", "centered_instance_segmentation"),
}

#: The SLEAP profile (`posekit.config.profiles`) whose heads, UNet strides and input scaling
#: a head type's default config takes.
_PROFILE_OF = {
    "single_instance": "baseline_medium_rf.single",
    "centroid": "baseline.centroid",
    "centered_instance": "baseline_medium_rf.topdown",
    "multi_instance": "baseline_medium_rf.bottomup",
}

# SLEAP has no profile for the multi-class heads: (heads section, UNet strides, scaling).
_HEADS: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {
    "multi_class_topdown": (
        {
            "multi_class_topdown": {
                "confmaps": {"sigma": 2.5, "output_stride": 4},
                "class_vectors": {},
            }
        },
        {"max_stride": 16, "output_stride": 4},
        1.0,
    ),
    "multi_class_bottomup": (
        {
            "multi_class_bottomup": {
                "confmaps": {"sigma": 2.5, "output_stride": 4},
                "class_maps": {"sigma": 5.0, "output_stride": 4},
            }
        },
        {"max_stride": 32, "output_stride": 4},
        1.0,
    ),
    # sleap-nn's head defaults (all at stride 2)
    "semantic_segmentation": (
        {"semantic_segmentation": {"segmentation": {}}},
        {"max_stride": 16, "output_stride": 2},
        1.0,
    ),
    "bottomup_segmentation": (
        {"bottomup_segmentation": {"segmentation": {}, "center": {}, "offsets": {}}},
        {"max_stride": 16, "output_stride": 2},
        1.0,
    ),
    "centered_instance_segmentation": (
        {"centered_instance_segmentation": {"segmentation": {}}},
        {"max_stride": 16, "output_stride": 2},
        1.0,
    ),
}


def _as_pose_labels(labels: Any) -> Any:
    from posekit.data.labels import PoseLabels, load_labels

    if isinstance(labels, PoseLabels):
        return labels
    return load_labels(labels)


def _box(points: np.ndarray) -> np.ndarray | None:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[~np.isnan(pts).any(axis=1)]
    if not len(pts):
        return None
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def label_statistics(labels: Any) -> dict[str, float]:
    """The numbers `choose_model_type` decides on (also useful in a report).

    ``max_instances``, ``typical_size`` (median largest bounding-box side, px),
    ``frame_side`` (longest frame side, px), ``size_fraction`` (their ratio),
    ``overlap_fraction`` (multi-animal frames with two animals whose bounding-box centres
    are closer than `OVERLAP_DISTANCE` typical sizes), ``tracked_fraction`` (instances
    with a track).
    """
    labels = _as_pose_labels(labels)
    boxes_per_frame = []
    sizes = []
    tracked = total = 0
    for entry in labels.entries:
        boxes = []
        for pts, track in zip(entry.points, entry.track_inds):
            box = _box(pts)
            total += 1
            tracked += int(track >= 0)
            if box is None:
                continue
            boxes.append(box)
            sizes.append(float(max(box[2] - box[0], box[3] - box[1])))
        boxes_per_frame.append(boxes)
    typical = float(np.median(sizes)) if sizes else 0.0
    used = sorted({e.video_index for e in labels.entries})
    side = max((max(labels.frame_shape(i)[:2]) for i in used), default=1)
    multi = [np.stack(b) for b in boxes_per_frame if len(b) > 1]
    overlapping = 0
    for boxes in multi:
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        dist[np.diag_indices(len(dist))] = np.inf
        overlapping += int(dist.min() < OVERLAP_DISTANCE * typical)
    return {
        "max_instances": float(labels.max_instances),
        "typical_size": typical,
        "frame_side": float(side),
        "size_fraction": typical / max(float(side), 1.0),
        "overlap_fraction": overlapping / len(multi) if multi else 0.0,
        "tracked_fraction": tracked / total if total else 0.0,
    }


def _choose_mask_type(labels: Any, asked: bool) -> tuple[str, str]:
    """A segmentation type: one mask per animal unless no frame has more than one.

    With several animals per frame and poses to find them by, small animals that do not
    overlap get the top-down pair (a centroid model, then each animal's mask in a crop
    around it), as poses do: a crop model sees each animal at full resolution for a
    fraction of the whole frame's cost. Masks without poses (nothing for the centroid
    model to learn from) or touching animals get bottom-up masks.
    """
    n_masks = max((len(e.masks) for e in labels.entries), default=0)
    if n_masks == 0:
        raise PosekitError(
            "a mask model trains on segmentation masks and these labels have none: make "
            "them from the poses first (posekit masks LABELS -o OUT)"
        )
    why = "masks asked for (--masks)" if asked else "the labels have masks and no poses"
    if n_masks <= 1:
        return "semantic_segmentation", f"{why}; one animal per frame: its mask is the foreground"
    if labels.n_instances:
        kind, pose_why = _choose_pose_type(labels)
        if kind == "topdown":
            return "topdown_segmentation", f"{why}; {pose_why}: one mask per crop"
    return "bottomup_segmentation", f"{why}; up to {n_masks} animals per frame: one mask each"


def _choose_pose_type(labels: Any, identity: bool = False) -> tuple[str, str]:
    """ "single_instance", "topdown" or "bottomup" and why, from the labels' statistics."""
    st = label_statistics(labels)
    if st["max_instances"] <= 1:
        why = "no labelled frame has more than one animal"
        if identity:
            why += " (identity needs several animals per frame; single instance has one)"
        return "single_instance", why
    small = st["size_fraction"] < SMALL_ANIMAL_FRACTION
    overlap = st["overlap_fraction"] > OVERLAP_FRAMES
    size_txt = (
        f"animals ~{st['typical_size']:.0f} px = {100 * st['size_fraction']:.0f}% of the "
        f"{st['frame_side']:.0f} px frame"
    )
    overlap_txt = f"overlapping in {100 * st['overlap_fraction']:.0f}% of multi-animal frames"
    if small and not overlap:
        kind, why = "topdown", f"{size_txt} (small), {overlap_txt}: crops around each animal"
    elif overlap:
        kind, why = "bottomup", f"{overlap_txt} (crops would centre on two animals); {size_txt}"
    else:
        kind, why = "bottomup", f"{size_txt} (large: a crop would be most of the frame)"
    return kind, why


def choose_model_type(labels: Any, identity: bool = False, masks: bool = False) -> tuple[str, str]:
    """(model type, reason) for `labels` (`PoseLabels`, `sleap_io.Labels` or a path).

    The type is a key of `MODEL_TYPE_HEADS`: "single_instance", "topdown",
    "bottomup", "multi_class_topdown" or "multi_class_bottomup"; with `masks` (or
    labels that have masks but no poses) "semantic_segmentation" (one animal per frame),
    "topdown_segmentation" (small, separate animals with poses) or
    "bottomup_segmentation". `identity`: the user wants identities (tracks) predicted,
    not only poses.
    """
    labels = _as_pose_labels(labels)
    if masks or labels.n_instances == 0:
        return _choose_mask_type(labels, masks)
    kind, why = _choose_pose_type(labels, identity)
    if identity and kind != "single_instance":
        st = label_statistics(labels)
        if st["tracked_fraction"] <= 0:
            raise PosekitError(
                "identity models need tracks on the labelled instances, and these labels "
                "have none; assign tracks in SLEAP, or train without identity"
            )
        kind = "multi_class_" + kind
        why += f"; identities from tracks ({100 * st['tracked_fraction']:.0f}% of instances)"
    return kind, why


def _profile_parts(head_type: str) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(heads section, UNet strides, input scaling) of the head type's SLEAP profile."""
    from posekit.config.profiles import profile_fields

    fields = profile_fields(_PROFILE_OF[head_type])
    unet = fields["model.backbone.unet"]
    return (
        {head_type: fields[f"model.heads.{head_type}"]},
        {"max_stride": unet["max_stride"], "output_stride": unet["output_stride"]},
        float(fields.get("data.preprocessing.input_scaling", 1.0)),
    )


def default_config(head_type: str) -> Any:
    """A `TrainingJobConfig` for one head type (a key of the configs' `model.heads`).

    posekit's shipped `single_instance_unet` (16-filter UNet, its optimisation and
    output settings) with the heads, UNet strides and input scaling of SLEAP's baseline
    profile for that head type.
    """
    from posekit.config.job import load_config

    if head_type not in _HEADS and head_type not in _PROFILE_OF:
        raise PosekitError(
            f"no default config for head type {head_type!r}; one of "
            f"{sorted({*_HEADS, *_PROFILE_OF})}"
        )
    heads, unet, scaling = _HEADS.get(head_type) or _profile_parts(head_type)
    data = load_config("single_instance_unet").model_dump()
    data["model"]["heads"] = {k: None for k in data["model"]["heads"]}
    data["model"]["heads"].update(heads)
    data["model"]["backbone"]["unet"].update(unet)
    data["data"]["preprocessing"]["input_scaling"] = scaling
    data["data"]["preprocessing"]["pad_to_stride"] = unet["max_stride"]
    data["name"] = f"default_{head_type}"
    data["outputs"]["run_name"] = None
    data.pop("filename", None)
    from posekit.config.job import TrainingJobConfig

    return TrainingJobConfig.model_validate(data)


def default_configs(model_type: str) -> list[Any]:
    """The configs to train for a model type of `choose_model_type`, in training order."""
    if model_type not in MODEL_TYPE_HEADS:
        raise PosekitError(f"unknown model type {model_type!r}; one of {sorted(MODEL_TYPE_HEADS)}")
    return [default_config(h) for h in MODEL_TYPE_HEADS[model_type]]


__all__ = [
    "ANCHOR_BUDGET_SHARE",
    "MODEL_TYPE_HEADS",
    "budget_share",
    "SMALL_ANIMAL_FRACTION",
    "OVERLAP_DISTANCE",
    "OVERLAP_FRAMES",
    "choose_model_type",
    "default_config",
    "default_configs",
    "label_statistics",
]
