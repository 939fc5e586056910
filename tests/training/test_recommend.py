"""`--auto`: the recommender's documented rules, checked on hand-computed cases."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from posekit.config.job import TrainingJobConfig
from posekit.training.recommend import Hardware, recommend


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


def _config(heads, filters=16, max_stride=16):
    return TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {"unet": {"filters": filters, "max_stride": max_stride}},
                "heads": heads,
            }
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
