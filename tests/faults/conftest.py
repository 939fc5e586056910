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


@pytest.fixture(scope="session")
def train_labels(tmp_path_factory) -> str:
    """40 frames of one synthetic animal (4 parts, 64 x 64, body 24 px) as a .pkg.slp."""
    from posekit.data.synthetic import save_synthetic_dataset

    folder = tmp_path_factory.mktemp("single")
    return str(
        save_synthetic_dataset(
            folder, n_frames=40, n_animals=1, image_size=64, n_parts=4, seed=1, body_length=24
        )
    )
