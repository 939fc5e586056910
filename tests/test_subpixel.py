"""Transposed convolutions as sub-pixel convolutions: same outputs, ReLU fused, used only
where they apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.common import SameConvTranspose2d
from posekit.optimize.subpixel import SubpixelConvTranspose2d, convertible, use_subpixel_convs


@pytest.mark.parametrize("kernel,stride", [(3, 2), (4, 2), (2, 2), (5, 3), (3, 3), (6, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_the_keras_same_transposed_convolution(kernel, stride, bias):
    torch.manual_seed(kernel * 10 + stride)
    tconv = SameConvTranspose2d(6, 5, kernel, stride, bias=bias).eval()
    sub = SubpixelConvTranspose2d(tconv)
    for size in [(4, 4), (3, 7)]:
        x = torch.randn(2, 6, *size)
        with torch.no_grad():
            ref = tconv(x)
            out = sub(x)
        assert out.shape == ref.shape == (2, 5, size[0] * stride, size[1] * stride)
        assert torch.allclose(out, ref, rtol=0, atol=1e-5)


def test_only_same_transposed_convolutions_with_kernel_at_least_stride_convert():
    assert convertible(SameConvTranspose2d(4, 4, 3, 2))
    assert not convertible(SameConvTranspose2d(4, 4, 1, 2))  # unreached pixels: bias only
    assert not convertible(nn.ConvTranspose2d(4, 4, 3, 2, padding=1, output_padding=1))
    with pytest.raises(ValueError, match="cannot run"):
        SubpixelConvTranspose2d(nn.ConvTranspose2d(4, 4, 3, 2))


def test_unet_decoder_runs_as_subpixel_convolutions_with_relus_fused(
    single_instance_unet, monkeypatch
):
    from posekit.optimize import _modules, optimize_for_inference

    model = single_instance_unet(filters=8, max_stride=8, output_stride=1, up_interpolate=False)
    n_tconv = sum(type(m) is SameConvTranspose2d for m in model.modules())
    n_relu = sum(type(m) is nn.ReLU for m in model.modules())
    opt = optimize_for_inference(model)
    done = opt.inference_optimizations
    assert len(done["subpixel_convs"]) == n_tconv == 3
    assert not any(type(m) is SameConvTranspose2d for m in opt.modules())
    # every ReLU is fused, the ones after transposed convolutions into the sub-pixel conv
    assert len(done["fused_relu"]) == n_relu
    fused_sub = [m for m in opt.modules() if isinstance(m, SubpixelConvTranspose2d)]
    assert all(type(m.conv).__name__ == "ConvReLU2d" for m in fused_sub)
    plain = optimize_for_inference(model, subpixel_convs=False)
    assert plain.inference_optimizations["subpixel_convs"] == []
    # measured on CPUs only: a model on a GPU keeps cuDNN's kernels (no rewrite at all)
    monkeypatch.setattr(_modules, "device_type", lambda device: "cuda")
    gpu = optimize_for_inference(model).inference_optimizations
    assert gpu["subpixel_convs"] == [] and gpu["winograd"] == []
    monkeypatch.undo()
    x = torch.rand(2, 1, 24, 40)
    with torch.inference_mode():
        ref, out = model(x), opt(x)
    for k in ref:
        assert (out[k] - ref[k]).abs().max() < 1e-5


def test_use_subpixel_convs_keeps_trainability_flags_and_relu_still_applies():
    torch.manual_seed(1)
    net = nn.Sequential(SameConvTranspose2d(3, 4, 3, 2), nn.ReLU()).eval()
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        ref = net(x)
    assert use_subpixel_convs(net) == ["0"]
    assert net[0].conv.weight.requires_grad
    with torch.no_grad():
        assert torch.allclose(net(x), ref, atol=1e-6) and (net(x) >= 0).all()
    assert torch.allclose(F.relu(net[0](x)), ref, atol=1e-6)
