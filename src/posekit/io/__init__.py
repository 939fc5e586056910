"""Reading other tools' files: SLEAP/Keras `.h5` weights into posekit modules.

`load_keras_weights(module, h5_path)` copies a Keras weights file (a SLEAP `best_model.h5`
or a Keras `save_weights` file, nested models included) into a module whose layers carry
the Keras layer names. Names load lazily, so `import posekit.io` does not import torch
or h5py.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "load_keras_weights": "posekit.io.keras_h5",
    "read_keras_weights": "posekit.io.keras_h5",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
