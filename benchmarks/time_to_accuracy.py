"""Time to accuracy: how good a model gets in a fixed wall-clock budget on this machine.

The number users feel is not steps per second but how accurate the model is after the
time they are willing to wait. This benchmark trains each dataset's model(s) with a
wall-clock limit per model, for each budget of ``--budgets`` (minutes, e.g. 2,4,8,16,32:
every budget is its own run from scratch, as a user with that much time would train),
predicts held-out frames and evaluates them. ``--dataset flies`` (default) trains the
top-down pair (centroid, then centered instance) on the flies clip; ``--dataset
reaching`` trains one single-instance model (SLEAP's `baseline_medium_rf.single`
profile, the one SLEAP uses for one animal) on DeepLabCut's reaching example, split as
the README's reaching numbers are (``reaching.train.pkg.slp``: 44 frames, 10% of them
validate; ``reaching.test.pkg.slp``: 11 held out).

Each (dataset, config, budget) point is written to ``OUT/results.json`` as soon as it is
evaluated, so an interrupted run keeps what it finished and ``--reuse`` skips it. The
picture ``OUT/time_to_accuracy.png`` draws, per dataset, its accuracy (flies: OKS mAP;
reaching: median error in px) against the minutes per model (log2 axis), one line per
config; ``--plot-only --merge DIR ...`` draws it from several ``--out`` folders' results
(budgets run on different days) without training.

Flies:

- data: `shared/data/flies/clip.slp` (1024 x 1024 video, 2 flies, 13 nodes, every frame
  labelled), cut into blocks of `BLOCK` = 50 consecutive frames. Every third block
  (``block % 3 == 2``) is test: its every 5th frame (10 per block). Train: every 4th
  frame of the other blocks; 10% of those (a seeded split, the same for every config)
  validate. Test frames are never trained on, and no test frame is within a few frames
  of a training frame's block, but train and test both sample the whole clip: the flies'
  behaviour late in the clip (turning, wings and legs out) is not test-only any more, as
  it was with the old split (train 0-999, test 1000-1499).
- configs (`--configs`): ``sleap`` trains SLEAP's `baseline.centroid` and
  `baseline_medium_rf.topdown` profiles exactly as written; ``posekit`` trains the same
  profiles with the settings `posekit.training.recommend` picks for the labels, the
  hardware and the budget (what ``posekit train --auto`` uses); ``sleap-nn`` trains the
  same two profiles with the peer sleap-nn (0.3.5), see below.
- prediction: `posekit.load_predictor([centroid, centered])` with the best model of each
  run (the last one when no epoch finished validation) and at most as many instances per
  frame as the training labels have (2), as a SLEAP user would set it.
- output (`--out`): a rich table (also in ``results.txt``), ``results.json`` (per point:
  metrics, recommendations, machine load), ``time_to_accuracy.png`` and
  ``val_loss_curves.png`` (validation loss of every run against training minutes, one
  panel per model; the configs' targets differ, so their loss levels do not compare,
  only how fast each falls). ``trained.json`` records each run as soon as it is trained;
  ``--reuse`` evaluates those runs without retraining and skips finished points.

Threads: `torch.set_num_threads` = the machine's cores unless `--threads`. OpenMP's wait
policy is set to PASSIVE (unless already set): on a machine shared with other jobs,
spinning OpenMP threads lose their time slices at every barrier; on the 2-core shared
box this was written on, a 160 px UNet step went from 2.2 to 5.7 samples/s. The machine
load and the CPU time the benchmark actually got are recorded with the results.

sleap-nn runs in its own environment (``--sleap-nn-python``, default
``/tmp/sleapnn-venv/bin/python`` when it exists; without one the config is skipped with a
message): `_sleapnn_child.py`, next to this file, is run by that interpreter as a
subprocess and never imported here. It gets exactly this benchmark's frames: the train,
validation and test frames are written to ``OUT/sleap-nn/{train,val,test}.slp`` (they
reference the video). Each profile is converted by sleap-nn's own SLEAP-config loader
(`TrainingJobConfig.load_sleap_config`) and trained by its `ModelTrainer` as converted
(its UNet, scale, sigma and stride, batch 4, Adam 1e-4, reduce-on-plateau, early stopping,
rotation augmentation, 200 epochs of at least 200 steps, per-epoch visualizations, the
best checkpoint by validation loss), with these settings chosen here:

- wall-clock limit: sleap-nn 0.3.5 exposes none, so Lightning's `Timer` callback (what
  `Trainer(max_time=...)` installs: checked after every step, then a last validation)
  is added to its callbacks with the same budget. The profile's 200 epochs are far more
  than any budget here, so the clock ends the run.
- ``data_pipeline_fw = "torch_dataset_cache_img_memory"``: SLEAP's ``preload_data: true``,
  which the converter drops. Frames are cached in memory during set-up, before the clock
  starts (about 50 s per model on the shared 2-core box, seeking in the mp4): counted in
  "train min" (``train_s``), not in the budget; ``fit_s`` in results.json is the training
  loop alone.
- precision: Lightning's default, 32-true (sleap-nn sets none), as for the ``sleap`` row.
  Data-loader workers: 0, as converted. Accelerator from ``--device``, one device; seed
  ``--seed``; no progress bar. Torch threads: the same number as the posekit rows; the
  child's environment has ``OMP_WAIT_POLICY`` (PASSIVE) and no PYTHONPATH.
- `ModelTrainer.train()` rather than `sleap_nn.train.run_training`, which after training
  also predicts and evaluates the training and validation frames (not training).

Prediction: sleap-nn's `Predictor.from_model_paths([centroid, centered])` (or the
single-instance model; their ``best.ckpt``) with its defaults (peak threshold 0.2,
integral refinement, batch 4) and at most 2 instances per frame; the predictions
(``OUT/sleap-nn/DATASET/predictions.BUDGET.test.slp``) are
scored here by `posekit.evaluation.evaluate`, like every row. "predict s" times the
predict call (reading the frames included, loading the models not), as for posekit. Its
validation curve is recorded by a callback in the child (minutes since the training loop
started, at each validation); sleap-nn's own ``training_log.csv`` and log are in
``OUT/runs``.

Run: ``python benchmarks/time_to_accuracy.py [--dataset flies|reaching] [--budgets 10]
[--configs sleap,posekit,sleap-nn] [--out /tmp/tta] [--reuse] [--threads N] [--device
cpu] [--sleap-nn-python PATH]``; ``--minutes`` is ``--budgets``' other name. Picture
only: ``... --plot-only --out DIR [--merge DIR2 ...] [--png PATH]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the OpenMP runtime

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DEFAULT_SLP = SHARED / "data" / "flies" / "clip.slp"
PROFILES = SHARED / "sleap_profiles"
MODELS = (("centroid", "baseline.centroid.json"), ("centered", "baseline_medium_rf.topdown.json"))
REACHING = SHARED / "data" / "reaching"
#: per dataset: the models trained (name, SLEAP profile) and the metric the curve draws
DATASETS = {
    "flies": {"models": MODELS, "metric": "oks_voc.mAP", "label": "flies (top-down): OKS mAP"},
    "reaching": {
        "models": (("single", "baseline_medium_rf.single.json"),),
        "metric": "dist.p50",
        "label": "reaching (single instance): median error, px",
    },
}
CONFIGS = ("sleap", "posekit", "sleap-nn")
SLEAP_NN_PYTHON = "/tmp/sleapnn-venv/bin/python"  # --sleap-nn-python's default
SLEAP_NN_CHILD = Path(__file__).resolve().with_name("_sleapnn_child.py")


# --------------------------------------------------------------------------- data


BLOCK = 50


def is_test_frame(frame_idx: int) -> bool:
    """Every 5th frame of every third block of `BLOCK` frames (block index % 3 == 2)."""
    return (frame_idx // BLOCK) % 3 == 2 and frame_idx % 5 == 0


def is_train_frame(frame_idx: int) -> bool:
    """Every 4th frame of the blocks that are not test blocks."""
    return (frame_idx // BLOCK) % 3 != 2 and frame_idx % 4 == 0


def load_dataset(name: str, slp: Path) -> tuple[Any, Any]:
    """(train, test) `sleap_io.Labels` of a dataset. flies: the block split of `slp` (see
    `is_test_frame`); reaching: DeepLabCut's example split as the README's reaching
    numbers use it, 44 training and 11 held-out frames in `reaching.{train,test}.pkg.slp`."""
    import sleap_io as sio

    if name == "reaching":
        return tuple(
            sio.load_slp(str(REACHING / f"reaching.{s}.pkg.slp")) for s in ("train", "test")
        )
    return split_labels_by_frame(sio.load_slp(str(slp)))


def set_threads(threads: int | None) -> tuple[int, int]:
    """(cores, torch threads): `threads`, else one per core this process may use."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(threads or cores or 1)
    torch.set_num_threads(threads)
    return int(cores or 1), threads


