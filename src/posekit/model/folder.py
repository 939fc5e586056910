"""Model folders: SLEAP's (config + Keras `.h5`) and posekit's (config + safetensors).

`load_model` reads either kind and returns a ready `Model` in eval mode, with its job
config and skeleton attached, so inference needs nothing else. A posekit folder holds

- `training_config.json`: the job config in SLEAP's format (SLEAP can read it too),
- `model.safetensors`: the weights,
- `posekit_model.json`: what the config does not say (input channels, input size,
  part names, edges and classes as built).

Folders are written to a temporary sibling and renamed into place, so an interrupted
save never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from posekit.architectures.pretrained_encoders import skip_imagenet_weights
from posekit.errors import PosekitError
from posekit.io.atomic import atomic_path

WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "posekit_model.json"
CONFIG_FILE = "training_config.json"
FORMAT_VERSION = 1


def _load_job_config(folder: Path):
    from posekit.config.job import TrainingJobConfig

    for name in (CONFIG_FILE, "initial_config.json"):
        path = folder / name
        if path.exists():
            return TrainingJobConfig.load_json(path)
    raise PosekitError(
        f"{folder} has no training_config.json or initial_config.json; a model folder needs "
        f"the config the model was trained with"
    )


def _skeleton(config) -> Any:
    skeletons = config.data.labels.skeletons
    if not skeletons:
        return None
    return skeletons[0].to_sleap_io()


def _sleap_in_channels(config, h5_path: Path) -> int:
    from posekit.io.keras_h5 import read_keras_input_shape

    shape = read_keras_input_shape(h5_path)
    if shape is not None and shape[-1] is not None:
        return int(shape[-1])
    return 3 if config.data.preprocessing.ensure_rgb else 1


def _sleap_input_size(h5_path: Path) -> tuple[int, int] | None:
    from posekit.io.keras_h5 import read_keras_input_shape

    shape = read_keras_input_shape(h5_path)
    if shape is None or shape[0] is None or shape[1] is None:
        return None
    return int(shape[0]), int(shape[1])


def _one_model_folder(path: Path) -> Path:
    """The model folder `path` means; a top-down pair's run folder holds two models."""
    from posekit.model.locate import model_folders

    if path.is_file():
        return path.parent
    found = model_folders(path)
    if len(found) > 1:
        raise PosekitError(
            f"{path} holds {len(found)} models ({', '.join(Path(f).parent.name for f in found)}): "
            "load one of them, or both with posekit.load_predictor(folder)"
        )
    return Path(found[0]) if found else path


def load_model(path: str | os.PathLike, device: str = "cpu"):
    """Load a SLEAP or posekit model folder into a ready `Model` (eval mode).

    `path` may be the folder, its `best_model.h5` / `model.safetensors`, or a training run
    folder (its `best_model/`): whatever `posekit predict` takes (`posekit.model.locate`).
    """
    from posekit.model.network import Model

    folder = _one_model_folder(Path(path))
    if not folder.exists():
        raise PosekitError(f"model folder not found: {folder}")
    from posekit.model import sleap_nn_folder

    if sleap_nn_folder.is_sleap_nn_folder(folder):
        return sleap_nn_folder.load_sleap_nn_folder(folder).to(device).eval()
    config = _load_job_config(folder)
    skeleton = _skeleton(config)

    if (folder / WEIGHTS_FILE).exists():
        from safetensors.torch import load_file

        info_path = folder / INFO_FILE
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        input_size = tuple(info["input_size"]) if info.get("input_size") else None
        with skip_imagenet_weights():  # every weight comes from the file
            model = Model.from_config(
                config.model,
                in_channels=int(info.get("in_channels", 1)),
                part_names=info.get("part_names"),
                edges=[tuple(e) for e in info.get("edges") or []] or None,
                classes=info.get("classes"),
                skeleton=skeleton,
                input_size=input_size,
            )
        try:
            state = load_file(str(folder / WEIGHTS_FILE))
        except Exception as err:  # noqa: BLE001 - safetensors' errors are all "unreadable"
            raise PosekitError(
                f"{folder / WEIGHTS_FILE} cannot be read ({err}); it is truncated or "
                "damaged: copy the model folder again"
            ) from err
        if info.get(sleap_nn_folder.LAYOUT_KEY) == "torch":
            sleap_nn_folder.use_sleap_nn_padding(model)
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise PosekitError(
                f"{folder / WEIGHTS_FILE} does not match the model its config describes: "
                f"missing {result.missing_keys[:10]}, unexpected {result.unexpected_keys[:10]}"
            )
    else:
        h5 = folder / "best_model.h5"
        if not h5.exists():
            candidates = sorted(folder.glob("*.h5"))
            if not candidates:
                raise PosekitError(
                    f"{folder} has neither {WEIGHTS_FILE} (posekit) nor best_model.h5 (SLEAP)"
                )
            h5 = candidates[0]
        from posekit.io.keras_h5 import load_keras_weights

        with skip_imagenet_weights():  # every weight comes from the .h5
            model = Model.from_config(
                config.model,
                in_channels=_sleap_in_channels(config, h5),
                skeleton=skeleton,
                input_size=_sleap_input_size(h5),
            )
        load_keras_weights(model, h5)
    model.config = config
    model.skeleton = skeleton
    model.source_folder = folder
    return model.to(device).eval()


def save_model(model, out_dir: str | os.PathLike, config=None) -> Path:
    """Write `model` as a posekit model folder (atomically)."""
    from safetensors.torch import save_file

    from posekit.model import sleap_nn_folder

    config = config if config is not None else model.config
    if config is None:
        raise PosekitError("save_model needs the job config the model was built from")

    def write(tmp: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        config.save_json(tmp / CONFIG_FILE)
        info = {
            "format_version": FORMAT_VERSION,
            "model_type": model.model_type,
            "in_channels": model.in_channels,
            "input_size": list(model.input_size) if model.input_size else None,
            "part_names": model.part_names,
            "edges": [list(map(str, e)) for e in _edge_names(model)],
            "classes": model.classes,
        }
        if sleap_nn_folder.uses_sleap_nn_padding(model):
            info[sleap_nn_folder.LAYOUT_KEY] = "torch"
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))

    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        write(tmp)
    return out_dir


def _edge_names(model) -> list[tuple[str, str]]:
    names = model.part_names
    return [(names[a], names[b]) for a, b in model.edges]


def convert(sleap_model_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a trained SLEAP model folder into a posekit model folder."""
    model = load_model(sleap_model_dir)
    return save_model(model, out_dir)
