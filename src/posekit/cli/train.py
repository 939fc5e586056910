"""`posekit train CONFIG [key.path=value ...] --labels LABELS ...`: the command line's view
of `posekit.training.run.train`.

Overrides may stand anywhere on the line, before, between or after the options; tokens
argparse leaves over after the options are added to `overrides` (`posekit.cli.parse_args`)
and told apart from the config here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from posekit.cli.common import LOOSE_TOKENS
from posekit.errors import PosekitError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a model from a config and labels")
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        metavar="CONFIG",
        help="a SLEAP training_config.json, a posekit YAML/JSON, a SLEAP profile name "
        "(posekit configs) or single_instance_unet; without one, the model type is chosen "
        "from the labels; not needed with --resume",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.path=value",
        help="config overrides such as optimization.epochs=5, before or after the options",
    )
    p.add_argument(
        "--labels",
        help="training labels, .slp (default: the config's data.labels.training_labels)",
    )
    p.add_argument(
        "--val-labels",
        help="validation labels, .slp (default: the config's data.labels.validation_labels, "
        "else a seeded validation_fraction split of the training labels)",
    )
    p.add_argument(
        "--run-name",
        help="name of the run folder (default: the config's outputs.run_name, else "
        "<timestamp>.<model type>.n=<labeled frames>)",
    )
    p.add_argument(
        "--runs-folder",
        help="folder the run folder is made in (default: the config's outputs.runs_folder)",
    )
    p.add_argument(
        "--epochs", type=int, help="training epochs (default: the config's optimization.epochs)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="samples per training batch (default: the config's optimization.batch_size)",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where to train; auto: a CUDA GPU, else Apple mps, else the CPU "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        help="devices per node, e.g. GPUs of this machine to train on (default: 1)",
    )
    p.add_argument(
        "--num-nodes",
        type=int,
        default=1,
        help="machines to train on, for multi-node runs (default: %(default)s)",
    )
    p.add_argument(
        "--strategy",
        default=None,
        help="Lightning distributed strategy such as ddp (default: Lightning's auto)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_FOLDER",
        help="continue this run after its last finished epoch, with its own config; "
        "overrides may change only optimization.epochs and outputs.* (default: start a "
        "new run)",
    )
    p.add_argument(
        "--auto",
        action="store_true",
        help="let posekit choose settings for these labels and this machine (input "
        "scaling, batch size, epochs, ...); overrides still win",
    )
    p.add_argument(
        "--identity",
        action="store_true",
        help="without a config: train a model that also tells animals apart (multi-class, "
        "from the labels' tracks) (default: poses only)",
    )
    p.add_argument(
        "--masks",
        action="store_true",
        help="without a config: train a segmentation model on the labels' masks (make them "
        "from poses with `posekit masks`) (default: poses; labels with masks and no poses "
        "train a mask model anyway)",
    )
    p.add_argument(
        "--max-time",
        default=None,
        help="wall-clock training budget: seconds, or DD:HH:MM:SS; with --auto the "
        "recommended settings are planned for it (default: no limit)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=["32-true", "bf16-mixed", "16-mixed"],
        help="Lightning precision (default 32-true; --auto picks bf16-mixed on CPUs and "
        "GPUs with native bfloat16)",
    )
    p.add_argument(
        "--wandb",
        default=None,
        metavar="PROJECT",
        help="also log to this Weights & Biases project (needs pip install 'posekit[wandb]'; "
        "WANDB_MODE=offline logs without an account) (default: no W&B). TensorBoard logs "
        "into <run>/logs/ with outputs.tensorboard.write_logs=true",
    )
    p.set_defaults(**{LOOSE_TOKENS: "overrides"})
    return p


def _split_config_and_overrides(
    config: str | None, overrides: list[str]
) -> tuple[str | None, list[str]]:
    """The config and the overrides among the positional tokens, in their order.

    argparse puts the first positional token into `config`, and it may be an override
    (`posekit train optimization.epochs=3 --resume RUN`); the overrides list may hold the
    config (`posekit train --labels L optimization.epochs=3 job.yaml`). A token with '='
    that is not an existing file is an override; one other token is the config, and a
    second one is a mistake that is better reported than guessed at.
    """
    found: str | None = None
    items: list[str] = []
    for token in [*([config] if config is not None else []), *overrides]:
        if "=" in token and not Path(token).exists():
            items.append(token)
        elif found is None:
            found = token
        else:
            raise PosekitError(
                f"unexpected argument {token!r}: posekit train takes one config ({found}) and "
                "key.path=value overrides (e.g. optimization.epochs=5)"
            )
    return found, items


def run(args: argparse.Namespace) -> int:
    """Load the config, apply overrides, train, print where the model is."""
    import os

    # Before torch loads OpenMP: threads that wait passively give their time slice back.
    # On a CPU shared with other jobs spinning threads lose it at every barrier (a UNet
    # step ran 2.6x faster with PASSIVE on the shared 2-core machine; see
    # benchmarks/time_to_accuracy.py). A user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from posekit.model.device import resolve_device

    resolve_device(args.device)  # a device this machine lacks: refused before any work
    config, overrides = _split_config_and_overrides(args.config, args.overrides)
    if config is None and args.resume is None:
        if args.labels is None:
            raise PosekitError(
                "posekit train needs labels (--labels L.slp) to choose a model from, a config "
                "(a SLEAP training_config.json, a posekit YAML or a name from `posekit "
                "configs`), or --resume RUN_FOLDER"
            )
        return _train_chosen_type(args, overrides)
    if config is not None and args.resume is not None:
        print(
            f"posekit: --resume uses the run folder's own training_config.json; ignoring {config}"
        )
    from posekit.training.run import train
    from posekit.training.run_folder import env_rank

    run_dir = train(
        config if args.resume is None else None,
        run_name=args.run_name,
        resume=args.resume,
        overrides=overrides,
        runs_folder=args.runs_folder,
        max_time=args.max_time,
        **_common(args),
    )
    if env_rank() == 0:
        best = run_dir / "best_model"
        print(f"Run folder: {run_dir}")
        if best.exists():
            print(f"Trained model: {best}")
    return 0


def _train_chosen_type(args: argparse.Namespace, overrides: list[str]) -> int:
    """No config: choose the model type from the labels, say why, train every model of it.

    The models of a top-down pair train one after the other into one run folder
    (``<run>/centroid``, ``<run>/centered_instance``), the budget split between them;
    that folder goes straight into `posekit predict`.
    """
    import datetime

    from posekit.training.hardware import budget_seconds
    from posekit.training.model_type import budget_share, choose_model_type, default_configs
    from posekit.training.run import train
    from posekit.training.run_folder import env_rank

    kind, why = choose_model_type(
        args.labels, identity=args.identity, masks=getattr(args, "masks", False)
    )
    configs = default_configs(kind)
    if env_rank() == 0:
        print(f"posekit: model type {kind}: {why}")
    stamp = datetime.datetime.now().strftime("%y%m%d_%H%M%S")
    name = args.run_name or f"{stamp}.{kind}"
    parent = Path(args.runs_folder or "models")
    budget = budget_seconds(args.max_time)
    pair = len(configs) > 1
    runs = []
    for cfg in configs:
        head = cfg.model.heads.which_oneof_attrib_name()
        share = budget_share(head, pair)
        runs.append(
            train(
                cfg,
                run_name=head if pair else name,
                runs_folder=parent / name if pair else parent,
                overrides=overrides,
                max_time=None if budget is None else budget * share,
                **_common(args),
            )
        )
    if env_rank() == 0:
        folder = parent / name
        print(f"Run folder: {folder.resolve()} ({', '.join(r.name for r in runs)})")
        print(f"Predict with: posekit predict {folder} VIDEO")
    return 0


def _common(args: argparse.Namespace) -> dict:
    """`train()` arguments every way of training takes from the command line as they are."""
    return dict(
        labels=args.labels,
        val_labels=args.val_labels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=args.device,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        auto=args.auto,
        precision=args.precision,
        wandb=getattr(args, "wandb", None),
    )
