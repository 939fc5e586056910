"""The device a model runs on, chosen once from what the user asked for.

Prediction and the command line both accept ``"auto"``; resolving it in one place means
the predictor, the runtime checks and the model loader agree on the device, and a request
for CUDA on a machine without it fails with a message that names the way out instead of
deep inside torch.
"""

from __future__ import annotations

from posekit.errors import PosekitError

__all__ = ["device_type", "resolve_device"]


def resolve_device(device: str | None = "auto") -> str:
    """``"auto"`` (or None) -> cuda if available, else mps, else cpu; anything else is
    checked for CUDA availability and passed on."""
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise PosekitError(
            f"device {device!r} requested but CUDA is not available; use --device cpu"
        )
    return str(device)


def device_type(device: str) -> str:
    """The kind of a device string: ``"cuda:1"`` -> ``"cuda"`` (what decides pinned memory
    and decoder threads, whichever card it is)."""
    import torch

    return torch.device(device).type
