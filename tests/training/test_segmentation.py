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
    "centered_instance_segmentation": {
        "centered_instance_segmentation": {"segmentation": {"output_stride": 2}}
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
    "semantic_segmentation": (100, 3e-3, "foreground_iou.mean", 0.25),
    # three heads on one small backbone: the foreground map first passes 0.5 after ~80 steps
    "bottomup_segmentation": (100, 3e-3, "mask_iou.median", 0.3),
    # predicted on the labels' instances as crop centres (no centroid model)
    "centered_instance_segmentation": (100, 3e-3, "mask_iou.median", 0.4),
}


@pytest.fixture(scope="module")
def trained(masked_labels, tmp_path_factory):
    """Train each segmentation type once: ``trained(type) -> (run folder, step losses)``."""
    from posekit.training import train

    done = {}

    def get(model_type):
        if model_type not in done:
            steps, lr, _, _ = BUDGET[model_type]
            rec = step_loss_recorder()
            cfg = _config(
                model_type,
                tmp_path_factory.mktemp("runs"),
                epochs=steps // 10,
                batches_per_epoch=10,
                initial_learning_rate=lr,
            )
            run = train(
                cfg,
                labels=masked_labels,
                run_name=model_type,
                device="cpu",
                progress=False,
                callbacks=[rec],
                seed=0,
            )
            done[model_type] = (run, list(rec.losses))
        return done[model_type]

    return get


@pytest.mark.parametrize("model_type", list(SEG_HEADS))
def test_segmentation_trains_predicts_and_scores(model_type, masked_labels, trained):
    import sleap_io as sio

    from posekit.inference.predictors import load_predictor
    from posekit.mask_evaluation import evaluate_masks

    steps, _, key, floor = BUDGET[model_type]
    run, losses = trained(model_type)
    losses = np.asarray(losses)
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
    if model_type == "centered_instance_segmentation":  # one mask per labelled animal
        assert len(masks) == 48
    assert (run / "metrics.val.json").exists()


def test_command_line_masks_predict_evaluate_render(multi_labels, trained, tmp_path, capsys):
    """posekit masks -> (trained model) -> predict (.slp, .analysis.h5) -> evaluate -> render."""
    import json

    import h5py
    import sleap_io as sio

    from posekit.cli import main
    from posekit.data.masks import mask_array
    from posekit.mask_evaluation import evaluate_masks

    masked = tmp_path / "masked.pkg.slp"
    assert main(["masks", multi_labels, "-o", str(masked), "--dilation", "2"]) == 0
    assert "48 masks made from poses" in capsys.readouterr().out
    run, _ = trained("bottomup_segmentation")
    slp, h5 = tmp_path / "pred.slp", tmp_path / "pred.analysis.h5"
    for out in (slp, h5):
        assert main(["predict", str(run), str(masked), "-o", str(out), "--device", "cpu"]) == 0
    assert " masks) in " in capsys.readouterr().out
    pred = sio.load_slp(str(slp))
    lfs = [lf for lf in pred.labeled_frames if any(m.is_predicted for m in lf.masks)]
    assert lfs
    # user masks and instances of the project are kept beside the predicted masks
    assert all(len([m for m in lf.masks if not m.is_predicted]) == 2 for lf in lfs)
    with h5py.File(h5, "r") as f:
        area, names = f["mask_area"][:], [n.decode() for n in f["mask_track_names"][:]]
        cen = f["mask_centroids"][:]
    lf = lfs[0]
    best = max((m for m in lf.masks if m.is_predicted), key=lambda m: m.score)
    # masks join the labelled animals whose points they hold, and their tracks
    assert best.instance is not None and best.track is best.instance.track
    row = names.index(best.track.name)
    assert area[row, lf.frame_idx] == best.area
    ys, xs = np.nonzero(mask_array(best))
    assert cen[row, :, lf.frame_idx] == pytest.approx([xs.mean(), ys.mean()])

    assert main(["evaluate", str(masked), str(slp), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = evaluate_masks(str(masked), str(slp))
    assert report["masks"]["mask_voc.mAP"] == pytest.approx(expected["mask_voc.mAP"])
    assert report["masks"]["n_pred_masks"] == sum(len(x.masks) - 2 for x in lfs)
    assert "oks_voc.mAP" not in report  # a mask model's output has no predicted poses

    # peaks belong to pose maps: a mask model exports its maps only
    onnx = str(tmp_path / "m.onnx")
    assert (
        main(["export", str(run / "best_model"), "--format", "onnx", "--with-peaks", "-o", onnx])
        == 2
    )
    assert "without --with-peaks" in capsys.readouterr().err

    png = tmp_path / "frame.png"
    assert main(["render", str(slp), "-o", str(png), "--frames", str(lf.frame_idx)]) == 0
    assert png.stat().st_size > 0


def test_train_without_config_picks_a_mask_type(masked_labels, multi_labels):
    from posekit.errors import PosekitError
    from posekit.training.model_type import choose_model_type, default_configs

    kind, why = choose_model_type(masked_labels, masks=True)
    assert kind == "bottomup_segmentation" and "2 animals per frame" in why
    assert choose_model_type(masked_labels)[0] != kind  # poses unless masks are asked for
    (cfg,) = default_configs(kind)
    assert cfg.model.heads.bottomup_segmentation.center.sigma == 4.0  # sleap-nn's default
    with pytest.raises(PosekitError, match="posekit masks"):
        choose_model_type(multi_labels, masks=True)


def test_small_separate_animals_get_the_topdown_mask_pair(tmp_path, capsys):
    """Small animals apart from each other: a centroid model, then masks in crops (as for
    poses); trained without a config, the pair folder predicts masks."""
    import sleap_io as sio

    from posekit.cli import main
    from posekit.data.masks import masks_from_poses
    from posekit.data.synthetic import save_synthetic_dataset
    from posekit.training.model_type import choose_model_type

    slp = save_synthetic_dataset(
        tmp_path, n_frames=12, n_animals=2, image_size=128, n_parts=4, seed=3, body_length=14
    )
    labels = sio.load_slp(str(slp))
    masks_from_poses(labels, dilation=2)
    masked = tmp_path / "masked.pkg.slp"
    sio.save_slp(labels, str(masked), embed=True)
    assert choose_model_type(str(slp))[0] == "topdown"
    kind, why = choose_model_type(str(masked), masks=True)
    assert kind == "topdown_segmentation" and "one mask per crop" in why

    runs = tmp_path / "models"
    code = main(
        ["train", "--labels", str(masked), "--masks", "--epochs", "2", "--run-name", "pair",
         "--runs-folder", str(runs), "optimization.batches_per_epoch=4",
         "optimization.val_batches_per_epoch=1"]
    )  # fmt: skip
    assert code == 0
    assert "model type topdown_segmentation" in capsys.readouterr().out
    assert {p.name for p in (runs / "pair").iterdir() if p.is_dir()} == {
        "centroid",
        "centered_instance_segmentation",
    }
    out = tmp_path / "pred.slp"
    assert main(["predict", str(runs / "pair"), str(masked), "-o", str(out)]) == 0
    pred = sio.load_slp(str(out))
    assert sum(len(getattr(lf, "masks", [])) for lf in pred.labeled_frames) > 0
