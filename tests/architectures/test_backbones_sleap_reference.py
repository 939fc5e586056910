"""UNet, LEAP CNN and hourglass against SLEAP 1.4.1's own TensorFlow builds.

Every `ok` case of the backbone groups in `shared/reference/sleap_tf_params.json` is built
(on the meta device, so even 138M-parameter configs take milliseconds) and compared with
what SLEAP built: Keras-convention parameter counts, output shapes and strides, decoder
intermediate features, every weighted layer (name and kernel shape) and the attributes
`from_config` sets. `*_expect_error` cases must fail at build time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REFERENCE = SHARED / "reference" / "sleap_tf_params.json"
GROUPS = ("unet_config", "unet_direct", "leap_config", "hourglass_config", "hourglass_direct")
WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Linear)


def _cases(status: str) -> list:
    if not REFERENCE.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason="../shared is absent"))]
    cases = json.loads(REFERENCE.read_text())["cases"]
    chosen = [c for c in cases if c["group"] in GROUPS and c["status"] == status]
    return [pytest.param(c, id=c["name"]) for c in chosen]


_BUILT: dict[str, nn.Module] = {}


def _build(case: dict) -> nn.Module:
    """Build a case once on the meta device (the tests only read the module)."""
    if case["name"] not in _BUILT:
        _BUILT[case["name"]] = _build_uncached(case)
    return _BUILT[case["name"]]


def _build_uncached(case: dict, device: str = "meta") -> nn.Module:
    from posekit.architectures import build_backbone
    from posekit.architectures.hourglass import Hourglass
    from posekit.architectures.unet import UNet
    from posekit.config.model import HourglassConfig, LEAPConfig, UNetConfig

    cfg = case["config"]
    channels = case["input_shape"][-1]
    with torch.device(device):
        for key, cls in (
            ("UNetConfig", UNetConfig),
            ("LEAPConfig", LEAPConfig),
            ("HourglassConfig", HourglassConfig),
        ):
            if key in cfg:
                return build_backbone(cls(**cfg[key]), in_channels=channels)
        if "UNet_kwargs" in cfg:
            return UNet(**cfg["UNet_kwargs"], in_channels=channels)
        if "Hourglass_kwargs" in cfg:
            return Hourglass(**cfg["Hourglass_kwargs"], in_channels=channels)
    raise AssertionError(f"unknown case config {cfg}")


def _keras_counts(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    return trainable, frozen + stats


def _nchw(shape: list) -> list:
    return [shape[0], shape[3], shape[1], shape[2]]


def _input(case: dict) -> torch.Tensor:
    n, h, w, c = case["input_shape"]
    return torch.empty(n, c, h, w, device="meta")


@pytest.mark.parametrize("case", _cases("ok"))
def test_parameter_counts_match_sleap(case):
    model = _build(case)
    trainable, non_trainable = _keras_counts(model)
    assert trainable == case["trainable_params"]
    assert non_trainable == case["non_trainable_params"]
    assert trainable + non_trainable == case["total_params"]


@pytest.mark.parametrize("case", _cases("ok"))
def test_outputs_and_strides_match_sleap(case):
    model = _build(case)
    assert model.stem_features_stride == case["stem_features_stride"]
    assert model.encoder_features_stride == case["encoder_features_stride"]
    assert model.decoder_features_stride == case["decoder_features_stride"]
    assert model.maximum_stride == case["backbone_maximum_stride"]
    assert model.output_stride == case["backbone_output_stride"]
    assert model.stacks == case["stacks_outputs"]

    x = _input(case)
    out = model(x)
    outs = out if isinstance(out, list) else [out]
    assert (model.stacks > 1) == isinstance(out, list)
    assert [list(o.shape) for o in outs] == [_nchw(o["shape"]) for o in case["outputs"]]
    measured = [x.shape[-2] / o.shape[-2] for o in outs]
    assert measured == case["output_strides_measured"]


@pytest.mark.parametrize("case", _cases("ok"))
def test_intermediate_features_match_sleap(case):
    model = _build(case)
    features = model.forward_features(_input(case))
    expected = case["intermediate_features"]
    if expected and isinstance(expected[0], dict):
        expected = [expected]
    if not expected:
        expected = [[] for _ in features]
    assert len(features) == len(expected) == model.stacks
    for feats, exp in zip(features, expected, strict=True):
        # SLEAP's intermediate features are the inputs of the decoder blocks; posekit adds
        # the final output at the output stride.
        intermediate = {s: t for s, t in feats.items() if s != model.output_stride}
        assert sorted(intermediate) == sorted(e["stride"] for e in exp)
        for e in exp:
            assert list(intermediate[e["stride"]].shape[1:]) == _nchw(e["shape"])[1:]
        channels = {s: t.shape[1] for s, t in feats.items()}
        assert channels == model.feature_channels


@pytest.mark.parametrize("case", _cases("ok"))
def test_every_weighted_layer_has_sleaps_name_and_shape(case):
    model = _build(case)
    by_leaf = {}
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED):
            leaf = name.split(".")[-1]
            assert leaf not in by_leaf, f"two weighted modules named {leaf}"
            by_leaf[leaf] = module
    assert sorted(by_leaf) == sorted(w["name"] for w in case["weighted_layers"])
    for layer in case["weighted_layers"]:
        module = by_leaf[layer["name"]]
        if layer["class"] == "BatchNormalization":
            assert isinstance(module, nn.BatchNorm2d)
            assert 4 * module.num_features == layer["params"]
            assert module.eps == pytest.approx(layer["config"]["epsilon"])
            assert module.momentum == pytest.approx(1 - layer["config"]["momentum"])
            continue
        kh, kw, a, b = layer["kernel_shape"]
        if layer["class"] == "Conv2DTranspose":
            assert isinstance(module, nn.ConvTranspose2d)
            # Keras (kh, kw, out, in) -> torch (in, out, kh, kw)
            assert list(module.weight.shape) == [b, a, kh, kw]
        else:
            assert layer["class"] == "Conv2D"
            assert isinstance(module, nn.Conv2d)
            assert list(module.weight.shape) == [b, a, kh, kw]
            assert module.stride[0] == layer["config"]["strides"][0]
        bias = None if module.bias is None else list(module.bias.shape)
        assert bias == layer["bias_shape"]


@pytest.mark.parametrize("case", _cases("ok"))
def test_from_config_sets_sleaps_attributes(case):
    model = _build(case)
    assert type(model).__name__ == case["backbone_class"]
    for key, value in case["backbone_attrs"].items():
        assert getattr(model, key) == value, key


@pytest.mark.parametrize("case", _cases("error"))
def test_sleap_build_errors_are_raised(case):
    # SLEAP: "If using a stacked configuration, the backbone must define symmetric encoder
    # and decoder..." -- posekit must refuse the same configs when building.
    with pytest.raises(ValueError, match=r"stacks=\d+ .*stem"):
        _build_uncached(case)
