"""ResNetv1 against SLEAP 1.4.1's own builds, plus frozen/preprocessing/dilation behaviour."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from posekit.architectures.resnet import (
    IMAGENET_BGR_MEANS,
    ImageNetPreprocess,
    ResNet50,
    ResNetv1,
)
from posekit.config.model import ResNetConfig, UpsamplingConfig
from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REFERENCE = SHARED / "reference" / "sleap_tf_params.json"

TINY_STACKS = [
    dict(filters=2, blocks=1, stride1=1, name="conv2"),
    dict(filters=3, blocks=2, stride1=2, name="conv3"),
    dict(filters=2, blocks=1, stride1=2, name="conv4"),
    dict(filters=2, blocks=1, stride1=2, name="conv5"),
]


@lru_cache(maxsize=1)
def _cases() -> list[dict]:
    if not REFERENCE.exists():
        return []
    return json.loads(REFERENCE.read_text())["cases"]


def _params(*groups: str):
    cases = [c for c in _cases() if c["group"] in groups and c["status"] == "ok"]
    if not cases:
        return [pytest.param(None, marks=pytest.mark.skip(reason="shared/reference is absent"))]
    return [pytest.param(c, id=c["name"]) for c in cases]


def keras_counts(module: nn.Module) -> tuple[int, int, int]:
    """(total, trainable, non-trainable) the Keras way: frozen weights + BN statistics."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    stats = sum(
        b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    return trainable + frozen + stats, trainable, frozen + stats


def keras_layers(module: nn.Module) -> dict[str, tuple]:
    """{leaf: (class, Keras kernel shape, trainable, strides, dilation)} of weighted layers."""
    out = {}
    for name, m in module.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(m, nn.ConvTranspose2d):
            i, o, kh, kw = m.weight.shape
            out[leaf] = ("Conv2DTranspose", [kh, kw, o, i], m.weight.requires_grad)
            out[leaf] += (list(m.stride), list(m.dilation))
        elif isinstance(m, nn.Conv2d):
            o, i, kh, kw = m.weight.shape
            out[leaf] = ("Conv2D", [kh, kw, i, o], m.weight.requires_grad)
            out[leaf] += (list(m.stride), list(m.dilation))
        elif isinstance(m, nn.BatchNorm2d):
            out[leaf] = ("BatchNormalization", None, m.weight.requires_grad, m.eps, None)
    return out


def _reference_layers(case: dict) -> dict[str, tuple]:
    out = {}
    for w in case["weighted_layers"]:
        cfg = w["config"]
        if w["class"] == "BatchNormalization":
            out[w["name"]] = (w["class"], None, w["trainable"], cfg["epsilon"], None)
        else:
            out[w["name"]] = (w["class"], w["kernel_shape"], w["trainable"])
            out[w["name"]] += (cfg["strides"], cfg["dilation_rate"])
    return out


def _nchw(shape: list) -> list:
    n, h, w, c = shape
    return [n, c, h, w]


@pytest.mark.parametrize("case", _params("resnet_config", "resnet_config_pretrained_path"))
def test_resnet_matches_sleap(case):
    cfg = ResNetConfig(**case["config"]["ResNetConfig"])
    shape = case["input_shape"]
    with torch.device("meta"):
        # On the meta device nothing can be loaded: the pretrained layout is built as is.
        model = ResNetv1.from_config(cfg, in_channels=shape[3])
        x = torch.zeros(_nchw(shape))
        feats = model.forward_features(x)
        out = model(x)

    assert keras_counts(model) == (
        case["total_params"],
        case["trainable_params"],
        case["non_trainable_params"],
    )
    assert list(out.shape) == _nchw(case["outputs"][0]["shape"])
    assert model.output_stride == case["backbone_output_stride"]
    assert model.maximum_stride == case["backbone_maximum_stride"]
    assert model.stacks == case["stacks_outputs"] == len(feats) == 1
    assert shape[1] // out.shape[-2] == case["output_strides_measured"][0]

    # Features: the decoder's (input, steps, output); without decoder the encoder output.
    ref_feats = {
        f["stride"]: [f["shape"][3], f["shape"][1], f["shape"][2]]
        for f in case["intermediate_features"]
    }
    if model.upsampling_stack is None:
        ref_feats = {model.output_stride: ref_feats[model.output_stride]}
    assert {s: list(t.shape[1:]) for s, t in feats[0].items()} == ref_feats
    assert model.feature_channels == {s: v[0] for s, v in ref_feats.items()}

    ours, ref = keras_layers(model), _reference_layers(case)
    assert sorted(ours) == sorted(ref)
    for name in ref:
        assert ours[name][:3] == ref[name][:3], name
        if ref[name][0] == "BatchNormalization":
            assert ours[name][3] == pytest.approx(ref[name][3]), name
        else:
            assert ours[name][3:] == ref[name][3:], name

    attrs = case["backbone_attrs"]
    for key in ("features_output_stride", "pretrained", "frozen", "skip_connections"):
        assert getattr(model, key) == attrs[key], key
    assert model.model_name == attrs["model_name"]
    assert model.stack_configs == attrs["stack_configs"]
    if attrs["upsampling_stack"] is None:
        assert model.upsampling_stack is None
    else:
        for key, value in attrs["upsampling_stack"].items():
            assert getattr(model.upsampling_stack, key) == value, key


