"""The --auto recipe of budgeted runs, the budget plan, progress text, model-type choice,
end-of-training evaluation and bad-input handling (issue 15)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from posekit.training.budget import (
    BudgetPlan,
    PosekitProgressBar,
    budget_learning_rate,
    format_metric,
    planned_epochs,
)
from posekit.training.hardware import Hardware
from posekit.training.losses import balanced_mse, head_loss, mse
from posekit.training.recommend import SINGLE_SIGMA, recommend

CPU2 = Hardware("cpu", 1, None, 2, train_gflops=60.0)


# --------------------------------------------------------------------------- labels


def _pose_labels(n_frames=8, n_animals=1, image_size=64, body_length=24, seed=0, n_parts=4):
    from posekit.data.labels import pose_labels_from_sleap_io
    from posekit.data.synthetic import make_synthetic_labels

    sio_labels = make_synthetic_labels(
        n_frames=n_frames,
        n_animals=n_animals,
        image_size=image_size,
        n_parts=n_parts,
        seed=seed,
        body_length=body_length,
    )
    return pose_labels_from_sleap_io(sio_labels)


@pytest.fixture(scope="module")
def big_frame_labels():
    """One animal of ~100 px in 400 x 400 frames (reaching-like proportions)."""
    return _pose_labels(n_frames=6, image_size=400, body_length=100)


def _config(name="single_instance_unet"):
    from posekit.training.inputs import as_job_config

    return as_job_config(name)


# --------------------------------------------------------------------------- recipe


def test_budgeted_single_instance_recipe(big_frame_labels):
    rec = recommend(_config(), big_frame_labels, CPU2, max_time=480)
    o = rec.overrides
    typical = float(
        np.median(
            [np.ptp(p[~np.isnan(p).any(1)], axis=0).max() for p in big_frame_labels.all_points()]
        )
    )
    s = o["data.preprocessing.input_scaling"]
    # the animal is brought to ~56 model px (rounded down to a 0.05 step), never below 48
    assert 48 <= typical * s <= 56 + 1e-6
    assert typical * (s + 0.05) > 56
    # map: ~24 px across the animal, stride a power of two; the single-instance sigma
    os_ = o["model.heads.single_instance.output_stride"]
    assert os_ == o["model.backbone.unet.output_stride"]
    assert os_ <= typical * s / 24 < 2 * os_ or os_ == 1
    assert o["model.heads.single_instance.sigma"] == SINGLE_SIGMA
    # schedule: no plateau halving; the recipe carries the loss and the cosine plan
    assert o["optimization.learning_rate_schedule.reduce_on_plateau"] is False
    assert rec.recipe["loss"] == "balanced_mse"
    assert rec.recipe["lr_schedule"] == "budget_cosine"
    assert rec.recipe["budget_s"] == 480
    kinds = {type(cb).__name__ for cb in rec.callbacks()}
    assert kinds == {"BudgetPlan", "RecipeLoss", "SigmaSchedule"} | (
        {"TrainCrop"} if "train_crop" in rec.recipe else set()
    )


def test_budgeted_single_instance_trains_on_crops_around_the_animal(big_frame_labels, monkeypatch):
    """Rule 14 (off by default): crops of 2 typical animals (>= the largest), if <= 60%."""
    from posekit.training import recommend as recommend_module
    from posekit.training.budget import TrainCrop
    from posekit.training.label_stats import _instance_sizes

    assert "train_crop" not in recommend(_config(), big_frame_labels, CPU2, max_time=480).recipe
    monkeypatch.setattr(recommend_module, "TRAIN_CROPS", True)

    rec = recommend(_config(), big_frame_labels, CPU2, max_time=480)
    s = rec.overrides["data.preprocessing.input_scaling"]
    sizes = _instance_sizes(big_frame_labels)
    crop = rec.recipe["train_crop"]
    stride = 16
    side = max(2 * float(np.median(sizes)), float(sizes.max())) * s
    assert crop == math.ceil(side / stride) * stride
    in_side = math.ceil(400 * s / stride) * stride
    assert crop * crop <= 0.6 * in_side * in_side
    (cb,) = [cb for cb in rec.callbacks() if isinstance(cb, TrainCrop)]
    assert cb.size == crop
    # the plan is made for the cheaper crops
    full = recommend(_config(), big_frame_labels, CPU2, max_time=480, overrides=[])
    assert rec.plan["gflops_per_sample"] == full.plan["gflops_per_sample"]
    # no budget, or an animal that fills the frame: whole frames
    assert "train_crop" not in recommend(_config(), big_frame_labels, CPU2).recipe
    small = _pose_labels(n_frames=6, image_size=64, body_length=40)
    assert "train_crop" not in recommend(_config(), small, CPU2, max_time=480).recipe


def test_training_crops_hold_the_animal_and_keep_pixels_exact():
    from posekit.data.dataset import DataPipeline

    pipe = DataPipeline.__new__(DataPipeline)
    pipe.train_crop_size = 32
    n, h, w = 64, 96, 80
    images = torch.arange(n * h * w, dtype=torch.float32).reshape(n, 1, h, w)
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand((n, 1, 3, 2), generator=gen) * 20 + torch.tensor([50.0, 60.0])
    pts[0, 0, 1] = float("nan")  # a missing point
    crops, moved = pipe._crop_around_animal(images, pts, gen)
    assert crops.shape == (n, 1, 32, 32)
    origins = (pts - moved)[:, 0, 0]
    for i in range(n):
        x0, y0 = (int(v) for v in origins[i])
        assert float(origins[i, 0]) == x0 and 0 <= x0 <= w - 32 and 0 <= y0 <= h - 32
        assert torch.equal(crops[i], images[i, :, y0 : y0 + 32, x0 : x0 + 32])
    ok = ~torch.isnan(moved)
    assert bool(((moved[ok] >= 0) & (moved[ok] <= 31)).all())  # the whole animal inside
    # the animal lands at different places in the crop
    assert float(moved[:, 0, 0, 0].std()) > 2.0
    # a crop as large as the image changes nothing
    pipe.train_crop_size = 128
    same, kept = pipe._crop_around_animal(images, pts, gen)
    assert same is images and kept is pts


def test_no_budget_keeps_sleap_ways(big_frame_labels):
    rec = recommend(_config(), big_frame_labels, CPU2, max_time=None)
    assert rec.recipe == {}
    assert rec.callbacks() == []
    assert rec.overrides["optimization.learning_rate_schedule.reduce_on_plateau"] is True


def test_user_overrides_are_part_of_the_plan(big_frame_labels):
    auto = recommend(_config(), big_frame_labels, CPU2, max_time=480)
    mine = recommend(
        _config(),
        big_frame_labels,
        CPU2,
        max_time=480,
        overrides=["data.preprocessing.input_scaling=1.0", "model.heads.single_instance.sigma=4"],
    )
    assert mine.overrides["data.preprocessing.input_scaling"] == 1.0
    assert mine.overrides["model.heads.single_instance.sigma"] == 4
    assert "your override" in mine.reasons["data.preprocessing.input_scaling"]
    # the cost per sample (and so the steps that fit) are computed at the user's scale
    s = auto.overrides["data.preprocessing.input_scaling"]
    assert s < 1.0
    ratio = mine.plan["gflops_per_sample"] / auto.plan["gflops_per_sample"]
    assert ratio > 0.8 / s**2
    assert mine.plan["est_steps"] < auto.plan["est_steps"] / (0.8 / s**2)
    # a user who asks for the plateau schedule gets it, and BudgetPlan leaves the LR alone
    plateau = recommend(
        _config(),
        big_frame_labels,
        CPU2,
        max_time=480,
        overrides={"optimization.learning_rate_schedule.reduce_on_plateau": True},
    )
    assert plateau.recipe["lr_schedule"] == "plateau"
    plan = next(cb for cb in plateau.callbacks() if isinstance(cb, BudgetPlan))
    assert plan.schedule_lr is False and plan.replan_epochs is True
    # a user who fixes the epochs keeps them: the plan only schedules the LR
    fixed = recommend(
        _config(), big_frame_labels, CPU2, max_time=480, overrides={"optimization.epochs": 7}
    )
    assert fixed.overrides["optimization.epochs"] == 7
    plan = next(cb for cb in fixed.callbacks() if isinstance(cb, BudgetPlan))
    assert plan.replan_epochs is False and plan.schedule_lr is True


# --------------------------------------------------------------------------- loss


def test_balanced_mse_does_not_reward_the_all_zero_map():
    from posekit.data.targets import confidence_maps

    pts = torch.tensor([[[40.0, 30.0], [10.0, 50.0]]])
    target = confidence_maps(pts, (128, 128), 2, 3.0)  # 2 small peaks in a 64 x 64 map
    zero = torch.zeros_like(target)
    # plain MSE: the empty map is almost perfect; balanced: it is as bad as it gets
    assert float(mse(zero, target)) < 1e-2
    assert float(balanced_mse(zero, target)) > 0.3
    assert float(balanced_mse(target, target)) == pytest.approx(0.0, abs=1e-7)
    # shortcuts do not beat the empty map: a peak in the wrong place, every channel
    # lighting up at every part, a constant offset
    empty = float(balanced_mse(zero, target))
    shifted = torch.roll(target, shifts=8, dims=-1)
    assert float(balanced_mse(shifted, target)) > empty
    hedge = target.amax(dim=1, keepdim=True).expand_as(target)
    assert float(balanced_mse(hedge, target)) >= empty - 1e-6
    assert float(balanced_mse(zero + 0.1, target)) > empty
    # while a half-height fit is much better than nothing
    assert float(balanced_mse(0.5 * target, target)) < 0.5 * empty
    # an empty target (no visible point) is just the background error
    assert float(balanced_mse(zero, torch.zeros_like(target))) == 0.0

    from posekit.heads import SingleInstanceConfmapsHead

    head = SingleInstanceConfmapsHead(output_stride=2, part_names=["a", "b"])
    assert float(head_loss(head, zero, target)) == pytest.approx(float(mse(zero, target)))
    head.loss_function = "balanced_mse"
    assert float(head_loss(head, zero, target)) == pytest.approx(float(balanced_mse(zero, target)))


# --------------------------------------------------------------------------- plan


def test_budget_learning_rate_warms_up_then_reaches_floor_at_the_end():
    lr, floor = 1e-3, 1e-5
    assert budget_learning_rate(0.0, 0, lr, floor, 50) == pytest.approx(lr * (0.1 + 0.9 / 50))
    assert budget_learning_rate(0.0, 50, lr, floor, 50) == pytest.approx(lr)
    assert budget_learning_rate(0.5, 500, lr, floor, 50) == pytest.approx((lr + floor) / 2)
    assert budget_learning_rate(1.0, 900, lr, floor, 50) == pytest.approx(floor)
    assert budget_learning_rate(3.0, 900, lr, floor, 50) == pytest.approx(floor)
    rates = [budget_learning_rate(p / 10, 100, lr, floor, 50) for p in range(11)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_planned_epochs_from_measured_time():
    # 480 s budget, 100 s gone, epochs of 12 s: 380 / 12 = 31.7 -> 32 more
    assert planned_epochs(5, 100.0, 480.0, 12.0) == 37
    assert planned_epochs(5, 100.0, 480.0, 13.0) == 5 + 29  # 29.2 -> 29
    assert planned_epochs(40, 480.0, 480.0, 12.0) == 40  # the budget is spent


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _fake_trainer(bpe=10, val=2, max_epochs=1000):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    progress = SimpleNamespace(current=SimpleNamespace(ready=0))
    return SimpleNamespace(
        optimizers=[opt],
        num_training_batches=bpe,
        num_val_batches=[val],
        current_epoch=0,
        fit_loop=SimpleNamespace(
            max_epochs=max_epochs, epoch_loop=SimpleNamespace(batch_progress=progress)
        ),
    )


def test_budget_plan_spends_the_budget_from_the_measured_step_time():
    clock = _Clock()
    plan = BudgetPlan(300.0, lr=1e-3, warmup_steps=5, measure_steps=10, clock=clock)
    trainer = _fake_trainer(bpe=10, val=3, max_epochs=12)  # planned for a faster machine
    plan.on_train_start(trainer, None)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 * (0.1 + 0.9 / 5))
    for i in range(11):
        plan.on_train_batch_start(trainer, None, None, i)
        clock.t += 2.0  # 2 s per step: an epoch (10 steps + 3 validation) ~22 s
        trainer.fit_loop.epoch_loop.batch_progress.current.ready = i + 1
        plan.on_train_batch_end(trainer, None, None, None, i)
        if i == 9:
            break
    # measured over steps 2..11 (the first pays for warm-up): not yet
    assert plan.plan == {}
    trainer.current_epoch = 1
    trainer.fit_loop.epoch_loop.batch_progress.current.ready = 1
    plan.on_train_batch_start(trainer, None, None, 0)
    clock.t += 2.0
    plan.on_train_batch_end(trainer, None, None, None, 0)
    assert plan.plan["seconds_per_step"] == pytest.approx(2.0)
    epoch_s = 2.0 * (10 + 3 / 3)
    left = 300.0 - 22.0 - 0.9 * epoch_s
    assert trainer.fit_loop.max_epochs == 2 + math.floor(left / epoch_s + 0.5)
    # after an epoch the measured epoch time re-plans again; the LR follows the clock
    clock.t = 1000.0 + 150.0
    plan.on_train_epoch_end(trainer, None)
    assert trainer.fit_loop.max_epochs == 2 + round(150.0 / plan.plan["epoch_seconds"])
    plan.on_train_batch_start(trainer, None, None, 1)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx((1e-3 + 1e-5) / 2)


def test_sigma_schedule_narrows_training_targets_to_the_config_sigma(big_frame_labels):
    """Rule 15: wide training Gaussians early, the config's sigma from `until` on."""
    from posekit.data.dataset import DataPipeline, collate_samples
    from posekit.model.network import Model
    from posekit.training.budget import SigmaSchedule
    from posekit.training.recommend import SIGMA_START, SIGMA_UNTIL

    rec = recommend(_config(), big_frame_labels, CPU2, max_time=300)
    (cb,) = [c for c in rec.callbacks() if isinstance(c, SigmaSchedule)]
    assert (cb.start, cb.until, cb.budget_s) == (SIGMA_START, SIGMA_UNTIL, 300.0)
    assert "sigma_start" not in recommend(_config(), big_frame_labels, CPU2).recipe  # SLEAP's way
    assert cb.scale(0.0) == pytest.approx(SIGMA_START)
    assert cb.scale(SIGMA_UNTIL / 2) == pytest.approx((SIGMA_START + 1) / 2)
    assert cb.scale(SIGMA_UNTIL) == pytest.approx(1.0) and cb.scale(0.9) == 1.0

    # the callback drives the pipeline; only training batches use the wider sigma
    clock = _Clock()
    sched = SigmaSchedule(100.0, start=2.0, until=0.5, clock=clock)
    config = _config()
    model = Model.from_config(config.model, in_channels=1, part_names=big_frame_labels.node_names)
    pipe = DataPipeline.from_config(config, big_frame_labels, model.head_specs, max_stride=16)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(pipeline=pipe))
    sched.on_train_start(trainer, None)
    sched.on_train_batch_start(trainer, None, None, 0)
    assert pipe.train_sigma_scale == pytest.approx(2.0)
    batch = collate_samples([pipe.dataset(big_frame_labels).raw_sample(0)])
    wide = pipe.process(batch, augment=True)
    plain = pipe.process(batch, augment=False)
    name = "SingleInstanceConfmapsHead"
    assert float(wide[name].sum()) > 3.0 * float(plain[name].sum())  # area ~ sigma^2
    clock.t += 60.0
    sched.on_train_batch_start(trainer, None, None, 1)
    assert pipe.train_sigma_scale == 1.0
    sched.on_train_end(trainer, None)
    assert pipe.train_sigma_scale == 1.0


