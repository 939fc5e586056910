"""Progress written to a file (``> train.log``, a SLURM job's output): plain lines, one per
epoch for train and one every 5% of the frames for predict, not a live bar's redraws."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.append(str(Path(__file__).resolve().parents[1] / "training"))

from _training_helpers import tiny_config  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
EPOCH_LINE = re.compile(
    r"^Epoch (\d+)/3: loss \S+, val_loss \S+, lr \S+, left \d+:\d\d:\d\d$", re.MULTILINE
)
PREDICT_LINE = re.compile(
    r"^Predicting: (\d+)/40 frames \((\d+)%\), [\d.]+ frames/s, ETA \d+:\d\d:\d\d$", re.MULTILINE
)


def _posekit_to_file(log: Path, *argv) -> str:
    """Run the CLI with stdout and stderr redirected to `log`, as a batch job does."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        code = subprocess.call(
            [sys.executable, "-m", "posekit.cli", *map(str, argv)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        )
    text = log.read_text()
    assert code == 0, text[-3000:]
    return text


def test_train_and_predict_write_plain_lines_to_a_log_file(tmp_path):
    from posekit.data.synthetic import save_synthetic_dataset

    labels = save_synthetic_dataset(
        tmp_path / "data", n_frames=40, n_animals=1, image_size=64, n_parts=3, seed=1
    )
    config = tiny_config("single_instance", tmp_path / "runs", epochs=3, batches_per_epoch=2)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(config))
    log = _posekit_to_file(
        tmp_path / "train.log",
        "train",
        cfg,
        "--labels",
        labels,
        "--run-name",
        "r",
        "--device",
        "cpu",
    )
    assert [int(m) for m in EPOCH_LINE.findall(log)] == [1, 2, 3], log
    assert "━" not in log and "\r" not in log  # no bar, no redraws

    run = tmp_path / "runs" / "r"
    out = tmp_path / "pred.slp"
    log = _posekit_to_file(
        tmp_path / "predict.log", "predict", run, labels, "-o", out, "--batch-size", "2"
    )
    steps = [(int(n), int(p)) for n, p in PREDICT_LINE.findall(log)]
    assert steps[-1] == (40, 100), log
    assert len(steps) == 20 and all(p == 5 * (k + 1) for k, (_, p) in enumerate(steps)), log
    assert "━" not in log and "\r" not in log
