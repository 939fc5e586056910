"""Numeric parity with Keras, and the layers that make it exact.

The three `keras_numeric` backbones (UNet, LEAP CNN, two-stack hourglass) are loaded from
their Keras `weights.h5` by leaf-name lookup and must reproduce Keras' outputs on the same
input (max abs error < 1e-4). The padding-sensitive layers are also checked against
definitions that do not use posekit's code path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.common import (
    SameConv2d,
    SameConvTranspose2d,
    SameMaxPool2d,
    pad_to_stride,
)
from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
NUMERIC = SHARED / "reference" / "keras_numeric"
CASES = ["unet_f8_ms8_os2", "leap_f8_ms8_os2", "hourglass_s2_f16_fi8_sf8_ms32_os4"]
needs_shared = pytest.mark.skipif(not NUMERIC.exists(), reason="../shared is absent")


def _load_h5(module: nn.Module, path: Path) -> int:
    """Minimal Keras `save_weights` reader: layer group -> module with that leaf name."""
    import h5py

    by_leaf = {name.split(".")[-1]: m for name, m in module.named_modules()}
    loaded = 0
    with h5py.File(path, "r") as f:
        for raw in f.attrs["layer_names"]:
            layer = raw.decode() if isinstance(raw, bytes) else raw
            names = [
                n.decode() if isinstance(n, bytes) else n for n in f[layer].attrs["weight_names"]
            ]
            if not names:
                continue
            w = {n.split("/")[-1].split(":")[0]: np.asarray(f[layer][n]) for n in names}
            m = by_leaf[layer]
            with torch.no_grad():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.copy_(torch.from_numpy(w["gamma"]))
                    m.bias.copy_(torch.from_numpy(w["beta"]))
                    m.running_mean.copy_(torch.from_numpy(w["moving_mean"]))
                    m.running_var.copy_(torch.from_numpy(w["moving_variance"]))
                else:
                    # Conv2D (kh,kw,in,out) -> (out,in,kh,kw); Conv2DTranspose
                    # (kh,kw,out,in) -> (in,out,kh,kw): the same axis permutation.
                    m.weight.copy_(torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1)))
                    if "bias" in w:
                        m.bias.copy_(torch.from_numpy(w["bias"]))
            loaded += 1
    return loaded


def _case(name: str):
    from posekit.architectures import build_backbone
    from posekit.config.model import HourglassConfig, LEAPConfig, UNetConfig

    meta = json.loads((NUMERIC / name / "meta.json").read_text())
    cfg = meta["config"]
    for key, cls in (
        ("UNetConfig", UNetConfig),
        ("LEAPConfig", LEAPConfig),
        ("HourglassConfig", HourglassConfig),
    ):
        if key in cfg:
            model = build_backbone(cls(**cfg[key]), in_channels=meta["input_shape"][-1])
            break
    io = np.load(NUMERIC / name / "io.npz")
    x = torch.from_numpy(np.ascontiguousarray(io["input"].transpose(0, 3, 1, 2)))
    refs = [io[o["key"]] for o in meta["outputs"]]
    return model.eval(), meta, x, refs


def _run(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(x)
    outs = out if isinstance(out, list) else [out]
    return [o.permute(0, 2, 3, 1).numpy() for o in outs]


def _max_err(outs: list[np.ndarray], refs: list[np.ndarray]) -> float:
    assert [o.shape for o in outs] == [r.shape for r in refs]
    return max(float(np.abs(o - r).max()) for o, r in zip(outs, refs, strict=True))


@needs_shared
@pytest.mark.parametrize("name", CASES)
def test_backbone_reproduces_keras_outputs(name):
    model, meta, x, refs = _case(name)
    n_weighted = sum(1 for w in meta["weighted_layers"])
    assert _load_h5(model, NUMERIC / name / "weights.h5") == n_weighted
    assert _max_err(_run(model, x), refs) < 1e-4


@needs_shared
@pytest.mark.parametrize("name", CASES)
def test_backbone_loads_with_posekit_keras_importer(name):
    keras_h5 = pytest.importorskip("posekit.io.keras_h5")
    model, _, x, refs = _case(name)
    keras_h5.load_keras_weights(model, NUMERIC / name / "weights.h5")
    assert _max_err(_run(model, x), refs) < 1e-4


@needs_shared
def test_naive_transposed_conv_padding_is_off_by_one_pixel():
    """ConvTranspose2d(padding=1, output_padding=1) -- the common port -- misses Keras."""
    model, _, x, refs = _case("unet_f8_ms8_os2")
    _load_h5(model, NUMERIC / "unet_f8_ms8_os2" / "weights.h5")
    assert _max_err(_run(model, x), refs) < 1e-4
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, SameConvTranspose2d):
                naive = nn.ConvTranspose2d(
                    child.in_channels, child.out_channels, 3, 2, padding=1, output_padding=1
                )
                naive.load_state_dict(child.state_dict())
                setattr(parent, child_name, naive)
    assert _max_err(_run(model, x), refs) > 1e-2


def test_same_transposed_conv_is_naive_shifted_by_one_pixel():
    torch.manual_seed(0)
    ours = SameConvTranspose2d(3, 4, 3, 2)
    naive = nn.ConvTranspose2d(3, 4, 3, 2, padding=1, output_padding=1)
    naive.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 5, 6)
    a, b = ours(x), naive(x)
    assert a.shape == b.shape == (2, 4, 10, 12)
    assert not torch.allclose(a, b, atol=1e-3)
    torch.testing.assert_close(a[..., 1:, 1:], b[..., :-1, :-1])


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
def test_same_transposed_conv_is_adjoint_of_same_strided_conv(kernel_size):
    """TF defines Conv2DTranspose("same") as the gradient of Conv2D("same", stride s).

    So <conv(y), x> == <conv_t(x), y> for the same weights, which pins the crop offset
    (0 for k=3, 1 for k=4) without re-deriving it.
    """
    torch.manual_seed(kernel_size)
    conv_t = SameConvTranspose2d(3, 5, kernel_size, 2, bias=False)
    conv = SameConv2d(5, 3, kernel_size, stride=2, bias=False)
    conv.weight.data.copy_(conv_t.weight.data)  # (3, 5, k, k) in both layouts
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    y = torch.randn(1, 5, 8, 10, dtype=torch.float64)
    conv_t, conv = conv_t.double(), conv.double()
    assert conv_t(x).shape == y.shape
    assert conv(y).shape == x.shape
    with torch.no_grad():
        lhs = (conv(y) * x).sum()
        rhs = (conv_t(x) * y).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-10)


def test_strided_same_conv_pads_bottom_right_like_tensorflow():
    # 7x7 stride-2 conv on 8x8: TF pads 2 before and 3 after (PyTorch's padding=3 would
    # pad 3 before and shift the sampling grid by one pixel).
    torch.manual_seed(1)
    conv = SameConv2d(1, 1, 7, stride=2, bias=False)
    x = torch.randn(1, 1, 8, 8)
    expected = F.conv2d(F.pad(x, (2, 3, 2, 3)), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)
    shifted = F.conv2d(x, conv.weight, stride=2, padding=3)
    assert not torch.allclose(conv(x), shifted, atol=1e-3)


def test_same_max_pool_on_odd_size_pads_bottom_right():
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    y = SameMaxPool2d(2, 2)(x)
    assert y.shape == (1, 1, 3, 3)
    # Windows start at 0, 2, 4; the last one only sees row/column 4.
    assert y[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]


def test_batch_norm_uses_keras_epsilon_and_momentum():
    from posekit.architectures.hourglass import Hourglass

    model = Hourglass(down_blocks=1, up_blocks=1, stem_filters=2, filters=2, stacks=1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3 + 1 + 2  # stem, encoder block, decoder block (conv + skip)
    assert all(m.eps == 1e-3 and m.momentum == pytest.approx(0.01) for m in bns)


def test_hourglass_conv_order_is_conv_relu_bn():
    from posekit.architectures.hourglass import conv

    block = conv(2, 3, prefix="x")
    assert [type(m) for m in block] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    assert [n for n, _ in block.named_children()] == ["x_conv", "x_relu", "x_bn"]


def test_unet_skip_is_concatenated_skip_first():
    from posekit.architectures.encoder_decoder import SimpleUpsamplingBlock

    block = SimpleUpsamplingBlock(
        2, skip_channels=1, skip_connection=True, refine_convs=1, refine_convs_filters=1,
        refine_convs_batch_norm=False, transposed_conv=False, interp_method="nearest",
    )  # fmt: skip
    conv = block.refine[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # output = input channel 0 = the skip
    skip = torch.full((1, 1, 4, 4), 3.0)
    out = block(torch.zeros(1, 2, 2, 2), skip)
    assert torch.all(out == 3.0)


def test_forward_rejects_sizes_not_divisible_by_max_stride_and_pad_fixes_it():
    from posekit.architectures.unet import UNet

    model = UNet(filters=2, down_blocks=3, up_blocks=3, in_channels=1)
    x = torch.rand(1, 1, 30, 17)
    with pytest.raises(ValueError, match=r"30x17.*maximum stride 8.*pad_to_stride"):
        model(x)
    padded = pad_to_stride(x, 8)
    assert padded.shape == (1, 1, 32, 24)
    assert torch.equal(padded[..., :30, :17], x)
    assert padded[..., 30:, :].abs().sum() == 0 and padded[..., :, 17:].abs().sum() == 0
    assert model(padded).shape == (1, 2, 32, 24)


def test_build_backbone_dispatch_and_output_stride_override():
    from posekit.architectures import build_backbone
    from posekit.architectures.leap import LeapCNN
    from posekit.config.model import BackboneConfig, LEAPConfig, UNetConfig

    cfg = BackboneConfig(unet=UNetConfig(filters=4, max_stride=16, output_stride=1))
    model = build_backbone(cfg, in_channels=3, output_stride=4)
    assert (model.maximum_stride, model.output_stride) == (16, 4)
    assert model.encoder_stack[0].layers[0].in_channels == 3
    assert build_backbone(cfg).output_stride == 1  # the config itself is unchanged
    assert isinstance(build_backbone(LEAPConfig(filters=4)), LeapCNN)
    with pytest.raises(PosekitError, match="no backbone set"):
        build_backbone(BackboneConfig())
    with pytest.raises(ValueError, match="output_stride"):
        build_backbone(UNetConfig(max_stride=8), output_stride=16)


def test_impossible_block_counts_fail_at_build_time():
    from posekit.architectures.hourglass import Hourglass
    from posekit.architectures.unet import UNet

    with pytest.raises(PosekitError, match="up_blocks=5 is more than the 4 pooling steps"):
        UNet(filters=2, down_blocks=4, up_blocks=5)
    with pytest.raises(PosekitError, match="needs a skip source at stride 1"):
        Hourglass(down_blocks=1, up_blocks=3, stem_stride=2, filters=2, stem_filters=2)


def test_stacked_backbone_returns_one_output_per_stack():
    from posekit.architectures.unet import UNet

    model = UNet(stacks=2, filters=2, down_blocks=2, up_blocks=2)
    out = model(torch.rand(1, 1, 8, 8))
    assert isinstance(out, list) and [o.shape for o in out] == [(1, 2, 8, 8)] * 2
    assert not torch.equal(out[0], out[1])
