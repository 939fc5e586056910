"""The model: a backbone with its heads, what it expects as input, and its folder on disk.

- `network`: `Model` (backbone + heads, built as SLEAP builds it), `build`;
- `registry`: the model types (single instance, centroid, ...), what each one needs, and
  `make_heads`;
- `preprocessing`: the input a model expects (scaling, channels, stride padding);
- `summary`: parameter counts, shapes, strides, FLOPs, receptive field;
- `folder`: SLEAP and posekit model folders (load, save, convert);
- `device`: the device a model runs on (``"auto"`` resolved once).

Submodules load lazily, so `import posekit.model` does not import torch.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "Model": ".network",
    "build": ".network",
    "make_heads": ".registry",
    "MODEL_TYPES": ".registry",
    "ModelType": ".registry",
    "model_type": ".registry",
    "load_model": ".folder",
    "resolve_device": ".device",
    "save_model": ".folder",
    "convert": ".folder",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
