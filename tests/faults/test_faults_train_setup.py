"""`posekit train` faults found before training starts: a device this machine lacks, and
`--resume` with settings the run was not trained with. Both end in one line, with no file
written or changed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.append(str(Path(__file__).resolve().parents[1] / "training"))

from _training_helpers import tiny_config  # noqa: E402
from fault_helpers import assert_clean_failure, fingerprint  # noqa: E402


def _config_file(tmp_path) -> Path:
    config = tiny_config("single_instance", tmp_path / "runs", epochs=1, batches_per_epoch=1)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_missing_device_is_refused_before_the_run_folder(device, train_labels, tmp_path, run_cli):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and mps is not None and mps.is_available():
        pytest.skip("this machine has Apple mps")
    cfg = _config_file(tmp_path)
    code, _, err = run_cli(
        "train", cfg, "--labels", train_labels, "--run-name", "x", "--device", device
    )
    assert_clean_failure(code, err, f"device '{device}'", "not available", "--device cpu")
    assert err.count("posekit: error:") == 1
    assert not (tmp_path / "runs").exists()
    # without a config (the model type chosen from the labels): refused before that too
    runs = tmp_path / "chosen"
    code, out, err = run_cli(
        "train", "--labels", train_labels, "--runs-folder", runs, "--device", device
    )
    assert_clean_failure(code, err, "not available")
    assert out == "" and not runs.exists()
    # and the library call
    from posekit.errors import PosekitError
    from posekit.training import train

    with pytest.raises(PosekitError, match="not available"):
        train(str(cfg), labels=train_labels, device=device)
    assert not (tmp_path / "runs").exists()


def test_resume_with_a_changed_architecture_names_the_change(train_labels, tmp_path, run_cli):
    cfg = _config_file(tmp_path)
    code, _, err = run_cli(
        "train", cfg, "--labels", train_labels, "--run-name", "r", "--device", "cpu"
    )
    assert code == 0, err
    run = tmp_path / "runs" / "r"
    before = fingerprint(run)
    code, _, err = run_cli(
        "train", "--resume", run, "model.backbone.unet.filters=16", "--device", "cpu"
    )
    assert_clean_failure(
        code,
        err,
        "model.backbone.unet.filters 8 -> 16",
        "start a new run",
        f"posekit train {run / 'training_config.json'} model.backbone.unet.filters=16",
    )
    assert "size mismatch" not in err
    assert fingerprint(run) == before
    # Training longer is what resuming is for: that change is taken.
    code, _, err = run_cli("train", "--resume", run, "optimization.epochs=2", "--device", "cpu")
    assert code == 0, err
