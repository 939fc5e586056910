"""sleap-nn's YAML configs (`data_config` / `model_config` / `trainer_config`) <-> posekit's.

SLEAP 1.5 and later train with sleap-nn, whose `training_config.yaml` has three sections
instead of SLEAP 1.4's four. `from_sleap_nn` maps that tree onto posekit's
`TrainingJobConfig` (what each field means is the same; only names and units move) and
lists every setting it could not carry over, so `train()` names them in its one
ignored-settings warning instead of dropping them silently. `to_sleap_nn` goes back, so a
posekit run or model can be opened by sleap-nn 0.3.5.

The facts used here (field names, defaults, units) come from sleap-nn 0.3.5's config
classes; no sleap-nn code is imported, and nothing here imports torch.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from posekit.config.sleap_nn_embedding import embedding_from_sleap_nn, embedding_to_sleap_nn
from posekit.errors import PosekitError

#: The top-level keys that mark a sleap-nn config.
SECTIONS = ("data_config", "model_config", "trainer_config")
#: sleap-nn's backbones (`model_config.backbone_config` keys); posekit builds all four.
BACKBONES = ("unet", "convnext", "swint", "pretrained")

#: sleap-nn head family -> posekit's `HeadsConfig` field, and its sub-heads
#: (sleap-nn name -> posekit name); None: the family is one confidence-map head.
_HEADS: dict[str, tuple[str, dict[str, str] | None]] = {
    "single_instance": ("single_instance", None),
    "centroid": ("centroid", None),
    "centered_instance": ("centered_instance", None),
    "bottomup": ("multi_instance", {"confmaps": "confmaps", "pafs": "pafs"}),
    "multi_class_bottomup": (
        "multi_class_bottomup",
        {"confmaps": "confmaps", "class_maps": "class_maps"},
    ),
    "multi_class_topdown": (
        "multi_class_topdown",
        {"confmaps": "confmaps", "class_vectors": "class_vectors"},
    ),
    # posekit's segmentation configs carry sleap-nn's names and fields
    "semantic_segmentation": ("semantic_segmentation", {"segmentation": "segmentation"}),
    "bottomup_segmentation": (
        "bottomup_segmentation",
        {"segmentation": "segmentation", "center": "center", "offsets": "offsets"},
    ),
    "centered_instance_segmentation": (
        "centered_instance_segmentation",
        {"segmentation": "segmentation"},
    ),
    # re-identification: posekit's embedding config carries sleap-nn's head fields
    "embedding": ("embedding", {"embedding": "embedding"}),
}

#: Head fields posekit reads (all other fields of a head are reported when set).
_HEAD_FIELDS = {
    "part_names",
    "anchor_part",
    "sigma",
    "output_stride",
    "loss_weight",
    "edges",
    "classes",
    "num_fc_layers",
    "num_fc_units",
    "global_pool",
    "bce_weight",
    "dice_weight",
    "bce_pos_weight",
    "target_maxpool",
    "centroid_method",
    "centroid_fallback",
    "embedding_dim",
    "pool",
    "normalize",
}
#: Crop centres of sleap-nn's top-down segmentation training that posekit does not make
#: (it crops on the anchor part or the bounding-box centre).
_OTHER_CENTROIDS = ("center_of_mass", "geometric_median")

_UNET_FIELDS = (
    "filters",
    "filters_rate",
    "max_stride",
    "stem_stride",
    "middle_block",
    "up_interpolate",
    "stacks",
    "output_stride",
)

#: sleap-nn 0.3.5's default config tree, with `head_defaults` (per head family) and
#: `backbone_defaults` (per backbone); written by `scripts/make_sleapnn_fixtures.py --defaults`.
DEFAULTS_FILE = Path(__file__).with_name("sleap_nn_defaults.yaml")


@functools.cache
def _defaults() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))


def default_tree() -> dict[str, Any]:
    """A fresh copy of sleap-nn's default config (`data_config`, `model_config`, ...)."""
    tree = copy.deepcopy(_defaults())
    tree.pop("head_defaults")
    tree.pop("backbone_defaults")
    return tree


