"""Ctrl-C during `posekit train`: one line saying what was kept and how to resume."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.append(str(Path(__file__).resolve().parents[1] / "training"))

from _training_helpers import tiny_config  # noqa: E402
from fault_helpers import assert_clean_failure  # noqa: E402


def _interrupt_at(monkeypatch, step: int) -> None:
    """Raise KeyboardInterrupt (what Ctrl-C raises) at training step `step`."""
    from posekit.training.lightning_module import PoseLightningModule

    real = PoseLightningModule.training_step
    calls = {"n": 0}

    def step_then_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > step:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PoseLightningModule, "training_step", step_then_interrupt)


@pytest.mark.parametrize("step", [1, 5], ids=["before-checkpoint", "after-checkpoint"])
def test_ctrl_c_says_where_the_checkpoint_is(step, train_labels, tmp_path, monkeypatch, run_cli):
    config = tiny_config("single_instance", tmp_path / "runs", epochs=4, batches_per_epoch=2)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(config))
    _interrupt_at(monkeypatch, step)
    code, _, err = run_cli(
        "train", cfg, "--labels", train_labels, "--run-name", "x", "--device", "cpu"
    )
    assert code == 130
    run = tmp_path / "runs" / "x"
    if step == 1:
        assert_clean_failure(code, err, "before its first checkpoint", "removed")
        assert not run.exists()
    else:
        assert_clean_failure(code, err, "last checkpoint", f"--resume {run}")
        assert (run / "checkpoints" / "last.ckpt").exists()
