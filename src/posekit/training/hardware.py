"""The machine and the clock a training run gets: what `--auto` plans for.

`detect_hardware` says what runs the training (CPU cores, native bfloat16, a GPU and its
memory); `budget_seconds` reads a `--max-time` in any form people write it.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from typing import Any

from posekit.errors import PosekitError

#: Sustained training GFLOP/s assumed when `Hardware.train_gflops` is not given.
DEFAULT_GFLOPS = {"cpu_per_core": 15.0, "cuda": 5000.0, "mps": 1000.0}


@dataclass
class Hardware:
    """What the recommender needs to know about the machine.

    `train_gflops`: sustained GFLOP/s of training (forward + backward) on this machine;
    None uses `DEFAULT_GFLOPS`. Only the epoch lengths of budgeted runs depend on it.
    """

    kind: str = "cpu"  # "cpu", "cuda" or "mps"
    devices: int = 1
    memory_bytes: int | None = None  # per accelerator
    cpu_count: int = 1
    train_gflops: float | None = None
    bf16: bool = False  # native bfloat16 (CPU: AVX512-BF16/AMX; CUDA: compute >= 8.0)

    def gflops(self) -> float:
        if self.train_gflops:
            return float(self.train_gflops)
        if self.kind == "cuda":
            return DEFAULT_GFLOPS["cuda"] * max(self.devices, 1)
        if self.kind == "mps":
            return DEFAULT_GFLOPS["mps"]
        # bf16 autocast on AVX512-BF16/AMX cores measured ~2x float32 per step
        factor = 2.0 if self.bf16 else 1.0
        return factor * DEFAULT_GFLOPS["cpu_per_core"] * max(self.cpu_count, 1)


def detect_hardware(device: str = "auto") -> Hardware:
    """Inspect the machine (CUDA memory via torch, cores via the OS)."""
    import os

    import torch

    from posekit.optimize import cpu_supports_bf16

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if device in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Hardware(
            "cuda",
            torch.cuda.device_count(),
            int(props.total_memory),
            int(cores or 1),
            bf16=bool(torch.cuda.is_bf16_supported()),
        )
    if device in ("auto", "mps") and getattr(torch.backends, "mps", None) is not None:
        if torch.backends.mps.is_available():
            return Hardware("mps", 1, None, int(cores or 1))
    return Hardware("cpu", 1, None, int(cores or 1), bf16=cpu_supports_bf16())


def runnable_precision(precision: str, accelerator: str) -> str:
    """The Lightning precision to train with: a bf16 one falls back to ``32-true``, with
    one warning, on a CPU that cannot run bfloat16 (oneDNN would stop the first step)."""
    if not str(precision).startswith("bf16"):
        return precision
    import torch

    on_cpu = accelerator == "cpu" or (
        accelerator == "auto"
        and not torch.cuda.is_available()
        and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    )
    from posekit.optimize import usable_bf16

    if on_cpu and not usable_bf16("cpu", f"--precision {precision}"):
        return "32-true"
    return precision


def budget_seconds(max_time: Any) -> float | None:
    """A wall-clock budget in seconds from what `train(max_time=...)` accepts.

    Seconds (number), `datetime.timedelta`, ``"DD:HH:MM:SS"`` or a dict of timedelta
    fields (``{"minutes": 10}``); None for no budget.
    """
    if max_time is None:
        return None
    if isinstance(max_time, _dt.timedelta):
        seconds = max_time.total_seconds()
    elif isinstance(max_time, dict):
        try:
            seconds = _dt.timedelta(**max_time).total_seconds()
        except TypeError as err:
            raise PosekitError(
                f"max_time={max_time!r}: a dict must hold timedelta fields such as "
                f"{{'minutes': 10}} ({err})"
            ) from err
    elif isinstance(max_time, str) and re.fullmatch(r"\d+:\d+:\d+:\d+", max_time.strip()):
        d, h, m, s = (int(v) for v in max_time.strip().split(":"))
        seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    else:
        try:
            seconds = float(max_time)
        except (TypeError, ValueError):
            raise PosekitError(
                f"max_time={max_time!r} is not a time: give seconds (600), "
                f"'DD:HH:MM:SS' ('00:00:10:00') or a timedelta"
            ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise PosekitError(f"max_time={max_time!r} must be a positive time")
    return float(seconds)


__all__ = ["DEFAULT_GFLOPS", "Hardware", "budget_seconds", "detect_hardware", "runnable_precision"]
