"""`load_predictor`: model folders in, the predictor that runs them together out.

The choice is the model-type registry's (`posekit.model.registry.predictor_path`): it
knows which types run together and names the predictor class by import path, so a new
model type needs a registry entry and a predictor class, not a new branch here.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from posekit.errors import PosekitError
from posekit.inference.predictors.base import Predictor
from posekit.inference.predictors.bottomup import GROUPING_OPTIONS, BottomUpPredictor
from posekit.model.device import resolve_device
from posekit.model.folder import load_model
from posekit.model.locate import model_folders
from posekit.model.registry import predictor_path
from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD


def _predictor_class(path: str) -> type[Predictor]:
    """The class a registry import path (``"package.module:Class"``) names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _is_path(p) -> bool:
    return isinstance(p, str | os.PathLike)


def load_predictor(
    model_paths,
    peak_threshold: float = DEFAULT_PEAK_THRESHOLD,
    integral_refinement: bool = True,
    max_instances: int | None = None,
    min_line_scores: float = 0.25,
    batch_size: int | None = None,
    device: str = "auto",
    sleap_compatible: bool = False,
    **kwargs,
) -> Predictor:
    """Load one or two model folders and return the matching predictor.

    ``model_paths``: a folder (SLEAP or posekit; a training run folder, or a top-down
    pair's run folder, as `posekit predict` takes them), a list of them, or already loaded
    models. Combinations: single_instance; centroid and/or centered_instance (top-down);
    multi_instance (bottom-up); multi_class_bottomup; multi_class_topdown with an optional
    centroid model (`posekit.model.registry.allowed_combinations`). Extra keyword
    arguments go to the predictor (e.g. ``precision``, ``progress``, ``max_memory``,
    ``integral_patch_size``; bottom-up: ``max_edge_length_ratio``, ``dist_penalty_weight``,
    ``paf_line_points``, ``min_instance_peaks``).

    ``sleap_compatible=True`` reproduces SLEAP 1.4.1's predicted points wherever posekit
    deliberately differs (the top-down crop offsets; peaks also looked for on the stride
    padding; README "Parity with SLEAP"); ``sleap_crop_offsets`` is its former name, still
    accepted. Every predictor takes it; for segmentation models (which SLEAP 1.4.1 lacks)
    it decodes masks as sleap-nn 0.3.5 does (`posekit.inference.predictors.segmentation`).
    """
    if isinstance(model_paths, str | os.PathLike) or hasattr(model_paths, "model_type"):
        model_paths = [model_paths]
    # Each folder as `posekit predict` reads it: a run folder means its best model, a
    # top-down pair's run folder both of its models.
    model_paths = [
        m for p in model_paths for m in ((model_folders(p) or [p]) if _is_path(p) else [p])
    ]
    if not model_paths:
        raise PosekitError("load_predictor needs at least one model folder")
    dev = resolve_device(device)
    models = []
    for p in model_paths:
        models.append(p if hasattr(p, "model_type") else load_model(p, device=dev))
    by_type: dict[str, Any] = {}
    for m in models:
        if m.model_type in by_type:
            raise PosekitError(
                f"two {m.model_type} models given; pass one model of each type "
                f"(got types {[x.model_type for x in models]})"
            )
        by_type[m.model_type] = m
    cls = _predictor_class(predictor_path(by_type))
    options = dict(
        peak_threshold=peak_threshold,
        integral_refinement=integral_refinement,
        max_instances=max_instances,
        batch_size=batch_size,
        device=dev,
        sleap_compatible=sleap_compatible,
        **kwargs,
    )
    if issubclass(cls, BottomUpPredictor):
        options["min_line_scores"] = min_line_scores
    else:
        stray = GROUPING_OPTIONS & set(kwargs)
        if stray:
            raise PosekitError(f"{sorted(stray)} only apply to bottom-up (multi_instance) models")
    return cls.from_models(by_type, **options)
