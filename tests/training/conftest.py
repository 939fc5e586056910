"""Shared fixtures for the training tests: synthetic labels and tiny configs.

The machine has 2 cores shared with other work; one torch thread per process avoids the
OpenMP spinning that makes oversubscribed convolutions tens of times slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

PART_NAMES = ["head", "tail", "left", "right"]


@pytest.fixture(scope="session")
def single_labels(tmp_path_factory) -> str:
    """200 frames of one synthetic animal (4 parts, 64 x 64, body 24 px) as a .pkg.slp."""
    from posekit.data.synthetic import save_synthetic_dataset

    folder = tmp_path_factory.mktemp("single")
    return str(
        save_synthetic_dataset(
            folder, n_frames=200, n_animals=1, image_size=64, n_parts=4, seed=1, body_length=24
        )
    )


@pytest.fixture(scope="session")
def multi_labels(tmp_path_factory) -> str:
    """24 frames of two tracked synthetic animals (4 parts, 64 x 64, body 20 px)."""
    from posekit.data.synthetic import save_synthetic_dataset

    folder = tmp_path_factory.mktemp("multi")
    return str(
        save_synthetic_dataset(
            folder, n_frames=24, n_animals=2, image_size=64, n_parts=4, seed=2, body_length=20
        )
    )
