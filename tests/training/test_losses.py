"""Loss numbers: MSE, online hard keypoint mining, Keras cross-entropy, stacked heads."""

from __future__ import annotations

import math

import pytest
import torch

from posekit.training.losses import (
    categorical_crossentropy,
    channel_losses,
    ohkm_loss,
    select_hard_keypoints,
)


def _maps_with_channel_sse(sse: list[float], h: int = 2, w: int = 2):
    """pred/target (1, C, h, w) whose per-channel summed squared error is `sse`."""
    c = len(sse)
    target = torch.zeros(1, c, h, w)
    pred = torch.zeros(1, c, h, w)
    for i, s in enumerate(sse):
        pred[0, i, 0, 0] = math.sqrt(s)  # one pixel carries the whole error
    return pred, target


def test_channel_losses_sum_over_batch_and_pixels():
    pred = torch.zeros(2, 3, 4, 5)
    pred[0, 1] = 1.0  # 20 pixels of error 1 in channel 1
    pred[1, 2, 0, 0] = 3.0  # one pixel of squared error 9 in channel 2
    assert channel_losses(pred, torch.zeros_like(pred)).tolist() == [0.0, 20.0, 9.0]


def test_hard_keypoints_by_ratio_to_the_easiest_channel():
    # easiest = 1; ratio >= 2 -> channels with 2.0, 5.0, 8.0 are hard (3 of them)
    sse = torch.tensor([1.0, 2.0, 1.5, 5.0, 8.0])
    hard = select_hard_keypoints(sse, hard_to_easy_ratio=2.0, min_hard_keypoints=2)
    assert hard.tolist() == [4, 3, 1]  # hardest first


def test_hard_keypoints_min_and_max_counts():
    sse = torch.tensor([1.0, 1.1, 1.2, 1.3])  # nobody reaches ratio 2
    assert select_hard_keypoints(sse, 2.0, min_hard_keypoints=2).tolist() == [3, 2]
    sse = torch.tensor([1.0, 10.0, 20.0, 30.0])  # three hard ones, capped at 1
    assert select_hard_keypoints(sse, 2.0, 0, max_hard_keypoints=1).tolist() == [3]
    # min larger than the number of channels: every channel
    assert sorted(select_hard_keypoints(sse, 2.0, min_hard_keypoints=9).tolist()) == [0, 1, 2, 3]


def test_ohkm_value_on_a_hand_built_loss():
    sse = [1.0, 1.44, 4.0, 9.0, 16.0]  # squares, exact in float32
    pred, target = _maps_with_channel_sse(sse, h=2, w=3)
    loss = ohkm_loss(pred, target, hard_to_easy_ratio=2.0, min_hard_keypoints=2, loss_scale=5.0)
    # hard channels (>= 2x the easiest): 16, 9, 4 -> 5 * 29 / (batch 1 * 2 * 3 pixels * k=3)
    assert loss.item() == pytest.approx(5.0 * 29.0 / (1 * 2 * 3 * 3), rel=1e-6)


def test_ohkm_gradient_only_reaches_hard_channels():
    pred, target = _maps_with_channel_sse([1.0, 9.0, 1.0, 16.0])
    pred.requires_grad_(True)
    ohkm_loss(pred, target, hard_to_easy_ratio=2.0, min_hard_keypoints=1).backward()
    touched = (pred.grad.abs().sum(dim=(0, 2, 3)) > 0).tolist()
    assert touched == [False, True, False, True]


def test_keras_categorical_crossentropy_on_probabilities():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    # second row: probability 0 is clipped to 1e-7
    expected = (-math.log(0.7) - math.log(1e-7)) / 2
    assert categorical_crossentropy(probs, target).item() == pytest.approx(expected, rel=1e-5)
    # unnormalised predictions are renormalised first (Keras does)
    doubled = categorical_crossentropy(2 * probs[:1], target[:1]).item()
    assert doubled == pytest.approx(-math.log(0.7), rel=1e-6)


