"""Reduced-precision inference: which dtype a device runs well, and autocast around it.

Reduced precision changes outputs (bf16 keeps ~3 significant digits), so it is opt-in and
separate from `optimize_for_inference`, whose outputs match the original to float32
rounding.

Whether a CPU can run bfloat16 is asked of the installed torch, not read from a list of
CPU names: `bf16_support()` runs a tiny bf16 convolution through every path posekit uses
(plain, autocast, and oneDNN's fused convolution + ReLU of the inference rewrites). On an
AVX2-only CPU oneDNN refuses the fused call ("bf16 path needs the cpu support
avx_ne_convert or avx512bw, avx512vl and avx512dq"), so a flag-only check said yes where
prediction then crashed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import warnings
from dataclasses import dataclass
from typing import Any

from posekit.errors import PosekitError
from posekit.model.device import device_type

__all__ = [
    "BF16_ENV",
    "Bf16Support",
    "bf16_support",
    "cpu_runs_bf16",
    "cpu_supports_bf16",
    "precision",
    "resolve_precision",
    "usable_bf16",
]

# Set to 0 to make posekit treat this CPU as one without bfloat16 (tests use it to cover
# the other kind of machine; users can use it to rule bf16 out).
BF16_ENV = "POSEKIT_CPU_BF16"

# CPU features with bfloat16 arithmetic in hardware (x86: AVX512-BF16, AMX, AVX-NE-CONVERT;
# Arm: the BF16 extension). Without them oneDNN emulates bf16, slower than float32.
_NATIVE_X86 = ("avx512_bf16", "amx_bf16", "avx_ne_convert")


@dataclass(frozen=True)
class Bf16Support:
    """What this CPU does with bfloat16.

    runs: every bf16 convolution path posekit uses ran.
    native: the hardware computes bf16 itself (faster than float32); False where oneDNN
        only emulates it.
    reason: one line saying why not, for warnings and `posekit system`.
    """

    runs: bool
    native: bool
    reason: str


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux /proc/cpuinfo), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        return None
    return None


def _probe_bf16() -> str | None:
    """Run a tiny bf16 convolution through posekit's paths; the first error, or None."""
    import torch
    import torch.nn.functional as F

    from posekit.optimize._modules import fused_conv_relu_op

    try:
        with torch.inference_mode():
            x = torch.randn(1, 8, 6, 6).to(memory_format=torch.channels_last)
            w = torch.randn(8, 8, 3, 3)
            F.conv2d(x.bfloat16(), w.bfloat16(), padding=1)  # bf16 weights (predict)
            with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16-mixed (train)
                F.conv2d(x, w, padding=1)
            op = fused_conv_relu_op()
            if op is not None:  # the inference rewrites' fused convolution + ReLU
                op(x.bfloat16(), w.bfloat16(), None, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
    except Exception as err:  # noqa: BLE001 - any failure means "cannot run here"
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    return None


@functools.cache
def bf16_support() -> Bf16Support:
    """Whether this CPU runs bfloat16, and natively (cached for the process).

    `POSEKIT_CPU_BF16=0` makes the answer "no" (it is read once, at the first call).
    """
    if os.environ.get(BF16_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return Bf16Support(False, False, f"bfloat16 switched off by {BF16_ENV}=0")
    error = _probe_bf16()
    if error is not None:
        return Bf16Support(False, False, f"this CPU cannot run bfloat16 here ({error})")
    flags = _cpu_flags()
    if flags is not None:
        if platform.machine().lower() in ("aarch64", "arm64"):
            native = "bf16" in flags
        else:
            native = any(f in flags for f in _NATIVE_X86)
    else:  # no flag list (macOS, Windows): trust oneDNN's own check
        import torch

        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover - unusual builds
            native = False
    reason = (
        ""
        if native
        else "this CPU only emulates bfloat16 (no AVX512-BF16/AMX): slower than float32"
    )
    return Bf16Support(True, native, reason)


def cpu_supports_bf16() -> bool:
    """Whether bfloat16 runs natively here, i.e. is worth choosing automatically."""
    support = bf16_support()
    return support.runs and support.native


def cpu_runs_bf16() -> bool:
    """Whether bfloat16 runs at all here (natively or emulated)."""
    return bf16_support().runs


def usable_bf16(device: Any = None, what: str = "--precision bf16") -> bool:
    """True when bfloat16 can run on `device`; else one warning saying float32 is used.

    The answer to a user who asks for bf16 on a CPU that cannot run it: the work goes on
    in float32 (the same results, more slowly) rather than stopping with oneDNN's error.
    """
    if device_type(device) != "cpu":
        return True
    support = bf16_support()
    if support.runs:
        return True
    warnings.warn(
        f"{what}: {support.reason}; running in float32 instead", UserWarning, stacklevel=3
    )
    return False


_ALIASES = {
    None: "float32",
    "fp32": "float32",
    "float32": "float32",
    "32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "16": "float16",
    "auto": "auto",
}


def resolve_precision(dtype: str | None = "auto", device: Any = None) -> str:
    """The dtype name `precision(dtype, device)` will use: float32, bfloat16 or float16.

    "auto" means float16 on CUDA (and MPS), bfloat16 on a CPU with native bf16 support,
    float32 otherwise. An explicit bf16 on a CPU that cannot run it gives float32 and one
    warning.
    """
    key = dtype if dtype is None else str(dtype).lower()
    if key not in _ALIASES:
        raise PosekitError(
            f"precision={dtype!r} is not known; use 'auto', 'fp32', 'bf16' or 'fp16'"
        )
    name = _ALIASES[key]
    if name == "bfloat16" and not usable_bf16(device, f"precision={dtype!r}"):
        return "float32"
    if name != "auto":
        return name
    kind = device_type(device)
    if kind in ("cuda", "mps"):
        return "float16"
    if kind == "cpu" and cpu_supports_bf16():
        return "bfloat16"
    return "float32"


def precision(dtype: str | None = "auto", device: Any = None):
    """Context manager running the enclosed inference in reduced precision (autocast).

    Args:
        dtype: "auto" (see `resolve_precision`), "fp32" (no-op), "bf16" or "fp16".
        device: a device, device string, tensor or module saying where the model runs.

    Example::

        with torch.inference_mode(), precision("auto", model):
            out = model(x)
        maps = {k: v.float() for k, v in out.items()}

    Autocast keeps weights in float32 and runs convolutions and matrix products in the
    reduced type, so the same model serves both precisions. Outputs come back in the
    reduced type: cast them before peak finding, whose subpixel refinement needs float32.
    """
    import torch

    name = resolve_precision(dtype, device)
    if name == "float32":
        return contextlib.nullcontext()
    kind = device_type(device)
    return torch.autocast(device_type=kind, dtype=getattr(torch, name))
