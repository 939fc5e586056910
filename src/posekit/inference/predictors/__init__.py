"""Predictors: trained models + peak finding + grouping -> `sleap_io.Labels`.

One class per SLEAP inference approach, with SLEAP 1.4.1's behaviour and defaults:
`SingleInstancePredictor` (`single_instance`), `TopDownPredictor` and
`TopDownMultiClassPredictor` (`topdown`: centroid, crop, centered instance),
`BottomUpPredictor` and `BottomUpMultiClassPredictor` (`bottomup`: PAF or class-map
grouping). `load_predictor` (`loading`) picks the class through the model-type registry.
`predict(source)` accepts a video path, an ``.slp`` path, a `sleap_io.Video`, a
`sleap_io.Labels` (its labeled frames are predicted) or in-memory frames (a (N, H, W, C)
uint8 numpy array); `base` holds the shared loop and `pipeline` the background decoding
and batching it reads from. ``sleap_compatible=True`` (any predictor) reproduces SLEAP
1.4.1's points where posekit deliberately differs (`topdown`).

SLEAP's coordinate conventions are kept for parity (`posekit.ops.coordinates`): map pixel
``i`` is input pixel ``i * stride``; with input scaling the point is divided by the scale
and 0.5 is added. The top-down crop conventions are in `topdown`'s docstring.

Names load lazily, so `import posekit.inference.predictors` does not import torch.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "load_predictor": ".loading",
    "Predictor": ".base",
    "RawInstance": ".base",
    "SingleInstancePredictor": ".single_instance",
    "TopDownPredictor": ".topdown",
    "TopDownMultiClassPredictor": ".topdown",
    "BottomUpPredictor": ".bottomup",
    "BottomUpMultiClassPredictor": ".bottomup",
    "crop_centered": ".topdown",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