def _job(heads: dict, backbone: dict, ohkm: bool = False):
    from posekit.config.job import TrainingJobConfig

    return TrainingJobConfig.model_validate(
        {
            "model": {"backbone": backbone, "heads": heads},
            "optimization": {"hard_keypoint_mining": {"online_mining": ohkm}},
        }
    )


def test_stacked_hourglass_sums_every_stacks_loss():
    from posekit.model.network import Model
    from posekit.training.lightning_module import PoseLightningModule

    torch.manual_seed(0)
    config = _job(
        {"single_instance": {"part_names": ["a", "b"], "output_stride": 4, "loss_weight": 2.0}},
        {
            "hourglass": {
                "stem_stride": 4,
                "max_stride": 16,
                "output_stride": 4,
                "stem_filters": 4,
                "filters": 4,
                "filter_increase": 2,
                "stacks": 2,
            }
        },
    )
    model = Model.from_config(config.model, in_channels=1)
    module = PoseLightningModule(model, config)
    x = torch.rand(2, 1, 32, 32)
    outs = model.forward_stacks(x)["SingleInstanceConfmapsHead"]
    assert len(outs) == 2
    target = torch.rand_like(outs[0])
    batch = {"image": x, "SingleInstanceConfmapsHead": target}
    total, per_head = module.compute_losses(model.forward_stacks(x), batch)
    stack_losses = [((o - target) ** 2).mean().item() for o in outs]
    assert per_head["SingleInstanceConfmapsHead"].item() == pytest.approx(
        sum(stack_losses), rel=1e-5
    )
    assert total.item() == pytest.approx(2.0 * sum(stack_losses), rel=1e-5)
    # the first stack's head gets gradient from its own supervision
    total.backward()
    first_head = model.head_layers["SingleInstanceConfmapsHead_0"]
    assert first_head.weight.grad is not None and first_head.weight.grad.abs().sum() > 0


def test_ohkm_is_added_to_mse_in_the_module():
    from posekit.model.network import Model
    from posekit.training.lightning_module import PoseLightningModule

    torch.manual_seed(0)
    backbone = {"unet": {"filters": 4, "max_stride": 4, "output_stride": 2}}
    heads = {"single_instance": {"part_names": ["a", "b", "c"], "output_stride": 2}}
    plain = _job(heads, backbone, ohkm=False)
    mined = _job(heads, backbone, ohkm=True)
    model = Model.from_config(plain.model, in_channels=1)
    x = torch.rand(2, 1, 16, 16)
    pred = model(x)["SingleInstanceConfmapsHead"].detach()
    target = torch.rand_like(pred)
    batch = {"image": x, "SingleInstanceConfmapsHead": target}
    with torch.no_grad():
        loss_plain, _ = PoseLightningModule(model, plain).compute_losses(
            model.forward_stacks(x), batch
        )
        loss_mined, _ = PoseLightningModule(model, mined).compute_losses(
            model.forward_stacks(x), batch
        )
    expected_extra = ohkm_loss(pred, target, 2.0, 2, None, 5.0).item()
    assert loss_plain.item() == pytest.approx(((pred - target) ** 2).mean().item(), rel=1e-5)
    assert loss_mined.item() == pytest.approx(loss_plain.item() + expected_extra, rel=1e-5)


def test_missing_target_names_the_head():
    from posekit.errors import PosekitError
    from posekit.model.network import Model
    from posekit.training.lightning_module import PoseLightningModule

    config = _job(
        {"single_instance": {"part_names": ["a"], "output_stride": 2}},
        {"unet": {"filters": 4, "max_stride": 4, "output_stride": 2}},
    )
    model = Model.from_config(config.model, in_channels=1)
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(PosekitError, match="SingleInstanceConfmapsHead"):
        PoseLightningModule(model, config).compute_losses(model.forward_stacks(x), {"image": x})
