"""`key.path=value` overrides and the `posekit train` command's argument handling."""

from __future__ import annotations

import pytest

from posekit.config.job import TrainingJobConfig
from posekit.config.overrides import apply_overrides, parse_overrides
from posekit.errors import PosekitError


def _config() -> TrainingJobConfig:
    return TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {"unet": {"filters": 8}},
                "heads": {"single_instance": {"sigma": 2.5}},
            }
        }
    )


def test_values_are_yaml_scalars():
    parsed = parse_overrides(
        [
            "optimization.epochs=5",
            "optimization.initial_learning_rate=1e-3",
            "outputs.run_name=null",
            "optimization.augmentation_config.rotate=true",
            "model.heads.single_instance.part_names=[head, tail]",
            "outputs.run_name_prefix=exp=1",  # only the first '=' splits
        ]
    )
    assert parsed == {
        "optimization.epochs": 5,
        "optimization.initial_learning_rate": 1e-3,
        "outputs.run_name": None,
        "optimization.augmentation_config.rotate": True,
        "model.heads.single_instance.part_names": ["head", "tail"],
        "outputs.run_name_prefix": "exp=1",
    }


def test_apply_overrides_returns_a_new_validated_config():
    base = _config()
    new = apply_overrides(
        base,
        ["optimization.epochs=5", "optimization.optimizer=AdamW", "model.backbone.unet.filters=4"],
    )
    assert new.optimization.epochs == 5
    assert new.optimization.optimizer == "adamw"
    assert new.model.backbone.unet.filters == 4
    assert base.optimization.epochs == 100 and base.model.backbone.unet.filters == 8


def test_unknown_key_names_the_key_and_a_suggestion():
    with pytest.raises(PosekitError) as err:
        apply_overrides(_config(), ["optimization.epochz=5"])
    text = str(err.value)
    assert "epochz" in text and "epochs" in text and "optimization" in text


def test_bad_value_names_the_field():
    with pytest.raises(PosekitError, match=r"optimization\.batch_size"):
        apply_overrides(_config(), ["optimization.batch_size=0"])
    with pytest.raises(PosekitError, match=r"optimization\.epochs"):
        apply_overrides(_config(), ["optimization.epochs=many"])


def test_override_into_a_value_is_an_error():
    with pytest.raises(PosekitError, match="optimization.epochs is a value"):
        apply_overrides(_config(), ["optimization.epochs.max=5"])


def test_malformed_override():
    with pytest.raises(PosekitError, match="key.path=value"):
        parse_overrides(["optimization.epochs"])


def test_cli_reports_override_errors_as_one_line(tmp_path, capsys):
    from posekit.cli import main

    cfg = tmp_path / "job.yaml"
    cfg.write_text(_config().to_yaml())
    code = main(["train", str(cfg), "optimization.epochz=3", "--labels", "x.slp"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("posekit: error:") and "epochz" in err


def test_cli_needs_labels_a_config_or_resume(capsys):
    from posekit.cli import main

    assert main(["train"]) == 2
    assert (
        "needs labels (--labels L.slp) to choose a model from, a config" in capsys.readouterr().err
    )


def test_cli_lone_override_is_not_taken_for_a_config():
    from posekit.cli.train import _split_config_and_overrides

    assert _split_config_and_overrides("optimization.epochs=3", ["a.b=1"]) == (
        None,
        ["optimization.epochs=3", "a.b=1"],
    )
    assert _split_config_and_overrides("job.yaml", ["a.b=1"]) == ("job.yaml", ["a.b=1"])


def test_resume_of_a_folder_without_checkpoint(tmp_path):
    from posekit.training import train

    with pytest.raises(PosekitError, match="cannot resume"):
        train(resume=tmp_path)


def test_cli_passes_max_time_and_precision_to_train(tmp_path, monkeypatch):
    import importlib

    from posekit.cli import main

    # the module, not the `posekit.training.run` function the package exports
    train_module = importlib.import_module("posekit.training.run")

    seen = {}

    def fake_train(config, **kwargs):
        seen.update(kwargs)
        return tmp_path

    monkeypatch.setattr(train_module, "train", fake_train)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(_config().to_yaml())
    args = ["train", str(cfg), "--labels", "x.slp", "--auto", "--max-time", "00:00:10:00"]
    assert main([*args, "--precision", "bf16-mixed"]) == 0
    assert seen["max_time"] == "00:00:10:00" and seen["precision"] == "bf16-mixed"
    assert seen["auto"] is True


@pytest.mark.parametrize(
    "given, seconds", [("600", 600), (90, 90), ("00:01:00:05", 3605), ({"minutes": 2}, 120)]
)
def test_max_time_forms_become_one_timedelta_for_lightning(given, seconds):
    from posekit.training.run import _max_time

    assert _max_time(given).total_seconds() == seconds
    assert _max_time(None) is None
    with pytest.raises(PosekitError, match="is not a time"):
        _max_time("ten minutes")


@pytest.mark.parametrize(
    "where",
    [
        ["CFG", "optimization.epochs=5", "--labels", "x.slp", "--run-name", "x"],
        ["CFG", "--labels", "x.slp", "--run-name", "x", "optimization.epochs=5"],
        ["CFG", "--labels", "x.slp", "optimization.epochs=5", "--run-name", "x"],
        ["--labels", "x.slp", "CFG", "--run-name", "x", "optimization.epochs=5"],
        ["optimization.epochs=5", "--labels", "x.slp", "CFG", "--run-name", "x"],
    ],
    ids=["before-options", "after-options", "among-options", "config-after-option", "first"],
)
def test_cli_overrides_anywhere_reach_the_config(tmp_path, monkeypatch, where):
    import importlib

    from posekit.cli import main

    train_module = importlib.import_module("posekit.training.run")
    seen = {}

    def fake_train(config, **kwargs):
        seen.update(kwargs)
        seen["config"] = apply_overrides(train_module.as_job_config(config), kwargs["overrides"])
        return tmp_path

    monkeypatch.setattr(train_module, "train", fake_train)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(_config().to_yaml())
    argv = [str(cfg) if token == "CFG" else token for token in where]
    assert main(["train", *argv, "optimization.batch_size=2"]) == 0
    assert seen["config"].optimization.epochs == 5
    assert seen["config"].optimization.batch_size == 2
    assert seen["labels"] == "x.slp" and seen["run_name"] == "x"


def test_cli_stray_positional_is_one_clear_error(tmp_path, capsys):
    from posekit.cli import main

    cfg = tmp_path / "job.yaml"
    cfg.write_text(_config().to_yaml())
    code = main(["train", str(cfg), "--labels", "x.slp", "optimization.epochs=5", "stray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("posekit: error: unexpected argument 'stray'")
    assert "key.path=value" in err and len(err.strip().splitlines()) == 1
