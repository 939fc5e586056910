"""Where a training run writes, and which process may write it.

A run folder is ``<runs_folder>/<prefix><run_name><suffix>``; the run name defaults to
SLEAP's ``<yymmdd_HHMMSS>.<model type>.n=<labelled frames>`` and an existing folder gets
a ``_1``, ``_2``, ... suffix. Only global rank 0 writes (configs, run info, the outputs of
`posekit.training.callbacks.RunOutputs`).

Distributed runs: Lightning's DDP launcher starts the other ranks by running the same
command again; they receive the run folder of rank 0 through the `POSEKIT_RUN_DIR`
environment variable, so every rank agrees on it. Jobs started by SLURM or torchrun
(every rank starts at once) need a fixed `run_name`, or get one from the job id.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError
from posekit.io.atomic import write_text_atomic
from posekit.training.inputs import heads_config

#: Environment variable through which rank 0 hands its run folder to the ranks it starts.
RUN_DIR_ENV = "POSEKIT_RUN_DIR"
#: What the config does not hold but a resumed run needs.
RUN_INFO = "posekit_run.json"


def write_run_info(run_dir: Path, seed: int) -> None:
    """Record the seed (it fixes the validation split) and the posekit version."""
    from posekit import __version__

    text = json.dumps({"seed": int(seed), "posekit_version": __version__}, indent=2)
    write_text_atomic(run_dir / RUN_INFO, text)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """What `write_run_info` wrote ({} for a run folder from before it existed)."""
    path = run_dir / RUN_INFO
    return json.loads(path.read_text()) if path.exists() else {}


def env_rank() -> int:
    """Global rank announced by a launcher (Lightning child, torchrun, SLURM); 0 if none."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "PMI_RANK"):
        value = os.environ.get(var)
        if value not in (None, "", "0"):
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def _externally_launched() -> bool:
    """True when every rank was started at once by SLURM or torchrun."""
    ntasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return ntasks > 1 or world > 1


def _auto_run_name(model_type: str, n: int) -> str:
    """SLEAP's run name: `<yymmdd_HHMMSS>.<model type>.n=<labelled frames>`.

    In a job whose ranks start independently the timestamp would differ between ranks,
    so the job id is used instead.
    """
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
    stamp = (
        job if (job and _externally_launched()) else _dt.datetime.now().strftime("%y%m%d_%H%M%S")
    )
    return f"{stamp}.{model_type}.n={n}"


def choose_run_dir(config: Any, n_frames: int) -> Path:
    """The run folder of a new run (fills `outputs.run_name` / `run_name_suffix` in place).

    A rank started by rank 0 takes rank 0's folder from `RUN_DIR_ENV`.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and env_rank() != 0:
        return Path(inherited)
    outputs = config.outputs
    model_type, _ = heads_config(config)
    if outputs.run_name is None:
        outputs.run_name = _auto_run_name(model_type, n_frames)
    base = Path(outputs.runs_folder).expanduser()
    if outputs.run_name_suffix is None:
        outputs.run_name_suffix = ""
        if not _externally_launched():
            i = 0
            while (
                base / (outputs.run_name_prefix + outputs.run_name + outputs.run_name_suffix)
            ).exists():
                i += 1
                outputs.run_name_suffix = f"_{i}"
    return Path(outputs.run_path).expanduser().resolve()


#: The run's config in sleap-nn's format (models with a backbone sleap-nn builds:
#: UNet, ConvNeXt, Swin, pretrained).
SLEAP_NN_CONFIG = "training_config.sleap_nn.yaml"


def write_configs(run_dir: Path, config: Any, initial: Any | None) -> None:
    """The config as given (`initial_config.json`) and as trained (JSON for SLEAP, YAML,
    and for backbones sleap-nn builds, sleap-nn's YAML, `training_config.sleap_nn.yaml`,
    which `sleap-nn train --config` reads)."""
    from posekit.config.sleap_nn import BACKBONES, to_sleap_nn_yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    if initial is not None:
        initial.model_copy(deep=True).save_json(run_dir / "initial_config.json")
    config.model_copy(deep=True).save_json(run_dir / "training_config.json")
    config.model_copy(deep=True).save_yaml(run_dir / "config.yaml")
    if config.model.backbone.which_oneof_attrib_name() in BACKBONES:
        try:
            text = to_sleap_nn_yaml(config)
        except PosekitError:  # a model type sleap-nn's YAML cannot express yet (masks, embedding)
            return
        write_text_atomic(run_dir / SLEAP_NN_CONFIG, text)


def resumed_run(resume: str | os.PathLike) -> tuple[Path, Path, Any, dict[str, Any]]:
    """The run folder to resume: (folder, its checkpoint, its config, its run info);
    refused when it has no checkpoint."""
    from posekit.config.job import TrainingJobConfig
    from posekit.training.callbacks import last_checkpoint

    run_dir = Path(resume).expanduser().resolve()
    ckpt_path = last_checkpoint(run_dir)
    if not ckpt_path.exists():
        raise PosekitError(
            f"cannot resume {run_dir}: it has no {ckpt_path.relative_to(run_dir)} (the "
            f"run did not finish an epoch, or this is not a posekit run folder)"
        )
    config = TrainingJobConfig.load_json(run_dir / "training_config.json")
    return run_dir, ckpt_path, config, read_run_info(run_dir)


#: What a resumed run may change: how long it trains and what it writes.
RESUME_MAY_CHANGE = ("optimization.epochs", "outputs.")


def check_resume_changes(run_dir: Path, saved: Any, changed: Any, overrides: dict) -> None:
    """Refuse to resume with settings that differ from the run's, naming them.

    The checkpoint holds weights and optimizer state for the run's own model and
    schedule; another architecture fails deep in `load_state_dict` (``size mismatch``),
    and other data or optimizer settings would silently make a different run. Checked
    before any file is touched.
    """
    from posekit.config.overrides import config_differences

    differ = [
        f"{key} {old!r} -> {new!r}"
        for key, old, new in config_differences(saved, changed)
        if not key.startswith(RESUME_MAY_CHANGE)
    ]
    if not differ:
        return
    given = " ".join(f"{k}={v}" for k, v in overrides.items())
    raise PosekitError(
        f"cannot resume {run_dir} with changed settings: {'; '.join(differ)}. A resumed run "
        "keeps its own settings (only optimization.epochs and outputs.* may change); to "
        f"train with the new ones start a new run: posekit train "
        f"{run_dir / 'training_config.json'} {given}".rstrip()
    )


__all__ = [
    "RUN_DIR_ENV",
    "RUN_INFO",
    "check_resume_changes",
    "SLEAP_NN_CONFIG",
    "choose_run_dir",
    "env_rank",
    "read_run_info",
    "resumed_run",
    "write_configs",
    "write_run_info",
]