_MISSING = object()


def _default_at(path: str) -> Any:
    """sleap-nn's default for a dotted path (heads: their family's defaults)."""
    parts = path.split(".")
    node: Any = _defaults()
    if parts[:2] == ["model_config", "head_configs"] and len(parts) > 2:
        node, parts = node["head_defaults"], parts[2:]
    elif parts[:2] == ["model_config", "backbone_config"] and len(parts) > 2:
        node, parts = node["backbone_defaults"], parts[2:]
    for key in parts:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


#: Settings that change how sleap-nn runs but not what it learns (device, logging,
#: caching, file names): never reported.
_NO_EFFECT = (
    "name",
    "description",
    "filename",
    "sleap_nn_version",
    "model_config.total_params",
    "data_config.cache_img_path",
    "data_config.use_existing_imgs",
    "data_config.delete_cache_imgs_after_training",
    "data_config.parallel_caching",
    "data_config.cache_workers",
    "data_config.preprocessing.max_height",
    "data_config.preprocessing.max_width",
    "trainer_config.train_data_loader.num_workers",
    "trainer_config.train_data_loader.shuffle",
    "trainer_config.val_data_loader",
    "trainer_config.trainer_devices",
    "trainer_config.trainer_accelerator",
    "trainer_config.trainer_strategy",
    "trainer_config.trainer_device_indices",
    "trainer_config.enable_progress_bar",
    "trainer_config.save_ckpt",
    "trainer_config.wandb",
    "trainer_config.keep_viz",
    "trainer_config.viz_img_format",
    "trainer_config.profiler",
    "trainer_config.model_ckpt.save_last",
    "trainer_config.eval.frequency",
    "trainer_config.eval.oks_stddev",
    "trainer_config.eval.match_threshold",
    "trainer_config.eval.select_metric",
)


def is_sleap_nn(tree: Any) -> bool:
    """True for the tree of a sleap-nn config (it has `data_config`/`model_config`/...)."""
    return isinstance(tree, dict) and bool(set(tree) & set(SECTIONS))