def test_rotation_follows_how_far_the_labelled_poses_turn():
    from posekit.training.label_stats import rotation_arc

    labels = _pose_labels(n_frames=12, image_size=128, body_length=40, seed=8)
    arc = rotation_arc(labels)
    config = _config()
    config.optimization.augmentation_config.rotate = False  # the rule decides
    rec = recommend(config, labels, CPU2, max_time=60)
    angle = rec.overrides["optimization.augmentation_config.rotation_max_angle"]
    assert rec.overrides["optimization.augmentation_config.rotation_min_angle"] == -angle
    if arc / 2 + 15 >= 90:
        assert angle == 180
    else:
        assert angle == 15  # the labels' own turns plus 15 degrees at each end
    # one pose turned by at most +-10 degrees and moved: a fixed view, a narrow range
    rng = np.random.default_rng(0)
    base = labels.all_points()[0]
    poses = []
    for _ in range(10):
        th = math.radians(rng.uniform(-10, 10))
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        poses.append((base - np.nanmean(base, 0)) @ rot.T + rng.uniform(0, 50, 2))
    narrow = rotation_arc(SimpleNamespace(all_points=lambda: poses))
    assert 5 < narrow <= 20.5
    turned = [p @ np.array([[0.0, -1.0], [1.0, 0.0]]).T for p in poses[:5]] + poses[5:]
    assert rotation_arc(SimpleNamespace(all_points=lambda: turned)) > 70