def training_splits(train_sio: Any, seed: int) -> tuple[Any, Any]:
    """(train, validation) `PoseLabels` of the training frames, decoded once (one
    sequential pass, outside every run's clock); 10% validate, seeded."""
    from posekit.data.labels import load_labels, split_labels

    all_pl = load_labels(train_sio)
    t0 = time.perf_counter()
    all_pl.preload()
    print(f"decoded {len(all_pl)} training frames in {time.perf_counter() - t0:.1f} s")
    return split_labels(all_pl, 0.1, seed)


def split_labels_by_frame(labels: Any) -> tuple[Any, Any]:
    """(train, test) `sleap_io.Labels` by blocks of 50 frames (see `is_test_frame`)."""
    import sleap_io as sio

    def subset(keep) -> Any:
        frames = [lf for lf in labels.labeled_frames if keep(int(lf.frame_idx))]
        return sio.Labels(
            labeled_frames=frames,
            videos=list(labels.videos),
            skeletons=list(labels.skeletons),
            tracks=list(labels.tracks),
        )

    train = subset(is_train_frame)
    test = subset(is_test_frame)
    return train, test


# --------------------------------------------------------------------------- training


def _epoch_printer(tag: str):
    import lightning as L

    class EpochPrinter(L.Callback):
        """One line per epoch, so a 10-minute run shows that it is alive."""

        def __init__(self):
            self.t0 = time.monotonic()

        def on_train_epoch_end(self, trainer, pl_module):
            m = trainer.callback_metrics
            val = m.get("val_loss")
            val_txt = f"{float(val):.4g}" if val is not None else "-"
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
            print(
                f"  [{tag}] epoch {trainer.current_epoch:3d}  "
                f"train {float(m.get('train_loss', math.nan)):.4g}  val {val_txt}  "
                f"lr {lr:.2g}  {(time.monotonic() - self.t0) / 60:5.1f} min",
                flush=True,
            )

    return EpochPrinter()


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return float(r.ru_utime + r.ru_stime)


