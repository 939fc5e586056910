"""Training throughput of posekit: steps/s and frames/s, with where the time goes.

Trains a SLEAP profile (default: `shared/sleap_profiles/baseline_medium_rf.single.json`
when present, else posekit's shipped `single_instance_unet`) on rendered synthetic data
at a few image sizes, batch 4, and splits each step into

- load:    the DataLoader delivering a raw batch (frame decoding/caching, collation),
- device:  moving it to the device and finishing it there (augmentation, scaling,
           targets: `DataPipeline.process`, what `on_after_batch_transfer` runs),
- compute: forward, loss, backward and the optimizer step.

The loop is the one Lightning runs, spelled out so each part can be timed (CUDA is
synchronised around each part); `train_step_breakdown.py` splits real Lightning steps of
`posekit train --auto` finer (forward, loss, backward, optimizer, validation). Run:
``python benchmarks/train_throughput.py [--sizes 128,256,512] [--steps 30] [--device auto]
[--precisions 32-true,bf16-mixed]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DEFAULT_PROFILE = SHARED / "sleap_profiles" / "baseline_medium_rf.single.json"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    config,
    labels_path: str,
    device,
    steps: int,
    warmup: int,
    num_workers: int | None,
    precision: str = "32-true",
):
    """Time `steps` training steps; returns seconds per step for load, device, compute.

    ``precision``: "32-true" or "bf16-mixed" (bf16 autocast around forward and loss, as
    Lightning does). The model trains channels-last where the module does (CPU, CUDA).
    """
    import contextlib

    import torch

    from posekit.data.dataset import DataPipeline, batch_to_device
    from posekit.data.labels import load_training_labels
    from posekit.model.network import Model
    from posekit.training.datamodule import PoseDataModule
    from posekit.training.lightning_module import PoseLightningModule

    splits = load_training_labels(config.data.labels, training_labels=labels_path, preload=True)
    train_labels = splits["train"]
    skeleton = train_labels.skeleton
    frame_c = train_labels.frame_shape(0)[2]
    model = Model.from_config(
        config.model,
        in_channels=frame_c,
        part_names=skeleton.node_names,
        edges=[tuple(e) for e in skeleton.edges],
        classes=train_labels.class_names or None,
    )
    pipeline = DataPipeline.from_config(
        config, train_labels, model.head_specs, max_stride=model.maximum_stride
    )
    config.optimization.batches_per_epoch = steps + warmup
    dm = PoseDataModule(
        pipeline, train_labels, splits["val"], config.optimization, num_workers=num_workers
    )
    module = PoseLightningModule(model, config).to(device)
    module.on_fit_start()  # channels-last weights, as in `posekit train`
    optimizer = module.configure_optimizers()
    if precision == "bf16-mixed":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext
    loader = iter(dm.train_dataloader())
    gen = torch.Generator(device=device) if device.type != "mps" else None
    if gen is not None:
        gen.manual_seed(0)

    totals = {"load": 0.0, "device": 0.0, "compute": 0.0}
    for i in range(steps + warmup):
        _sync(device)
        t0 = time.perf_counter()
        raw = next(loader)
        t1 = time.perf_counter()
        batch = pipeline.process(batch_to_device(raw, device), augment=True, generator=gen)
        _sync(device)
        t2 = time.perf_counter()
        with autocast():
            loss, _ = module._step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        t3 = time.perf_counter()
        if i >= warmup:
            totals["load"] += t1 - t0
            totals["device"] += t2 - t1
            totals["compute"] += t3 - t2
    n_params = sum(p.numel() for p in model.parameters())
    shape = tuple(batch["image"].shape)
    return {k: v / steps for k, v in totals.items()}, n_params, shape


def main(argv: list[str] | None = None) -> None:
    import torch
    from rich.console import Console
    from rich.table import Table

    from posekit.config.job import load_config
    from posekit.data.synthetic import save_synthetic_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="training config (default: see above)")
    parser.add_argument("--sizes", default="128,256,512", help="square image sizes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48, help="synthetic frames per size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument(
        "--precisions", default="32-true", help="comma list: 32-true, bf16-mixed (side by side)"
    )
    args = parser.parse_args(argv)
    precisions = [v for v in args.precisions.split(",") if v]

    profile = args.profile or (
        str(DEFAULT_PROFILE) if DEFAULT_PROFILE.exists() else "single_instance_unet"
    )
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    console = Console()
    if not console.is_terminal:
        console = Console(width=130)
    if device.type == "cpu" and any(p.startswith("bf16") for p in precisions):
        from posekit.optimize import bf16_support

        support = bf16_support()
        if not support.runs:  # a float32 row labelled bf16 would mislead
            console.print(f"skipping bf16-mixed: {support.reason}")
            precisions = [p for p in precisions if not p.startswith("bf16")]
    base = load_config(profile)
    model_type = base.model.heads.which_oneof_attrib_name()
    animals = 1 if model_type == "single_instance" else 2

    table = Table(
        title=f"posekit training throughput: {Path(profile).name}, batch {args.batch_size}, {device}"
    )
    for col in (
        "image",
        "precision",
        "model input",
        "params",
        "steps/s",
        "frames/s",
        "load ms",
        "device ms",
        "compute ms",
        "load %",
    ):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="posekit_bench_") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            labels = save_synthetic_dataset(
                Path(tmp) / f"s{size}",
                n_frames=args.frames,
                n_animals=animals,
                image_size=size,
                n_parts=5,
                seed=0,
            )
            for precision in precisions:
                config = base.model_copy(deep=True)
                config.optimization.batch_size = args.batch_size
                per_step, n_params, shape = measure(
                    config,
                    str(labels),
                    device,
                    args.steps,
                    args.warmup,
                    args.num_workers,
                    precision,
                )
                step = sum(per_step.values())
                table.add_row(
                    f"{size}x{size}",
                    precision,
                    "x".join(str(v) for v in shape[1:]),
                    f"{n_params:,}",
                    f"{1 / step:.2f}",
                    f"{args.batch_size / step:.1f}",
                    f"{1000 * per_step['load']:.1f}",
                    f"{1000 * per_step['device']:.1f}",
                    f"{1000 * per_step['compute']:.1f}",
                    f"{100 * per_step['load'] / step:.0f}",
                )
                console.print(f"  {size}x{size} {precision}: {1 / step:.2f} steps/s")
    console.print(table)


if __name__ == "__main__":
    main()
