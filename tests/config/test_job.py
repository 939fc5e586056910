"""TrainingJobConfig: SLEAP's files load, every value survives, saving round-trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cfg_shared import config_ids, shared_path, sleap_config_files

from posekit.config import (
    BackboneConfig,
    ModelConfig,
    TrainingJobConfig,
    load_config,
    load_model_config,
    shipped_configs,
)
from posekit.errors import PosekitError

FILES = sleap_config_files()


def _leaves(tree, prefix=""):
    """{dotted path: value} for every leaf, skeletons left out (compared elsewhere)."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if key == "skeletons":
            continue
        if isinstance(value, dict):
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def test_all_shared_files_are_there():
    shared_path("sleap_profiles")
    assert len(FILES) == 11 + 7 + 7


@pytest.mark.parametrize("path", FILES, ids=config_ids(FILES))
def test_sleap_file_loads_with_every_value(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, TrainingJobConfig)
    written = _leaves(json.loads(path.read_text()))
    ours = _leaves(cfg.model_dump(mode="json"))
    written.pop("filename", None)
    missing = sorted(set(written) - set(ours))
    assert not missing
    for key, value in written.items():
        assert ours[key] == value, key
    assert cfg.filename == os.path.abspath(path)
    # Skeletons: same number, and the node names the heads refer to exist.
    skeletons = json.loads(path.read_text())["data"]["labels"]["skeletons"]
    assert len(cfg.data.labels.skeletons) == len(skeletons)


@pytest.mark.parametrize("path", FILES, ids=config_ids(FILES))
def test_round_trip_json_and_yaml(path: Path, tmp_path: Path):
    cfg = load_config(path)
    assert TrainingJobConfig.from_json(cfg.to_json()) == cfg

    cfg.save_json(tmp_path / "c.json")
    assert TrainingJobConfig.load_json(tmp_path / "c.json") == cfg
    cfg.save_yaml(tmp_path / "c.yaml")
    back = TrainingJobConfig.load_yaml(tmp_path / "c.yaml")
    assert back == cfg
    assert back.data.labels.skeletons == load_config(path).data.labels.skeletons
    # YAML stores skeletons by name, JSON in SLEAP's jsonpickle form.
    text = (tmp_path / "c.yaml").read_text()
    assert "py/object" not in text
    if cfg.data.labels.skeletons:
        assert "py/object" in (tmp_path / "c.json").read_text()
        assert "node_names" in text


def test_every_field_of_sleap_1_4_1_is_known():
    # Outside the model section (checked against the seed and per file), the union of
    # keys over all shared files is exactly the set of fields, no more, no less.
    shared_path("sleap_profiles")
    union: set[str] = set()
    for path in FILES:
        union |= {k for k in _leaves(json.loads(path.read_text())) if not k.startswith("model")}
    ours = {k for k in _leaves(TrainingJobConfig().model_dump(mode="json"))}
    assert union == {k for k in ours if not k.startswith("model")}