def read_metrics(run_dir: Path) -> list[dict[str, float | None]]:
    """Rows of a run's metrics.csv as floats (None where empty)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    return rows


def train_model(
    name: str,
    model: str,
    profile: Path,
    train_pl: Any,
    val_pl: Any,
    minutes: float,
    runs: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train one model of one config for `minutes` into `runs`; returns what the table needs."""
    from posekit.config.job import load_config
    from posekit.training.hardware import detect_hardware
    from posekit.training.recommend import recommend
    from posekit.training.run import train

    budget = float(minutes) * 60.0
    config = load_config(profile)
    overrides: dict[str, Any] = {}
    num_workers = None
    precision = None  # Lightning's default, 32-true, for the profiles as written
    recommendation = None
    recipe_callbacks: list[Any] = []
    if name == "posekit":
        # What `train(auto=True, max_time=budget)` applies: the budget-aware recommendation
        # for the training split (explicit here so the benchmark also shows the plan).
        rec = recommend(
            config,
            train_pl,
            detect_hardware(args.device),
            max_time=budget,
            overrides=[o.split(":", 1)[1] for o in args.override if o.startswith(f"{model}:")],
        )
        overrides, num_workers, precision = dict(rec.overrides), rec.num_workers, rec.precision
        # the budgeted recipe (loss, warm-up + cosine over the budget, re-planned epochs)
        recipe_callbacks = rec.callbacks()
        recommendation = {
            "overrides": overrides,
            "reasons": rec.reasons,
            "plan": rec.plan,
            "precision": precision,
        }
        print(f"posekit recommendation for {model}:\n{rec.describe()}", flush=True)
    load0 = os.getloadavg()[0]
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    run_dir = train(
        config,
        labels=train_pl,
        val_labels=val_pl,
        run_name=f"{name}.{model}",
        runs_folder=runs,
        device=args.device,
        overrides=overrides,
        max_time=budget,
        seed=args.seed,
        num_workers=num_workers,
        precision=precision,
        progress=False,
        callbacks=[*recipe_callbacks, _epoch_printer(f"{name} {model}")],
    )
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    rows = read_metrics(Path(run_dir))
    validated = [r for r in rows if r.get("val_loss") is not None]
    best = Path(run_dir) / "best_model"
    model_dir = best if best.exists() else Path(run_dir) / "latest_model"
    from posekit.config.job import TrainingJobConfig

    trained = TrainingJobConfig.load_json(Path(run_dir) / "training_config.json")
    return {
        "run_dir": str(run_dir),
        "model_dir": str(model_dir),
        "used_best_model": best.exists(),
        "input_scaling": float(trained.data.preprocessing.input_scaling),
        "crop_size": trained.data.instance_cropping.crop_size if model == "centered" else None,
        "batch_size": int(trained.optimization.batch_size),
        "epochs_validated": len(validated),
        "epochs_started": len(rows),
        "best_val_loss": min((r["val_loss"] for r in validated), default=None),
        "train_s": wall,
        "cpu_s": cpu,
        "cores_used": cpu / wall if wall > 0 else None,
        "load_avg_1min_start": load0,
        "load_avg_1min_end": os.getloadavg()[0],
        "curve": [
            {"elapsed_min": (r.get("elapsed_s") or 0.0) / 60.0, "val_loss": r["val_loss"]}
            for r in validated
        ],
        "recommendation": recommendation,
    }


