"""Segmentation model types train on masks made from poses, predict masks and score them."""

from __future__ import annotations

import numpy as np
import pytest
from _training_helpers import step_loss_recorder, tiny_config

SEG_HEADS = {
    "semantic_segmentation": {"semantic_segmentation": {"segmentation": {"output_stride": 2}}},
    "bottomup_segmentation": {
        "bottomup_segmentation": {
            "segmentation": {"output_stride": 2},
            # a wide centre Gaussian and small offset weight learn in a few dozen steps
            "center": {"output_stride": 4, "sigma": 3.0},
            "offsets": {"output_stride": 2, "loss_weight": 0.01},
        }
    },
}


@pytest.fixture(scope="module")
def masked_labels(multi_labels, tmp_path_factory) -> str:
    """The two-animal synthetic labels with masks made from their poses (dilation 2)."""
    import sleap_io as sio

    from posekit.data.masks import masks_from_poses

    labels = sio.load_slp(multi_labels)
    assert masks_from_poses(labels, dilation=2) == 48
    out = tmp_path_factory.mktemp("masked") / "masked.pkg.slp"
    sio.save_slp(labels, str(out), embed=True)
    return str(out)


def _config(model_type, tmp_path, **opt):
    cfg = tiny_config("multi_instance", tmp_path, **opt)
    cfg["model"]["heads"] = SEG_HEADS[model_type]
    cfg["model"]["backbone"]["unet"]["output_stride"] = 2
    return cfg


#: (steps, learning rate, what the predictions must reach on the training frames)
BUDGET = {
    "semantic_segmentation": (60, 1e-2, "foreground_iou.mean", 0.25),
    # three heads on one small backbone: the foreground map first passes 0.5 after ~80 steps
    "bottomup_segmentation": (100, 3e-3, "mask_iou.median", 0.3),
}


@pytest.mark.parametrize("model_type", list(SEG_HEADS))
def test_segmentation_trains_predicts_and_scores(model_type, masked_labels, tmp_path):
    import sleap_io as sio

    from posekit.inference.predictors import load_predictor
    from posekit.mask_evaluation import evaluate_masks
    from posekit.training import train

    steps, lr, key, floor = BUDGET[model_type]
    rec = step_loss_recorder()
    run = train(
        _config(
            model_type, tmp_path, epochs=steps // 10, batches_per_epoch=10, initial_learning_rate=lr
        ),
        labels=masked_labels,
        run_name=model_type,
        device="cpu",
        progress=False,
        callbacks=[rec],
        seed=0,
    )
    losses = np.asarray(rec.losses)
    assert len(losses) == steps and np.isfinite(losses).all()
    assert losses[-4:].mean() < 0.8 * losses[:4].mean(), losses

    predictor = load_predictor(str(run / "best_model"), device="cpu", progress=False)
    gt = sio.load_slp(masked_labels)
    pred = predictor.predict(gt)
    masks = [m for lf in pred.labeled_frames for m in lf.masks if m.is_predicted]
    assert masks and all(m.height == 64 and m.width == 64 for m in masks)
    metrics = evaluate_masks(gt, pred)
    # chance (every pixel foreground) is a foreground IoU of 0.09 here
    assert metrics[key] > floor, metrics
    if model_type == "bottomup_segmentation":  # one mask per animal, linked to nothing
        assert max(len(lf.masks) for lf in pred.labeled_frames) == 2
        assert all(m.instance is None for m in masks)
    assert (run / "metrics.val.json").exists()
