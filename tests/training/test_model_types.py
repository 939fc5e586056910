"""Every model type trains: its loss falls, and the run ends in a loadable model folder."""

from __future__ import annotations

import numpy as np
import pytest
from _training_helpers import step_loss_recorder, tiny_config

CASES = [
    ("single_instance", "single"),
    ("centroid", "multi"),
    ("centered_instance", "multi"),
    ("multi_instance", "multi"),
    ("multi_class_bottomup", "multi"),
    ("multi_class_topdown", "multi"),
]


@pytest.mark.parametrize("model_type,data", CASES)
def test_loss_falls_and_model_loads(model_type, data, single_labels, multi_labels, tmp_path):
    from posekit.data.instance_cropping import find_instance_crop_size
    from posekit.data.labels import load_labels
    from posekit.model.folder import load_model
    from posekit.training import train

    labels = single_labels if data == "single" else multi_labels
    rec = step_loss_recorder()
    run = train(
        tiny_config(model_type, tmp_path, epochs=2, batches_per_epoch=8),
        labels=labels,
        run_name=model_type,
        device="cpu",
        progress=False,
        callbacks=[rec],
        seed=0,
    )
    losses = np.asarray(rec.losses)
    assert len(losses) == 16
    assert np.isfinite(losses).all()
    assert losses[-4:].mean() < 0.85 * losses[:4].mean(), losses

    model = load_model(run / "best_model")
    assert model.model_type == model_type
    assert model.part_names == ["head", "tail", "left", "right"] or model_type == "centroid"
    if model_type in ("multi_class_bottomup", "multi_class_topdown"):
        assert model.classes == ["animal0", "animal1"]
    if model_type in ("centered_instance", "multi_class_topdown"):
        # The automatic crop size is measured on the training split and stored.
        pose = load_labels(labels)
        largest = find_instance_crop_size(pose.all_points(), padding=16, maximum_stride=16)
        assert model.crop_size is not None and model.crop_size % 16 == 0
        assert 32 <= model.crop_size <= largest
    else:
        assert model.crop_size is None


@pytest.mark.skipif(
    not __import__("posekit.optimize").optimize.cpu_runs_bf16(),
    reason=__import__("posekit.optimize").optimize.bf16_support().reason,
)
def test_bf16_mixed_training_on_cpu_learns_and_saves_float32_weights(single_labels, tmp_path):
    """`--precision bf16-mixed` (what --auto picks on AMX CPUs) trains channels-last."""
    import torch

    from posekit.model.folder import load_model
    from posekit.training import train

    rec = step_loss_recorder()
    run = train(
        tiny_config("single_instance", tmp_path, epochs=2, batches_per_epoch=8),
        labels=single_labels,
        run_name="bf16",
        device="cpu",
        precision="bf16-mixed",
        progress=False,
        callbacks=[rec],
        seed=0,
    )
    losses = np.asarray(rec.losses)
    assert len(losses) == 16 and np.isfinite(losses).all()
    assert losses[-4:].mean() < 0.85 * losses[:4].mean(), losses
    model = load_model(run / "best_model")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(p.is_contiguous() for p in model.parameters())