# --------------------------------------------------------------------------- progress


def test_progress_numbers_are_readable():
    assert format_metric(4.5e-5) == "4.50e-05"
    assert format_metric(torch.tensor(1e-3)) == "1.00e-03"
    assert format_metric(0.0) == "0"
    assert format_metric("0:01:00") == "0:01:00"
    bar = PosekitProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=31)
    assert bar._get_train_description(0).strip() == "Epoch 1/31"
    clock = _Clock()
    plan = BudgetPlan(480.0, clock=clock)
    plan._t0 = clock.t - 80.0
    trainer = SimpleNamespace(callbacks=[plan])
    assert PosekitProgressBar.budget_left(trainer) == pytest.approx(400.0)


# --------------------------------------------------------------------------- model type


def test_choose_model_type_from_labels():
    from posekit.training.model_type import choose_model_type, label_statistics

    single = _pose_labels(n_frames=4, n_animals=1, image_size=64, body_length=24)
    kind, why = choose_model_type(single)
    assert kind == "single_instance" and "more than one" in why

    small = _pose_labels(n_frames=6, n_animals=2, image_size=256, body_length=20, seed=3)
    st = label_statistics(small)
    assert st["size_fraction"] < 0.25 and st["overlap_fraction"] <= 0.2
    assert choose_model_type(small)[0] == "topdown"
    assert choose_model_type(small, identity=True)[0] == "multi_class_topdown"

    # touching is fine for crops; animals piled on top of each other are not
    for e in small.entries:
        first = e.points[0]
        size = np.nanmax(first.reshape(-1, 2), axis=0) - np.nanmin(first.reshape(-1, 2), axis=0)
        axis = int(np.argmax(size))
        for k in range(1, len(e.points)):  # the second animal end to end: boxes overlap
            e.points[k] = first + np.eye(2)[axis] * size[axis] * 0.9
    st = label_statistics(small)
    assert st["overlap_fraction"] == 0.0
    assert choose_model_type(small)[0] == "topdown"
    for e in small.entries:
        for k in range(1, len(e.points)):  # ... and now on top of it
            e.points[k] = e.points[0] + 2.0
    st = label_statistics(small)
    assert st["overlap_fraction"] == 1.0
    kind, why = choose_model_type(small)
    assert kind == "bottomup" and "overlapping in 100%" in why

    large = _pose_labels(n_frames=6, n_animals=2, image_size=64, body_length=40, seed=4)
    assert label_statistics(large)["size_fraction"] >= 0.25
    kind, why = choose_model_type(large)
    assert kind == "bottomup"
    assert choose_model_type(large, identity=True)[0] == "multi_class_bottomup"


