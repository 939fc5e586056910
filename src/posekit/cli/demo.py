"""`posekit demo`: the whole tool on data it makes itself, in minutes, on a laptop CPU.

1. renders a synthetic multi-animal dataset (moving animals with exactly known
   keypoints, identities as tracks) and a held-out synthetic video with its truth;
2. trains a top-down pair (centroid model + centered-instance model) sized for a CPU;
3. predicts the held-out video and tracks the animals (`posekit.tracking`, two animals);
4. evaluates poses and identities against the truth, and writes an overlay picture
   (each animal coloured by its track) and the training curves.

Everything goes under one output folder; the paths and the score are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

IMAGE_SIZE = 192
BODY_LENGTH = 56.0  # px: animals large enough that OKS reflects pose, not pixel noise
N_PARTS = 5
N_ANIMALS = 2
DEFAULT_OUT = "demo_output"
DEFAULT_MINUTES = 6.0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="synthetic data -> train -> predict -> evaluate -> picture"
    )
    p.add_argument(
        "--out", default=DEFAULT_OUT, help="folder for everything it writes (default: %(default)s)"
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=DEFAULT_MINUTES,
        help="training budget in minutes, both models together, 0.5 at least "
        "(default: %(default)s)",
    )
    return p


def _config(model_type: str) -> dict[str, Any]:
    """Small CPU-sized configs (SLEAP fields) for the two top-down models."""
    # Anchor: the bounding-box midpoint (anchor_part null), so the crop, sized from the
    # largest animal, holds the whole animal whichever way it faces.
    if model_type == "centroid":
        # Finding animals needs little resolution or capacity: half-size input (4x fewer
        # pixels) and 8 base filters keep each step cheap on a CPU.
        backbone = {"max_stride": 16, "output_stride": 2, "filters": 8}
        heads = {"centroid": {"anchor_part": None, "sigma": 2.0, "output_stride": 2}}
        preprocessing = {"input_scaling": 0.5}
    else:
        backbone = {"max_stride": 16, "output_stride": 2, "filters": 16}
        heads = {"centered_instance": {"anchor_part": None, "sigma": 1.5, "output_stride": 2}}
        preprocessing = {"input_scaling": 1.0}
    return {
        "data": {
            "labels": {"validation_fraction": 0.1},
            "preprocessing": preprocessing,
            "instance_cropping": {"center_on_part": None, "crop_size_detection_padding": 16},
        },
        "model": {
            "backbone": {"unet": {**backbone, "filters_rate": 2.0, "up_interpolate": True}},
            "heads": heads,
        },
        "optimization": {
            "batch_size": 8,
            "epochs": 1000,  # bounded by the time budget
            "batches_per_epoch": 20,
            "min_batches_per_epoch": 20,
            "val_batches_per_epoch": 4,
            "min_val_batches_per_epoch": 4,
            "initial_learning_rate": 1e-3,
            "augmentation_config": {
                "rotate": True,
                "rotation_min_angle": -180.0,
                "rotation_max_angle": 180.0,
            },
            "learning_rate_schedule": {"reduce_on_plateau": True, "plateau_patience": 5},
            "early_stopping": {"stop_training_on_plateau": False},
        },
        "outputs": {"run_name": model_type, "save_visualizations": False},
    }


def run_demo_pipeline(
    out: str | Path = DEFAULT_OUT, minutes: float = DEFAULT_MINUTES
) -> dict[str, Any]:
    """Run the demo; returns a dict of output paths and scores."""
    from rich.console import Console

    from posekit.config.job import TrainingJobConfig
    from posekit.data.labels import save_labels
    from posekit.data.synthetic import save_synthetic_dataset
    from posekit.evaluation import evaluate
    from posekit.inference.predictors import load_predictor
    from posekit.tracking import track
    from posekit.training.model_type import budget_share
    from posekit.training.run import train
    from posekit.visualization import plot_training_curve, render

    console = Console()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    console.rule("[bold]1. Synthetic data")
    train_slp = save_synthetic_dataset(
        out / "data",
        n_frames=320,
        n_animals=N_ANIMALS,
        image_size=IMAGE_SIZE,
        n_parts=N_PARTS,
        seed=0,
        name="train",
    )
    test_slp = save_synthetic_dataset(
        out / "data",
        n_frames=60,
        n_animals=N_ANIMALS,
        image_size=IMAGE_SIZE,
        n_parts=N_PARTS,
        seed=1,
        name="heldout",
        video_format="mp4",
    )
    console.print(f"training labels: {train_slp}\nheld-out video + truth: {test_slp}")

    console.rule("[bold]2. Training (top-down: centroid + centered instance)")
    budget = max(minutes, 0.5) * 60.0
    runs = {}
    for model_type in ("centroid", "centered_instance"):
        share = budget_share(model_type, pair=True)
        cfg = TrainingJobConfig.from_dict(_config(model_type))
        runs[model_type] = train(
            cfg,
            labels=train_slp,
            runs_folder=out / "models",
            run_name=model_type,
            max_time=budget * share,
            device="auto",
        )
        console.print(f"{model_type}: {runs[model_type]}")

    console.rule("[bold]3. Prediction on the held-out video")
    import sleap_io as sio

    truth = sio.load_slp(str(test_slp))
    predictor = load_predictor(
        [runs["centroid"] / "best_model", runs["centered_instance"] / "best_model"],
        max_instances=N_ANIMALS,
    )
    predictions = predictor.predict(truth.video)

    console.rule("[bold]4. Tracking (one identity per animal over the video)")
    if any(lf.instances for lf in predictions.labeled_frames):
        predictions = track(predictions, max_tracks=N_ANIMALS)
    else:
        console.print(
            "[bold red]No animal was found in any frame[/]: the models are undertrained "
            "(give the demo more --minutes); nothing to track."
        )
    pred_path = save_labels(predictions, out / "heldout.predictions.slp")

    console.rule("[bold]5. Evaluation and pictures")
    metrics = evaluate(truth, predictions)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2, default=float))
    overlay = render(predictions, out / "overlay.png", frames=list(range(0, 60, 15)))
    curves = []
    for model_type, run in runs.items():
        csv = run / "metrics.csv"
        if csv.exists():
            curves.append(plot_training_curve(csv, out / f"training_curve_{model_type}.png"))

    result = {
        "mAP": metrics.get("oks_voc.mAP"),
        "mAR": metrics.get("oks_voc.mAR"),
        "median_error_px": metrics.get("dist.p50"),
        "identity_switches": (metrics.get("tracking") or {}).get("identity_switches"),
        "idf1": (metrics.get("tracking") or {}).get("idf1"),
        "predictions": str(pred_path),
        "overlay": str(overlay),
        "training_curves": [str(c) for c in curves],
        "metrics": str(metrics_path),
        "models": {k: str(v / "best_model") for k, v in runs.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    console.rule("[bold green]Done")
    console.print(
        f"OKS mAP {result['mAP']:.3f}   mAR {result['mAR']:.3f}   "
        f"median error {result['median_error_px']:.2f} px   ({result['seconds']:.0f} s)"
    )
    if result["idf1"] is not None:
        console.print(
            f"tracking: {result['identity_switches']} identity switches, IDF1 "
            f"{result['idf1']:.3f} (the overlay colours each animal by its track)"
        )
    for key in ("predictions", "overlay", "metrics"):
        console.print(f"{key:>12}: {result[key]}")
    for c in result["training_curves"]:
        console.print(f"{'curve':>12}: {c}")
    for k, v in result["models"].items():
        console.print(f"{k:>12}: {v}")
    return result


def run(args: argparse.Namespace) -> int:
    import os

    # As `posekit train`: OpenMP threads that wait passively keep a shared CPU's training
    # steps fast (6x under load on 2 cores, README "Training"). A user's setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    run_demo_pipeline(args.out, minutes=args.minutes)
    return 0
