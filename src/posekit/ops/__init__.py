"""Tensor operations on network outputs, shared by inference, training and export.

- `peaks`: global (one per channel) and local (3 x 3 maxima) peak finders, and which map
  pixels lie on the frame rather than on the stride padding (`frame_map_size`);
- `refinement`: integral and learned-offset subpixel refinement;
- `coordinates`: SLEAP's map-grid -> image coordinate conventions.

There is one copy of each: the predictors, the training visualisations and the exported
graphs all call these.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "DEFAULT_PEAK_THRESHOLD": ".peaks",
    "find_global_peaks": ".peaks",
    "find_local_peaks": ".peaks",
    "frame_map_size": ".peaks",
    "refine_peaks": ".refinement",
    "to_image_coordinates": ".coordinates",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
