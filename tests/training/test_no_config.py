"""`posekit train --labels L` without a config: the type is chosen, every model trains,
and the run folder goes straight into `posekit predict`."""

from __future__ import annotations

import pytest
import sleap_io as sio

from posekit.cli import main

TINY = [
    "optimization.epochs=1",
    "optimization.batches_per_epoch=2",
    "optimization.val_batches_per_epoch=1",
    "model.backbone.unet.filters=8",
]


def test_single_animal_labels_train_a_single_instance_model(single_labels, tmp_path, capsys):
    argv = ["train", "--labels", single_labels, "--runs-folder", tmp_path, "--run-name", "r"]
    assert main([*map(str, argv), "--device", "cpu", *TINY]) == 0
    out = capsys.readouterr().out
    assert "model type single_instance: no labelled frame has more than one animal" in out
    run = tmp_path / "r"
    assert (run / "best_model").is_dir() and (run / "metrics.val.json").exists()
    video = sio.load_slp(single_labels).videos[0].filename
    pred = tmp_path / "p.slp"
    argv = ["predict", run, video, "-o", pred, "--frames", "0-3", "--device", "cpu"]
    assert main(list(map(str, argv))) == 0
    labels = sio.load_slp(str(pred))  # the project, its user labels kept (as sleap-track)
    assert sorted(lf.frame_idx for lf in labels.labeled_frames if lf.predicted_instances) == [
        0,
        1,
        2,
        3,
    ]


@pytest.fixture(scope="module")
def small_apart(tmp_path_factory) -> str:
    """Two small animals (~14 px) in 128 px frames: a top-down problem."""
    from posekit.data.synthetic import save_synthetic_dataset

    folder = tmp_path_factory.mktemp("small")
    return str(
        save_synthetic_dataset(
            folder, n_frames=24, n_animals=2, image_size=128, n_parts=4, seed=3, body_length=14
        )
    )


def test_small_animals_train_a_top_down_pair_in_one_folder(small_apart, tmp_path, capsys):
    multi_labels = small_apart
    argv = ["train", "--labels", multi_labels, "--runs-folder", tmp_path, "--run-name", "pair"]
    assert main([*map(str, argv), "--device", "cpu", *TINY]) == 0
    out = capsys.readouterr().out
    assert "model type topdown" in out
    # the centroid model alone is scored on what it finds, not on copied labels' poses
    assert "animals found (centroid model" in out
    run = tmp_path / "pair"
    assert (run / "centroid" / "best_model").is_dir()
    assert (run / "centered_instance" / "best_model").is_dir()
    video = sio.load_slp(multi_labels).videos[0].filename
    pred = tmp_path / "p.slp"
    argv = ["predict", run, video, "-o", pred, "--frames", "0-1", "--device", "cpu"]
    assert main(list(map(str, argv))) == 0  # the pair folder loads as a top-down pair
    assert "Predicted 2 frames" in capsys.readouterr().out
