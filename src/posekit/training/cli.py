"""`posekit train`: the command line's view of `posekit.training.train`."""

from __future__ import annotations

import argparse
from pathlib import Path

from posekit.errors import PosekitError


def _split_config_and_overrides(
    config: str | None, overrides: list[str] | None
) -> tuple[str | None, list[str]]:
    """argparse puts a lone `key=value` into the optional config slot; move it back."""
    items = list(overrides or [])
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *items]
    return config, items


def run_train(args: argparse.Namespace) -> int:
    """Load the config, apply overrides, train, print where the model is."""
    import os

    # Before torch loads OpenMP: threads that wait passively give their time slice back.
    # On a CPU shared with other jobs spinning threads lose it at every barrier (a UNet
    # step ran 2.6x faster with PASSIVE on the shared 2-core machine; see
    # benchmarks/time_to_accuracy.py). A user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from posekit.training.train import train

    config, overrides = _split_config_and_overrides(
        getattr(args, "config", None), getattr(args, "overrides", None)
    )
    resume = getattr(args, "resume", None)
    if config is None and resume is None:
        raise PosekitError(
            "posekit train needs a config (a SLEAP training_config.json, a posekit YAML or "
            "a shipped name such as single_instance_unet), or --resume RUN_FOLDER"
        )
    if config is not None and resume is not None:
        print(
            f"posekit: --resume uses the run folder's own training_config.json; ignoring {config}"
        )
    run_dir = train(
        config if resume is None else None,
        labels=getattr(args, "labels", None),
        val_labels=getattr(args, "val_labels", None),
        run_name=getattr(args, "run_name", None),
        epochs=getattr(args, "epochs", None),
        batch_size=getattr(args, "batch_size", None),
        device=getattr(args, "device", "auto") or "auto",
        devices=getattr(args, "devices", None),
        num_nodes=getattr(args, "num_nodes", 1) or 1,
        strategy=getattr(args, "strategy", None),
        resume=resume,
        overrides=overrides,
        runs_folder=getattr(args, "runs_folder", None),
        auto=bool(getattr(args, "auto", False)),
        max_time=getattr(args, "max_time", None),
        precision=getattr(args, "precision", None),
    )
    from posekit.training.train import _env_rank

    if _env_rank() == 0:
        best = run_dir / "best_model"
        print(f"Run folder: {run_dir}")
        if best.exists():
            print(f"Trained model: {best}")
    return 0


__all__ = ["run_train"]
