"""Helpers for the fault catalogue (imported by the fault tests; the `run_cli` fixture is in
conftest.py): run the CLI as a user would and check how it ended.

Every fault test asserts the same four things: the exit code, that the message names the
problem, that no traceback reached the user, and that no input (or earlier output) changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


def fingerprint(*paths) -> dict[str, str]:
    """Content hash of each existing file (folders: every file below them)."""
    out = {}
    for p in map(Path, paths):
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def assert_clean_failure(code: int, err: str, *needles: str) -> None:
    """Non-zero exit, one `posekit: error:` message naming the problem, no traceback."""
    assert code != 0
    assert "Traceback" not in err
    assert "posekit: error:" in err
    for needle in needles:
        assert needle.lower() in err.lower(), f"{needle!r} not in message: {err}"


def need_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
