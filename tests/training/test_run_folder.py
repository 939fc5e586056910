"""The run folder a training run writes, NaN handling, and clear errors for bad labels."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from _training_helpers import tiny_config

from posekit.errors import PosekitError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_contents(multi_labels, tmp_path):
    from posekit.config.job import TrainingJobConfig
    from posekit.model.folder import load_model
    from posekit.training import train

    config = tiny_config("centered_instance", tmp_path, epochs=3, batches_per_epoch=2)
    config["outputs"].update(save_visualizations=True, checkpointing={"every_epoch": True})
    run = train(config, labels=multi_labels, run_name="run", device="cpu", progress=False)

    assert run == (tmp_path / "run").resolve()
    names = {p.name for p in run.iterdir()}
    assert {
        "training_config.json",
        "initial_config.json",
        "config.yaml",
        "posekit_run.json",
        "metrics.csv",
        "training_curve.png",
        "best_model",
        "latest_model",
        "checkpoints",
        "viz",
        "model.epoch0000",
        "model.epoch0002",
        "metrics.val.json",  # the validation split, predicted and scored after training
    } <= names
    assert not [n for n in names if n.startswith(".")]  # no temporaries left

    # configs: the trained one is completed from the labels, the initial one is not
    trained = TrainingJobConfig.load_json(run / "training_config.json")
    initial = TrainingJobConfig.load_json(run / "initial_config.json")
    heads = trained.model.heads.centered_instance
    assert heads.part_names == ["head", "tail", "left", "right"]
    assert initial.model.heads.centered_instance.part_names is None
    assert trained.data.labels.skeletons[0].node_names == heads.part_names
    assert trained.data.preprocessing.pad_to_stride == 16
    assert trained.data.instance_cropping.crop_size % 16 == 0
    assert trained.data.labels.training_labels == str(multi_labels)
    yaml_cfg = TrainingJobConfig.load_yaml(run / "config.yaml")
    assert yaml_cfg.model == trained.model

    # metrics: one row per epoch, losses and learning rate
    rows = _rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for r in rows:
        assert math.isfinite(float(r["train_loss"])) and math.isfinite(float(r["val_loss"]))
        assert float(r["lr"]) == pytest.approx(3e-3)
        head = float(r["val/CenteredInstanceConfmapsHead"])
        assert head == pytest.approx(float(r["val_loss"]), rel=1e-6)  # one head, weight 1

    # pictures are PNG files; only the last epoch's visualisation is kept
    assert (run / "training_curve.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (run / "viz").iterdir()) == [
        "validation.epoch0002.png",
        "worst_val.png",
    ]

    # model folders load; latest == the resume checkpoint's weights; best == lowest val loss
    latest = load_model(run / "latest_model")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2
    for name, value in latest.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][f"model.{name}"])
    best_epoch = int(np.argmin([float(r["val_loss"]) for r in rows]))
    best = load_model(run / "best_model").state_dict()
    at_best = load_model(run / f"model.epoch{best_epoch:04d}").state_dict()
    assert all(torch.equal(best[k], at_best[k]) for k in best)
    assert latest.crop_size == trained.data.instance_cropping.crop_size


def test_second_run_with_the_same_name_gets_a_suffix(single_labels, tmp_path):
    from posekit.training import train

    config = tiny_config("single_instance", tmp_path, epochs=1, batches_per_epoch=1)
    a = train(config, labels=single_labels, run_name="same", device="cpu", progress=False)
    b = train(config, labels=single_labels, run_name="same", device="cpu", progress=False)
    assert (a.name, b.name) == ("same", "same_1")


def test_nan_loss_stops_with_one_message_and_keeps_the_last_good_checkpoint(
    single_labels, tmp_path
):
    import lightning as L

    from posekit.model.folder import load_model
    from posekit.training import NonFiniteLossError, train

    class InjectNaN(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                batch["image"][:] = float("nan")

    config = tiny_config("single_instance", tmp_path, epochs=3, batches_per_epoch=3)
    with pytest.raises(NonFiniteLossError) as err:
        train(
            config,
            labels=single_labels,
            run_name="nan",
            device="cpu",
            progress=False,
            callbacks=[InjectNaN()],
        )
    message = str(err.value)
    assert "nan" in message and "epoch 1" in message and "latest_model" in message
    assert isinstance(err.value, PosekitError)  # the CLI prints it as one line

    run = tmp_path / "nan"
    assert [int(r["epoch"]) for r in _rows(run / "metrics.csv")] == [0]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 0
    model = load_model(run / "latest_model")
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all()
        assert torch.equal(value, ckpt["state_dict"][f"model.{name}"])


# --------------------------------------------------------------------------- bad labels


def _labels_with(tmp_path, predicted_only=False, extra_frame=None):
    import sleap_io as sio

    from posekit.data.synthetic import make_synthetic_labels

    labels = make_synthetic_labels(
        n_frames=6, n_animals=1, image_size=32, n_parts=4, video_path=tmp_path / "frames.h5"
    )
    if predicted_only:
        for lf in labels.labeled_frames:
            lf.instances = [
                sio.PredictedInstance.from_numpy(
                    inst.numpy(), skeleton=inst.skeleton, point_scores=np.ones(4), score=1.0
                )
                for inst in lf.instances
            ]
    if extra_frame is not None:
        inst = labels.labeled_frames[0].instances[0]
        copy = sio.Instance.from_numpy(inst.numpy(), skeleton=inst.skeleton)
        labels.labeled_frames.append(
            sio.LabeledFrame(video=labels.videos[0], frame_idx=extra_frame, instances=[copy])
        )
    path = tmp_path / "labels.slp"
    sio.save_slp(labels, str(path), embed=False)
    return str(path)


def test_labels_without_user_instances(tmp_path):
    from posekit.training import train

    labels = _labels_with(tmp_path, predicted_only=True)
    with pytest.raises(PosekitError, match="no user-labelled instances"):
        train(tiny_config("single_instance", tmp_path), labels=labels, device="cpu", progress=False)


def test_config_part_names_not_in_the_skeleton(single_labels, tmp_path):
    from posekit.training import train

    config = tiny_config("single_instance", tmp_path)
    config["model"]["heads"]["single_instance"]["part_names"] = ["head", "wing"]
    with pytest.raises(PosekitError, match=r"skeleton mismatch.*'wing'"):
        train(config, labels=single_labels, device="cpu", progress=False)


def test_validation_labels_with_another_skeleton(single_labels, tmp_path):
    from posekit.data.synthetic import save_synthetic_dataset
    from posekit.training import train

    other = save_synthetic_dataset(tmp_path / "other", n_frames=4, image_size=32, n_parts=3)
    with pytest.raises(PosekitError, match="skeleton mismatch"):
        train(
            tiny_config("single_instance", tmp_path),
            labels=single_labels,
            val_labels=str(other),
            device="cpu",
            progress=False,
        )


@pytest.mark.parametrize("preload", [True, False])
def test_unreadable_frame(tmp_path, preload):
    from posekit.training import train

    labels = _labels_with(tmp_path, extra_frame=500)  # the video has 6 frames
    config = tiny_config("single_instance", tmp_path, preload_data=preload)
    config["data"] = {"labels": {"validation_fraction": 0.5}}
    with pytest.raises(PosekitError, match="could not read frame 500"):
        train(config, labels=labels, device="cpu", progress=False)