def predict_and_evaluate(
    models: dict[str, dict], test: Any, max_instances: int, device: str
) -> dict[str, Any]:
    """Predict the test frames with the trained model(s) and evaluate them."""
    import posekit
    from posekit.evaluation import evaluate

    predictor = posekit.load_predictor(
        [m["model_dir"] for m in models.values()],
        device=device,
        max_instances=max_instances,
        progress=False,
    )
    t0 = time.perf_counter()
    predictions = predictor.predict(test)
    seconds = time.perf_counter() - t0
    return evaluation_summary(evaluate(test, predictions), seconds)


def evaluation_summary(metrics: dict, seconds: float) -> dict[str, Any]:
    """What the table and results.json keep of `posekit.evaluation.evaluate`'s metrics."""
    keys = ("oks_voc.mAP", "oks_voc.mAR", "dist.p50", "dist.p90", "n_pred_instances")
    out = {k: metrics.get(k) for k in keys}
    out.update(
        predict_s=seconds,
        n_gt_instances=metrics.get("n_gt_instances"),
        n_matched=metrics.get("n_matched"),
    )
    out["pck@3px"] = _pck_at(metrics, 3.0)
    return out


# --------------------------------------------------------------------------- sleap-nn


def write_sleapnn_splits(train_sio: Any, train_pl: Any, val_pl: Any, test: Any, folder: Path):
    """The benchmark's train / validation / test frames as `.slp` files for sleap-nn.

    Validation is posekit's seeded split of the training frames (`train_pl`, `val_pl`),
    mapped back to the labelled frames of `train_sio`; the files reference the video.
    """
    import sleap_io as sio

    folder.mkdir(parents=True, exist_ok=True)
    video_index = {id(v): i for i, v in enumerate(train_sio.videos)}

    def frames_of(pl) -> Any:
        keys = {(e.video_index, e.frame_idx) for e in pl.entries}
        frames = [
            lf
            for lf in train_sio.labeled_frames
            if (video_index[id(lf.video)], int(lf.frame_idx)) in keys
        ]
        if len(frames) != len(keys):
            raise RuntimeError(f"{len(keys) - len(frames)} split frames not in the labels")
        return sio.Labels(
            labeled_frames=frames,
            videos=list(train_sio.videos),
            skeletons=list(train_sio.skeletons),
            tracks=list(train_sio.tracks),
        )

    paths = {}
    for name, labels in (
        ("train", frames_of(train_pl)),
        ("val", frames_of(val_pl)),
        ("test", test),
    ):
        paths[name] = str(folder / f"{name}.slp")
        # frames embedded in a .pkg.slp (reaching) stay referenced there, not restored
        # to their original image files (absent here)
        sio.save_slp(labels, paths[name], embed=False, restore_original_videos=False)
    return paths


def run_sleapnn(python: str, command: str, spec: dict, folder: Path, name: str) -> dict:
    """Run `_sleapnn_child.py COMMAND` in sleap-nn's interpreter; returns its JSON result.

    Its stdout (one line per epoch) is shown; sleap-nn's log goes to ``folder/NAME.log``.
    PYTHONPATH is dropped so posekit's source tree stays off the child's path.
    """
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    spec = dict(spec, result=str(folder / f"{name}.result.json"))
    spec_path = folder / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    log = folder / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    print(f"  sleap-nn {command}: log in {log}", flush=True)
    with open(log, "w") as err:
        rc = subprocess.run(
            [python, str(SLEAP_NN_CHILD), command, str(spec_path)],
            stderr=err,
            cwd=folder,
            env=env,
        ).returncode
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
        raise RuntimeError(f"sleap-nn {command} exited with {rc}; end of {log}:\n{tail}")
    return json.loads(Path(spec["result"]).read_text())


