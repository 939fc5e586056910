"""A short training run finds the keypoints of held-out synthetic frames."""

from __future__ import annotations

import numpy as np
import torch
from _training_helpers import tiny_config


def _mean_error(model, frames) -> float:
    from posekit.ops.peaks import find_global_peaks

    x = model.preprocess(frames.images)
    with torch.no_grad():
        maps = model(x)["SingleInstanceConfmapsHead"]
    stride = model.heads[0].output_stride
    points, _ = find_global_peaks(maps, threshold=float("-inf"))  # integral refinement, grid units
    pred = points.numpy() * stride
    return float(np.linalg.norm(pred - frames.points[:, 0], axis=-1).mean())


def test_single_instance_finds_keypoints_on_held_out_frames(single_labels, tmp_path):
    from posekit.data.synthetic import render_synthetic_frames
    from posekit.model.folder import load_model
    from posekit.training import train

    held_out = render_synthetic_frames(
        n_frames=20, n_animals=1, image_size=64, n_parts=4, seed=99, body_length=24
    )
    config = tiny_config(
        "single_instance",
        tmp_path,
        batch_size=8,
        epochs=4,
        batches_per_epoch=100,
        initial_learning_rate=1e-3,
    )
    config["model"]["heads"]["single_instance"]["sigma"] = 2.0
    run = train(config, labels=single_labels, run_name="acc", device="cpu", progress=False)

    untrained = load_model(run / "best_model")
    for p in untrained.parameters():  # same architecture, fresh weights: a baseline
        torch.nn.init.normal_(p, std=0.01)
    baseline = _mean_error(untrained, held_out)
    error = _mean_error(load_model(run / "best_model"), held_out)
    # 64 x 64 frames, animals 24 px long, output stride 4: "a few pixels".
    assert error < 5.0, (error, baseline)
    assert error < baseline / 3
    print(f"held-out mean error {error:.2f} px (untrained {baseline:.2f} px)")
