"""File-format helpers that every other part may use: atomic writes and Keras `.h5` weights.

- `atomic`: write a file (or folder) so that readers see the old or the new version,
  never half of one, keeping the user's permissions;
- `keras_h5`: read SLEAP/Keras `.h5` weights into a torch module by layer name.

Model folders live in `posekit.model.folder`, exports in `posekit.export`.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "load_keras_weights": ".keras_h5",
    "atomic_path": ".atomic",
    "write_text_atomic": ".atomic",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
