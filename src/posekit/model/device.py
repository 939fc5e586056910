"""The device a model runs on, chosen once from what the user asked for.

Prediction and the command line both accept ``"auto"``; resolving it in one place means
the predictor, the runtime checks and the model loader agree on the device, and a request
for CUDA on a machine without it fails with a message that names the way out instead of
deep inside torch.
"""

from __future__ import annotations

from typing import Any

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
    try:
        parsed = torch.device(str(device))
    except (RuntimeError, ValueError) as err:
        raise PosekitError(
            f"device {device!r} is not a device name; use auto, cpu, cuda, cuda:N (N = the "
            "GPU's number, from 0) or mps"
        ) from err
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise PosekitError(
                f"device {device!r} requested but CUDA is not available; use --device cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise PosekitError(
                f"device {device!r} requested but this machine has {count} CUDA GPU(s) "
                f"(cuda:0 to cuda:{count - 1})"
            )
    elif parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PosekitError(
                f"device {device!r} requested but Apple mps is not available; use --device cpu"
            )
    return str(device)


def device_type(device: Any) -> str:
    """The kind of a device: ``"cuda:1"`` -> ``"cuda"``; also for a tensor or a module (its
    parameters' device) and None ("cpu"). What decides pinned memory, decoder threads and
    which inference rewrites apply, whichever card it is."""
    import torch

    if device is None:
        return "cpu"
    if isinstance(device, torch.nn.Module):
        try:
            device = next(device.parameters()).device
        except StopIteration:
            return "cpu"
    if isinstance(device, torch.Tensor):
        device = device.device
    return torch.device(device).type
