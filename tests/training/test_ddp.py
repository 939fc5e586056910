"""DDP on two CPU processes (gloo): disjoint shards per rank, one run folder, one model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _training_helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import lightning as L
    from posekit.training import train

    OUT = sys.argv[3]

    class RecordFrames(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            row = {
                "epoch": trainer.current_epoch,
                "world": trainer.world_size,
                "frames": batch["frame_index"].tolist(),
            }
            with open(os.path.join(OUT, f"rank{trainer.global_rank}.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\\n")

    if __name__ == "__main__":
        config = json.load(open(sys.argv[1]))
        run = train(config, labels=sys.argv[2], run_name="ddp", device="cpu", devices=2,
                    strategy="ddp", progress=False, num_workers=0, callbacks=[RecordFrames()])
        print("RUN_DIR", run)
    """
)


def test_two_process_ddp(multi_labels, tmp_path):
    from posekit.model.folder import load_model

    runs = tmp_path / "runs"
    record = tmp_path / "record"
    record.mkdir()
    # 2 steps x batch 4 x 2 ranks = 16 distinct training frames per epoch (of 22)
    config = tiny_config("single_instance", runs, epochs=2, batches_per_epoch=2)
    (tmp_path / "job.json").write_text(json.dumps(config))
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    env.pop("POSEKIT_RUN_DIR", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "job.json"), multi_labels, str(record)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = {}
    for r in (0, 1):
        rows = [json.loads(line) for line in (record / f"rank{r}.jsonl").read_text().splitlines()]
        assert {row["world"] for row in rows} == {2}
        ranks[r] = rows
    for epoch in (0, 1):
        seen = [
            [f for row in ranks[r] if row["epoch"] == epoch for f in row["frames"]] for r in (0, 1)
        ]
        assert len(seen[0]) == len(seen[1]) == 8  # same number of steps on each rank
        assert not set(seen[0]) & set(seen[1])  # disjoint shards
        assert len(set(seen[0]) | set(seen[1])) == 16

    # one run folder, written once, with a loadable model
    assert [p.name for p in runs.iterdir()] == ["ddp"]
    run = runs / "ddp"
    with open(run / "metrics.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1"]
    model = load_model(run / "best_model")
    assert model.part_names == ["head", "tail", "left", "right"]


def _train_cli(args, env):
    return subprocess.run(
        [sys.executable, "-m", "posekit.cli", "train", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # four processes start torch and Lightning: about a minute
def test_ddp_command_trains_one_run_folder_and_resumes(multi_labels, tmp_path):
    """`posekit train --devices 2 --strategy ddp` on the CPU (gloo), then `--resume`:
    one run folder, written by rank 0 only, each epoch once in its log, one final model."""
    from posekit.model.folder import load_model

    runs = tmp_path / "runs"
    config = tiny_config("single_instance", runs, epochs=1, batches_per_epoch=1)
    config["optimization"]["batch_size"] = 2
    (tmp_path / "job.json").write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    env.pop("POSEKIT_RUN_DIR", None)
    ddp = ["--device", "cpu", "--devices", "2", "--strategy", "ddp"]
    first = _train_cli(
        [tmp_path / "job.json", "--labels", multi_labels, "--run-name", "ddp", *ddp], env
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["ddp"]
    run = runs / "ddp"
    names = sorted(p.name for p in run.iterdir())

    again = _train_cli(["--resume", run, "--epochs", "2", *ddp], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["ddp"]
    with open(run / "metrics.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1"]
    # nothing half-written or doubled by the second process
    assert sorted(p.name for p in run.iterdir()) == names
    assert not [p for p in run.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    # one process reports: the final evaluation and the run's lines once
    for out in (first.stdout, again.stdout):
        assert out.count("posekit: val:") == 1 and out.count("Trained model:") == 1
    # the weights were made NHWC before DDP wrapped them (no per-step layout copies)
    assert "Grad strides do not match" not in first.stderr + again.stderr
    model = load_model(run / "best_model")
    assert model.part_names == ["head", "tail", "left", "right"]
