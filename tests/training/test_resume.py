"""Kill a training process after its first checkpoint, resume, and lose or repeat nothing."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from _training_helpers import step_loss_recorder, tiny_config

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 6
STEPS = 4


def test_kill_after_first_checkpoint_then_resume(single_labels, tmp_path):
    from posekit.training import train

    config = tiny_config(
        "single_instance", tmp_path / "runs", epochs=EPOCHS, batches_per_epoch=STEPS
    )
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    run = tmp_path / "runs" / "killed"
    ckpt = run / "checkpoints" / "last.ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "posekit.cli",
            "train",
            str(cfg_file),
            "--labels",
            single_labels,
            "--run-name",
            "killed",
            "--device",
            "cpu",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # it was still training

    done = torch.load(ckpt, weights_only=False)["epoch"]  # last finished epoch
    assert done < EPOCHS - 1

    rec = step_loss_recorder()
    steps = []

    import lightning as L

    class Steps(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            steps.append(trainer.global_step)

    out = train(resume=run, device="cpu", progress=False, callbacks=[rec, Steps()])
    assert out == run.resolve()
    # continues right after the checkpoint: no finished epoch is repeated, none is skipped
    assert rec.epochs == list(range(done + 1, EPOCHS))
    assert steps[0] == (done + 1) * STEPS + 1 and steps[-1] == EPOCHS * STEPS
    with open(run / "metrics.csv", newline="") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == list(range(EPOCHS))
    assert torch.load(ckpt, weights_only=False)["epoch"] == EPOCHS - 1
