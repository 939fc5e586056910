"""`keep_freed_memory`: large buffers are reused, not re-faulted (glibc), and the opt-out.

Each case runs in a fresh interpreter: the setting is process-wide and one-way.
"""

import os
import subprocess
import sys
import textwrap

import pytest

# Allocate, fill and free a 96 MiB tensor again and again and report the fewest minor
# page faults of a round after the first four: glibc's default maps it anew every time
# (~24 k faults a round: one per 4 KiB page); with the heap keeping it, once the heap has
# grown to fit torch's aligned requests, rounds fault almost never.
SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from posekit.optimize.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    n = 96 << 20
    rounds = []
    for _ in range(12):
        before = faults()
        a = torch.ones(n, dtype=torch.uint8); del a
        rounds.append(faults() - before)
    print(json.dumps({"applied": applied, "faults_per_round": min(rounds[4:])}))
    """
)


def _run(mode: str, **env) -> dict:
    import json

    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True, text=True, check=True,
        env={**os.environ, **env},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _is_glibc() -> bool:
    from posekit.optimize.allocator import _glibc

    return _glibc() is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_buffers_are_reused_without_page_faults():
    if not _is_glibc():
        pytest.skip("not glibc")
    default = _run("plain")
    kept = _run("keep")
    assert kept["applied"] is True
    pages = (96 << 20) / 4096
    assert default["faults_per_round"] > 0.5 * pages  # glibc maps it anew every round
    assert kept["faults_per_round"] < 0.05 * pages


def test_opt_out_leaves_malloc_alone():
    result = _run("keep", POSEKIT_MALLOC="system")
    assert result["applied"] is False
    if _is_glibc():
        assert result["faults_per_round"] > 0.5 * (96 << 20) / 4096


def test_without_glibc_it_does_nothing(monkeypatch):
    from posekit.optimize import allocator

    def no_libc(*_args, **_kwargs):
        raise OSError("no C library here")

    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    monkeypatch.setattr(allocator, "_state", {})
    assert allocator.keep_freed_memory() is False
    assert allocator.keep_freed_memory() is False  # decided once
