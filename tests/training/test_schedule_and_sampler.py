"""Keras-exact plateau schedule, early stopping wiring, epoch lengths and rank shards."""

from __future__ import annotations

import pytest
import torch

from posekit.training.callbacks import KerasReduceLROnPlateau, optimization_callbacks
from posekit.training.datamodule import EpochSampler, epoch_batches


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_plateau_counts_like_keras():
    sched = KerasReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.1, cooldown=2, min_lr=0.2)
    opt = _opt(1.0)
    # Keras' rules traced by hand (improvement: v < best - 0.1; w = wait, cd = cooldown):
    #  0: 1.0 best                      7: cd 1->0, w 0, then w 1
    #  1: .95 w 1                       8: w 2 -> lr max(.125, min_lr .2) = .2, cd 2
    #  2: .95 w 2 -> lr .5, cd 2        9: cd 2->1, in cooldown: nothing
    #  3: .95 cd 2->1, in cooldown      10: cd 1->0, w 1
    #  4: .95 cd 1->0, w 1              11: w 2, lr already at min_lr: unchanged
    #  5: .95 w 2 -> lr .25, cd 2       12, 13: unchanged
    #  6: .5 cd 2->1, improves: best .5
    values = [1.0, 0.95, 0.95, 0.95, 0.95, 0.95, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    lrs = []
    for v in values:
        sched.step(v, [opt])
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]


def test_plateau_state_round_trip():
    a = KerasReduceLROnPlateau(patience=3)
    opt = _opt()
    for v in (1.0, 2.0, 2.0):
        a.step(v, [opt])
    b = KerasReduceLROnPlateau(patience=3)
    b.load_state_dict(a.state_dict())
    assert (b.best, b.wait, b.cooldown_counter) == (1.0, 2, 0)


def test_optimization_callbacks_follow_the_config():
    from lightning.pytorch.callbacks import EarlyStopping

    from posekit.config.job import OptimizationConfig

    cfg = OptimizationConfig.model_validate(
        {
            "learning_rate_schedule": {"plateau_patience": 7, "reduction_factor": 0.25},
            "early_stopping": {"plateau_patience": 4, "plateau_min_delta": 0.01},
        }
    )
    plateau, stop = optimization_callbacks(cfg)
    assert isinstance(plateau, KerasReduceLROnPlateau)
    assert (plateau.patience, plateau.factor) == (7, 0.25)
    assert isinstance(stop, EarlyStopping)
    assert (stop.patience, abs(stop.min_delta), stop.monitor) == (4, 0.01, "val_loss")
    off = OptimizationConfig.model_validate(
        {
            "learning_rate_schedule": {"reduce_on_plateau": False},
            "early_stopping": {"stop_training_on_plateau": False},
        }
    )
    assert optimization_callbacks(off) == []


@pytest.mark.parametrize(
    "n,batch,fixed,minimum,world,expected",
    [
        (100, 8, None, 200, 1, 200),  # SLEAP default: at least 200 steps
        (1000, 8, None, 10, 1, 125),  # one pass: ceil(1000 / 8)
        (1001, 8, None, 10, 1, 126),
        (1000, 8, None, 10, 4, 32),  # one pass split over 4 ranks: ceil(1000 / 32)
        (1000, 8, 7, 200, 1, 7),  # explicit batches_per_epoch wins
    ],
)
def test_epoch_batches(n, batch, fixed, minimum, world, expected):
    assert epoch_batches(n, batch, fixed, minimum, world) == expected


def test_rank_shards_are_disjoint_and_cover_one_pass():
    n = 24
    shards = [EpochSampler(n, 12, seed=3, rank=r, world_size=2) for r in range(2)]
    a, b = (list(s) for s in shards)
    assert len(a) == len(b) == 12
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(n))


def test_epochs_reshuffle_and_ranks_agree_on_the_order():
    s0 = EpochSampler(50, 50, seed=1)
    first = list(s0)
    s0.set_epoch(1)
    second = list(s0)
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second
    again = EpochSampler(50, 50, seed=1)
    assert list(again) == first  # same seed and epoch -> same order (every rank)


def test_longer_epochs_repeat_every_example_evenly():
    sampler = EpochSampler(10, 35, seed=0)  # 3.5 passes
    counts = torch.bincount(torch.tensor(list(sampler)), minlength=10)
    assert counts.min() >= 3 and counts.max() <= 4 and counts.sum() == 35


def test_validation_order_is_fixed():
    sampler = EpochSampler(5, 7, shuffle=False)
    assert list(sampler) == [0, 1, 2, 3, 4, 0, 1]
    sampler.set_epoch(3)
    assert list(sampler) == [0, 1, 2, 3, 4, 0, 1]


def test_datamodule_from_config_epoch_lengths(multi_labels):
    from posekit.config.job import TrainingJobConfig
    from posekit.data.labels import load_labels, split_labels
    from posekit.model.network import make_heads
    from posekit.training.datamodule import PoseDataModule

    config = TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {"unet": {"filters": 4, "max_stride": 16, "output_stride": 4}},
                "heads": {"single_instance": {"output_stride": 4}},
            },
            "optimization": {
                "batch_size": 4,
                "min_batches_per_epoch": 3,
                "min_val_batches_per_epoch": 2,
            },
        }
    )
    train, val = split_labels(load_labels(multi_labels), 0.25, seed=0)  # 18 / 6 frames
    _, heads = make_heads(config.model.heads, train.node_names, train.skeleton.edges)
    dm = PoseDataModule.from_config(config, train, val, heads, num_workers=0)
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (18, 6)
    assert dm.train_batches() == 5  # max(3, ceil(18 / 4))
    assert dm.val_batches() == 2  # max(2, ceil(6 / 4))
    assert dm.train_batches(world_size=2) == 3  # max(3, ceil(18 / 8))
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 5 and all(b["image"].shape[0] == 4 for b in batches)
    assert batches[0]["image"].dtype.is_floating_point is False  # raw uint8, finished on device
