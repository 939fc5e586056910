"""Reduced-precision inference: which dtype a device runs well, and autocast around it.

Reduced precision changes outputs (bf16 keeps ~3 significant digits), so it is opt-in and
separate from `optimize_for_inference`, whose outputs match the original to float32
rounding.
"""

from __future__ import annotations

import contextlib
from typing import Any

from posekit.errors import PosekitError
from posekit.model.device import device_type

__all__ = ["cpu_supports_bf16", "precision", "resolve_precision"]


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN: AVX512-BF16/AMX).

    Without hardware support oneDNN emulates bf16, which is slower than float32, so
    `precision("auto")` only picks bf16 when this is True.
    """
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available()) and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
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
    float32 otherwise.
    """
    key = dtype if dtype is None else str(dtype).lower()
    if key not in _ALIASES:
        raise PosekitError(
            f"precision={dtype!r} is not known; use 'auto', 'fp32', 'bf16' or 'fp16'"
        )
    name = _ALIASES[key]
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