def train_sleapnn_model(
    model: str, profile: Path, files: dict, threads: int, minutes: float, folder: Path, args
) -> dict[str, Any]:
    """Train one model with sleap-nn from SLEAP's profile for `minutes` (see the child)."""
    spec = {
        "profile": str(profile),
        "train": files["train"],
        "val": files["val"],
        "runs": str(folder),
        "run_name": f"sleap-nn.{model}",
        "seconds": float(minutes) * 60.0,
        "seed": args.seed,
        "device": args.device,
        "threads": threads,
        "tag": f"sleap-nn {model}",
    }
    load0 = os.getloadavg()[0]
    r = run_sleapnn(args.sleap_nn_python, "train", spec, folder, f"sleap-nn.{model}.train")
    r.update(
        cores_used=r["cpu_s"] / r["train_s"] if r["train_s"] > 0 else None,
        load_avg_1min_start=load0,
        load_avg_1min_end=os.getloadavg()[0],
        recommendation=None,
    )
    return r


def predict_and_evaluate_sleapnn(
    models: dict[str, dict], test: Any, files: dict, max_instances: int, threads: int, tag, args
) -> dict[str, Any]:
    """sleap-nn's inference on the test frames, scored by posekit's `evaluate`."""
    import sleap_io as sio

    from posekit.evaluation import evaluate

    folder = Path(files["test"]).parent
    spec = {
        "models": [m["model_dir"] for m in models.values()],
        "test": files["test"],
        "predictions": str(folder / f"predictions.{tag}.test.slp"),
        "max_instances": max_instances,
        "device": args.device,
        "threads": threads,
    }
    r = run_sleapnn(args.sleap_nn_python, "predict", spec, folder, f"{tag}.predict")
    predictions = sio.load_slp(r["predictions"], open_videos=False)
    return evaluation_summary(evaluate(test, predictions), r["predict_s"])


def template_oracle(train: Any, test: Any) -> dict[str, Any]:
    """How far the training poses alone go: a reference row, no network involved.

    Every test instance is "predicted" as the mean training pose (in the body frame of
    the first two nodes: for the flies, head and thorax), placed with the test instance's
    own true second node and heading. A network that only learned the labelled poses
    and found every animal's position and heading perfectly would score this; test
    poses the training frames never show (legs and wings elsewhere) are what it misses.
    """
    import sleap_io as sio

    from posekit.evaluation import evaluate

    def body_frame(points: np.ndarray) -> tuple[np.ndarray, float]:
        axis = points[0] - points[1]
        angle = math.atan2(axis[1], axis[0])
        c, s = math.cos(-angle), math.sin(-angle)
        return (points - points[1]) @ np.array([[c, -s], [s, c]]).T, angle

    poses = [
        body_frame(inst.numpy())[0]
        for lf in train.labeled_frames
        for inst in lf.user_instances
        if np.isfinite(inst.numpy()[:2]).all()
    ]
    template = np.nanmean(np.stack(poses), axis=0)
    frames = []
    for lf in test.labeled_frames:
        preds = []
        for inst in lf.user_instances:
            pts = inst.numpy()
            if not np.isfinite(pts[:2]).all():
                continue
            _, angle = body_frame(pts)
            c, s = math.cos(angle), math.sin(angle)
            placed = template @ np.array([[c, -s], [s, c]]).T + pts[1]
            preds.append(
                sio.PredictedInstance.from_numpy(
                    points_data=placed,
                    skeleton=inst.skeleton,
                    point_scores=np.ones(len(placed)),
                    score=1.0,
                )
            )
        frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=preds))
    pred = sio.Labels(labeled_frames=frames, videos=test.videos, skeletons=test.skeletons)
    metrics = evaluate(test, pred)
    keys = ("oks_voc.mAP", "oks_voc.mAR", "dist.p50", "dist.p90", "oks.mOKS")
    return {k: metrics.get(k) for k in keys}


def _pck_at(metrics: dict, px: float) -> float | None:
    for key, value in metrics.items():
        if key.startswith("pck.") and key.endswith(f"{px:g}") and isinstance(value, float):
            return value
    return None


# --------------------------------------------------------------------------- reporting


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def point_key(dataset: str, tool: str, minutes: float) -> str:
    """The key of one (dataset, tool, budget) result in ``results.json``'s ``points``."""
    return f"{dataset} {tool} {minutes:g}"


def parse_budgets(text: str) -> list[float]:
    """``"2,4,8"`` -> [2.0, 4.0, 8.0] (minutes per model; each > 0)."""
    try:
        budgets = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give minutes > 0, comma-separated, e.g. 2,4,8")
    return budgets


