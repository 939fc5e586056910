"""ImageNet weights for SLEAP's ResNet backbones: find the file, download it, load it.

SLEAP's pretrained ResNets use the Keras applications "notop" weights
(`resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`, ...), and posekit names its
ResNet layers after the Keras layers, so the very same files load by name with
`posekit.io.keras_h5.load_keras_weights`. Using the Keras files (rather than
torchvision's ResNet weights) keeps posekit's pretrained models identical to SLEAP's:
torchvision's ResNet is "v1.5" (stride on the 3x3 conv) with different normalisation.

Where the file is looked for, in order:

1. an explicit `path` (the file itself, or a folder holding it);
2. `$POSEKIT_WEIGHTS_DIR/<file>`;
3. the posekit cache, `~/.cache/posekit/weights/<file>` (`$XDG_CACHE_HOME` honoured);
4. Keras' own cache, `~/.keras/models/<file>` (present wherever SLEAP already ran);
5. otherwise it is downloaded into the posekit cache with `torch.hub.download_url_to_file`
   and its MD5 checked. Without network this fails with one `PosekitError` naming the
   file, the URL and where to put a copy.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

KERAS_RESNET_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
"""Where Keras applications (and SLEAP) download ResNet weights from."""

KERAS_RESNET_MD5 = {
    "resnet50": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101": "88cf7a10940856eca736dc7b7e228a21",
    "resnet152": "ee4c566cf9a93f14d82f913c2dc6dd0c",
}
"""MD5 of each "notop" file, as published with Keras applications."""

WEIGHTS_DIR_ENV = "POSEKIT_WEIGHTS_DIR"


def resnet_weights_filename(model_name: str) -> str:
    """Keras applications file name of a ResNet's ImageNet weights without the classifier."""
    return f"{model_name}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def default_cache_dir() -> Path:
    """`~/.cache/posekit/weights` (or under `$XDG_CACHE_HOME`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "posekit" / "weights"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def candidate_paths(
    filename: str, path: str | Path | None = None, cache_dir: str | Path | None = None
) -> list[Path]:
    """Every place `resolve_weights_file` looks, in order."""
    out: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        out.append(p / filename if p.is_dir() else p)
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        out.append(Path(env).expanduser() / filename)
    out.append(
        Path(cache_dir).expanduser() / filename if cache_dir else default_cache_dir() / filename
    )
    out.append(Path.home() / ".keras" / "models" / filename)
    return out


def resolve_weights_file(
    filename: str,
    url: str,
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    md5: str | None = None,
    download: bool = True,
) -> Path:
    """Local path of a weights file: found (see module doc) or downloaded.

    An explicit `path` that does not exist is an error (the user asked for that file).
    A download goes to a temporary name and is renamed only after the MD5 check, so an
    interrupted download never leaves a broken file in the cache.
    """
    if path is not None:
        p = Path(path).expanduser()
        target = p / filename if p.is_dir() else p
        if not target.is_file():
            raise PosekitError(
                f"weights file {target} does not exist; pass the path of {filename} (or the "
                f"folder holding it), or leave the path unset to use {WEIGHTS_DIR_ENV}, the "
                f"cache {default_cache_dir()} or a download from {url}"
            )
        return target
    for candidate in candidate_paths(filename, None, cache_dir):
        if candidate.is_file():
            return candidate

    dest_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    dest = dest_dir / filename
    where = (
        f"download it from {url} and put it at {dest}, or in a folder named by "
        f"${WEIGHTS_DIR_ENV}, or pass its path (weights_path=...)"
    )
    if not download:
        raise PosekitError(f"ImageNet weights {filename} are not available locally; {where}")
    import torch.hub

    from posekit.io.atomic import atomic_path

    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            try:
                torch.hub.download_url_to_file(url, str(tmp), progress=False)
            except Exception as err:  # network, DNS, proxy, permission: all end the same
                raise PosekitError(
                    f"could not download ImageNet weights {filename} from {url} "
                    f"({type(err).__name__}: {err}); without network, {where}"
                ) from err
            if md5 is not None and (got := _md5(tmp)) != md5:
                raise PosekitError(
                    f"downloaded {filename} from {url} but its MD5 is {got}, expected {md5}; "
                    f"the download was corrupted: try again, or {where}"
                )
    except OSError as err:
        raise PosekitError(f"could not write ImageNet weights to {dest} ({err}); {where}") from err
    return dest


def resnet_imagenet_weights(
    model_name: str, path: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Local path of the Keras ImageNet "notop" weights for `resnet50|101|152`."""
    if model_name not in KERAS_RESNET_MD5:
        raise PosekitError(
            f"no ImageNet weights for {model_name!r}; available: {', '.join(KERAS_RESNET_MD5)}"
        )
    filename = resnet_weights_filename(model_name)
    return resolve_weights_file(
        filename,
        KERAS_RESNET_BASE_URL + filename,
        path=path,
        cache_dir=cache_dir,
        md5=KERAS_RESNET_MD5[model_name],
    )


def load_resnet_imagenet_weights(
    model: nn.Module, path: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Load the Keras ImageNet weights into a `ResNetv1`'s encoder; returns the file used.

    Loading is strict: every encoder layer must receive weights and every layer of the
    file must land somewhere, so a wrong file fails loudly instead of half-loading.
    """
    from posekit.io.keras_h5 import load_keras_weights

    h5 = resnet_imagenet_weights(model.model_name, path=path, cache_dir=cache_dir)
    load_keras_weights(model.encoder, h5, strict=True)
    return h5


__all__ = [
    "KERAS_RESNET_BASE_URL",
    "KERAS_RESNET_MD5",
    "WEIGHTS_DIR_ENV",
    "candidate_paths",
    "default_cache_dir",
    "load_resnet_imagenet_weights",
    "resnet_imagenet_weights",
    "resnet_weights_filename",
    "resolve_weights_file",
]
