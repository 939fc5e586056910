"""Where a real `posekit train --auto` step's time goes, phase by phase, and the A/B of the
optimizer implementation (fused vs torch's default loop), interleaved.

Runs `posekit.training.run.train` itself (the model type `posekit train LABELS --auto`
picks, its default config, `--auto`'s plan, Lightning), with a callback and timers wrapped
around the module's own methods, so nothing is timed on a second copy of the step:

- load:      the DataLoader handing over a batch and its move to the device,
- augment:   `on_after_batch_transfer` (augmentation, scaling, targets),
- forward:   `Model.forward_stacks`,
- loss:      `PoseLightningModule.compute_losses`,
- backward:  Lightning's `on_before_backward` .. `on_after_backward`,
- optimizer: `on_before_optimizer_step` .. `on_train_batch_end` (the weight update),
- other:     the rest of the step (Lightning, logging, callbacks),

plus validation (wall time per epoch, and amortised per training step). The first
`--warmup` steps are left out. The final evaluation after training is skipped here (it is
prediction, not training).

Run: ``python benchmarks/train_step_breakdown.py [--labels PATH] [--steps 20] [--epochs 2]
[--precision 32-true|bf16-mixed] [--ab]``. Labels default to the flies clip in
``../shared`` (else the reaching set, else rendered synthetic frames). ``--ab`` trains
twice per round, fused and plain optimizer, alternating, ``--rounds`` times.

The CPU kinds: this machine as it is; ``POSEKIT_CPU_BF16=0`` makes posekit treat the CPU
as having no native bfloat16 (``--auto`` then picks 32-true); ``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2`` also restricts oneDNN and ATen to AVX2 kernels, as on an
AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import lightning as L

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CANDIDATES = [
    SHARED / "data" / "flies" / "clip.slp",
    SHARED / "data" / "reaching" / "reaching.train.pkg.slp",
]
PHASES = ("load", "augment", "forward", "loss", "backward", "optimizer", "other")


class StepTimer(L.Callback):
    """Accumulates wall seconds per phase of each training step, and validation per epoch."""

    def __init__(self, steps_per_epoch: int, warmup: int = 3):
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup = int(warmup)
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self.val_seconds: list[float] = []
        self.precision = ""
        self._seen = 0
        self._now: dict[str, float] = {}
        self._step: dict[str, float] = {}

    # --------------------------------------------------------------- wrapping
    def _timed(self, phase: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not self._training:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            if phase == "augment":  # the batch has just arrived: loading ends here
                self._step["load"] = t0 - self._now["batch_end"]
            out = fn(*args, **kwargs)
            self._step[phase] = self._step.get(phase, 0.0) + time.perf_counter() - t0
            return out

        return wrapper

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer
        pl_module.on_after_batch_transfer = self._timed(
            "augment", pl_module.on_after_batch_transfer
        )
        pl_module.compute_losses = self._timed("loss", pl_module.compute_losses)
        model = pl_module.model
        model.forward_stacks = self._timed("forward", model.forward_stacks)

    @property
    def _training(self) -> bool:
        return bool(self._trainer.training)

    # --------------------------------------------------------------- hooks
    def on_fit_start(self, trainer, pl_module) -> None:
        self.precision = str(trainer.precision)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._now["batch_end"] = time.perf_counter()
        self._step = {}

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._now["backward"] = time.perf_counter()

    def on_after_backward(self, trainer, pl_module) -> None:
        self._step["backward"] = time.perf_counter() - self._now["backward"]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._now["optimizer"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self._step["optimizer"] = now - self._now["optimizer"]
        total = now - self._now["batch_end"]
        self._step["other"] = total - sum(self._step.get(p, 0.0) for p in PHASES[:-1])
        self._seen += 1
        if self._seen > self.warmup:
            for p in PHASES:
                self.totals[p] += self._step.get(p, 0.0)
            self.steps += 1
        self._step = {}
        self._now["batch_end"] = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._now["val"] = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_seconds.append(time.perf_counter() - self._now["val"])
        self._now["batch_end"] = time.perf_counter()

    # --------------------------------------------------------------- results
    def per_step(self) -> dict[str, float]:
        return {p: v / max(self.steps, 1) for p, v in self.totals.items()}


def default_labels(folder: Path) -> Path:
    """The first reference labels present, else rendered synthetic frames in `folder`."""
    for path in CANDIDATES:
        if path.exists():
            return path
    from posekit.data.synthetic import save_synthetic_dataset

    return save_synthetic_dataset(folder / "synthetic", n_frames=64, n_animals=2, image_size=256)


def train_once(labels: Path, runs: Path, args, fused: bool) -> tuple[StepTimer, str]:
    """One `train(..., auto=True)` run of `args.epochs` x `args.steps` steps, timed; and
    the model type `--auto` chose. `fused`: the module's fused optimizer (else torch's
    default), the A/B switch."""
    import posekit.training.run as run
    from posekit.training.lightning_module import PoseLightningModule
    from posekit.training.model_type import choose_model_type, default_configs

    kind, _ = choose_model_type(str(labels))
    config = default_configs(kind)[args.model]
    timer = StepTimer(args.steps, args.warmup)
    PoseLightningModule.fused_optimizer = fused
    evaluate, run._evaluate = run._evaluate, lambda *a, **k: None
    try:
        run.train(
            config,
            labels=str(labels),
            epochs=args.epochs,
            batch_size=args.batch_size,
            overrides={
                "optimization.batches_per_epoch": args.steps,
                "outputs.save_visualizations": False,
                **(
                    {"optimization.val_batches_per_epoch": args.val_batches}
                    if args.val_batches
                    else {}
                ),
            },
            runs_folder=runs,
            auto=True,
            precision=args.precision,
            callbacks=[timer],
            progress=False,
            device="cpu" if args.device == "cpu" else "auto",
        )
    finally:
        run._evaluate = evaluate
        PoseLightningModule.fused_optimizer = False
    return timer, kind


def breakdown_table(timer: StepTimer, title: str):
    from rich.table import Table

    per = timer.per_step()
    step = sum(per.values())
    val = sum(timer.val_seconds) / max(len(timer.val_seconds), 1)
    val_per_step = val / max(timer.steps_per_epoch, 1)
    table = Table(title=title)
    for col in ("phase", "ms / step", "share %"):
        table.add_column(col, justify="right")
    whole = step + val_per_step
    for p in PHASES:
        table.add_row(p, f"{1000 * per[p]:.1f}", f"{100 * per[p] / whole:.1f}")
    table.add_row("validation", f"{1000 * val_per_step:.1f}", f"{100 * val_per_step / whole:.1f}")
    table.add_row("training step", f"{1000 * step:.1f}", f"{1 / step:.2f} steps/s")
    table.add_row("validation / epoch", f"{1000 * val:.0f}", f"{len(timer.val_seconds)} epochs")
    return table


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=None, help="training labels (default: see above)")
    parser.add_argument("--model", type=int, default=0, help="which model of a pair (0, 1)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out")
    parser.add_argument(
        "--val-batches", type=int, default=None, help="validation batches (default: --auto's)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: --auto's")
    parser.add_argument(
        "--precision", default=None, help="32-true or bf16-mixed (default: --auto's)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "auto"])
    parser.add_argument("--ab", action="store_true", help="fused vs plain optimizer, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds")
    args = parser.parse_args(argv)
    console = Console(width=110)
    with tempfile.TemporaryDirectory(prefix="posekit_step_") as tmp:
        labels = Path(args.labels) if args.labels else default_labels(Path(tmp))
        arms = [True, False] if args.ab else [True]
        results: dict[bool, list[tuple[float, float]]] = {a: [] for a in arms}
        for r in range(args.rounds if args.ab else 1):
            for fused in arms if r % 2 == 0 else arms[::-1]:
                timer, kind = train_once(labels, Path(tmp) / "runs", args, fused)
                name = "fused" if fused else "plain"
                title = (
                    f"{labels.name}: {kind}[{args.model}], {timer.precision}, "
                    f"{name} optimizer, {timer.steps} timed steps"
                )
                console.print(breakdown_table(timer, title))
                per = timer.per_step()
                results[fused].append((1 / sum(per.values()), 1000 * per["optimizer"]))
        if args.ab:
            for fused, rounds in results.items():
                name = "fused" if fused else "plain"
                console.print(
                    f"{name} optimizer: steps/s per round "
                    + ", ".join(f"{v:.2f}" for v, _ in rounds)
                    + f" (best {max(v for v, _ in rounds):.2f}); optimizer ms per step "
                    + ", ".join(f"{ms:.1f}" for _, ms in rounds)
                )


if __name__ == "__main__":
    main()
