"""Load Keras (SLEAP/TensorFlow) `.h5` weights into posekit modules, without TensorFlow.

posekit names its layers after SLEAP's Keras layers, so importing is a lookup by name:
every module whose last name component equals a Keras layer name receives that layer's
weights. Layouts differ and are converted here:

- Conv2D kernel (kh, kw, in, out) -> (out, in, kh, kw)
- Conv2DTranspose kernel (kh, kw, out, in) -> (in, out, kh, kw)
- DepthwiseConv2D depthwise_kernel (kh, kw, in, mult) -> (in * mult, 1, kh, kw)
- Dense kernel (in, out) -> (out, in)
- BatchNormalization gamma/beta/moving_mean/moving_variance -> weight/bias/running stats

Both Keras files SLEAP writes are read: `save_weights` files (layer groups at the root)
and full-model files (`best_model.h5`, layer groups under `model_weights`). A nested
model's group (SLEAP's pretrained-encoder backbones) is split into its inner layers, and a
BatchNormalization without `gamma` (`scale=False`) fills a torch BatchNorm without weight. Head layers
may be named with or without a `_0` suffix (older SLEAP versions added one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posekit.errors import PosekitError

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Linear)


def _decode(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def open_keras_h5(path: str | Path):
    """`h5py.File` of a Keras `.h5`, read-only; a missing, empty, truncated or non-HDF5
    file is a `PosekitError` naming it (h5py's own error says only "truncated file")."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise PosekitError(f"Keras weights file not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise PosekitError(
            f"{path} is empty (0 bytes): the model was not copied completely; copy the "
            "model folder again"
        )
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise PosekitError(
            f"{path} is not a readable HDF5 file ({err}); it may be truncated or corrupt: "
            f"copy the model's best_model.h5 again"
        ) from err


