"""Inference optimisations: BatchNorm folding and channels-last keep outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
MODELS = SHARED / "sleap_models"
PARTS = ["a", "b", "c"]


def _randomize_bn(model: nn.Module, seed: int = 0) -> int:
    """Give every BatchNorm non-trivial statistics (defaults would make folding a no-op)."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
                count += 1
    return count


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _max_err(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k].contiguous()).abs().max()) for k in a)


def _resnet_model():
    """Tiny ResNet encoder + UpsamplingStack with transposed convs, BN everywhere."""
    from posekit.architectures.resnet import ResNetv1
    from posekit.config.model import UpsamplingConfig
    from posekit.heads import OffsetRefinementHead, SingleInstanceConfmapsHead
    from posekit.model.network import Model

    torch.manual_seed(0)
    stacks = [
        dict(filters=4, blocks=1, stride1=1, name="conv2"),
        dict(filters=6, blocks=2, stride1=2, name="conv3"),
        dict(filters=8, blocks=1, stride1=2, name="conv4"),
    ]
    up = UpsamplingConfig(
        method="transposed_conv",
        skip_connections="concatenate",
        filters=8,
        refine_convs=1,
        batch_norm=True,
        transposed_conv_kernel_size=4,
    )
    backbone = ResNetv1(stack_configs=stacks, upsampling=up, max_stride=16, output_stride=4)
    heads = [
        SingleInstanceConfmapsHead(4, 1.0, 5.0, PARTS),
        OffsetRefinementHead(4, 1.0, None, PARTS),
    ]
    return Model(backbone, heads, "single_instance").eval()


def test_batchnorm_folds_into_convs_and_transposed_convs_without_changing_outputs():
    from posekit.optimize import optimize_for_inference

    model = _resnet_model()
    n_bn = _randomize_bn(model)
    opt = optimize_for_inference(model, channels_last=False)
    folded = opt.inference_optimizations["folded_batchnorm"]
    # Every BN here directly follows a conv (encoder) or a transposed conv (decoder).
    assert len(folded) == n_bn > 10 and _count_bn(opt) == 0
    assert any("trans_conv" in conv for conv, _ in folded)
    assert _count_bn(model) == n_bn  # the original is untouched
    x = torch.rand(2, 1, 48, 64)
    with torch.no_grad():
        ref, out = model(x), opt(x)
    assert _max_err(ref, out) < 1e-4
    assert max(float(v.abs().max()) for v in ref.values()) > 0.1  # not a trivial comparison


def test_hourglass_conv_relu_bn_is_not_folded_and_channels_last_keeps_outputs():
    from posekit.architectures.hourglass import Hourglass
    from posekit.heads import SingleInstanceConfmapsHead
    from posekit.model.network import Model
    from posekit.optimize import optimize_for_inference

    torch.manual_seed(1)
    backbone = Hourglass(
        down_blocks=2, up_blocks=2, stem_filters=6, stem_stride=4, filters=8,
        filter_increase=4, stacks=2,
    )  # fmt: skip
    model = Model(backbone, [SingleInstanceConfmapsHead(4, 1.0, 5.0, PARTS)], "single_instance")
    model.eval()
    n_bn = _randomize_bn(model, seed=2)
    opt = optimize_for_inference(model)
    assert opt.inference_optimizations["folded_batchnorm"] == []
    assert _count_bn(opt) == n_bn
    assert opt.inference_optimizations["channels_last"]
    conv = next(m for m in opt.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert _max_err(model(x), opt(x)) < 1e-4


class _Toy(nn.Module):
    """Four conv -> BN patterns, only the first of which may be folded."""

    def __init__(self) -> None:
        super().__init__()
        from posekit.heads import _Sigmoid1x1

        self.c1, self.b1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.b2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)  # also a skip
        self.c3 = _Sigmoid1x1(nn.Conv2d(4, 4, 1))  # nonlinear conv subclass
        self.b3 = nn.BatchNorm2d(4)
        self.c4, self.b4 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)  # BN applied twice

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        y = self.c2(x)
        x = self.b2(y) + y
        x = self.b3(self.c3(x))
        return self.b4(self.b4(self.c4(x)))


def test_only_pairs_whose_conv_output_feeds_nothing_else_are_folded():
    from posekit.optimize import find_foldable_batchnorms, optimize_for_inference

    torch.manual_seed(0)
    toy = _Toy().eval()
    _randomize_bn(toy, seed=3)
    x = torch.rand(2, 1, 12, 12)
    pairs = find_foldable_batchnorms(toy, x)
    assert [(p.conv, p.batchnorm) for p in pairs] == [("c1", "b1")]
    opt = optimize_for_inference(toy, example_input=x)
    assert isinstance(opt.b1, nn.Identity) and isinstance(opt.b2, nn.BatchNorm2d)
    with torch.no_grad():
        assert float((toy(x) - opt(x)).abs().max()) < 1e-4


