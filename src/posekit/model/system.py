"""What this machine and installation offer posekit: one report for bug reports and for
choosing settings (``posekit system``, `system_report`).

A bug report that says "bf16 fails" is answered by the CPU's flags and what the
installed torch actually runs; a slow prediction by the thread settings and whether a
GPU was seen. Everything is read, nothing is changed, and a part that cannot be read
(no /proc on macOS, no CUDA driver) is reported as unknown instead of failing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["EXTRAS", "CPU_FLAGS", "system_report"]

#: pyproject.toml's optional extras: extra -> {distribution: module it imports as}
#: (`tests/test_system.py` keeps this equal to pyproject's lists).
EXTRAS: dict[str, dict[str, str]] = {
    "pretrained": {"segmentation-models-pytorch": "segmentation_models_pytorch", "timm": "timm"},
    "video": {"imageio": "imageio", "imageio-ffmpeg": "imageio_ffmpeg", "av": "av"},
    "export": {"onnx": "onnx", "onnxruntime": "onnxruntime"},
    "tracking": {"opencv-python-headless": "cv2", "motmetrics": "motmetrics"},
    "logs": {"tensorboard": "tensorboard"},
    "wandb": {"wandb": "wandb"},
    "dev": {"pytest": "pytest", "ruff": "ruff", "pycocotools": "pycocotools"},
}

#: The /proc/cpuinfo flags that decide which kernels run fast: AVX2 (every x86 from
#: 2013), AVX-512 and its bf16/VNNI parts, AMX (Sapphire Rapids on) and ARM's
#: SIMD / bf16 (asimd, bf16) flags.
CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "avx_ne_convert",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "bf16",
    "sve",
)

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "KMP_AFFINITY",
    "KMP_BLOCKTIME",
    "OMP_PROC_BIND",
    "CUDA_VISIBLE_DEVICES",
)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str | None, set[str] | None]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; (None, None) without it."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None, None
    name, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and name is None:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name, flags


def cpu_report(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU: model, cores (all, and those this process may use), the `CPU_FLAGS`
    present (None where the flags cannot be read), the kernels torch picked, and whether
    bfloat16 runs here and natively, with the reason where not
    (`posekit.optimize.bf16_support`: a probe, not a flag list)."""
    import torch

    from posekit.optimize import bf16_support

    name, flags = _cpuinfo(cpuinfo)
    bf16 = bf16_support()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    capability = None
    get_capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if get_capability is not None:
        capability = get_capability()
    return {
        "model": name or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "flags": None if flags is None else [f for f in CPU_FLAGS if f in flags],
        "torch_cpu_capability": capability,
        "bf16_runs": bool(bf16.runs),
        "bf16_native": bool(bf16.native),
        "bf16_note": bf16.reason or None,
    }


def torch_report() -> dict[str, Any]:
    """The installed torch: version, build (CUDA, cuDNN, oneDNN, OpenMP), the GPUs and
    Apple mps it sees, and its thread settings."""
    import torch

    cuda = torch.cuda.is_available()
    devices = []
    if cuda:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 2),
                    "bf16": bool(torch.cuda.is_bf16_supported()) if i == 0 else None,
                }
            )
    mps = getattr(torch.backends, "mps", None)
    cudnn = torch.backends.cudnn
    return {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "hip_build": getattr(torch.version, "hip", None),
        "cuda_available": cuda,
        "cuda_devices": devices,
        "cudnn": cudnn.version() if cuda and cudnn.is_available() else None,
        "mps_built": bool(mps is not None and mps.is_built()),
        "mps_available": bool(mps is not None and mps.is_available()),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "openmp": bool(torch.backends.openmp.is_available()),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
    }


def extras_report() -> dict[str, dict[str, Any]]:
    """Per extra: each package's installed version (None: not installed), whether it is
    importable (found without importing it: some take seconds), and the extra's total."""
    out: dict[str, dict[str, Any]] = {}
    for extra, packages in EXTRAS.items():
        found = {}
        for dist, module in packages.items():
            found[dist] = {
                "version": _version(dist),
                "importable": importlib.util.find_spec(module) is not None,
            }
        out[extra] = {
            "installed": all(p["importable"] for p in found.values()),
            "packages": found,
        }
    return out


def system_report(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """Everything ``posekit system`` prints, as a JSON-ready dict: posekit, Python, the
    OS, torch and its devices, the CPU, thread settings, the key libraries and the
    optional extras installed."""
    import posekit

    return {
        "posekit": {"version": posekit.__version__, "path": str(Path(posekit.__file__).parent)},
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "os": {
            "platform": platform.platform(),
            "system": platform.system(),
            "release": platform.release(),
        },
        "torch": torch_report(),
        "cpu": cpu_report(cpuinfo),
        "threads": {k: os.environ.get(k) for k in _THREAD_VARIABLES},
        "libraries": {
            name: _version(name) for name in ("sleap-io", "lightning", "numpy", "torchvision")
        },
        "extras": extras_report(),
    }