def read_keras_weights(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read `{layer name: {weight name: array}}` from a Keras `.h5` file.

    Weight names are the short Keras names (`kernel`, `bias`, `gamma`, `beta`,
    `moving_mean`, `moving_variance`, ...). Layers without weights are left out.
    """
    with open_keras_h5(path) as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise PosekitError(
                f"{path} is an HDF5 file but not a Keras weights file (no 'layer_names'); "
                f"expected a SLEAP best_model.h5 or a Keras save_weights file"
            )
        layers: dict[str, dict[str, np.ndarray]] = {}
        for raw_name in group.attrs["layer_names"]:
            name = _decode(raw_name)
            layer_group = group[name]
            # {inner layer: {weight: array}}; one entry unless the layer is a nested model.
            inner: dict[str, dict[str, np.ndarray]] = {}
            for raw_wname in layer_group.attrs.get("weight_names", []):
                wname = _decode(raw_wname)
                try:
                    arr = np.asarray(layer_group[wname])
                except (KeyError, OSError) as err:
                    raise PosekitError(
                        f"{path}: weight {wname!r} of layer {name!r} is listed but cannot be "
                        f"read ({err}); the file is corrupt"
                    ) from err
                parts = wname.split("/")
                owner = parts[-2] if len(parts) > 1 else name
                inner.setdefault(owner, {})[parts[-1].split(":")[0]] = arr
            if len(inner) == 1:
                layers[name] = next(iter(inner.values()))
            else:
                # A nested Keras model (SLEAP wraps segmentation_models' UNet in one, e.g.
                # "model_1"): its weights are named "<inner layer>/<weight>", and posekit
                # names its modules after those inner layers.
                for owner, weights in inner.items():
                    if owner in layers:
                        raise PosekitError(
                            f"{path}: layer {owner!r} appears twice (inside {name!r}); the "
                            f"file cannot be mapped by layer name"
                        )
                    layers[owner] = weights
    return layers


def read_keras_input_shape(path: str | Path) -> tuple | None:
    """Input shape (H, W, C) stored in a full-model `.h5` (None for weights-only files)."""
    with open_keras_h5(path) as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        return None
    cfg = json.loads(_decode(raw))
    for layer in cfg.get("config", {}).get("layers", []):
        if layer.get("class_name") == "InputLayer":
            shape = layer["config"].get("batch_input_shape") or layer["config"].get("batch_shape")
            return tuple(shape[1:])
    return None


def _weighted_modules(module: nn.Module) -> dict[str, nn.Module]:
    """Map Keras-style layer names (last name component) to weighted torch layers."""
    found: dict[str, nn.Module] = {}
    for full_name, sub in module.named_modules():
        if not isinstance(sub, _WEIGHTED):
            continue
        leaf = full_name.rsplit(".", 1)[-1]
        if leaf in found:
            raise PosekitError(
                f"two layers are named {leaf!r}; Keras layer names must be unique to import"
            )
        found[leaf] = sub
    return found


def _match_name(keras_name: str, torch_names: dict[str, nn.Module]) -> str | None:
    if keras_name in torch_names:
        return keras_name
    if keras_name.endswith("_0") and keras_name[:-2] in torch_names:
        return keras_name[:-2]
    if f"{keras_name}_0" in torch_names:
        return f"{keras_name}_0"
    return None


def _convert(layer: nn.Module, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras arrays -> `{torch attribute: array}` in torch layout."""
    out = {}
    if isinstance(layer, nn.BatchNorm2d):
        mapping = {
            "gamma": "weight",
            "beta": "bias",
            "moving_mean": "running_mean",
            "moving_variance": "running_var",
        }
        for k, v in weights.items():
            if k not in mapping:
                raise PosekitError(f"unexpected BatchNormalization weight {k!r}")
            out[mapping[k]] = v
        return out
    for k, v in weights.items():
        if k == "depthwise_kernel":
            # DepthwiseConv2D (kh, kw, in, multiplier) -> grouped conv (in * multiplier, 1, kh, kw):
            # Keras' output channel i * multiplier + m is torch's channel of group i.
            kh, kw, cin, mult = v.shape
            out["weight"] = v.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
        elif k == "kernel":
            # Conv2D (kh, kw, in, out) and Conv2DTranspose (kh, kw, out, in) both become
            # torch's layout with the same axis order: (out, in, kh, kw) / (in, out, kh, kw).
            out["weight"] = v.T if isinstance(layer, nn.Linear) else v.transpose(3, 2, 0, 1)
        elif k == "bias":
            out["bias"] = v
        else:
            raise PosekitError(f"unexpected Keras weight {k!r} for a {type(layer).__name__}")
    return out


def load_keras_weights(module: nn.Module, path: str | Path, strict: bool = True) -> list[str]:
    """Copy the weights of a Keras `.h5` file into `module` by layer name.

    With `strict` (default), every Keras weight must land in a torch layer and every torch
    parameter and BatchNorm statistic must be filled; otherwise one error lists what is
    missing and what is left over. Returns the names of the layers loaded.
    """
    keras = read_keras_weights(path)
    torch_layers = _weighted_modules(module)
    filled: set[str] = set()
    leftover: list[str] = []
    problems: list[str] = []
    loaded: list[str] = []
    for kname, weights in keras.items():
        tname = _match_name(kname, torch_layers)
        if tname is None:
            leftover.append(kname)
            continue
        layer = torch_layers[tname]
        for attr, arr in _convert(layer, weights).items():
            target = getattr(layer, attr, None)
            if target is None:
                problems.append(f"{kname}: torch layer has no {attr}")
                continue
            if tuple(target.shape) != arr.shape:
                problems.append(
                    f"{kname}.{attr}: Keras shape {arr.shape} (converted) != torch "
                    f"{tuple(target.shape)}"
                )
                continue
            with torch.no_grad():
                target.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(target.dtype))
        filled.add(tname)
        loaded.append(kname)
    missing = sorted(set(torch_layers) - filled)
    if problems:
        raise PosekitError(
            f"{path}: the Keras weights do not fit the model:\n  " + "\n  ".join(problems)
        )
    if strict and (missing or leftover):
        msg = [f"{path}: the Keras weights and the model do not match."]
        if missing:
            msg.append(f"torch layers with no Keras weights ({len(missing)}): {', '.join(missing)}")
        if leftover:
            msg.append(f"Keras layers with no torch layer ({len(leftover)}): {', '.join(leftover)}")
        msg.append("Check that the config used to build the model is the one it was trained with.")
        raise PosekitError("\n".join(msg))
    return loaded
