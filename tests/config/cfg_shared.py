"""Where the shared SLEAP material lives; a plain module the config tests import."""

from __future__ import annotations

from pathlib import Path

import pytest

# <repo>/../shared, as every posekit test locates it.
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


def shared_path(*parts: str) -> Path:
    """A path under shared/, skipping the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared material not available: {path}")
    return path


def sleap_config_files() -> list[Path]:
    """The 11 SLEAP profiles and each trained model's training and initial config."""
    if not SHARED.is_dir():
        return []
    profiles = sorted((SHARED / "sleap_profiles").glob("*.json"))
    models = sorted((SHARED / "sleap_models").glob("*/training_config.json"))
    initial = sorted((SHARED / "sleap_models").glob("*/initial_config.json"))
    return profiles + models + initial


def config_ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]
