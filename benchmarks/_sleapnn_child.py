"""The sleap-nn side of `time_to_accuracy.py`, run by sleap-nn's own interpreter.

posekit never imports this file (nor sleap_nn): `time_to_accuracy.py` runs it as
``SLEAP_NN_PYTHON _sleapnn_child.py train|predict SPEC.json`` and reads the JSON it writes
to ``spec["result"]``. It imports only sleap_nn, its dependencies and the standard library.

train: SLEAP's training profile converted by sleap-nn's own SLEAP-config loader
(`TrainingJobConfig.load_sleap_config`), then trained by sleap-nn's `ModelTrainer` on the
given train / validation files. sleap-nn 0.3.5 has no wall-clock limit of its own, so
Lightning's `Timer` callback (what `Trainer(max_time=...)` adds: checked after every
step) is appended to sleap-nn's callbacks, with a small callback that records the
validation curve and prints one line per epoch.

predict: sleap-nn's `Predictor` from the trained model folder(s) (their ``best.ckpt``:
the top-down pair, or one single-instance model; sleap-nn picks the predictor from their
configs), its defaults except `max_instances`, on the test file; the predictions
are saved to ``spec["predictions"]`` for the parent to evaluate.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return float(r.ru_utime + r.ru_stime)


def _progress(tag: str, report):
    import lightning as L

    class Progress(L.Callback):
        """Validation loss against training minutes; one line per epoch on `report`."""

        def __init__(self):
            self.t0 = time.monotonic()
            self.fit_s = 0.0
            self.epochs_started = 0
            self.curve: list[dict[str, float]] = []

        def on_train_start(self, trainer, pl_module):
            self.t0 = time.monotonic()  # where Lightning's Timer starts its clock too

        def on_train_end(self, trainer, pl_module):
            self.fit_s = time.monotonic() - self.t0

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs_started += 1

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            val = trainer.callback_metrics.get("val/loss")
            minutes = (time.monotonic() - self.t0) / 60
            val = float(val) if val is not None else math.nan
            self.curve.append({"elapsed_min": minutes, "val_loss": val})

        def on_train_epoch_end(self, trainer, pl_module):
            m = trainer.callback_metrics
            val = f"{float(m['val/loss']):.4g}" if "val/loss" in m else "-"
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
            # sleap-nn logs "train/loss" in its module's epoch-end hook, after this one
            n = getattr(pl_module, "_epoch_loss_count", 0)
            train_loss = (
                float(getattr(pl_module, "_epoch_loss_sum", math.nan)) / n if n else math.nan
            )
            print(
                f"  [{tag}] epoch {trainer.current_epoch:3d}  "
                f"train {train_loss:.4g}  val {val}  lr {lr:.2g}  "
                f"{(time.monotonic() - self.t0) / 60:5.1f} min",
                file=report,
                flush=True,
            )

    return Progress()


def train(spec: dict, report) -> dict:
    import torch
    from lightning.pytorch.callbacks import Timer
    from sleap_nn.config.training_job_config import TrainingJobConfig
    from sleap_nn.training.model_trainer import ModelTrainer

    import sleap_nn

    torch.set_num_threads(int(spec["threads"]))
    cfg = TrainingJobConfig.load_sleap_config(spec["profile"])
    cfg.data_config.train_labels_path = [spec["train"]]
    cfg.data_config.val_labels_path = [spec["val"]]
    # SLEAP's `preload_data: true` (the converter leaves it out): frames decoded into
    # memory before training starts, not on every step
    cfg.data_config.data_pipeline_fw = "torch_dataset_cache_img_memory"
    tc = cfg.trainer_config
    tc.ckpt_dir, tc.run_name, tc.seed = spec["runs"], spec["run_name"], int(spec["seed"])
    tc.trainer_accelerator = "cpu" if spec["device"] == "cpu" else "gpu"
    tc.trainer_devices = 1
    tc.enable_progress_bar = False  # the Progress callback prints one line per epoch
    progress = _progress(spec["tag"], report)
    timer = Timer(duration=timedelta(seconds=float(spec["seconds"])), interval="step")

    class BudgetTrainer(ModelTrainer):
        """sleap-nn's trainer plus the wall-clock limit and the progress callback."""

        def _setup_loggers_callbacks(self, *args, **kwargs):
            loggers, callbacks = super()._setup_loggers_callbacks(*args, **kwargs)
            return loggers, [*callbacks, timer, progress]

    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    trainer = BudgetTrainer.get_model_trainer_from_config(cfg)
    trainer.train()
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0

    final = trainer.config  # after sleap-nn's own set-up (crop size, run name, ...)
    run_dir = Path(final.trainer_config.ckpt_dir) / final.trainer_config.run_name
    pre = final.data_config.preprocessing
    crop = pre.crop_size
    vals = [p["val_loss"] for p in progress.curve if math.isfinite(p["val_loss"])]
    return {
        "run_dir": str(run_dir),
        "model_dir": str(run_dir),
        "used_best_model": (run_dir / "best.ckpt").exists(),
        "input_scaling": float(pre.scale),
        "crop_size": int(crop) if isinstance(crop, int | float) else crop,
        "batch_size": int(final.trainer_config.train_data_loader.batch_size),
        "epochs_validated": len(progress.curve),
        "epochs_started": progress.epochs_started,
        "best_val_loss": min(vals, default=None),
        "train_s": wall,  # set-up (frames cached in memory, ...) and training loop
        "fit_s": progress.fit_s,  # the training loop alone (Lightning's Timer counts this)
        "cpu_s": cpu,
        "curve": progress.curve,
        "max_epochs": int(final.trainer_config.max_epochs),
        "steps_per_epoch": final.trainer_config.train_steps_per_epoch,
        "precision": str(trainer.trainer.precision),
        "threads": torch.get_num_threads(),
        "sleap_nn": sleap_nn.__version__,
        "torch": torch.__version__,
    }


def predict(spec: dict, report) -> dict:
    import sleap_io as sio
    import torch
    from sleap_nn.inference.predictor import Predictor

    torch.set_num_threads(int(spec["threads"]))
    predictor = Predictor.from_model_paths(
        spec["models"], device=spec["device"], max_instances=int(spec["max_instances"])
    )
    test = sio.load_slp(spec["test"])
    t0 = time.perf_counter()
    labels = predictor.predict(test)
    seconds = time.perf_counter() - t0
    sio.save_slp(labels, spec["predictions"])
    return {"predict_s": seconds, "predictions": spec["predictions"], "frames": len(labels)}


def main() -> int:
    command, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    # sleap-nn logs (loguru, rich) to stdout: send all of it to stderr (the parent's log
    # file) and keep stdout for the per-epoch lines
    report, sys.stdout = sys.stdout, sys.stderr
    result = {"train": train, "predict": predict}[command](spec, report)
    Path(spec["result"]).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