def test_sleap_defaults():
    # SLEAP 1.4.1's own defaults (sleap/nn/config/*.py), where they are not obvious.
    cfg = TrainingJobConfig()
    opt = cfg.optimization
    assert (opt.batch_size, opt.epochs, opt.optimizer, opt.initial_learning_rate) == (
        8,
        100,
        "adam",
        1e-4,
    )
    lr = opt.learning_rate_schedule
    assert (lr.reduction_factor, lr.plateau_min_delta, lr.plateau_patience) == (0.5, 1e-6, 5)
    assert (lr.plateau_cooldown, lr.min_learning_rate) == (3, 1e-8)
    es = opt.early_stopping
    assert (es.plateau_min_delta, es.plateau_patience) == (1e-6, 10)
    aug = opt.augmentation_config
    assert (aug.rotation_min_angle, aug.rotation_max_angle, aug.random_crop_height) == (
        -180,
        180,
        256,
    )
    assert cfg.data.preprocessing.resize_and_pad_to_target is True
    assert cfg.data.instance_cropping.crop_size_detection_padding == 16
    assert cfg.outputs.keep_viz_images is False and cfg.outputs.runs_folder == "models"
    assert cfg.sleap_version == "1.4.1" and cfg.name == "" and cfg.filename == ""


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path: Path, monkeypatch):
    target = tmp_path / "job.json"
    cfg = TrainingJobConfig()
    cfg.save_json(target)
    before = target.read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    cfg.optimization.batch_size = 3
    with pytest.raises(OSError, match="disk full"):
        cfg.save_json(target)
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]  # no temp file left
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_relative_paths_resolve_against_config_folder(tmp_path: Path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    cfg = TrainingJobConfig()
    cfg.data.labels.training_labels = "../labels/train.slp"
    cfg.data.labels.validation_labels = "/abs/val.slp"
    cfg.data.labels.search_path_hints = ["videos", ""]
    cfg.model.base_checkpoint = "models/base"
    cfg.save_yaml(folder / "job.yaml")

    # Load from another working directory: the config's folder still decides.
    monkeypatch.chdir(tmp_path)
    job = load_config(folder / "job.yaml")
    assert job.data.labels.training_labels == "../labels/train.slp"  # kept as written
    assert job.source_dir == folder
    assert job.resolve_path(job.data.labels.training_labels) == (
        tmp_path / "project" / "labels" / "train.slp"
    )
    resolved = job.with_resolved_paths()
    assert resolved.data.labels.validation_labels == "/abs/val.slp"
    assert resolved.data.labels.search_path_hints == [str(folder / "videos")]
    assert resolved.model.base_checkpoint == str(folder / "models" / "base")
    assert job.resolve_path(None) is None and job.resolve_path("") is None
    # A config made in code resolves against the working directory.
    assert TrainingJobConfig().resolve_path("x.slp") == tmp_path / "x.slp"


def test_load_config_dispatch(tmp_path: Path):
    model = ModelConfig(backbone={"unet": {"filters": 8}}, heads={"centroid": {"sigma": 3}})
    (tmp_path / "model.json").write_text(json.dumps(model.to_dict()))
    assert load_config(tmp_path / "model.json") == model

    (tmp_path / "backbone.yml").write_text("unet:\n  max_stride: 32\n")
    backbone = load_config(tmp_path / "backbone.yml")
    assert isinstance(backbone, BackboneConfig) and backbone.unet.max_stride == 32
    assert load_model_config(tmp_path / "backbone.yml").backbone == backbone

    run = tmp_path / "run"
    run.mkdir()
    TrainingJobConfig(name="folder").save_json(run / "training_config.json")
    assert load_config(run).name == "folder"


def test_load_config_errors(tmp_path: Path):
    with pytest.raises(PosekitError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    (tmp_path / "a.txt").write_text("{}")
    with pytest.raises(PosekitError, match=r"\.txt"):
        load_config(tmp_path / "a.txt")
    (tmp_path / "bad.json").write_text('{"data": {,}}')
    with pytest.raises(PosekitError, match="line 1, column 11"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("optimization:\n  batch_size: 0\n")
    with pytest.raises(PosekitError) as err:
        load_config(tmp_path / "bad.yaml")
    assert "bad.yaml" in str(err.value)
    assert "optimization.batch_size" in str(err.value) and "(got 0)" in str(err.value)


def test_shipped_configs_load_and_round_trip(tmp_path: Path):
    shipped = shipped_configs()
    assert "single_instance_unet" in shipped
    for name, path in shipped.items():
        cfg = load_config(name)  # by name, as `posekit summary NAME` allows
        assert cfg == load_config(path)
        model = load_model_config(path)
        backbone = model.backbone.require_oneof()
        head = model.heads.require_oneof()
        assert head.output_stride >= backbone.output_stride
        assert cfg.data.preprocessing.pad_to_stride % backbone.max_stride == 0
        cfg.save_json(tmp_path / f"{name}.json")
        assert load_config(tmp_path / f"{name}.json") == cfg
