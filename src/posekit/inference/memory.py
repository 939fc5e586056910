"""How many frames one forward pass may take: the batch size from a memory budget.

A 4K frame (3840 x 2160) costs a bottom-up UNet about a gigabyte of activations, so the
batch that suits a 1024 x 1024 video (4 frames) can exhaust a laptop on 4K video. The
predictor therefore sizes its batch per frame shape:

- `measure_frame_cost` runs the predictor's own batch step (model, peaks, grouping) on
  two small blank frames and records the peak bytes of the tensors alive at once
  (`LiveTensorBytes`). The difference between the two sizes is the cost per frame pixel,
  which scales with the pixel count (every layer's output does); the rest is a fixed
  cost. It is measured, not derived from layer lists, so every backbone, head and
  precision path is covered the same way.
- `frame_bytes` adds the decoded frames waiting in the reader's buffers. (A blank frame
  has no animal, so a top-down pair's crop model is not in the probe: its cost is per
  crop, small next to a large frame's.)
- `available_memory` is the budget's base: free GPU memory on CUDA, the system's
  available memory elsewhere; by default a fraction of it (`DEFAULT_FRACTION`), or what
  ``max_memory`` says (``"4G"``, ``"512M"``, ``"60%"``, bytes).
- `choose_batch_size` picks the largest batch that fits (a divisor of the requested
  batch, so resumable chunks, which are multiples of it, keep their batches), or keeps
  the user's explicit batch with a warning when it does not fit.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from dataclasses import dataclass

from posekit.errors import PosekitError

__all__ = [
    "AUTO_MAX_BATCH",
    "DEFAULT_FRACTION",
    "BatchPlan",
    "LiveTensorBytes",
    "available_memory",
    "choose_batch_size",
    "format_bytes",
    "parse_memory",
    "peak_memory",
]

#: The largest batch chosen when the user gives none (SLEAP's default batch size).
AUTO_MAX_BATCH = 4
#: Share of the available memory a prediction may plan for when no budget is given:
#: on CUDA the free GPU memory, else the system's available memory (the video decoder,
#: the outputs and other programs need the rest).
DEFAULT_FRACTION = {"cuda": 0.8, "cpu": 0.25, "mps": 0.25}
#: Headroom on the measured tensor bytes: allocator caching and the convolution
#: libraries' workspaces (oneDNN, cuDNN) are not tensors and are not seen by the probe.
SAFETY = 1.25
#: Decoded frames a prediction holds per batch slot: the reader's queue (4 batches) plus
#: the batch being predicted and the one being filled (`Predictor._stream`).
BUFFERED_BATCHES = 6

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def format_bytes(n: float) -> str:
    """``1.5e9`` -> ``"1.40 GiB"``: what the CLI prints."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def parse_memory(spec, device: str = "cpu") -> int:
    """A memory budget in bytes from ``"4G"``, ``"512M"``, ``"4GB"``, ``"60%"`` (of the
    available memory, `available_memory`), a number of bytes, or None (the default
    share of the available memory, `DEFAULT_FRACTION`)."""
    from posekit.model.device import device_type

    if spec is None:
        kind = device_type(device)
        return int(available_memory(device) * DEFAULT_FRACTION.get(kind, 0.5))
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        value = float(spec)
        if value > 0:
            return int(value)
    else:
        text = str(spec).strip().lower().replace(" ", "")
        m = re.fullmatch(r"(\d+(?:\.\d+)?)%", text)
        if m and 0 < float(m.group(1)) <= 100:
            return int(available_memory(device) * float(m.group(1)) / 100)
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)(?:i?b)?", text)
        if m and float(m.group(1)) > 0:
            return int(float(m.group(1)) * _UNITS[m.group(2)])
    raise PosekitError(
        f"max memory {spec!r} is not a size; give e.g. 4G, 512M or 60% (of the available memory)"
    )


def available_memory(device: str = "cpu") -> int:
    """Bytes a prediction could use now: free memory of the CUDA device, else the
    system's available memory (``MemAvailable`` on Linux; free pages elsewhere)."""
    from posekit.model.device import device_type

    if device_type(device) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # unknown (e.g. Windows without /proc): assume a modest machine


def peak_memory(device: str = "cpu") -> tuple[int, str]:
    """(bytes, what was measured): the peak GPU memory allocated on CUDA, else the
    process's peak resident set size (which includes the models and the decoder)."""
    from posekit.model.device import device_type

    if device_type(device) == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(torch.device(device))), "GPU memory"
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024), "process memory"
    except ImportError:  # Windows
        return 0, "process memory"