class _Reader:
    """Reads a sleap-nn tree, remembering which leaves were used."""

    def __init__(self, tree: dict[str, Any], source: str):
        self.tree = tree
        self.source = source
        self.used: set[str] = set()

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.tree
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                self.used.add(dotted)
                return default
            node = node[key]
        self.used.add(dotted)
        return default if node is None else node

    def peek(self, dotted: str) -> Any:
        """The node at `dotted` (None when absent) without counting it as used."""
        node: Any = self.tree
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def unused(self) -> list[str]:
        out: list[str] = []

        def walk(node: Any, path: str) -> None:
            if path in self.used or any(path == p or path.startswith(p + ".") for p in _NO_EFFECT):
                return
            if isinstance(node, dict) and node:
                for key, value in node.items():
                    walk(value, f"{path}.{key}" if path else str(key))
                return
            default = _default_at(path)
            if node is None:
                return  # sleap-nn's "not set"
            if default is _MISSING:
                if node not in (None, False, [], {}, ""):
                    out.append(f"{path}={_show(node)}")
            elif node != default and not (node in ([], {}) and default is None):
                out.append(f"{path}={_show(node)}")

        tiling = "data_config.preprocessing.tiling"
        self.used.add(tiling)  # its settings matter only when it is enabled
        if self.get(f"{tiling}.enabled", False):
            out.append(f"{tiling}.enabled=true")
        walk(self.tree, "")
        return out


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _one_path(value: Any, field: str, source: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    values = [v for v in value if v]
    if len(values) > 1:
        raise PosekitError(
            f"{source}: {field} lists {len(values)} label files; posekit trains on one: merge "
            f"them into one .slp (sleap-io `Labels.extend`) and give its path"
        )
    return values[0] if values else None


def _skeletons(entries: list[dict] | None) -> list[dict]:
    out = []
    for sk in entries or []:
        nodes = [n["name"] if isinstance(n, dict) else str(n) for n in sk.get("nodes") or []]
        edges = [
            (_name(e["source"]), _name(e["destination"])) if isinstance(e, dict) else tuple(e)
            for e in sk.get("edges") or []
        ]
        syms = [tuple(_name(n) for n in s) for s in sk.get("symmetries") or []]
        out.append(
            {
                "name": sk.get("name") or "Skeleton",
                "node_names": nodes,
                "edges": edges,
                "symmetries": syms,
            }
        )
    return out


def _name(node: Any) -> str:
    return node["name"] if isinstance(node, dict) else str(node)


def _the_one_set(r: _Reader, path: str, what: str) -> str:
    """The one key of a sleap-nn one-of section (backbone, heads) that is set."""
    chosen = [k for k, v in (r.peek(path) or {}).items() if v]
    if len(chosen) != 1:
        raise PosekitError(f"{r.source}: {path} sets {chosen or 'nothing'}; set exactly one {what}")
    return chosen[0]


def _backbone(r: _Reader) -> dict[str, Any]:
    name = _the_one_set(r, "model_config.backbone_config", "of " + ", ".join(BACKBONES))
    base = f"model_config.backbone_config.{name}"
    defaults = _defaults()["backbone_defaults"][name]
    if name != "unet":
        # posekit's ConvNextConfig / SwinTConfig / PretrainedConfig have sleap-nn's fields
        # (names, meanings, defaults): every field is carried over as it is.
        return {name: {k: r.get(f"{base}.{k}", defaults[k]) for k in defaults}}
    for key, want in (("kernel_size", 3), ("convs_per_block", 2)):
        value = r.get(f"{base}.{key}", want)
        if value != want:
            raise PosekitError(
                f"{r.source}: {base}.{key}={value}; posekit's UNet (as SLEAP's) has "
                f"{key}={want}: set it to {want}"
            )
    # sleap-nn builds these differently from SLEAP's UNet (its stem adds decoder blocks
    # without skips; its stacks share one set of heads): not mapped yet.
    for key, want in (("stem_stride", None), ("stacks", 1)):
        value = r.get(f"{base}.{key}", want)
        if value != want:
            raise PosekitError(
                f"{r.source}: {base}.{key}={value} is built differently by sleap-nn than by "
                f"posekit; set {key}: {_show(want)}"
            )
    r.get(f"{base}.in_channels")
    # sleap-nn's UNet defaults differ from SLEAP's: write every field explicitly.
    return {"unet": {k: r.get(f"{base}.{k}", defaults[k]) for k in _UNET_FIELDS}}


def bottleneck_stride(backbone: dict[str, Any]) -> int:
    """The stride of the map sleap-nn's class-vectors head reads: the bottleneck (the
    middle block's output, or the deepest encoder map of a `pretrained` encoder)."""
    name, cfg = next(iter(backbone.items()))
    if name in ("convnext", "swint"):
        return int(cfg.get("stem_patch_stride", 2)) * 16  # stem, 3 downsamplings, 1 pool
    return int(cfg["max_stride"])  # UNet; `pretrained`: what sleap-nn's training sets


def _head(r: _Reader, base: str) -> dict[str, Any]:
    node = r.peek(base) or {}  # only the fields read count as used: the rest is reported
    out = {}
    for key in node:
        if key in _HEAD_FIELDS:
            value = r.get(f"{base}.{key}")
            if value is not None:
                out[key] = (
                    [tuple(e) if isinstance(e, list) else e for e in value]
                    if key == "edges"
                    else value
                )
    return out


def _heads(r: _Reader) -> tuple[dict[str, Any], list[str]]:
    """posekit's heads section, and the head settings it cannot carry over."""
    family = _the_one_set(r, "model_config.head_configs", "model type")
    if family not in _HEADS:
        raise PosekitError(
            f"{r.source}: the sleap-nn model type {family!r} is not a model type posekit "
            f"builds; use one of " + ", ".join(_HEADS)
        )
    field, subs = _HEADS[family]
    base = f"model_config.head_configs.{family}"
    if subs is None:
        return {field: _head(r, f"{base}.confmaps")}, []
    heads = {ours: _head(r, f"{base}.{theirs}") for theirs, ours in subs.items()}
    lost = []
    if family == "centered_instance_segmentation":
        head = heads["segmentation"]
        # sleap-nn's default crop centre without an anchor part is the mean of the
        # visible points; posekit's is the middle of their bounding box (training only:
        # at inference the centroid model places the crops)
        method = head.get("centroid_method") or (
            "anchor" if head.get("anchor_part") else "center_of_mass"
        )
        if method in _OTHER_CENTROIDS:
            head.pop("centroid_method", None)
            lost.append(f"{base}.segmentation.centroid_method={method}")
        if head.get("centroid_fallback") in _OTHER_CENTROIDS:
            lost.append(f"{base}.segmentation.centroid_fallback={head.pop('centroid_fallback')}")
    if family == "embedding":
        lost += embedding_from_sleap_nn(r, f"{base}.embedding", heads["embedding"])
    return {field: heads}, lost


def _augmentation(r: _Reader) -> dict[str, Any]:
    if not r.get("data_config.use_augmentations_train", True):
        return {}
    geo = "data_config.augmentation_config.geometric"
    ins = "data_config.augmentation_config.intensity"
    out: dict[str, Any] = {}
    if r.get(f"{geo}.rotation_p", 0) and r.tree.get("data_config", {}).get("augmentation_config"):
        out |= {
            "rotate": True,
            "rotation_min_angle": r.get(f"{geo}.rotation_min", -15.0),
            "rotation_max_angle": r.get(f"{geo}.rotation_max", 15.0),
        }
    if r.get(f"{geo}.scale_p", 0) and r.tree.get("data_config", {}).get("augmentation_config"):
        out |= {
            "scale": True,
            "scale_min": r.get(f"{geo}.scale_min", 0.9),
            "scale_max": r.get(f"{geo}.scale_max", 1.1),
        }
    if r.get(f"{geo}.flip_p", 0):
        out |= {"random_flip": True, "flip_horizontal": True}
    # sleap-nn's noise is on the [0, 1] image; posekit's (SLEAP's) on [0, 255].
    if r.get(f"{ins}.uniform_noise_p", 0):
        out |= {
            "uniform_noise": True,
            "uniform_noise_min_val": 255 * r.get(f"{ins}.uniform_noise_min", 0.0),
            "uniform_noise_max_val": 255 * r.get(f"{ins}.uniform_noise_max", 0.04),
        }
    if r.get(f"{ins}.gaussian_noise_p", 0):
        out |= {
            "gaussian_noise": True,
            "gaussian_noise_mean": 255 * r.get(f"{ins}.gaussian_noise_mean", 0.0),
            "gaussian_noise_stddev": 255 * r.get(f"{ins}.gaussian_noise_std", 0.02),
        }
    return out


def _schedule(r: _Reader) -> dict[str, Any]:
    base = "trainer_config.lr_scheduler"
    out: dict[str, Any] = {"reduce_on_plateau": False}
    plateau = r.get(f"{base}.reduce_lr_on_plateau")
    if plateau:
        p = f"{base}.reduce_lr_on_plateau"
        out = {
            "reduce_on_plateau": True,
            "reduction_factor": r.get(f"{p}.factor", 0.5),
            "plateau_min_delta": r.get(f"{p}.threshold", 1e-6),
            "plateau_patience": r.get(f"{p}.patience", 5),
            "plateau_cooldown": r.get(f"{p}.cooldown", 3),
            "min_learning_rate": r.get(f"{p}.min_lr", 1e-8),
        }
    if r.get(f"{base}.step_lr"):
        out["step_lr"] = {k: r.get(f"{base}.step_lr.{k}") for k in ("step_size", "gamma")}
    if r.get(f"{base}.cosine_annealing_warmup"):
        c = f"{base}.cosine_annealing_warmup"
        out["cosine_annealing_warmup"] = {
            k: r.get(f"{c}.{k}")
            for k in ("warmup_epochs", "max_epochs", "warmup_start_lr", "eta_min")
        }
    return out


def posekit_tree(
    tree: dict[str, Any], source: str = "sleap-nn config"
) -> tuple[dict[str, Any], list[str]]:
    """posekit's `TrainingJobConfig` tree for a sleap-nn config tree (a loaded YAML file),
    and the settings it cannot carry over (``"dotted.path=value"``, sleap-nn's names).
    `posekit.config.job.from_sleap_nn` validates it."""
    r = _Reader(tree, source)
    d, t = "data_config", "trainer_config"
    hkm = f"{t}.online_hard_keypoint_mining"
    es = f"{t}.early_stopping"
    heads, lost = _heads(r)
    data = {
        "data": {
            "labels": {
                "training_labels": _one_path(
                    r.get(f"{d}.train_labels_path"), "train_labels_path", source
                ),
                "validation_labels": _one_path(
                    r.get(f"{d}.val_labels_path"), "val_labels_path", source
                ),
                "validation_fraction": r.get(f"{d}.validation_fraction", 0.1),
                "test_labels": _one_path(r.get(f"{d}.test_file_path"), "test_file_path", source),
                "skeletons": _skeletons(r.get(f"{d}.skeletons")),
            },
            "preprocessing": {
                "ensure_rgb": r.get(f"{d}.preprocessing.ensure_rgb", False),
                "ensure_grayscale": r.get(f"{d}.preprocessing.ensure_grayscale", False),
                "input_scaling": r.get(f"{d}.preprocessing.scale", 1.0),
            },
            "instance_cropping": {
                "crop_size": r.get(f"{d}.preprocessing.crop_size"),
                "crop_size_detection_padding": r.get(f"{d}.preprocessing.crop_padding", 16),
            },
        },
        "model": {"backbone": _backbone(r), "heads": heads},
        "optimization": {
            "augmentation_config": _augmentation(r),
            "batch_size": r.get(f"{t}.train_data_loader.batch_size", 4),
            "batches_per_epoch": r.get(f"{t}.train_steps_per_epoch"),
            "min_batches_per_epoch": r.get(f"{t}.min_train_steps_per_epoch", 200),
            "epochs": r.get(f"{t}.max_epochs", 100),
            "optimizer": str(r.get(f"{t}.optimizer_name", "Adam")).lower(),
            "initial_learning_rate": r.get(f"{t}.optimizer.lr", 1e-4),
            "learning_rate_schedule": _schedule(r),
            "hard_keypoint_mining": {
                "online_mining": r.get(f"{hkm}.online_mining", False),
                "hard_to_easy_ratio": r.get(f"{hkm}.hard_to_easy_ratio", 2.0),
                "min_hard_keypoints": r.get(f"{hkm}.min_hard_keypoints", 2),
                "max_hard_keypoints": r.get(f"{hkm}.max_hard_keypoints"),
                "loss_scale": r.get(f"{hkm}.loss_scale", 5.0),
            },
            "early_stopping": {
                "stop_training_on_plateau": r.get(f"{es}.stop_training_on_plateau", True),
                "plateau_min_delta": r.get(f"{es}.min_delta", 1e-8),
                "plateau_patience": r.get(f"{es}.patience", 10),
            },
        },
        "outputs": {
            "runs_folder": r.get(f"{t}.ckpt_dir", "models") or "models",
            "run_name": r.get(f"{t}.run_name"),
        },
        "name": r.get("name", ""),
        "description": r.get("description", ""),
    }
    heads = data["model"]["heads"]
    if "multi_class_topdown" in heads:
        # sleap-nn's class-vectors head reads the bottleneck whatever its output_stride
        stride = bottleneck_stride(data["model"]["backbone"])
        heads["multi_class_topdown"]["class_vectors"]["output_stride"] = stride
    if "embedding" in heads:
        # as does its embedding head; and its embedding crops are never rescaled
        stride = bottleneck_stride(data["model"]["backbone"])
        heads["embedding"]["embedding"]["output_stride"] = stride
        pretrained = data["model"]["backbone"].get("pretrained")
        if pretrained is not None:  # a pooled head needs no decoder: encoder-only
            if pretrained.get("mode") == "decoder":
                raise PosekitError(
                    f"{source}: pretrained mode 'decoder' does not fit an embedding model "
                    f"(its pooled head reads the encoder's last map); use mode: encoder or auto"
                )
            pretrained["mode"] = "encoder"
        scale = data["data"]["preprocessing"]["input_scaling"]
        if scale != 1.0:
            lost.append(f"{d}.preprocessing.scale={_show(scale)} (embedding crops are not scaled)")
            data["data"]["preprocessing"]["input_scaling"] = 1.0
    return data, lost + r.unused()


def in_channels(tree: dict[str, Any]) -> int:
    """The input channels a sleap-nn config's backbone was built with."""
    bb = (tree.get("model_config") or {}).get("backbone_config") or {}
    for value in bb.values():
        if value:
            return int(value.get("in_channels") or 1)
    return 1


# --------------------------------------------------------------------------- back


def _skeleton_tree(skeleton) -> dict[str, Any]:
    return {
        "nodes": [{"name": n} for n in skeleton.node_names],
        "edges": [{"source": {"name": a}, "destination": {"name": b}} for a, b in skeleton.edges],
        "symmetries": [[{"name": a}, {"name": b}] for a, b in skeleton.symmetries],
        "name": skeleton.name,
    }


def _heads_back(heads) -> dict[str, Any]:
    from posekit.config.model import PoseMaskHeadConfig

    which = heads.which_oneof_attrib_name()
    family = {ours: theirs for theirs, (ours, _) in _HEADS.items()}.get(which)
    if family is None:
        raise PosekitError(f"model type {which!r} has no sleap-nn counterpart")
    cfg = getattr(heads, which)
    if isinstance(getattr(cfg, "segmentation", None), PoseMaskHeadConfig):
        raise PosekitError(
            f"model.heads.{which}.segmentation: pose + mask heads on one backbone are "
            "posekit-only, sleap-nn and SLEAP have no such model; export it to onnx or "
            "torchscript instead"
        )
    _, subs = _HEADS[family]

    def one(head) -> dict[str, Any]:
        out = head.model_dump(mode="json")
        out.pop("offset_refinement", None)
        if "edges" in out and out["edges"] is not None:
            out["edges"] = [list(e) for e in out["edges"]]
        return out

    defaults = _defaults()["head_defaults"][family]
    if family == "embedding":
        return {family: {"embedding": embedding_to_sleap_nn(cfg.embedding, defaults["embedding"])}}
    if subs is None:
        body = {"confmaps": {**defaults["confmaps"], **one(cfg)}}
    else:
        body = {
            theirs: {**defaults[theirs], **one(getattr(cfg, ours))} for theirs, ours in subs.items()
        }
    return {family: body}


def to_sleap_nn(config, in_channels: int | None = None) -> dict[str, Any]:
    """The sleap-nn config tree (`data_config` / `model_config` / `trainer_config`) for a
    posekit `TrainingJobConfig`: sleap-nn's full default tree with posekit's settings
    in it (sleap-nn's loaders read the file as is, so every field must be there). The
    backbone is written as sleap-nn's training writes it: built down to the finest head's
    stride (`output_stride`), with `in_channels` the model's (None: the backbone config's,
    1 for a UNet; always the config's for a `pretrained` encoder)."""
    bb = config.model.backbone
    name = bb.which_oneof_attrib_name()
    defaults = _defaults()["backbone_defaults"]
    if name not in BACKBONES:
        raise PosekitError(
            f"the {name} backbone has no sleap-nn counterpart; sleap-nn builds "
            f"{', '.join(BACKBONES)} backbones"
        )
    if in_channels is None or name == "pretrained":
        # a `pretrained` encoder's own channels: sleap-nn feeds it RGB (grayscale tiled),
        # whatever the frames are; posekit's model counts the frames' channels
        in_channels = getattr(bb.which_oneof(), "in_channels", 1)
    head_configs = _heads_back(config.model.heads)
    finest = min(
        sub["output_stride"] for family in head_configs.values() for sub in family.values()
    )
    backbone = {
        **defaults[name],
        **bb.which_oneof().model_dump(mode="json"),
        "in_channels": int(in_channels),
        "output_stride": finest,
    }
    if name == "unet":
        backbone |= {"kernel_size": 3, "convs_per_block": 2}
    pre = config.data.preprocessing
    labels = config.data.labels
    opt = config.optimization
    lrs = opt.learning_rate_schedule
    es = opt.early_stopping
    hkm = opt.hard_keypoint_mining
    scheduler: dict[str, Any] = {
        "step_lr": None,
        "reduce_lr_on_plateau": None,
        "cosine_annealing_warmup": None,
    }
    if lrs.step_lr is not None:
        scheduler["step_lr"] = lrs.step_lr.model_dump(mode="json")
    elif lrs.cosine_annealing_warmup is not None:
        scheduler["cosine_annealing_warmup"] = lrs.cosine_annealing_warmup.model_dump(mode="json")
    elif lrs.reduce_on_plateau:
        scheduler["reduce_lr_on_plateau"] = {
            "threshold": lrs.plateau_min_delta,
            "threshold_mode": "abs",
            "cooldown": lrs.plateau_cooldown,
            "patience": lrs.plateau_patience,
            "factor": lrs.reduction_factor,
            "min_lr": lrs.min_learning_rate,
        }
    ours = {
        "data_config": {
            "train_labels_path": [labels.training_labels] if labels.training_labels else [],
            "val_labels_path": [labels.validation_labels] if labels.validation_labels else None,
            "validation_fraction": labels.validation_fraction,
            "test_file_path": labels.test_labels,
            "preprocessing": {
                "ensure_rgb": pre.ensure_rgb,
                "ensure_grayscale": pre.ensure_grayscale,
                "scale": pre.input_scaling,
                "crop_size": config.data.instance_cropping.crop_size,
                "crop_padding": config.data.instance_cropping.crop_size_detection_padding,
            },
            "use_augmentations_train": opt.augmentation_config.enabled,
            "skeletons": [_skeleton_tree(s) for s in labels.skeletons],
        },
        "model_config": {
            "backbone_config": {key: backbone if key == name else None for key in defaults},
            "head_configs": head_configs,
        },
        "trainer_config": {
            "train_data_loader": {"batch_size": opt.batch_size, "shuffle": True},
            "val_data_loader": {"batch_size": opt.batch_size, "shuffle": False},
            "max_epochs": opt.epochs,
            "train_steps_per_epoch": opt.batches_per_epoch,
            "min_train_steps_per_epoch": opt.min_batches_per_epoch,
            "optimizer_name": {"adam": "Adam", "adamw": "AdamW"}[opt.optimizer],
            "optimizer": {"lr": opt.initial_learning_rate, "amsgrad": False},
            "lr_scheduler": scheduler,
            "early_stopping": {
                "min_delta": es.plateau_min_delta,
                "patience": es.plateau_patience,
                "stop_training_on_plateau": es.stop_training_on_plateau,
            },
            "online_hard_keypoint_mining": hkm.model_dump(mode="json"),
            "ckpt_dir": config.outputs.runs_folder,
            "run_name": config.outputs.run_name,
        },
        "name": config.name or "",
        "description": config.description or "",
    }
    return _merge(default_tree(), ours)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def to_sleap_nn_yaml(config, in_channels: int | None = None) -> str:
    """`to_sleap_nn` as YAML text (what sleap-nn writes as `training_config.yaml`)."""
    import yaml

    return yaml.safe_dump(to_sleap_nn(config, in_channels), sort_keys=False)


__all__ = [
    "BACKBONES",
    "SECTIONS",
    "bottleneck_stride",
    "default_tree",
    "posekit_tree",
    "in_channels",
    "is_sleap_nn",
    "to_sleap_nn",
    "to_sleap_nn_yaml",
]
