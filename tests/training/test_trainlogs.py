"""Training logs (TensorBoard, W&B), the ignored-settings warning, step/cosine schedules."""

from __future__ import annotations

import importlib.util
import json
import warnings

import pytest
from _training_helpers import tiny_config

from posekit.config.job import TrainingJobConfig
from posekit.errors import PosekitError
from posekit.training.callbacks import (
    EpochLRSchedule,
    KerasReduceLROnPlateau,
    optimization_callbacks,
    scheduled_learning_rate,
)
from posekit.training.lightning_module import TRAIN_LOSS, VAL_LOSS
from posekit.training.logs import ignored_settings, ignored_settings_message

LRS = "optimization.learning_rate_schedule"


def _config(**lrs) -> TrainingJobConfig:
    return TrainingJobConfig.from_dict({"optimization": {"learning_rate_schedule": lrs}})


# --------------------------------------------------------------------------- config


def test_new_schedules_are_off_and_unwritten_by_default():
    written = json.loads(TrainingJobConfig().to_json())
    assert set(written["optimization"]["learning_rate_schedule"]) == {
        "reduce_on_plateau",
        "reduction_factor",
        "plateau_min_delta",
        "plateau_patience",
        "plateau_cooldown",
        "min_learning_rate",
    }  # SLEAP's fields only: SLEAP reads the file as before
    assert TrainingJobConfig().optimization.learning_rate_schedule.fixed_schedule is None


def test_schedules_round_trip_and_accept_sleap_nn_names(tmp_path):
    cfg = _config(linear_warmup_cosine_annealing={"warmup_epochs": 2, "eta_min": 1e-6})
    again = TrainingJobConfig.from_json(cfg.to_json())
    cos = again.optimization.learning_rate_schedule.cosine_annealing_warmup
    assert (cos.warmup_epochs, cos.eta_min, cos.max_epochs) == (2, 1e-6, None)
    step = _config(step_lr={"step_size": 3, "gamma": 0.5})
    step.save_yaml(tmp_path / "job.yaml")
    again = TrainingJobConfig.load_yaml(tmp_path / "job.yaml")
    assert again.optimization.learning_rate_schedule.step_lr.step_size == 3
    with pytest.raises(Exception, match="at most one"):
        _config(step_lr={}, cosine_annealing_warmup={})


def test_schedule_override_creates_the_section():
    from posekit.config.overrides import apply_overrides

    cfg = apply_overrides(TrainingJobConfig(), [f"{LRS}.step_lr.step_size=4"])
    assert cfg.optimization.learning_rate_schedule.step_lr.step_size == 4


# --------------------------------------------------------------------------- schedules


def test_step_lr_values():
    sched = _config(step_lr={"step_size": 2, "gamma": 0.1}).optimization
    rates = [
        scheduled_learning_rate(sched.learning_rate_schedule.step_lr, e, 1.0, 9) for e in range(5)
    ]
    assert rates == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_cosine_warmup_values():
    cos = _config(
        cosine_annealing_warmup={"warmup_epochs": 2, "warmup_start_lr": 0.0, "eta_min": 0.1}
    ).optimization.learning_rate_schedule.cosine_annealing_warmup
    rates = [scheduled_learning_rate(cos, e, 1.0, 6) for e in range(8)]
    assert rates[:3] == pytest.approx([0.0, 0.5, 1.0])  # linear warm-up, then the peak
    assert rates[4] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway down the cosine
    assert rates[6] == pytest.approx(0.1) and rates[7] == pytest.approx(0.1)  # stays at eta_min
    assert all(a >= b for a, b in zip(rates[2:], rates[3:], strict=False))


def test_fixed_schedule_replaces_the_plateau():
    opt = _config(step_lr={"step_size": 1}).optimization
    cbs = optimization_callbacks(opt)
    assert any(isinstance(c, EpochLRSchedule) for c in cbs)
    assert not any(isinstance(c, KerasReduceLROnPlateau) for c in cbs)
    plain = optimization_callbacks(TrainingJobConfig().optimization)
    assert any(isinstance(c, KerasReduceLROnPlateau) for c in plain)
    assert not any(isinstance(c, EpochLRSchedule) for c in plain)


