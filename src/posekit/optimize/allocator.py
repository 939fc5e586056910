"""Keep freed memory in the process, so large CPU tensors are reused instead of re-faulted.

glibc's malloc hands every allocation above its mmap threshold (which adapts, but never
beyond 32 MiB) to the kernel as a fresh mapping and unmaps it again on free. A pose
network at full frame size allocates activations of 25-100 MiB per layer and batch
(ConvNeXt-T's first-stage MLP at 256 px, batch 4: 100 MiB), so every batch maps those
buffers anew and the kernel zero-fills them one 4 KiB page fault at a time, then unmaps
them. On this project's CPU that fault work cost as much as the first stage's matrix
products (README: "Memory the allocator keeps").

`keep_freed_memory` raises glibc's mmap threshold to 1 GiB and its trim threshold
likewise (``mallopt``), so such buffers come from malloc's heap and stay mapped from one
batch to the next: the same effect PyTorch's CPU performance guide gets by swapping in
jemalloc or tcmalloc, without a preloaded library. The cost is that the process keeps
its peak heap until it exits instead of giving freed memory back, which a predictor or
a training run reaches again on the next batch anyway.

It changes the whole process (a library call cannot scope malloc), so posekit applies it
where it runs a network on the CPU: `posekit predict` / predictors and `posekit train`.
``POSEKIT_MALLOC=system`` leaves malloc as it is. Linux with glibc only; elsewhere (macOS,
Windows, musl) it does nothing and says so by returning False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# mallopt takes a C int; 1 GiB keeps whole frame batches on the heap while a multi-GiB
# allocation (a decoded video chunk) still maps and unmaps on its own
_KEEP_BYTES = 1 << 30

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (module doc); True when it is in effect.

    Idempotent and cheap: the first call decides, later calls return the same answer.
    """
    if "applied" not in _state:
        _state["applied"] = _apply()
    return _state["applied"]


def _apply() -> bool:
    if os.environ.get("POSEKIT_MALLOC", "").strip().lower() == "system":
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)
    )
    if not ok:
        logger.debug("glibc refused the malloc thresholds; large buffers stay mmap-backed")
    return ok


def _glibc():
    """The C library when it is glibc (the only malloc whose mallopt means this), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc
