"""Inference: peak finding, refinement, PAF grouping, identity assignment, predictors.

Modules (each importable on its own; torch loads only when one is used):

- `peaks`: global and local peak finders on (N, C, H, W) confidence maps.
- `refinement`: integral / learned-offset / local subpixel refinement and SLEAP's
  grid -> image coordinate conventions.
- `paf_grouping`: bottom-up grouping of peaks into instances with part affinity fields.
- `identity`: class-map and class-vector identity assignment for multi-class models.
- `predictors`: `load_predictor` and one predictor per model type, producing
  `sleap_io.Labels`.
- `cli`: `posekit predict`.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "load_predictor": "posekit.inference.predictors",
    "Predictor": "posekit.inference.predictors",
    "SingleInstancePredictor": "posekit.inference.predictors",
    "TopDownPredictor": "posekit.inference.predictors",
    "BottomUpPredictor": "posekit.inference.predictors",
    "BottomUpMultiClassPredictor": "posekit.inference.predictors",
    "TopDownMultiClassPredictor": "posekit.inference.predictors",
    "find_global_peaks": "posekit.ops.peaks",
    "find_local_peaks": "posekit.ops.peaks",
    "PAFGrouper": "posekit.inference.paf_grouping",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