def _tiny(weights="random", max_stride=32, upsampling=None, in_channels=1, output_stride=4):
    return ResNetv1(
        "ResNet50",
        weights=weights,
        upsampling=upsampling,
        max_stride=max_stride,
        output_stride=output_stride,
        in_channels=in_channels,
        stack_configs=TINY_STACKS,
        load_weights=False,
    )


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_frozen_encoder_has_no_gradients_and_bn_stays_in_eval():
    up = UpsamplingConfig(method="interpolation", skip_connections="concatenate", filters=4)
    model = _tiny("frozen", upsampling=up, in_channels=1)
    model.train()
    assert not model.encoder.training
    assert all(not m.training for m in model.encoder.modules())
    assert model.upsampling_stack.training
    enc_stats = model.encoder.conv1_bn.running_mean.clone()
    dec_bn = next(m for m in model.upsampling_stack.modules() if isinstance(m, nn.BatchNorm2d))
    dec_stats = dec_bn.running_mean.clone()
    out = model(torch.rand(2, 1, 64, 64))
    out.mean().backward()
    torch.testing.assert_close(model.encoder.conv1_bn.running_mean, enc_stats, rtol=0, atol=0)
    assert not torch.equal(dec_bn.running_mean, dec_stats)
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.upsampling_stack.parameters())


def test_tunable_encoder_trains_normally():
    model = _tiny("tunable")
    model.train()
    assert model.encoder.training and all(p.requires_grad for p in model.parameters())


def test_imagenet_preprocessing_matches_caffe_formula():
    rng = np.random.default_rng(0)
    rgb = rng.random((2, 3, 4, 5), dtype=np.float32)
    gray = rng.random((2, 1, 4, 5), dtype=np.float32)
    means_bgr = np.array(IMAGENET_BGR_MEANS, dtype=np.float32).reshape(1, 3, 1, 1)
    expected_rgb = rgb[:, ::-1] * 255.0 - means_bgr
    expected_gray = np.repeat(gray, 3, axis=1) * 255.0 - means_bgr
    got_rgb = ImageNetPreprocess(3)(torch.from_numpy(rgb)).numpy()
    got_gray = ImageNetPreprocess(1)(torch.from_numpy(gray)).numpy()
    np.testing.assert_allclose(got_rgb, expected_rgb, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(got_gray, expected_gray, rtol=1e-6, atol=1e-4)
    # Pretrained models take RGB into conv1 even for grayscale input; random ones do not.
    assert _tiny("frozen", in_channels=1).encoder.conv1_conv.in_channels == 3
    assert _tiny("random", in_channels=1).encoder.conv1_conv.in_channels == 1
    with pytest.raises(PosekitError, match="in_channels=2"):
        _tiny("tunable", in_channels=2)


def test_reduced_stride_dilates_only_1x1_convs_which_changes_nothing():
    """SLEAP's quirk: max_stride < 32 'dilates' 1x1 convs only, so dilation is a no-op."""
    torch.manual_seed(0)
    model = _tiny(max_stride=8).eval()
    _randomise_bn(model)
    convs = {n.rsplit(".", 1)[-1]: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs["conv4_block1_1_conv"].dilation == (2, 2)
    assert convs["conv5_block1_0_conv"].dilation == (4, 4)
    assert convs["conv5_block1_1_conv"].stride == (1, 1)
    assert convs["conv5_block1_2_conv"].dilation == (1, 1)  # the 3x3 is never dilated
    undilated = copy.deepcopy(model)
    for m in undilated.modules():
        if isinstance(m, nn.Conv2d):
            m.dilation = (1, 1)
    x = torch.randn(1, 1, 32, 32)
    out = model(x)
    assert out.shape == (1, 8, 4, 4)  # stride 8
    torch.testing.assert_close(out, undilated(x), rtol=0, atol=0)


def test_v1_puts_the_stride_on_the_first_1x1_conv():
    model = _tiny()
    convs = {n.rsplit(".", 1)[-1]: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs["conv3_block1_1_conv"].stride == (2, 2)
    assert convs["conv3_block1_2_conv"].stride == (1, 1)
    assert convs["conv3_block1_0_conv"].stride == (2, 2)


def test_skips_come_from_stacks_first_per_stride():
    up = UpsamplingConfig(method="interpolation", skip_connections="concatenate", filters=4)
    model = _tiny(max_stride=8, upsampling=up, output_stride=2)
    # conv2 (4 * 2 = 8 channels) is the first stack at stride 4; stem features are not used.
    assert model.upsampling_stack.skip_channels == {4: 8, 8: 12}
    feats = model.forward_features(torch.rand(1, 1, 32, 32))[0]
    assert {s: tuple(t.shape[1:]) for s, t in feats.items()} == {
        8: (8, 4, 4),
        4: (4, 8, 8),
        2: (4, 16, 16),
    }


def test_errors_name_the_problem():
    with pytest.raises(PosekitError, match="version='ResNet18'"):
        ResNetv1("ResNet18")
    with pytest.raises(PosekitError, match="weights='imagenet'"):
        ResNetv1("ResNet50", weights="imagenet")
    with pytest.raises(ValueError, match="not divisible by the backbone's maximum stride 32"):
        _tiny()(torch.zeros(1, 1, 48, 48))


def test_named_classes_fix_the_version():
    with torch.device("meta"):
        model = ResNet50(max_stride=16)
    assert model.version == "ResNet50" and model.maximum_stride == 16
    assert len(model.encoder.stages.conv4) == 6