def load_points(folders: list[Path]) -> dict[str, dict]:
    """The ``points`` of ``results.json`` in each folder, merged (a later folder's point
    replaces an earlier one's): budgets run on different days draw one picture."""
    points: dict[str, dict] = {}
    for folder in folders:
        path = Path(folder) / "results.json"
        if path.exists():
            points.update(json.loads(path.read_text()).get("points", {}))
        else:
            print(f"no results.json in {folder}: left out of the picture", flush=True)
    return points


def results_table(points: dict[str, dict]):
    """The rich table of every point (per-model values joined by " / ", e.g. centroid /
    centered)."""
    from rich.table import Table

    table = Table(title="Time to accuracy (min = budget per model)")
    for col in (
        "dataset",
        "config",
        "min",
        "input scaling",
        "crop",
        "batch",
        "epochs",
        "best val loss",
        "OKS mAP",
        "mAR",
        "median px",
        "p90 px",
        "train min",
        "predict s",
    ):
        table.add_column(col, justify="left" if col in ("dataset", "config") else "right")
    for r in points.values():
        ms, ev = list(r["models"].values()), r["eval"]

        def joined(key, spec, ms=ms):
            return " / ".join(_fmt(m[key], spec) for m in ms)

        def epochs(m):
            cut = "+" if m["epochs_started"] > m["epochs_validated"] else ""
            return f"{m['epochs_validated']}{cut}"

        table.add_row(
            r["dataset"],
            r["tool"],
            f"{r['minutes']:g}",
            joined("input_scaling", "g"),
            str(ms[-1]["crop_size"]),
            joined("batch_size", "d"),
            " / ".join(epochs(m) for m in ms),
            joined("best_val_loss", ".3g"),
            _fmt(ev["oks_voc.mAP"]),
            _fmt(ev["oks_voc.mAR"]),
            _fmt(ev["dist.p50"], ".2f"),
            _fmt(ev["dist.p90"], ".2f"),
            f"{sum(m['train_s'] for m in ms) / 60:.1f}",
            _fmt(ev["predict_s"], ".1f"),
        )
    return table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(points: dict[str, dict], png: Path) -> Path:
    """Validation loss against training minutes, one panel per (dataset, model), one line
    per (config, budget)."""
    plt = _pyplot()
    panels = sorted({(r["dataset"], m) for r in points.values() for m in r["models"]})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], panels, strict=True):
        for r in points.values():
            curve = r["models"].get(model, {}).get("curve") if r["dataset"] == dataset else None
            if curve:
                xs = [p["elapsed_min"] for p in curve]
                ys = [p["val_loss"] for p in curve]
                ax.plot(xs, ys, "-o", ms=3, label=f"{r['tool']} {r['minutes']:g} min")
        ax.set_yscale("log")
        ax.set_xlabel("training minutes")
        ax.set_ylabel("validation loss")
        ax.set_title(f"{dataset}: {model}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "configs draw different targets (scale, stride, sigma): compare how fast each "
        "falls, not loss levels across configs",
        fontsize=9,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def curve_series(points: dict[str, dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{dataset: {tool: [(minutes, metric), ...] by minutes}}: what the picture draws
    (`DATASETS`' metric; NaN where it is undefined, e.g. no animal found)."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in points.values():
        value = r["eval"].get(DATASETS[r["dataset"]]["metric"])
        y = float(value) if value is not None else math.nan
        series.setdefault(r["dataset"], {}).setdefault(r["tool"], []).append((r["minutes"], y))
    for tools in series.values():
        for line in tools.values():
            line.sort()
    return series


def found_counts(points: dict[str, dict]) -> dict[tuple[str, str, float], str]:
    """{(dataset, tool, minutes): "found/labelled"} animals matched on the test frames: a
    median error over 6 of 11 animals is not the same point as one over 11 of 11."""
    out = {}
    for r in points.values():
        e = r["eval"]
        if e.get("n_gt_instances"):
            out[(r["dataset"], r["tool"], r["minutes"])] = (
                f"{e.get('n_matched', 0)}/{e['n_gt_instances']}"
            )
    return out


def plot_time_to_accuracy(points: dict[str, dict], png: Path) -> Path:
    """The curve: per dataset a panel of its metric against minutes per model (log2 axis),
    one line per tool, each point labelled with the animals it found; what more time buys."""
    plt = _pyplot()
    series = curve_series(points)
    found_at = found_counts(points)
    datasets = [d for d in DATASETS if d in series]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        budgets = sorted({x for line in series[dataset].values() for x, _ in line})
        for tool, line in sorted(series[dataset].items()):
            ys = [y for _, y in line]
            found = any(math.isfinite(y) for y in ys)  # else named, as no line is drawn
            label = tool if found else f"{tool}: no animal found"
            ax.plot([x for x, _ in line], ys, "-o", label=label)
            for x, y in line:
                if math.isfinite(y) and (dataset, tool, x) in found_at:
                    ax.annotate(found_at[(dataset, tool, x)], (x, y), textcoords="offset points",
                                xytext=(4, 4), fontsize=8)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.set_xlabel("training minutes per model")
        ax.set_title(DATASETS[dataset]["label"])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


# --------------------------------------------------------------------------- main


def run_dataset(dataset: str, configs: list[str], args, payload: dict, cores_threads) -> None:
    """Every (config, budget) point of one dataset not yet in `payload` (with --reuse),
    each written to ``results.json`` as soon as it is evaluated."""
    from posekit.io.atomic import write_text_atomic

    cores, threads = cores_threads
    out = Path(args.out)
    train_sio, test = load_dataset(dataset, Path(args.slp))
    train_pl, val_pl = training_splits(train_sio, args.seed)
    max_instances = max(len(lf.user_instances) for lf in train_sio.labeled_frames)
    print(
        f"{dataset}: train {len(train_pl)} frames ({train_pl.n_instances} instances), "
        f"validation {len(val_pl)}, test {len(test)} frames; {threads} threads on {cores} "
        f"cores, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load {os.getloadavg()}",
        flush=True,
    )
    payload.setdefault("template_oracle", {})[dataset] = template_oracle(train_sio, test)
    results_path, partial_path = out / "results.json", out / "trained.json"
    trained = json.loads(partial_path.read_text()) if args.reuse and partial_path.exists() else {}
    files = None  # the split as .slp files, for sleap-nn
    if "sleap-nn" in configs:
        files = write_sleapnn_splits(train_sio, train_pl, val_pl, test, out / "sleap-nn" / dataset)
    for minutes in args.budgets:
        runs = out / "runs" / f"{dataset}-{minutes:g}min"
        for name in configs:
            key = point_key(dataset, name, minutes)
            if args.reuse and key in payload["points"]:
                print(f"== {key}: done, in {results_path}", flush=True)
                continue
            models: dict[str, Any] = {}
            try:
                for model, profile in DATASETS[dataset]["models"]:
                    tkey = f"{key} {model}"
                    if tkey in trained and Path(trained[tkey]["model_dir"]).exists():
                        print(f"== {key}: reusing {model} from {trained[tkey]['run_dir']}")
                        models[model] = trained[tkey]
                        continue
                    print(f"== {key}: training {model} for {minutes:g} min", flush=True)
                    if name == "sleap-nn":
                        models[model] = train_sleapnn_model(
                            model, PROFILES / profile, files, threads, minutes, runs, args
                        )
                    else:
                        models[model] = train_model(
                            name, model, PROFILES / profile, train_pl, val_pl, minutes, runs, args
                        )
                    trained[tkey] = models[model]
                    write_text_atomic(partial_path, json.dumps(trained, indent=2))
                print(f"== {key}: predicting {len(test)} test frames", flush=True)
                if name == "sleap-nn":
                    tag = f"{minutes:g}min"
                    ev = predict_and_evaluate_sleapnn(
                        models, test, files, max_instances, threads, tag, args
                    )
                else:
                    ev = predict_and_evaluate(models, test, max_instances, args.device)
            except RuntimeError as err:
                if name != "sleap-nn":
                    raise
                print(f"== {key}: sleap-nn failed, left out of the results:\n{err}", flush=True)
                continue
            payload["points"][key] = {
                "dataset": dataset,
                "tool": name,
                "minutes": minutes,
                "max_instances": max_instances,
                "train_frames": len(train_pl),
                "val_frames": len(val_pl),
                "test_frames": len(test),
                "models": models,
                "eval": ev,
            }
            write_text_atomic(results_path, json.dumps(payload, indent=2))
            for model, m in models.items():
                loop = f" ({m['fit_s'] / 60:.1f} min training loop)" if m.get("fit_s") else ""
                print(
                    f"{key} {model}: {m['cpu_s'] / 60:.1f} CPU-min in {m['train_s'] / 60:.1f} "
                    f"min{loop} (= {m['cores_used']:.2f} of {cores} cores), load average "
                    f"{m['load_avg_1min_start']:.1f} -> {m['load_avg_1min_end']:.1f}; "
                    f"{'best' if m['used_best_model'] else 'LAST (no validated epoch)'} model",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="flies", help=f"comma list of: {', '.join(DATASETS)}")
    p.add_argument("--slp", default=str(DEFAULT_SLP), help="the flies labels")
    p.add_argument(
        "--budgets",
        "--minutes",
        type=parse_budgets,
        default=[10.0],
        help="training budget(s) per model in minutes, comma-separated (e.g. 2,4,8,16,32)",
    )
    p.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma list of: {', '.join(CONFIGS)}",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    p.add_argument("--out", default="/tmp/posekit_time_to_accuracy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sleap-nn-python",
        default=SLEAP_NN_PYTHON if Path(SLEAP_NN_PYTHON).exists() else None,
        help="python of an environment with sleap-nn, for the sleap-nn config "
        f"(default: {SLEAP_NN_PYTHON} if it exists)",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="MODEL:KEY=VALUE",
        help="a user override for the posekit config's model (centroid, centered or single), "
        "planned around like `posekit train --auto KEY=VALUE` (repeatable), e.g. "
        "centered:model.backbone.unet.filters=24",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="skip the points already in --out's results.json and reuse the runs already "
        "trained there (trained.json) instead of training again",
    )
    p.add_argument(
        "--plot-only",
        action="store_true",
        help="train nothing: draw the time-to-accuracy picture from --out's results.json "
        "and every --merge folder's",
    )
    p.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="DIR",
        help="another --out folder whose results.json points join the picture (repeatable)",
    )
    p.add_argument("--png", default=None, help="the picture (default: OUT/time_to_accuracy.png)")
    args = p.parse_args(argv)

    out = Path(args.out)
    png = Path(args.png) if args.png else out / "time_to_accuracy.png"
    if args.plot_only:
        points = load_points([*map(Path, args.merge), out])
        if not points:
            p.error(f"no points in {out}/results.json nor in any --merge folder's")
        print(f"time to accuracy: {plot_time_to_accuracy(points, png)} ({len(points)} points)")
        return 0
    datasets = [d.strip() for d in args.dataset.split(",") if d.strip()]
    if not datasets or set(datasets) - set(DATASETS):
        p.error(
            f"--dataset: unknown {sorted(set(datasets) - set(DATASETS))}; choose from flies, reaching"
        )
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in CONFIGS]
    if bad or not configs:
        p.error(f"--configs: unknown {bad}; choose from {', '.join(CONFIGS)}")
    if "sleap-nn" in configs and not (args.sleap_nn_python and Path(args.sleap_nn_python).exists()):
        print(
            f"skipping the sleap-nn config: no sleap-nn interpreter at "
            f"{args.sleap_nn_python or SLEAP_NN_PYTHON} (install sleap-nn in its own "
            "environment and pass --sleap-nn-python /path/to/venv/bin/python)",
            flush=True,
        )
        configs.remove("sleap-nn")
        if not configs:
            return 1
    if args.sleap_nn_python:  # abspath, not resolve: a venv's python is a symlink
        args.sleap_nn_python = os.path.abspath(args.sleap_nn_python)
    if "flies" in datasets and not Path(args.slp).exists():
        p.error(f"labels not found: {args.slp} (the flies clip lives in shared/data/flies/)")
    if "reaching" in datasets and not (REACHING / "reaching.train.pkg.slp").exists():
        p.error(f"reaching labels not found in {REACHING} (shared/data/reaching/)")

    import torch
    from rich.console import Console

    cores, threads = set_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    payload = {"points": {}}
    if args.reuse and results_path.exists():
        payload = json.loads(results_path.read_text())
        payload.setdefault("points", {})
    payload["meta"] = {
        "threads": threads,
        "cores": cores,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__,
        "device": args.device,
        "sleap_nn_python": args.sleap_nn_python if "sleap-nn" in configs else None,
    }
    for dataset in datasets:
        run_dataset(dataset, configs, args, payload, (cores, threads))
    points = payload["points"]
    if not points:
        return 1

    table = results_table(points)
    oracle_lines = [
        f"reference, no network ({dataset}): the mean training pose placed at each test "
        f"animal's true position and heading scores OKS mAP {o['oks_voc.mAP']:.3f}, mAR "
        f"{o['oks_voc.mAR']:.3f}, mean OKS {o['oks.mOKS']:.3f}, median error "
        f"{o['dist.p50']:.2f} px"
        for dataset, o in payload.get("template_oracle", {}).items()
    ]
    console = Console(width=180)
    console.print(table)
    for line in oracle_lines:
        console.print(line)
    with open(out / "results.txt", "w") as f:
        Console(file=f, width=180).print(table)
        print("\n".join(oracle_lines), file=f)
    curves = plot_curves(points, out / "val_loss_curves.png")
    picture = plot_time_to_accuracy(load_points([*map(Path, args.merge), out]), png)
    print(f"curves: {curves}\ntime to accuracy: {picture}\nresults: {results_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