def test_identity_without_tracks_is_one_clear_error():
    from posekit.errors import PosekitError
    from posekit.training.model_type import choose_model_type

    labels = _pose_labels(n_frames=4, n_animals=2, image_size=256, body_length=20, seed=3)
    for e in labels.entries:
        e.track_inds[:] = -1
    with pytest.raises(PosekitError, match="tracks"):
        choose_model_type(labels, identity=True)


@pytest.mark.parametrize(
    "kind",
    [
        "single_instance",
        "topdown",
        "bottomup",
        "multi_class_topdown",
        "multi_class_bottomup",
        "semantic_segmentation",
        "bottomup_segmentation",
        "topdown_segmentation",
    ],
)
def test_default_configs_build_models(kind):
    from posekit.model import Model
    from posekit.training.model_type import MODEL_TYPE_HEADS, default_configs

    configs = default_configs(kind)
    assert [c.model.heads.which_oneof_attrib_name() for c in configs] == list(
        MODEL_TYPE_HEADS[kind]
    )
    for cfg in configs:
        assert cfg.data.preprocessing.pad_to_stride == cfg.model.backbone.unet.max_stride
        model = Model.from_config(
            cfg.model,
            in_channels=1,
            part_names=["a", "b"],
            edges=[("a", "b")],
            classes=["x", "y"],
            input_size=(64, 64),
        )
        assert model.heads


