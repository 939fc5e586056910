"""Inference: PAF grouping, identity assignment, runtimes and the predictors.

Modules (each importable on its own; torch loads only when one is used):

- `paf_grouping`: bottom-up grouping of peaks into instances with part affinity fields.
- `identity`: class-map and class-vector identity assignment for multi-class models.
- `runtime`: how a model runs (torch, compile, ONNX; fp32, bf16, fp16, int8).
- `predictors`: `load_predictor` and one predictor per model type, producing
  `sleap_io.Labels`.

Peak finders and refinement live in `posekit.ops` (shared with training and export);
`find_global_peaks` / `find_local_peaks` are re-exported here.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "load_predictor": "posekit.inference.predictors.loading",
    "Predictor": "posekit.inference.predictors.base",
    "SingleInstancePredictor": "posekit.inference.predictors.single_instance",
    "TopDownPredictor": "posekit.inference.predictors.topdown",
    "BottomUpPredictor": "posekit.inference.predictors.bottomup",
    "BottomUpMultiClassPredictor": "posekit.inference.predictors.bottomup",
    "TopDownMultiClassPredictor": "posekit.inference.predictors.topdown",
    "find_global_peaks": "posekit.ops.peaks",
    "find_local_peaks": "posekit.ops.peaks",
    "PAFGrouper": "posekit.inference.paf_grouping",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
