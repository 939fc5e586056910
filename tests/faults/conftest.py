"""The `run_cli` fixture of the fault catalogue (helpers: fault_helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def run_cli(capsys):
    """`run_cli(*argv) -> (exit code, stdout, stderr)` through `posekit.cli.main`."""
    from posekit.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
