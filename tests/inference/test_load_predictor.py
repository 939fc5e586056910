"""`load_predictor` takes its choice of predictor from the model-type registry."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from _inference_fakes import FakeModel

from posekit.errors import PosekitError
from posekit.inference.embeddings import EmbeddingPredictor
from posekit.inference.predictors import (
    BottomUpMultiClassPredictor,
    BottomUpPredictor,
    SingleInstancePredictor,
    TopDownMultiClassPredictor,
    TopDownPredictor,
    load_predictor,
)
from posekit.inference.predictors.base import OneModelPredictor
from posekit.inference.predictors.segmentation import (
    BottomUpSegmentationPredictor,
    SemanticSegmentationPredictor,
    TopDownSegmentationPredictor,
)
from posekit.model.registry import MODEL_TYPES, allowed_combinations, predictor_path

#: What runs each set of model types (SLEAP's combinations).
EXPECTED = {
    frozenset({"single_instance"}): SingleInstancePredictor,
    frozenset({"centroid"}): TopDownPredictor,
    frozenset({"centered_instance"}): TopDownPredictor,
    frozenset({"centroid", "centered_instance"}): TopDownPredictor,
    frozenset({"multi_instance"}): BottomUpPredictor,
    frozenset({"multi_class_bottomup"}): BottomUpMultiClassPredictor,
    frozenset({"multi_class_topdown"}): TopDownMultiClassPredictor,
    frozenset({"centroid", "multi_class_topdown"}): TopDownMultiClassPredictor,
    frozenset({"semantic_segmentation"}): SemanticSegmentationPredictor,
    frozenset({"bottomup_segmentation"}): BottomUpSegmentationPredictor,
    frozenset({"centered_instance_segmentation"}): TopDownSegmentationPredictor,
    frozenset({"centroid", "centered_instance_segmentation"}): TopDownSegmentationPredictor,
    frozenset({"embedding"}): EmbeddingPredictor,
}


def _class_vectors(x):
    return torch.softmax(x.mean(dim=(2, 3))[:, :2], dim=1)


def fake(model_type: str) -> FakeModel:
    """A fake model of `model_type` with the heads its predictor needs."""
    heads = {
        "single_instance": {"SingleInstanceConfmapsHead": (0, 2, 1)},
        "centroid": {"CentroidConfmapsHead": (0, 1, 1)},
        "centered_instance": {"CenteredInstanceConfmapsHead": (0, 2, 1)},
        "multi_instance": {
            "MultiInstanceConfmapsHead": (0, 2, 1),
            "PartAffinityFieldsHead": (0, 2, 1),
        },
        "multi_class_bottomup": {
            "MultiInstanceConfmapsHead": (0, 2, 1),
            "ClassMapsHead": (0, 2, 1),
        },
        "multi_class_topdown": {"CenteredInstanceConfmapsHead": (0, 2, 1)},
        "semantic_segmentation": {"SegmentationHead": (0, 1, 1)},
        "bottomup_segmentation": {
            "SegmentationHead": (0, 1, 1),
            "InstanceCenterHead": (0, 1, 1),
            "CenterOffsetHead": (0, 2, 1),
        },
        "centered_instance_segmentation": {"SegmentationHead": (0, 1, 1)},
        "embedding": {},
    }[model_type]
    extra = {"ClassVectorsHead": _class_vectors} if model_type == "multi_class_topdown" else None
    return FakeModel(
        model_type,
        ["a", "b"],
        heads,
        edges=[(0, 1)],
        classes=["L", "R"] if MODEL_TYPES[model_type].multi_class else None,
        anchor_part="a",
        crop_size=16 if MODEL_TYPES[model_type].crops else None,
        extra=extra,
    )


def test_the_registry_allows_exactly_sleaps_combinations():
    assert set(allowed_combinations()) == set(EXPECTED)


@pytest.mark.parametrize("types", list(EXPECTED), ids=lambda t: "+".join(sorted(t)))
def test_load_predictor_follows_the_registry(types):
    models = {t: fake(t) for t in sorted(types)}
    for order in (list(models.values()), list(models.values())[::-1]):
        pred = load_predictor(order, progress=False, device="cpu")
        assert type(pred) is EXPECTED[types]
        assert f"{type(pred).__module__}:{type(pred).__name__}" == predictor_path(types)
        # Each model sits where its predictor uses it.
        if isinstance(pred, OneModelPredictor | EmbeddingPredictor):
            assert list(models.values()) == [pred.model]
        else:
            assert pred.centroid_model is models.get("centroid")
            crop = [m for t, m in models.items() if MODEL_TYPES[t].crops]
            assert [pred.confmap_model] == (crop or [None])


def test_load_predictor_refuses_other_combinations_with_the_valid_ones():
    refused = 0
    for n in (2, 3):
        for types in itertools.combinations(MODEL_TYPES, n):
            if frozenset(types) in EXPECTED:
                continue
            with pytest.raises(PosekitError, match="cannot combine") as err:
                load_predictor([fake(t) for t in types], device="cpu")
            assert "centroid + centered_instance" in str(err.value)
            refused += 1
    n = len(MODEL_TYPES)  # every pair but the three top-down pairs, every triple
    assert refused == math.comb(n, 2) - 3 + math.comb(n, 3)


class RecordingPredictor(OneModelPredictor):
    """Stands in for whatever predictor the registry names."""


def test_a_new_registry_entry_is_all_load_predictor_needs(monkeypatch):
    entry = MODEL_TYPES["single_instance"]
    path = f"{RecordingPredictor.__module__}:RecordingPredictor"
    monkeypatch.setitem(MODEL_TYPES, "single_instance", dataclasses.replace(entry, predictor=path))
    model = fake("single_instance")
    pred = load_predictor(model, progress=False, device="cpu", batch_size=3)
    assert type(pred) is RecordingPredictor
    assert pred.model is model and pred.batch_size == 3


def test_predictors_refuse_models_the_registry_does_not_give_them():
    with pytest.raises(PosekitError, match="needs a single_instance model; got centroid"):
        SingleInstancePredictor(fake("centroid"), progress=False, device="cpu")
    with pytest.raises(PosekitError, match="second top-down model must be a centered_instance"):
        TopDownPredictor(fake("centered_instance"), fake("centroid"), device="cpu")
    with pytest.raises(PosekitError, match="first top-down model must be a centroid"):
        TopDownPredictor(fake("single_instance"), fake("centered_instance"), device="cpu")
    with pytest.raises(PosekitError, match="needs a multi_class_topdown model"):
        TopDownMultiClassPredictor(fake("centroid"), None, device="cpu")
    with pytest.raises(PosekitError, match="centroid model, a centered_instance model, or both"):
        TopDownPredictor(None, None, device="cpu")
