"""`--auto`: the recommender's documented rules, checked on hand-computed cases."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import numpy as np
import pytest

from posekit.config.job import TrainingJobConfig
from posekit.errors import PosekitError
from posekit.training.hardware import Hardware, budget_seconds
from posekit.training.recommend import recommend


@dataclass
class _Entry:
    video_index: int
    points: np.ndarray


class FakeLabels:
    """What the recommender reads from `PoseLabels`: frame size, instances, counts."""

    def __init__(self, n_frames, hw, sizes, per_frame=1):
        self.hw = hw
        self.entries = []
        for i in range(n_frames):
            pts = []
            for j in range(per_frame):
                s = sizes[(i * per_frame + j) % len(sizes)]
                pts.append([[10.0, 10.0], [10.0 + s, 10.0 + s / 2], [np.nan, np.nan]])
            self.entries.append(_Entry(0, np.array(pts)))

    def __len__(self):
        return len(self.entries)

    def frame_shape(self, video_index):
        return (*self.hw, 1)

    def all_points(self):
        return [p for e in self.entries for p in e.points]

    @property
    def n_instances(self):
        return sum(len(e.points) for e in self.entries)


def _config(heads, filters=16, max_stride=16, output_stride=1, augmentation=None):
    return TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {
                    "unet": {
                        "filters": filters,
                        "max_stride": max_stride,
                        "output_stride": output_stride,
                    }
                },
                "heads": heads,
            },
            "optimization": {"augmentation_config": augmentation or {}},
        }
    )


CPU = Hardware("cpu", 1, None, 2)


def test_full_frame_scaling_batch_lr_epochs_on_cpu():
    labels = FakeLabels(100, (2048, 1536), sizes=[100.0])
    rec = recommend(_config({"single_instance": {}}), labels, CPU)
    o = rec.overrides
    # max(min(1, 1024 / 2048), 64 / 100) = 0.64 -> 0.60 (multiples of 0.05, rounded down)
    assert o["data.preprocessing.input_scaling"] == pytest.approx(0.6)
    assert o["optimization.batch_size"] == 4
    assert o["optimization.initial_learning_rate"] == pytest.approx(1e-4)
    # batches/epoch = clamp(ceil(100 / 4), 50, 200) = 50; samples = max(300 * 100, 20000)
    assert o["optimization.batches_per_epoch"] == 50
    assert o["optimization.epochs"] == 150  # ceil(30000 / (4 * 50))
    # patience = clamp(150 // 20, 3, 10) = 7, cooldown 3, early stopping 2 * 7 + 3
    assert o["optimization.learning_rate_schedule.plateau_patience"] == 7
    assert o["optimization.learning_rate_schedule.plateau_cooldown"] == 3
    assert o["optimization.early_stopping.plateau_patience"] == 17
    assert rec.num_workers == 0  # 2 cores
    assert "data.instance_cropping.crop_size" not in o


def test_centroid_scaling_keeps_animals_32_px():
    labels = FakeLabels(10, (1024, 1024), sizes=[200.0])
    rec = recommend(_config({"centroid": {}}), labels, CPU)
    # max(min(1, 512 / 1024), 32 / 200) = 0.5
    assert rec.overrides["data.preprocessing.input_scaling"] == pytest.approx(0.5)
    # few examples: epochs from the 20000-sample floor: ceil(20000 / (4 * 50)) = 100
    assert rec.overrides["optimization.epochs"] == 100


def test_topdown_crop_size_and_gpu_batch():
    # instances of 100 and 600 px: the largest exceeds 512 -> scale 512 / 600 -> 0.85
    labels = FakeLabels(50, (1024, 1024), sizes=[100.0, 600.0], per_frame=2)
    gpu = Hardware("cuda", 1, 80 * 2**30, 16)
    rec = recommend(_config({"centered_instance": {}}, filters=32), labels, gpu)
    o = rec.overrides
    assert o["data.preprocessing.input_scaling"] == pytest.approx(0.85)
    # crop: 600 * 0.85 + 16 = 526 -> next multiple of 16 = 528
    assert o["data.instance_cropping.crop_size"] == 528
    # memory: 160 B * 528^2 px * 32 filters = 1.33 GiB/sample; half of 80 GiB -> 29 -> 16
    assert o["optimization.batch_size"] == 16
    assert o["optimization.initial_learning_rate"] == pytest.approx(2e-4)  # 1e-4 * sqrt(4)
    assert rec.num_workers == 8


def test_batch_never_exceeds_the_examples():
    labels = FakeLabels(3, (64, 64), sizes=[20.0])
    gpu = Hardware("cuda", 1, 80 * 2**30, 16)
    rec = recommend(_config({"single_instance": {}}), labels, gpu)
    assert rec.overrides["optimization.batch_size"] == 2  # largest power of two <= 3


def test_auto_end_to_end_applies_the_recommendation(single_labels, tmp_path, capsys):
    from _training_helpers import tiny_config

    from posekit.config.job import TrainingJobConfig as Job
    from posekit.training import train

    run = train(
        tiny_config("single_instance", tmp_path),
        labels=single_labels,
        device="cpu",
        auto=True,
        overrides=["optimization.epochs=1", "optimization.batches_per_epoch=1"],
        progress=False,
    )
    saved = Job.load_json(run / "training_config.json")
    assert "--auto settings" in capsys.readouterr().out
    assert saved.optimization.batch_size == 4  # the recommender's CPU batch
    assert saved.optimization.min_val_batches_per_epoch == 1
    assert saved.optimization.epochs == 1  # explicit overrides win over --auto


# --------------------------------------------------------------------------- time budget


def _unet_summary(head, max_stride, output_stride, side, filters=16):
    """Receptive field and GFLOPs of a UNet, computed independently with posekit.summary."""
    from posekit.model.summary import summary

    cfg = TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {
                    "unet": {
                        "filters": filters,
                        "max_stride": max_stride,
                        "output_stride": output_stride,
                    }
                },
                "heads": {head: {"output_stride": output_stride}},
            }
        }
    )
    return summary(cfg, (side, side, 1))


@pytest.mark.parametrize(
    "value",
    [600, 600.0, datetime.timedelta(minutes=10), "00:00:10:00", {"minutes": 10}],
)
def test_budget_seconds_reads_every_max_time_form(value):
    assert budget_seconds(value) == pytest.approx(600.0)
    assert budget_seconds(None) is None


@pytest.mark.parametrize("value", ["ten minutes", -5, 0, {"fortnights": 1}])
def test_budget_seconds_rejects_non_times(value):
    with pytest.raises(PosekitError, match="max_time"):
        budget_seconds(value)


def test_cpu_budget_makes_the_centroid_model_lean():
    # 1024 px frames, 96 px animals, a SLEAP-like centroid profile (16 filters, stride 16/2)
    labels = FakeLabels(100, (1024, 1024), sizes=[96.0])
    config = _config({"centroid": {"sigma": 2.5, "output_stride": 2}}, 16, 16, 2)
    hw = Hardware("cpu", 1, None, 2, train_gflops=30.0)
    o = recommend(config, labels, hw, max_time=600).overrides
    # scale 24 / 96 = 0.25: animals of 24 px
    assert o["data.preprocessing.input_scaling"] == pytest.approx(0.25)
    # need a receptive field of 2 x 24 px: max stride 8 has it, 4 is never tried
    assert o["model.backbone.unet.max_stride"] == 8
    assert _unet_summary("centroid", 8, 4, 32)["receptive_field"] >= 48
    # a map pixel <= a quarter animal: 24 / 4 = 6 -> stride 4; sigma 1.5 map px
    assert o["model.backbone.unet.output_stride"] == 4
    assert o["model.heads.centroid.output_stride"] == 4
    assert o["model.heads.centroid.sigma"] == pytest.approx(1.5)
    assert "model.backbone.unet.filters" not in o  # already 16
    assert o["optimization.initial_learning_rate"] == pytest.approx(1e-3)
    assert o["optimization.early_stopping.stop_training_on_plateau"] is False
    # updates in the budget: 600 s x 30 GFLOP/s / (3 x F x batch 4), F at 256 x 256
    gflops = _unet_summary("centroid", 8, 4, 256)["gflops"]
    steps = 600 * 30.0 / (3 * gflops * 4)
    bpe = min(200, max(10, round(steps / 30)))
    assert o["optimization.batches_per_epoch"] == bpe
    assert o["optimization.epochs"] == min(1000, max(10, math.ceil(3 * steps / bpe)))
    # validation: 100 x 0.1 / 0.9 = 11 frames -> 3 batches, under bpe // 4
    assert o["optimization.val_batches_per_epoch"] == min(3, max(2, bpe // 4))
    # the budget's own schedule (BudgetPlan: warm-up, cosine over the time), no plateau
    assert o["optimization.learning_rate_schedule.reduce_on_plateau"] is False
    assert "optimization.learning_rate_schedule.plateau_patience" not in o


def test_cpu_budget_topdown_keeps_resolution_and_thins_the_backbone():
    labels = FakeLabels(50, (1024, 1024), sizes=[90.0, 110.0], per_frame=2)
    config = _config({"centered_instance": {"sigma": 2.5, "output_stride": 2}}, 24, 16, 2)
    o = recommend(config, labels, Hardware("cpu", 1, None, 2), max_time=600).overrides
    assert o["data.preprocessing.input_scaling"] == pytest.approx(1.0)
    assert o["model.backbone.unet.filters"] == 16  # 24 -> 16
    # receptive field must cover 2 x 100 px: stride 8 cannot, so the profile's 16 stays
    assert _unet_summary("centered_instance", 8, 4, 32)["receptive_field"] < 200
    assert "model.backbone.unet.max_stride" not in o
    # a map pixel <= 2 frame px at scale 1 -> output stride 2; sigma 1.5 map px
    assert o["model.backbone.unet.output_stride"] == 2
    assert o["model.heads.centered_instance.output_stride"] == 2
    assert o["model.heads.centered_instance.sigma"] == pytest.approx(1.5)
    # crop: largest 110 px + 16 padding = 126 -> multiple of 16 = 128
    assert o["data.instance_cropping.crop_size"] == 128


def test_budget_scales_the_epochs_with_time_and_machine_speed():
    labels = FakeLabels(200, (512, 512), sizes=[64.0])
    config = _config({"centroid": {}}, 16, 16, 2)
    plans = {}
    for budget, gflops in ((600, 30.0), (1200, 30.0), (600, 60.0)):
        rec = recommend(config, labels, Hardware("cpu", 1, None, 2, gflops), max_time=budget)
        plans[budget, gflops] = rec.plan["est_steps"]
    assert plans[1200, 30.0] == pytest.approx(2 * plans[600, 30.0])
    assert plans[600, 60.0] == pytest.approx(2 * plans[600, 30.0])


def test_gpu_budget_keeps_the_architecture():
    labels = FakeLabels(50, (1024, 1024), sizes=[100.0], per_frame=2)
    config = _config({"centered_instance": {"output_stride": 4}}, 24, 16, 4)
    gpu = Hardware("cuda", 1, 80 * 2**30, 16)
    o = recommend(config, labels, gpu, max_time=600).overrides
    assert not any(k.startswith("model.") for k in o)
    assert o["optimization.initial_learning_rate"] == pytest.approx(1e-3)


class HeadingLabels(FakeLabels):
    """Two-node instances whose heading (mean point -> node 0) is given in degrees."""

    def __init__(self, headings_deg):
        self.hw = (256, 256)
        self.entries = []
        for deg in headings_deg:
            rad = math.radians(deg)
            head = np.array([100 + 20 * math.cos(rad), 100 + 20 * math.sin(rad)])
            tail = np.array([100 - 20 * math.cos(rad), 100 - 20 * math.sin(rad)])
            self.entries.append(_Entry(0, np.array([[head, tail]])))


def test_rotation_covers_every_orientation_the_labels_turn_to_unless_already_wider():
    labels = HeadingLabels(list(range(0, 360, 20)))  # animals facing every way
    narrow = {"rotate": True, "rotation_min_angle": -15, "rotation_max_angle": 15}
    o = recommend(_config({"centroid": {}}, augmentation=narrow), labels, CPU).overrides
    assert o["optimization.augmentation_config.rotate"] is True
    assert o["optimization.augmentation_config.rotation_min_angle"] == -180
    assert o["optimization.augmentation_config.rotation_max_angle"] == 180
    full = {"rotate": True, "rotation_min_angle": -180, "rotation_max_angle": 180}
    o = recommend(_config({"centroid": {}}, augmentation=full), labels, CPU).overrides
    assert not any(k.startswith("optimization.augmentation_config") for k in o)


def test_budget_rotation_follows_narrow_labelled_headings():
    """Labelled poses that turn over 40 degrees (a fixed view): +-15 beyond them.

    The augmentation adds to the turns the labels show, so +-15 covers the labelled arc
    plus 15 degrees at each end. (Before issue 15 this was +-180 whatever the labels
    showed, then +-(arc / 2 + 15); on DeepLabCut's reaching side view +-15 beat both:
    recommend.py rule 10.)
    """
    labels = HeadingLabels([30 + d for d in range(-20, 21)] * 2)
    none = {"rotate": False, "rotation_min_angle": 0, "rotation_max_angle": 0}
    config = _config({"centroid": {}}, augmentation=none)
    o = recommend(config, labels, CPU, max_time=600).overrides
    assert o["optimization.augmentation_config.rotate"] is True
    assert o["optimization.augmentation_config.rotation_min_angle"] == -15
    assert o["optimization.augmentation_config.rotation_max_angle"] == 15
    # a config that already rotates +-15 keeps its own settings
    narrow = {"rotate": True, "rotation_min_angle": -15, "rotation_max_angle": 15}
    config = _config({"centroid": {}}, augmentation=narrow)
    o = recommend(config, labels, CPU, max_time=600).overrides
    assert not any(k.startswith("optimization.augmentation_config") for k in o)
    # poses that turn over more than 150 degrees: the full circle
    wide = HeadingLabels([d for d in range(0, 160, 5)])
    o = recommend(config, wide, CPU, max_time=600).overrides
    assert o["optimization.augmentation_config.rotation_max_angle"] == 180


def test_precision_is_bf16_mixed_only_where_bf16_is_native():
    labels = HeadingLabels(list(range(0, 360, 10)))
    config = _config({"centroid": {}})
    assert recommend(config, labels, CPU).precision == "32-true"
    amx = Hardware("cpu", 1, None, 2, bf16=True)
    assert recommend(config, labels, amx).precision == "bf16-mixed"
    assert recommend(config, labels, amx, max_time=600).precision == "bf16-mixed"
