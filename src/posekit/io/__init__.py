"""File-format helpers that every other part may use: atomic writes and Keras `.h5` weights.

- `atomic`: write a file (or folder) so that readers see the old or the new version,
  never half of one, keeping the user's permissions;
- `keras_h5`: `load_keras_weights(module, h5_path)` copies a Keras weights file (a SLEAP
  `best_model.h5` or a Keras `save_weights` file, nested models included) into a module
  whose layers carry the Keras layer names.

Names load lazily, so `import posekit.io` imports neither torch nor h5py. Model folders
live in `posekit.model.folder`, exports in `posekit.export`.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "load_keras_weights": ".keras_h5",
    "read_keras_weights": ".keras_h5",
    "atomic_path": ".atomic",
    "write_text_atomic": ".atomic",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
