"""Winograd F(4x4, 3x3): same results as direct convolution, used only where it should be."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posekit.optimize import cpu_runs_bf16
from posekit.optimize.winograd import (
    WinogradConv2d,
    transform_filters,
    use_winograd,
    winograd_conv3x3,
    worthwhile,
)


def _conv(cin=128, cout=128, **kw) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, 3, padding=1, **kw).eval()


@pytest.mark.parametrize("size", [(8, 8), (7, 13), (1, 5), (16, 9)])
@pytest.mark.parametrize("relu", [False, True])
def test_matches_direct_convolution_on_any_map_size(size, relu):
    conv = _conv(24, 40)
    x = torch.randn(2, 24, *size)
    u = transform_filters(conv.weight)
    with torch.inference_mode():
        ref = conv(x)
        ref = F.relu(ref) if relu else ref
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            out = winograd_conv3x3(inp, u, conv.bias, relu)
            assert out.shape == ref.shape
            assert out.is_contiguous(memory_format=torch.channels_last)
            # float32 rounding, amplified a little by the transforms
            assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()
        assert torch.allclose(
            winograd_conv3x3(x, u, None, False), F.conv2d(x, conv.weight, None, padding=1),
            rtol=0, atol=2e-5 * ref.abs().max().item(),
        )  # fmt: skip


def test_only_wide_same_padded_3x3_convolutions_are_worthwhile():
    assert worthwhile(_conv(128, 128)) and worthwhile(_conv(768, 256))
    assert not worthwhile(_conv(64, 64))  # transforms cost more than they save
    assert not worthwhile(_conv(192, 64))
    assert not worthwhile(nn.Conv2d(128, 128, 3, padding=1, stride=2))
    assert not worthwhile(nn.Conv2d(128, 128, 3, padding=2, dilation=2))
    assert not worthwhile(nn.Conv2d(128, 128, 3, padding=0))
    assert not worthwhile(nn.Conv2d(128, 128, 5, padding=2))
    assert not worthwhile(nn.Conv2d(128, 128, 3, padding=1, groups=2))
    assert not worthwhile(nn.Conv2d(128, 128, 3, padding=1, padding_mode="reflect"))

    class Sub(nn.Conv2d):  # a subclass may do more in forward
        pass

    assert not worthwhile(Sub(128, 128, 3, padding=1))
    with pytest.raises(ValueError, match="not a Winograd-friendly"):
        WinogradConv2d(_conv(64, 64))


def test_module_falls_back_to_the_convolution_outside_float32_cpu_inference():
    conv = _conv(128, 128)
    mod = WinogradConv2d(conv, relu=True)
    x = torch.randn(1, 128, 8, 8)
    ref = F.relu(conv(x))
    # gradients on: the wrapped convolution runs, so training through it works
    xg = x.clone().requires_grad_(True)
    out = mod(xg)
    out.sum().backward()
    assert xg.grad is not None and torch.equal(out.detach(), ref.detach())
    with torch.inference_mode():
        fast = mod(x)
        assert not torch.equal(fast, ref)  # the Winograd path ran ...
        assert torch.allclose(fast, ref, rtol=0, atol=2e-5 * ref.abs().max().item())  # ...
        if cpu_runs_bf16():  # an AVX2-only CPU has no bfloat16 convolution at all
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert mod(x).dtype == torch.bfloat16  # autocast: the convolution, in bf16


def test_use_winograd_replaces_plain_and_relu_fused_convolutions_once():
    from posekit.optimize import fuse_conv_relu

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 128, 3, padding=1),  # 1 input channel: not worthwhile
        nn.Conv2d(128, 128, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(128, 256, 3, padding=1),
    ).eval()
    x = torch.rand(2, 1, 12, 12)
    with torch.inference_mode():
        ref = net(x)
    assert fuse_conv_relu(net, x) == [("1", "2")]
    assert use_winograd(net) == ["1", "3"]
    assert use_winograd(net) == []  # already done: nothing nests
    assert isinstance(net[0], nn.Conv2d) and net[1].relu and not net[3].relu
    assert isinstance(net[1].conv, nn.Conv2d)
    with torch.inference_mode():
        out = net(x)
    assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()


def test_optimized_unet_runs_its_deep_layers_as_winograd_with_the_same_outputs(
    single_instance_unet,
):
    from posekit.optimize import optimize_for_inference

    model = single_instance_unet(filters=32, max_stride=8)
    opt = optimize_for_inference(model)
    paths = opt.inference_optimizations["winograd"]
    wide = [m for m in model.modules() if worthwhile(m)]
    assert len(paths) == len(wide) > 0
    assert optimize_for_inference(model, winograd=False).inference_optimizations["winograd"] == []
    x = torch.rand(2, 1, 40, 56)
    with torch.inference_mode():
        ref, out = model(x), opt(x)
    for k in ref:
        assert (out[k] - ref[k]).abs().max() <= 1e-5 * max(1.0, ref[k].abs().max().item())


def test_large_batches_run_in_chunks_and_huge_maps_use_the_convolution(monkeypatch):
    import posekit.optimize.winograd as winograd

    conv = _conv(128, 128)
    mod = WinogradConv2d(conv)
    x = torch.randn(5, 128, 8, 8)
    per_image = 36 * 4 * 256 * 4  # bytes of transform-domain data per 8x8 image (4 tiles)
    calls = []
    real = winograd.winograd_conv3x3
    monkeypatch.setattr(
        winograd, "winograd_conv3x3", lambda x, *a: calls.append(len(x)) or real(x, *a)
    )
    monkeypatch.setattr(winograd, "MAX_TRANSFORM_BYTES", 2 * per_image)
    with torch.inference_mode():
        ref = conv(x)
        out = mod(x)
        assert calls == [2, 2, 1]
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()
        monkeypatch.setattr(winograd, "MAX_TRANSFORM_BYTES", per_image - 1)
        calls.clear()
        assert torch.equal(mod(x), ref) and calls == []  # too big even alone: direct