# --------------------------------------------------------------------------- final eval


def test_final_evaluation_writes_metrics_and_summary(tmp_path, single_labels):
    from _training_helpers import tiny_config

    from posekit.data.labels import load_labels, split_labels
    from posekit.training import train
    from posekit.training.final_eval import evaluate_run

    labels = load_labels(single_labels)
    train_pl, val_pl = split_labels(labels.subset(range(40)), 0.2, 0)
    run = train(
        tiny_config("single_instance", tmp_path, epochs=1, batches_per_epoch=4),
        labels=train_pl,
        val_labels=val_pl,
        run_name="eval",
        device="cpu",
        progress=False,
    )
    line = evaluate_run(run, val_pl, test_labels=single_labels)
    assert line.startswith("val: ") and "/8 animals" in line and "OKS mAP" in line
    assert "test: " in line and "/200 animals" in line
    metrics = json.loads((run / "metrics.val.json").read_text())
    assert metrics["n_gt_instances"] == 8 and metrics["n_frames"] == 8
    for key in ("oks_voc.mAP", "dist.p50", "pck.mPCK", "nodes"):
        assert key in metrics
    assert (run / "metrics.test.json").exists()
    assert (run / "viz" / "worst_val.png").stat().st_size > 0
    assert not list(run.glob(".*.tmp"))