def test_transposed_conv_smaller_than_its_stride_without_bias_folds_exactly():
    """Pixels no kernel reaches hold the bias only; after folding that is BN's shift."""
    from posekit.architectures.common import SameConvTranspose2d
    from posekit.optimize import optimize_for_inference

    torch.manual_seed(0)
    net = nn.Sequential(SameConvTranspose2d(3, 5, kernel_size=1, stride=2, bias=False),
                        nn.BatchNorm2d(5)).eval()  # fmt: skip
    _randomize_bn(net, seed=4)
    opt = optimize_for_inference(net, example_input=torch.rand(1, 3, 4, 4))
    assert isinstance(opt[1], nn.Identity) and opt[0].bias is not None
    x = torch.rand(2, 3, 5, 7)
    with torch.no_grad():
        assert float((net(x) - opt(x)).abs().max()) < 1e-5


class _ReluToy(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()  # fusable
        self.c2, self.r2 = nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()  # output also skipped
        self.c3, self.i3, self.r3 = nn.Conv2d(16, 8, 1), nn.Identity(), nn.ReLU()  # fusable

    def forward(self, x):
        x = self.r1(self.c1(x))
        y = self.c2(x)
        x = self.r2(y) + y
        return self.r3(self.i3(self.c3(x)))


def test_relu_fuses_only_into_a_conv_it_alone_reads_and_outputs_stay_the_same():
    from posekit.optimize import fuse_conv_relu

    torch.manual_seed(0)
    toy = _ReluToy().eval()
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        ref = toy(x)
    fused = fuse_conv_relu(toy, x)
    assert fused == [("c1", "r1"), ("c3", "r3")]
    assert type(toy.c1).__name__ == "ConvReLU2d" and isinstance(toy.r1, nn.Identity)
    assert isinstance(toy.c2, nn.Conv2d) and isinstance(toy.r2, nn.ReLU)
    with torch.inference_mode():
        out = toy(x)
        out_cl = toy(x.contiguous(memory_format=torch.channels_last))
    # the post-op is the same max(0, y); the fused call may use another convolution
    # kernel, so equal to float32 rounding
    assert (out >= 0).all() and torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(out_cl.contiguous(), ref, rtol=1e-5, atol=1e-6)
    # with gradients on, the fused module falls back to conv + relu (autograd works)
    xg = x.clone().requires_grad_(True)
    toy(xg).sum().backward()
    assert xg.grad is not None and torch.allclose(toy(x), ref)


def test_fused_conv_relu_without_onednn_runs_conv_then_relu(monkeypatch):
    import posekit.optimize as optimize
    from posekit.optimize import _modules

    monkeypatch.setattr(_modules, "fused_conv_relu_op", lambda: None)
    torch.manual_seed(1)
    toy = _ReluToy().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        ref = toy(x)
    assert len(optimize.fuse_conv_relu(toy, x)) == 2 and toy.c1._op is None
    with torch.inference_mode():
        assert torch.equal(toy(x), ref)


def test_unet_relus_all_fuse_and_the_optimized_model_matches(single_instance_unet):
    from posekit.optimize import optimize_for_inference

    model = single_instance_unet(filters=8, max_stride=8, up_interpolate=True)
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    opt = optimize_for_inference(model)
    assert len(opt.inference_optimizations["fused_relu"]) == relus > 0
    assert not any(isinstance(m, nn.ReLU) for m in opt.modules())
    x = torch.rand(2, 1, 32, 48)
    with torch.inference_mode():
        assert _max_err(opt(x), model(x)) < 1e-5
    plain = optimize_for_inference(model, fuse_relu=False)
    assert plain.inference_optimizations["fused_relu"] == []
    assert sum(isinstance(m, nn.ReLU) for m in plain.modules()) == relus


@pytest.mark.skipif(not MODELS.exists(), reason="../shared is absent")
def test_imported_sleap_unet_optimizes_to_the_same_outputs():
    import posekit
    from posekit.optimize import optimize_for_inference

    model = posekit.load_model(MODELS / "minimal_instance.UNet.centered_instance")
    opt = optimize_for_inference(model)
    assert opt.inference_optimizations["folded_batchnorm"] == []  # SLEAP's UNet has no BN
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        assert _max_err(model(x), opt(x)) < 1e-4


def test_precision_resolution_and_errors():
    from posekit.optimize import cpu_runs_bf16, cpu_supports_bf16, resolve_precision

    assert resolve_precision("auto", "cuda") == "float16"
    assert resolve_precision("auto", "cpu") == ("bfloat16" if cpu_supports_bf16() else "float32")
    assert resolve_precision("fp32", "cuda") == "float32"
    assert resolve_precision("BF16", "cuda") == "bfloat16"
    if cpu_runs_bf16():
        assert resolve_precision("BF16", "cpu") == "bfloat16"
    with pytest.raises(PosekitError, match="precision='int8'"):
        resolve_precision("int8")


@pytest.mark.skipif(
    not __import__("posekit.optimize").optimize.cpu_supports_bf16(),
    reason=__import__("posekit.optimize").optimize.bf16_support().reason,
)
def test_bf16_autocast_runs_convs_in_bf16_close_to_fp32():
    from posekit.optimize import optimize_for_inference, precision

    model = _resnet_model()
    _randomize_bn(model)
    opt = optimize_for_inference(model)
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        ref = model(x)
        with precision("auto", opt):
            low = opt(x)
    name = "SingleInstanceConfmapsHead"
    assert low[name].dtype == torch.bfloat16
    err = float((low[name].float() - ref[name]).abs().max())
    assert err < 0.05 * float(ref[name].abs().max())
