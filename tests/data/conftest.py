"""Fixtures of the data tests: the shared folder and a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MINIMAL = SHARED / "data" / "minimal"


def _shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture
def shared_file():
    """`shared_file("data", "minimal", name)`: a path under shared/, or skip when absent."""
    return _shared_file


@pytest.fixture
def minimal_dir() -> Path:
    """shared/data/minimal (skips when absent)."""
    return _shared_file("data", "minimal")


@pytest.fixture(scope="session")
def synthetic_pkg(tmp_path_factory) -> Path:
    """A small synthetic dataset (12 frames, 2 animals, 5 parts, 64 x 80) as .pkg.slp."""
    from posekit.data.synthetic import save_synthetic_dataset

    folder = tmp_path_factory.mktemp("synthetic")
    return save_synthetic_dataset(
        folder, n_frames=12, n_animals=2, image_size=(64, 80), n_parts=5, seed=3
    )


@pytest.fixture(scope="session")
def synthetic_labels(synthetic_pkg):
    from posekit.data.labels import load_labels

    return load_labels(synthetic_pkg, preload=True)
