"""The fused Adam/AdamW of `PoseLightningModule` trains the same weights as torch's default.

Fused runs the same update formula in one kernel over all tensors; only float32 rounding
may differ, so a few steps of real training must give the same losses and weights to a
tight tolerance.
"""

from __future__ import annotations

import pytest
import torch


def _module(optimizer: str, fused: bool):
    from posekit.config.job import TrainingJobConfig
    from posekit.model.network import Model
    from posekit.training.lightning_module import PoseLightningModule

    config = TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {"unet": {"filters": 4, "max_stride": 8, "output_stride": 2}},
                "heads": {"single_instance": {"part_names": ["a", "b"], "output_stride": 2}},
            },
            "optimization": {"optimizer": optimizer, "initial_learning_rate": 1e-2},
        }
    )
    torch.manual_seed(0)
    module = PoseLightningModule(Model.from_config(config.model, in_channels=1), config)
    module.fused_optimizer = fused
    return module


def _train(module, steps: int = 6):
    """`steps` updates on fixed random batches; returns the losses and the weights."""
    optimizer = module.configure_optimizers()
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        image = torch.rand(2, 1, 32, 32, generator=gen)
        target = torch.rand(2, 2, 16, 16, generator=gen)
        loss, _ = module._step({"image": image, "SingleInstanceConfmapsHead": target})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return optimizer, losses, [p.detach().clone() for p in module.model.parameters()]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizer_trains_the_same_weights(name):
    fused_opt, fused_losses, fused_weights = _train(_module(name, fused=True))
    plain_opt, plain_losses, plain_weights = _train(_module(name, fused=False))
    assert fused_opt.defaults["fused"] is True
    assert not plain_opt.defaults["fused"]
    assert type(fused_opt) is type(plain_opt)
    if name == "adam":  # SLEAP's Keras Adam: AMSGrad, epsilon 1e-7, kept when fused
        assert fused_opt.defaults["amsgrad"] and fused_opt.defaults["eps"] == 1e-7
    assert fused_losses == pytest.approx(plain_losses, rel=1e-5)
    moved = max((w - w0).abs().max().item() for w, w0 in zip(fused_weights, _initial(name)))
    assert moved > 1e-3  # the steps changed the weights, so the comparison means something
    # Adam's steps here are ~1e-2 each (lr 1e-2); the two kernels round differently, and
    # on an AMD CPU limited to AVX2 one weight near zero of 9,216 ended 1.2e-6 apart
    for a, b in zip(fused_weights, plain_weights):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _initial(name: str):
    return [p.detach().clone() for p in _module(name, fused=False).model.parameters()]


def test_only_float_weights_on_cpu_or_cuda_are_fused():
    from posekit.training.lightning_module import _fusable

    assert _fusable([torch.nn.Parameter(torch.zeros(3))])
    assert not _fusable([])
    assert not _fusable([torch.nn.Parameter(torch.zeros(3, device="meta"))])
    assert not _fusable([torch.zeros(3, dtype=torch.int64)])