# --------------------------------------------------------------------------- bad input


def _train_auto(labels, tmp_path, name, max_time=None):
    from _training_helpers import tiny_config

    from posekit.training import train

    return train(
        tiny_config("single_instance", tmp_path),
        labels=labels,
        run_name=name,
        device="cpu",
        progress=False,
        auto=True,
        max_time=max_time,
        overrides={"optimization.epochs": 1, "optimization.batches_per_epoch": 2},
    )


def _save(sio_labels, path):
    import sleap_io as sio

    sio.save_slp(sio_labels, str(path), embed=True)
    return str(path)


def test_bad_input_still_trains_with_clear_warnings(tmp_path, capsys):
    import sleap_io as sio

    from posekit.data.labels import pose_labels_from_sleap_io
    from posekit.data.synthetic import make_synthetic_labels
    from posekit.training.label_stats import label_warnings

    base = make_synthetic_labels(
        n_frames=6, n_animals=1, image_size=64, n_parts=4, seed=5, body_length=24
    )
    # one labelled frame (budgeted: the plan and the recipe run too)
    one = sio.Labels(
        labeled_frames=base.labeled_frames[:1],
        videos=base.videos,
        skeletons=base.skeletons,
        tracks=base.tracks,
    )
    assert any("only 1 labelled frame" in w for w in label_warnings(pose_labels_from_sleap_io(one)))
    run = _train_auto(_save(one, tmp_path / "one.pkg.slp"), tmp_path, "one", max_time=60)
    assert (run / "best_model").exists() or (run / "latest_model").exists()
    assert "only 1 labelled frame" in capsys.readouterr().out

    # a node never labelled, and an animal cut by the frame edge
    for lf in base.labeled_frames:
        inst = lf.instances[0]
        inst.points["xy"][1] = np.nan
    base.labeled_frames[0].instances[0].points["xy"][0] = (-6.0, 10.0)
    warn = label_warnings(pose_labels_from_sleap_io(base))
    assert any("'tail'" in w and "no labelled point" in w for w in warn), warn
    assert any("outside their frame" in w for w in warn), warn
    run = _train_auto(_save(base, tmp_path / "holes.pkg.slp"), tmp_path, "holes")
    assert (run / "best_model").exists()