class LiveTensorBytes:
    """While active (``with LiveTensorBytes() as live:``), the peak bytes of tensor
    storage allocated inside and alive at once (``live.peak``).

    Every new storage an operator returns is counted until it is freed (a weakref
    finalizer on the storage, which outlives the tensors and views that share it);
    storages made before the block (weights, inputs) are not counted.
    """

    def __init__(self):
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}
        self._mode = None

    def _free(self, ptr: int) -> None:
        self.live -= self._sizes.pop(ptr, 0)

    def _count(self, out) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            ptr, n = storage.data_ptr(), storage.nbytes()
            if n and ptr not in self._sizes:
                self._sizes[ptr] = n
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, ptr)

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                counter._count(out)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        self._mode = None
        return False


@dataclass
class FrameCost:
    """Bytes of one predicted frame: ``fixed + per_pixel * H * W`` (+ its buffers)."""

    per_pixel: float
    fixed: float

    def frame_bytes(self, shape: tuple[int, ...]) -> int:
        """The estimated peak bytes one frame of ``(H, W, C)`` adds to a batch: the
        measured tensors (with `SAFETY` headroom) and its decoded copies in the buffers."""
        h, w = int(shape[0]), int(shape[1])
        c = int(shape[2]) if len(shape) > 2 else 1
        return int(SAFETY * self.per_pixel * h * w + BUFFERED_BATCHES * h * w * c)


def measure_frame_cost(run_batch, channels: int, side: int) -> FrameCost:
    """Run ``run_batch(frames)`` on blank (1, side, side, C) and (1, 2 side, 2 side, C)
    uint8 frames and fit ``fixed + per_pixel * pixels`` to the peak tensor bytes.

    The first call builds what is built once (optimized weights) outside the count."""
    import torch

    def peak(s: int) -> int:
        frames = torch.zeros((1, s, s, channels), dtype=torch.uint8)
        with torch.inference_mode(), LiveTensorBytes() as live:
            run_batch(frames)
        return live.peak

    with torch.inference_mode():
        run_batch(torch.zeros((1, side, side, channels), dtype=torch.uint8))
    small, large = peak(side), peak(2 * side)
    per_pixel = max(large - small, 0) / (3 * side * side)
    per_pixel = max(per_pixel, large / (4 * side * side) * 0.5)  # never below half the mean
    return FrameCost(per_pixel=per_pixel, fixed=max(small - per_pixel * side * side, 0.0))


@dataclass
class BatchPlan:
    """The batch chosen for one frame shape, and why."""

    batch_size: int
    requested: int
    explicit: bool
    frame_shape: tuple[int, ...]
    frame_bytes: int
    budget: int
    warning: str | None = None  # said once by the predictor when the batch does not fit

    def describe(self) -> str:
        h, w = self.frame_shape[:2]
        why = (
            "as given"
            if self.explicit
            else f"largest of at most {self.requested} within the memory budget"
        )
        return (
            f"batch {self.batch_size} ({why}; about {format_bytes(self.frame_bytes)} per "
            f"{w}x{h} frame, budget {format_bytes(self.budget)})"
        )


def choose_batch_size(
    frame_bytes: int,
    budget: int,
    requested: int | None,
    *,
    fixed: float = 0.0,
    frame_shape: tuple[int, ...] = (),
) -> BatchPlan:
    """The batch for frames costing `frame_bytes` each within `budget` bytes.

    ``requested`` None: the largest divisor of `AUTO_MAX_BATCH` that fits (at least 1,
    with a warning when even one frame exceeds the budget). An explicit batch is kept
    (the user knows their machine) with a warning when it exceeds the budget. The
    warning is returned in the plan (the plan is made in the frame reader's thread; the
    predictor says it in the caller's).
    """
    explicit = requested is not None
    cap = int(requested) if explicit else AUTO_MAX_BATCH
    fits = max(int((budget - fixed) // max(frame_bytes, 1)), 0)
    warning = None
    if explicit:
        batch = cap
        if cap > fits:
            warning = (
                f"--batch-size {cap} may need about {format_bytes(fixed + cap * frame_bytes)} "
                f"on {_shape_text(frame_shape)} frames, more than the memory budget of "
                f"{format_bytes(budget)}; leave out --batch-size to size the batch to the "
                f"budget (here {max(fits, 1)}), or raise --max-memory"
            )
    else:
        batch = max(d for d in range(1, cap + 1) if cap % d == 0 and (d <= fits or d == 1))
        if fits < 1:
            warning = (
                f"one {_shape_text(frame_shape)} frame may need about "
                f"{format_bytes(fixed + frame_bytes)}, more than the memory budget of "
                f"{format_bytes(budget)}; predicting one frame at a time (set --max-memory "
                "to a larger budget if the machine has it)"
            )
    return BatchPlan(
        batch, cap, explicit, tuple(frame_shape), int(frame_bytes), int(budget), warning
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else "these"


def probe_side(maximum_stride: int, input_scale: float = 1.0) -> int:
    """A small probe frame side: two of the model's largest strides (in frame pixels),
    at least 64, so that every layer has pixels and the probe stays cheap (the second
    probe, at twice this side, separates the per-pixel cost from the fixed one)."""
    return max(64, int(math.ceil(2 * maximum_stride / max(input_scale, 1e-6))))
