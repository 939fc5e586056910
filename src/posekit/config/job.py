"""The whole training job: data, model, optimization and outputs, as SLEAP writes it.

`TrainingJobConfig` has SLEAP 1.4.1's sections, fields and defaults, so a SLEAP
`training_config.json` (or one of SLEAP's profiles) loads unchanged and a config saved
here loads in SLEAP. JSON is SLEAP's format; YAML is the same tree, easier to edit by hand.

Paths: relative paths inside a config (`data.labels.training_labels`,
`validation_labels`, `test_labels`, `search_path_hints`, `model.base_checkpoint`) mean
"relative to the config file's folder". They are kept as written (so saving does not
rewrite them); `resolve_path` / `with_resolved_paths` turn them into absolute paths. The
folder is taken from `filename`, which loading and saving set to the file's absolute
path (SLEAP does the same with `filename`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from posekit.config.base import ConfigBase, format_validation_error
from posekit.config.model import BackboneConfig, ModelConfig, check_stride
from posekit.config.profiles import PROFILES, profile_fields, profile_names
from posekit.config.skeleton import SkeletonConfig
from posekit.errors import PosekitError
from posekit.io.atomic import write_text_atomic

#: The SLEAP release whose config format (fields and defaults) posekit follows.
SLEAP_VERSION = "1.4.1"

_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def _check_range(cls_name: str, low_name: str, low: float, high_name: str, high: float) -> None:
    if low > high:
        raise ValueError(
            f"{cls_name}: {low_name}={low} is larger than {high_name}={high}; "
            f"the range must run from low to high"
        )


# --------------------------------------------------------------------------- data


class LabelsConfig(ConfigBase):
    """Which labels to train, validate and test on, and the skeletons they use.

    `skeletons` hold `SkeletonConfig`s; dumps (`to_dict`, `to_json`) write them in SLEAP's
    jsonpickle form, `to_yaml` in the plain form. Both forms load.
    """

    training_labels: str | None = None
    validation_labels: str | None = None
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    test_labels: str | None = None
    split_by_inds: bool = False
    training_inds: list[int] | None = None
    validation_inds: list[int] | None = None
    test_inds: list[int] | None = None
    search_path_hints: list[str] = Field(default_factory=list)
    skeletons: list[SkeletonConfig] = Field(default_factory=list)

    @field_serializer("skeletons")
    def _write_skeletons(self, skeletons: list[SkeletonConfig], info) -> list[dict]:
        # SLEAP only reads its jsonpickle form; YAML (posekit only) gets the plain form.
        plain = (info.context or {}).get("skeleton_format") == "plain"
        return [s.to_plain_dict() if plain else s.to_sleap_dict() for s in skeletons]


class PreprocessingConfig(ConfigBase):
    """How frames are converted before they reach the network."""

    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    imagenet_mode: Literal["tf", "caffe", "torch"] | None = None
    input_scaling: float = Field(1.0, gt=0)
    pad_to_stride: int | None = None
    resize_and_pad_to_target: bool = True
    target_height: int | None = Field(None, ge=1)
    target_width: int | None = Field(None, ge=1)

    _v_stride = field_validator("pad_to_stride")(lambda v, info: check_stride(info.field_name, v))


class InstanceCroppingConfig(ConfigBase):
    """Crops around instances for centroid and top-down models."""

    center_on_part: str | None = None
    crop_size: int | None = Field(None, ge=1)
    crop_size_detection_padding: int = Field(16, ge=0)


class DataConfig(ConfigBase):
    """Labels, preprocessing and instance cropping."""

    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
    instance_cropping: InstanceCroppingConfig = Field(default_factory=InstanceCroppingConfig)


# --------------------------------------------------------------------------- optimization


class AugmentationConfig(ConfigBase):
    """Random augmentations, applied in field order; each is off unless its flag is set."""

    rotate: bool = False
    rotation_min_angle: float = Field(-180, ge=-180, le=180)
    rotation_max_angle: float = Field(180, ge=-180, le=180)
    translate: bool = False
    translate_min: int = -5
    translate_max: int = 5
    scale: bool = False
    scale_min: float = Field(0.9, gt=0)
    scale_max: float = Field(1.1, gt=0)
    uniform_noise: bool = False
    uniform_noise_min_val: float = 0.0
    uniform_noise_max_val: float = 10.0
    gaussian_noise: bool = False
    gaussian_noise_mean: float = 5.0
    gaussian_noise_stddev: float = Field(1.0, ge=0)
    contrast: bool = False
    contrast_min_gamma: float = Field(0.5, gt=0)
    contrast_max_gamma: float = Field(2.0, gt=0)
    brightness: bool = False
    brightness_min_val: float = 0.0
    brightness_max_val: float = 10.0
    random_crop: bool = False
    random_crop_height: int = Field(256, ge=1)
    random_crop_width: int = Field(256, ge=1)
    random_flip: bool = False
    flip_horizontal: bool = True

    @model_validator(mode="after")
    def _ranges(self) -> AugmentationConfig:
        for low, high in (
            ("rotation_min_angle", "rotation_max_angle"),
            ("translate_min", "translate_max"),
            ("scale_min", "scale_max"),
            ("uniform_noise_min_val", "uniform_noise_max_val"),
            ("contrast_min_gamma", "contrast_max_gamma"),
            ("brightness_min_val", "brightness_max_val"),
        ):
            _check_range(type(self).__name__, low, getattr(self, low), high, getattr(self, high))
        return self

    @property
    def geometric(self) -> bool:
        """Any step that moves pixels (and so points)."""
        return self.rotate or self.translate or self.scale or self.random_flip

    @property
    def intensity(self) -> bool:
        """Any step that changes pixel values only."""
        return self.uniform_noise or self.gaussian_noise or self.contrast or self.brightness

    @property
    def enabled(self) -> bool:
        return self.geometric or self.intensity

    def max_zoom_out(self) -> float:
        """How much larger a region the geometric steps can pull into view (>= 1).

        Used to size the context crops that top-down samples carry, so a rotated or
        shrunk crop still has real pixels in its corners.
        """
        factor = 1.0
        if self.rotate:
            factor *= math.sqrt(2.0)
        if self.scale:
            factor /= min(1.0, float(self.scale_min))
        return factor


class StepLRConfig(ConfigBase):
    """sleap-nn's `step_lr`: the learning rate times `gamma` every `step_size` epochs."""

    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0, le=1)


