"""The CUDA code paths of training: the GPU accelerator, cuDNN autotuning (``benchmark``),
pinned host memory for batches, NHWC weights, bf16/fp16 mixed precision and DDP over
several GPUs. They run where CUDA GPUs are present (``benchmarks/gpu_check.sh``) and
skip elsewhere; each trains a tiny model for a few steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _training_helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Seen:
    """A Lightning callback noting what the trainer ran with."""

    def __new__(cls):
        import lightning as L

        class _Seen(L.Callback):
            def __init__(self):
                self.seen = {}
                self.losses = []

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if self.seen:
                    return
                weight = next(p for p in pl_module.model.parameters() if p.ndim == 4)
                self.seen = {
                    "device": trainer.strategy.root_device.type,
                    "benchmark": torch.backends.cudnn.benchmark,
                    "pin_memory": bool(trainer.train_dataloader.pin_memory),
                    "channels_last": weight.is_contiguous(memory_format=torch.channels_last),
                    "precision": trainer.precision,
                    "image_device": batch["image"].device.type,
                }

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.losses.append(float(loss))

        return _Seen()


@needs_cuda
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_training_on_cuda_uses_the_gpu_paths(single_labels, tmp_path, precision):
    from posekit.model.folder import load_model
    from posekit.training import train

    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    config = tiny_config("single_instance", tmp_path / "runs", epochs=2, batches_per_epoch=4)
    seen = Seen()
    run = train(
        config,
        labels=single_labels,
        device="cuda",
        precision=precision,
        progress=False,
        num_workers=0,
        callbacks=[seen],
    )
    assert seen.seen == {
        "device": "cuda",
        "benchmark": True,
        "pin_memory": True,
        "channels_last": True,
        "precision": precision,
        "image_device": "cuda",
    }
    assert all(torch.isfinite(torch.tensor(seen.losses)))
    assert min(seen.losses[-3:]) < seen.losses[0]  # it learns in 8 steps
    model = load_model(Path(run) / "best_model")  # saved on the CPU, float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}


SCRIPT = """
import sys
from posekit.training import train
if __name__ == "__main__":
    import json
    run = train(json.load(open(sys.argv[1])), labels=sys.argv[2], run_name="ddp",
                device="cuda", devices=2, strategy="ddp", progress=False, num_workers=0)
    print("RUN_DIR", run)
"""


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_ddp_on_two_gpus_trains_one_run_folder(multi_labels, tmp_path):
    from posekit.model.folder import load_model

    runs = tmp_path / "runs"
    config = tiny_config("single_instance", runs, epochs=2, batches_per_epoch=2)
    (tmp_path / "job.json").write_text(json.dumps(config))
    (tmp_path / "ddp.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "ddp.py"), str(tmp_path / "job.json"), multi_labels],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["ddp"]
    with open(runs / "ddp" / "metrics.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1"]
    assert load_model(runs / "ddp" / "best_model").part_names