def test_frames_of_different_sizes_train(tmp_path):
    import sleap_io as sio

    from posekit.data.labels import pose_labels_from_sleap_io
    from posekit.data.synthetic import make_synthetic_labels
    from posekit.training.label_stats import label_warnings

    a = make_synthetic_labels(
        n_frames=4, n_animals=1, image_size=64, n_parts=4, seed=6, body_length=24
    )
    b = make_synthetic_labels(
        n_frames=4, n_animals=1, image_size=(80, 96), n_parts=4, seed=7, body_length=24
    )
    sk = a.skeletons[0]
    frames = list(a.labeled_frames)
    for lf in b.labeled_frames:
        pts = lf.instances[0].numpy()
        frames.append(
            sio.LabeledFrame(
                video=lf.video,
                frame_idx=lf.frame_idx,
                instances=[sio.Instance.from_numpy(pts, skeleton=sk)],
            )
        )
    both = sio.Labels(labeled_frames=frames, videos=[a.videos[0], b.videos[0]], skeletons=[sk])
    assert any("2 sizes" in w for w in label_warnings(pose_labels_from_sleap_io(both)))
    run = _train_auto(_save(both, tmp_path / "sizes.pkg.slp"), tmp_path, "sizes")
    assert (run / "best_model").exists()


def test_a_pair_splits_the_budget_by_what_the_registry_says_works_on_crops():
    from posekit.training.model_type import ANCHOR_BUDGET_SHARE, budget_share

    assert budget_share("centroid", pair=True) == ANCHOR_BUDGET_SHARE
    for crop_type in ("centered_instance", "multi_class_topdown"):
        assert budget_share(crop_type, pair=True) == pytest.approx(1 - ANCHOR_BUDGET_SHARE)
    assert budget_share("single_instance", pair=False) == 1.0


def _two_view_labels(labels, offset=(200.0, 0.0), joined=False):
    """The same animal seen twice (e.g. floor and mirror): each instance gets a second copy
    of its parts, `offset` away, as a second connected group of the skeleton."""
    import dataclasses

    from posekit.config.skeleton import SkeletonConfig

    names = list(labels.node_names)
    mirror = [f"{n}_mirror" for n in names]
    edges = list(labels.skeleton.edges) + [
        (f"{a}_mirror", f"{b}_mirror") for a, b in labels.skeleton.edges
    ]
    if joined:
        edges.append((names[0], mirror[0]))
    skeleton = SkeletonConfig(node_names=names + mirror, edges=edges)
    entries = [
        dataclasses.replace(
            e, points=np.concatenate([e.points, e.points + np.asarray(offset)], axis=1)
        )
        for e in labels.entries
    ]
    return dataclasses.replace(labels, skeleton=skeleton, entries=entries)


def test_an_animal_seen_twice_is_sized_by_one_view(big_frame_labels):
    """A mirror view doubles the instance's bounding box, not the animal: the input scale
    follows one view (a connected group of parts), the crop size the whole instance."""
    from posekit.training.label_stats import _instance_sizes, animal_sizes

    one = float(np.median(animal_sizes(big_frame_labels)))
    twice = _two_view_labels(big_frame_labels)
    assert len(big_frame_labels.skeleton.edges) > 0
    assert np.allclose(animal_sizes(twice), animal_sizes(big_frame_labels))
    assert float(np.median(_instance_sizes(twice))) > one + 150  # the box spans both views
    # a skeleton joining the views is one group: the whole instance, as before
    joined = _two_view_labels(big_frame_labels, joined=True)
    assert np.allclose(animal_sizes(joined), _instance_sizes(joined))

    s_one = recommend(_config(), big_frame_labels, CPU2, max_time=480).overrides
    s_two = recommend(_config(), twice, CPU2, max_time=480).overrides
    key = "data.preprocessing.input_scaling"
    assert s_two[key] == s_one[key]  # the animal is as resolvable as when seen once