class CosineAnnealingWarmupConfig(ConfigBase):
    """sleap-nn's `cosine_annealing_warmup`: linear warm-up, then cosine annealing.

    For `warmup_epochs` epochs the rate rises linearly from `warmup_start_lr` to
    `initial_learning_rate`, then falls along a cosine to `eta_min` at `max_epochs`
    (default: `optimization.epochs`), and stays there. Set once per epoch.
    """

    warmup_epochs: int = Field(5, ge=0)
    max_epochs: int | None = Field(None, ge=1)
    warmup_start_lr: float = Field(0.0, ge=0)
    eta_min: float = Field(0.0, ge=0)


#: posekit's schedule fields beyond SLEAP's; left out of the JSON/YAML while unset, so a
#: config without them is written exactly as SLEAP writes it.
_SCHEDULER_FIELDS = ("step_lr", "cosine_annealing_warmup")


class LearningRateScheduleConfig(ConfigBase):
    """Reduce the learning rate when the validation loss stops improving (SLEAP), or
    follow a fixed schedule (sleap-nn's `step_lr` / `cosine_annealing_warmup`).

    SLEAP's fields keep their meaning. Setting `step_lr` or `cosine_annealing_warmup`
    (at most one; `linear_warmup_cosine_annealing` is accepted for the latter) replaces
    the plateau reduction: `reduce_on_plateau` is then not used. Both default to None
    (off) and are only written when set, so SLEAP reads the file as before.
    """

    _aliases: ClassVar[dict[str, str]] = {
        "linear_warmup_cosine_annealing": "cosine_annealing_warmup"
    }

    reduce_on_plateau: bool = True
    reduction_factor: float = Field(0.5, gt=0, lt=1)
    plateau_min_delta: float = Field(1e-6, ge=0)
    plateau_patience: int = Field(5, ge=0)
    plateau_cooldown: int = Field(3, ge=0)
    min_learning_rate: float = Field(1e-8, ge=0)
    step_lr: StepLRConfig | None = None
    cosine_annealing_warmup: CosineAnnealingWarmupConfig | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> LearningRateScheduleConfig:
        if self.step_lr is not None and self.cosine_annealing_warmup is not None:
            raise ValueError(
                "set at most one of step_lr and cosine_annealing_warmup (set the other to null)"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler) -> dict[str, Any]:
        data = handler(self)
        for name in _SCHEDULER_FIELDS:
            if data.get(name, 0) is None:
                data.pop(name)
        return data

    @property
    def fixed_schedule(self) -> StepLRConfig | CosineAnnealingWarmupConfig | None:
        """The step or cosine schedule when one is set (it replaces the plateau)."""
        return self.step_lr or self.cosine_annealing_warmup


