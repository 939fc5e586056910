"""SLEAP's training profiles by name: each equals SLEAP's own file, field for field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posekit.config.job import TrainingJobConfig, load_profile
from posekit.config.profiles import PROFILES, profile_names
from posekit.errors import PosekitError

SLEAP_PROFILES = Path(__file__).resolve().parents[2] / ".." / "shared" / "sleap_profiles"


def _dump(config) -> dict:
    data = json.loads(config.to_json())
    data.pop("filename", None)
    return data


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_equals_sleaps_file(name):
    path = SLEAP_PROFILES / f"{name}.json"
    if not path.exists():
        pytest.skip("SLEAP's profiles are not available")
    assert _dump(load_profile(name)) == _dump(TrainingJobConfig.load_json(path))


def test_every_shipped_sleap_profile_has_a_name():
    if not SLEAP_PROFILES.exists():
        pytest.skip("SLEAP's profiles are not available")
    assert {p.stem for p in SLEAP_PROFILES.glob("*.json")} == set(profile_names())


def test_unknown_profile_suggests_the_closest_name():
    with pytest.raises(PosekitError, match="Did you mean 'baseline.centroid'"):
        load_profile("baseline.centroids")
    assert load_profile("pretrained.single.json").outputs.run_name == "pretrained.single"


def test_load_config_takes_a_profile_name(tmp_path, monkeypatch):
    from posekit.config.job import load_config

    monkeypatch.chdir(tmp_path)
    cfg = load_config("baseline_medium_rf.topdown")
    assert cfg.model.heads.centered_instance.output_stride == 4
    assert cfg.model.backbone.unet.filters == 24
    with pytest.raises(PosekitError, match="baseline.centroid"):
        load_config("no_such_profile")