def test_user_schedule_wins_over_the_budget_plan():
    from posekit.training.budget import BudgetPlan
    from posekit.training.run import _Arguments, _Job, _user_schedule_wins

    plan = BudgetPlan(60.0, schedule_lr=True)
    job = _Job(_config(step_lr={}), 0, {}, _Arguments(None, None, None, None, False))
    job.recipe_callbacks = [plan]
    _user_schedule_wins(job)
    assert plan.schedule_lr is False
    plan2 = BudgetPlan(60.0, schedule_lr=True)
    job2 = _Job(_config(), 0, {}, _Arguments(None, None, None, None, False))
    job2.recipe_callbacks = [plan2]
    _user_schedule_wins(job2)
    assert plan2.schedule_lr is True  # no explicit schedule: the budget's cosine


# --------------------------------------------------------------------------- ignored settings


def test_ignored_settings_only_non_defaults():
    assert ignored_settings(TrainingJobConfig()) == []
    assert ignored_settings_message(TrainingJobConfig()) is None
    cfg = TrainingJobConfig.from_dict(
        {
            "outputs": {"zmq": {"subscribe_to_controller": True, "publish_updates": True}},
            "optimization": {"augmentation_config": {"random_crop": True}},
        }
    )
    msg = ignored_settings_message(cfg)
    assert msg.startswith("posekit ignores these config settings: ")
    assert "outputs.zmq.subscribe_to_controller=true (SLEAP GUI messages)" in msg
    assert "outputs.zmq.publish_updates=true" in msg
    assert "optimization.augmentation_config.random_crop=true" in msg
    assert "controller_address" not in msg  # default values are not reported
    assert msg.count("posekit ignores") == 1  # one message for all of them
    step = _config(step_lr={}, plateau_patience=9)
    assert ignored_settings(step) == [
        f"{LRS}.plateau_patience=9 (step_lr replaces the plateau reduction)"
    ]
    assert ignored_settings(_config(plateau_patience=9)) == []


def test_train_cli_has_wandb_switch():
    from posekit.cli import build_parser

    args = build_parser().parse_args(["train", "job.yaml", "--wandb", "myproject"])
    assert args.wandb == "myproject"
    args = build_parser().parse_args(["train", "job.yaml"])
    assert args.wandb is None


# --------------------------------------------------------------------------- missing packages


def test_missing_package_error_names_the_extra(monkeypatch):
    from posekit.training import logs

    real = importlib.util.find_spec
    monkeypatch.setattr(
        logs.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("wandb", "tensorboard", "tensorboardX") else real(name),
    )
    with pytest.raises(PosekitError, match=r"pip install 'posekit\[wandb\]'"):
        logs.require_logger_packages(TrainingJobConfig(), wandb="proj")
    cfg = TrainingJobConfig.from_dict({"outputs": {"tensorboard": {"write_logs": True}}})
    with pytest.raises(PosekitError, match=r"pip install 'posekit\[logs\]'"):
        logs.require_logger_packages(cfg)


# --------------------------------------------------------------------------- tiny runs


def test_tensorboard_events_and_warning_in_a_tiny_run(multi_labels, tmp_path):
    pytest.importorskip("tensorboard")
    from posekit.training import train

    config = tiny_config("centered_instance", tmp_path, epochs=2, batches_per_epoch=2)
    config["outputs"].update(
        tensorboard={"write_logs": True, "loss_frequency": "batch"},
        zmq={"publish_updates": True},
    )
    config["optimization"]["learning_rate_schedule"] = {"step_lr": {"step_size": 1, "gamma": 0.5}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(config, labels=multi_labels, run_name="tb", device="cpu", progress=False)
    ours = [w for w in caught if "posekit ignores these config settings" in str(w.message)]
    assert len(ours) == 1 and "outputs.zmq.publish_updates=true" in str(ours[0].message)
    events = list((run / "logs").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "logs"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss", "lr", TRAIN_LOSS, VAL_LOSS} <= set(tags)
    # the step schedule halves the rate each epoch (epoch 0: 3e-3, epoch 1: 1.5e-3)
    lrs = sorted({round(e.value, 8) for e in acc.Scalars("lr")})
    assert lrs == pytest.approx([1.5e-3, 3e-3])


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed")
def test_wandb_offline_tiny_run(multi_labels, tmp_path, monkeypatch):
    from posekit.training import train

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    config = tiny_config("centered_instance", tmp_path, epochs=1, batches_per_epoch=2)
    run = train(
        config, labels=multi_labels, run_name="wb", device="cpu", progress=False, wandb="posekit"
    )
    assert list((run / "wandb").glob("offline-run-*")), sorted(p.name for p in run.iterdir())