class HardKeypointMiningConfig(ConfigBase):
    """Online hard keypoint mining: weigh the hardest keypoints' losses up."""

    online_mining: bool = False
    hard_to_easy_ratio: float = Field(2.0, gt=0)
    min_hard_keypoints: int = Field(2, ge=0)
    max_hard_keypoints: int | None = Field(None, ge=1)
    loss_scale: float = Field(5.0, gt=0)


class EarlyStoppingConfig(ConfigBase):
    """Stop training when the validation loss stops improving."""

    stop_training_on_plateau: bool = True
    plateau_min_delta: float = Field(1e-6, ge=0)
    plateau_patience: int = Field(10, ge=0)


class OptimizationConfig(ConfigBase):
    """Batching, epochs, optimizer, schedule and augmentation.

    `optimizer` is "adam" (SLEAP uses Adam with AMSGrad) or "adamw"; other spellings of
    these two ("Adam") are accepted and stored lower-case.
    """

    preload_data: bool = True
    augmentation_config: AugmentationConfig = Field(default_factory=AugmentationConfig)
    online_shuffling: bool = True
    shuffle_buffer_size: int = Field(128, ge=-1)  # -1: the whole dataset
    prefetch: bool = True
    batch_size: int = Field(8, ge=1)
    batches_per_epoch: int | None = Field(None, ge=1)
    min_batches_per_epoch: int = Field(200, ge=1)
    val_batches_per_epoch: int | None = Field(None, ge=1)
    min_val_batches_per_epoch: int = Field(10, ge=0)
    epochs: int = Field(100, ge=1)
    optimizer: Literal["adam", "adamw"] = "adam"
    initial_learning_rate: float = Field(1e-4, gt=0)
    learning_rate_schedule: LearningRateScheduleConfig = Field(
        default_factory=LearningRateScheduleConfig
    )
    hard_keypoint_mining: HardKeypointMiningConfig = Field(default_factory=HardKeypointMiningConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


# --------------------------------------------------------------------------- outputs


class CheckpointingConfig(ConfigBase):
    """Which model checkpoints are written during training."""

    initial_model: bool = False
    best_model: bool = True
    every_epoch: bool = False
    latest_model: bool = False
    final_model: bool = False


class TensorBoardConfig(ConfigBase):
    """TensorBoard logging."""

    write_logs: bool = False
    loss_frequency: Literal["epoch", "batch"] = "epoch"
    architecture_graph: bool = False
    profile_graph: bool = False
    visualizations: bool = True


class ZMQConfig(ConfigBase):
    """ZeroMQ control and progress messages (what SLEAP's GUI listens to)."""

    subscribe_to_controller: bool = False
    controller_address: str = "tcp://127.0.0.1:9000"
    controller_polling_timeout: int = Field(10, ge=0)
    publish_updates: bool = False
    publish_address: str = "tcp://127.0.0.1:9001"


class OutputsConfig(ConfigBase):
    """Where and what a training run writes."""

    save_outputs: bool = True
    run_name: str | None = None
    run_name_prefix: str = ""
    run_name_suffix: str | None = None
    runs_folder: str = "models"
    tags: list[str] = Field(default_factory=list)
    save_visualizations: bool = True
    keep_viz_images: bool = False
    zip_outputs: bool = False
    log_to_csv: bool = True
    checkpointing: CheckpointingConfig = Field(default_factory=CheckpointingConfig)
    tensorboard: TensorBoardConfig = Field(default_factory=TensorBoardConfig)
    zmq: ZMQConfig = Field(default_factory=ZMQConfig)

    @property
    def run_path(self) -> str:
        """`{runs_folder}/{run_name_prefix}{run_name}{run_name_suffix}`."""
        if self.run_name is None:
            raise PosekitError("outputs.run_name is not set, so there is no run folder yet")
        return os.path.join(
            self.runs_folder, self.run_name_prefix + self.run_name + (self.run_name_suffix or "")
        )


# --------------------------------------------------------------------------- job


class TrainingJobConfig(ConfigBase):
    """Everything needed to train a model, and to rebuild it for inference."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimization: OptimizationConfig = Field(default_factory=OptimizationConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    name: str | None = ""
    description: str | None = ""
    sleap_version: str | None = SLEAP_VERSION
    filename: str | None = ""
    #: Settings of a sleap-nn config with no posekit counterpart ("path=value"), set by
    #: `posekit.config.sleap_nn.from_sleap_nn`; `train()` names them in its warning.
    _unused_settings: list[str] = PrivateAttr(default_factory=list)

    @property
    def unused_settings(self) -> list[str]:
        """Settings of the sleap-nn config this came from that posekit does not act on."""
        return list(self._unused_settings)

    # ---------------------------------------------------------------- text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingJobConfig:
        """Validate a plain dict (JSON/YAML tree)."""
        return cls.model_validate(data)

    @classmethod
    def from_json(cls, text: str) -> TrainingJobConfig:
        """Parse JSON text (SLEAP's format)."""
        return cls.model_validate(_parse_json(text, "JSON text"))

    def to_json(self, indent: int = 4) -> str:
        """JSON text with SLEAP's field names, skeletons in SLEAP's jsonpickle form."""
        return json.dumps(self.model_dump(mode="json"), indent=indent)

    def to_yaml(self) -> str:
        """YAML text; skeletons in posekit's plain form (names only)."""
        import yaml

        data = self.model_dump(mode="json", context={"skeleton_format": "plain"})
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)

    # ---------------------------------------------------------------- files

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> TrainingJobConfig:
        """Load a JSON config; `filename` is set to the file's absolute path."""
        return cls._load(path, "json")

    @classmethod
    def load_yaml(cls, path: str | os.PathLike) -> TrainingJobConfig:
        """Load a YAML config; `filename` is set to the file's absolute path."""
        return cls._load(path, "yaml")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingJobConfig:
        """Load JSON or YAML, chosen by the file extension."""
        return cls._load(path, _format_of(path))

    def save_json(self, path: str | os.PathLike) -> None:
        """Write JSON atomically; sets `filename` to the file's absolute path first."""
        self._save(path, "json")

    def save_yaml(self, path: str | os.PathLike) -> None:
        """Write YAML atomically; sets `filename` to the file's absolute path first."""
        self._save(path, "yaml")

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON or YAML, chosen by the file extension."""
        self._save(path, _format_of(path))

    @classmethod
    def _load(cls, path: str | os.PathLike, fmt: str) -> TrainingJobConfig:
        data = _read_tree(Path(path), fmt)
        if _is_sleap_nn(data):
            return _from_sleap_nn(data, path)
        if isinstance(data, dict):
            data = {**data, "filename": os.path.abspath(path)}
        return _validate(cls, data, str(path))

    def _save(self, path: str | os.PathLike, fmt: str) -> None:
        # Like SLEAP: the saved file records where it lives, so relative paths in it
        # resolve against that folder when it is loaded again.
        self.filename = os.path.abspath(path)
        write_text_atomic(Path(path), self.to_json() if fmt == "json" else self.to_yaml())

    # ---------------------------------------------------------------- paths

    @property
    def source_dir(self) -> Path | None:
        """Folder of the file this config was loaded from or saved to, if any."""
        if self.filename and os.path.isabs(self.filename):
            return Path(self.filename).parent
        return None

    def resolve_path(self, path: str | os.PathLike | None) -> Path | None:
        """An absolute path for a path written in this config.

        Relative paths are taken relative to `source_dir` (the config file's folder);
        without one (a config built in code), relative to the current directory.
        None and "" (SLEAP's "not set") give None.
        """
        if path is None or str(path) == "":
            return None
        p = Path(path).expanduser()
        if not p.is_absolute():
            p = (self.source_dir or Path.cwd()) / p
        return Path(os.path.normpath(p))

    def with_resolved_paths(self) -> TrainingJobConfig:
        """A copy whose label, search-hint and checkpoint paths are absolute."""
        labels = self.data.labels

        def res(p: str | None) -> str | None:
            r = self.resolve_path(p)
            return None if r is None else str(r)

        new_labels = labels.model_copy(
            update={
                "training_labels": res(labels.training_labels),
                "validation_labels": res(labels.validation_labels),
                "test_labels": res(labels.test_labels),
                "search_path_hints": [
                    str(self.resolve_path(h)) for h in labels.search_path_hints if h
                ],
            }
        )
        new_model = self.model.model_copy(
            update={"base_checkpoint": res(self.model.base_checkpoint)}
        )
        new_data = self.data.model_copy(update={"labels": new_labels})
        return self.model_copy(update={"data": new_data, "model": new_model})


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike) -> TrainingJobConfig | ModelConfig | BackboneConfig:
    """Load any config file posekit understands and return the matching object.

    - `.json`, `.yaml` or `.yml` (by extension); a folder means its
      `training_config.json` (SLEAP's model folders) or `training_config.yaml`.
    - A file with `data`/`model`/`optimization`/`outputs` sections (a SLEAP
      `training_config.json` or profile, or a posekit job file) -> `TrainingJobConfig`.
    - A file with `backbone`/`heads` at the top -> `ModelConfig`.
    - A file whose top-level keys are backbone names (`{"unet": {...}}`) ->
      `BackboneConfig`.
    - A name that is not an existing path but names a config shipped with posekit
      (`single_instance_unet`, see `shipped_configs()`) or one of SLEAP's training
      profiles (`baseline.centroid`, see `posekit.config.profiles`) loads that config.

    Mistakes (missing file, bad syntax, wrong field or value) raise `PosekitError` with
    the file, the dotted field path and the value.
    """
    given = Path(path)
    if not given.exists() and len(given.parts) == 1:
        if given.name.removesuffix(".json") in PROFILES:
            return load_profile(given.name)
    p = _locate(given)
    data = _read_tree(p, _format_of(p))
    keys = set(data) if isinstance(data, dict) else set()
    if _is_sleap_nn(data):
        return _from_sleap_nn(data, p)
    if keys & {"backbone", "heads", "base_checkpoint"}:
        return _validate(ModelConfig, data, str(p))
    if keys and keys <= set(BackboneConfig.model_fields):
        return _validate(BackboneConfig, data, str(p))
    if isinstance(data, dict):
        data = {**data, "filename": os.path.abspath(p)}
    return _validate(TrainingJobConfig, data, str(p))


def _is_sleap_nn(data: Any) -> bool:
    from posekit.config.sleap_nn import is_sleap_nn

    return is_sleap_nn(data)


def from_sleap_nn(tree: dict[str, Any], source: str = "sleap-nn config") -> TrainingJobConfig:
    """A `TrainingJobConfig` for a sleap-nn config tree (`posekit.config.sleap_nn`); the
    settings it cannot carry over are in its `unused_settings`, which `train()` names in
    its ignored-settings warning."""
    from posekit.config.sleap_nn import posekit_tree

    data, unused = posekit_tree(tree, source)
    config = _validate(TrainingJobConfig, data, source)
    config._unused_settings = unused
    return config


def _from_sleap_nn(data: dict, path: str | os.PathLike) -> TrainingJobConfig:
    """A sleap-nn config file, mapped onto posekit's."""
    config = from_sleap_nn(data, str(path))
    config.filename = os.path.abspath(path)
    return config


def load_profile(name: str) -> TrainingJobConfig:
    """The `TrainingJobConfig` of SLEAP's training profile `name` (``"baseline.centroid"``)."""
    data = TrainingJobConfig().model_dump(mode="json")
    for dotted, value in profile_fields(name).items():
        *path, leaf = dotted.split(".")
        tree = data
        for key in path:
            tree = tree[key]
        tree[leaf] = value
    return TrainingJobConfig.model_validate(data)


def load_model_config(path: str | os.PathLike) -> ModelConfig:
    """The `ModelConfig` inside any file `load_config` reads (a backbone alone is wrapped)."""
    cfg = load_config(path)
    if isinstance(cfg, TrainingJobConfig):
        return cfg.model
    if isinstance(cfg, BackboneConfig):
        return ModelConfig(backbone=cfg)
    return cfg


def shipped_configs() -> dict[str, Path]:
    """Example configs that come with posekit, by name (file name without extension)."""
    folder = Path(__file__).resolve().parent.parent / "configs"
    if not folder.is_dir():
        return {}
    return {f.stem: f for f in sorted(folder.iterdir()) if f.suffix in _SUFFIXES}


def _locate(path: Path) -> Path:
    if path.is_dir():
        for name in ("training_config.json", "training_config.yaml", "training_config.yml"):
            if (path / name).is_file():
                return path / name
        raise PosekitError(f"{path} is a folder without a training_config.json or .yaml")
    if path.is_file():
        return path
    shipped = shipped_configs()
    stem = path.name.removesuffix(path.suffix) if path.suffix in _SUFFIXES else path.name
    if len(path.parts) == 1 and stem in shipped:
        return shipped[stem]
    names = [*shipped, *profile_names()]
    raise PosekitError(
        f"config file {str(path)!r} does not exist; configs known by name (`posekit configs`): "
        + ", ".join(names)
    )


def _format_of(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise PosekitError(
            f"cannot tell the format of {str(path)!r} from its extension {suffix!r}; "
            f"use .json, .yaml or .yml"
        )
    return _SUFFIXES[suffix]


def _read_tree(path: Path, fmt: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PosekitError(f"config file {str(path)!r} does not exist") from None
    except OSError as err:
        raise PosekitError(f"cannot read config file {str(path)!r}: {err}") from err
    if fmt == "json":
        return _parse_json(text, str(path))
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PosekitError(f"{path} is not valid YAML: {err}") from err


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PosekitError(
            f"{source} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from err


def _validate(cls, data: Any, source: str):
    if not isinstance(data, dict):
        raise PosekitError(
            f"{source} should hold a mapping of config sections, found {type(data).__name__}"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise PosekitError(format_validation_error(err, source)) from err
