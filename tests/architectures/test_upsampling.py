"""UpsamplingStack against SLEAP 1.4.1's own builds, plus its numerics and errors."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.encoder_decoder import SimpleUpsamplingBlock
from posekit.architectures.upsampling import UpsamplingStack
from posekit.config.model import UpsamplingConfig
from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REFERENCE = SHARED / "reference" / "sleap_tf_params.json"


@lru_cache(maxsize=1)
def _cases() -> list[dict]:
    if not REFERENCE.exists():
        return []
    return json.loads(REFERENCE.read_text())["cases"]


def _group(name: str) -> list[dict]:
    return [c for c in _cases() if c["group"] == name and c["status"] == "ok"]


def _params(group: str):
    cases = _group(group)
    if not cases:
        return [pytest.param(None, marks=pytest.mark.skip(reason="shared/reference is absent"))]
    return [pytest.param(c, id=c["name"]) for c in cases]


def keras_counts(module: nn.Module) -> tuple[int, int, int]:
    """(total, trainable, non-trainable) counted the Keras way (BN statistics non-trainable)."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    stats = sum(
        b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    return trainable + frozen + stats, trainable, frozen + stats


def keras_layers(module: nn.Module) -> dict[str, tuple]:
    """{leaf name: (Keras class, Keras kernel shape)} of every weighted layer."""
    out = {}
    for name, m in module.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(m, nn.ConvTranspose2d):
            i, o, kh, kw = m.weight.shape
            out[leaf] = ("Conv2DTranspose", [kh, kw, o, i])
        elif isinstance(m, nn.Conv2d):
            o, i, kh, kw = m.weight.shape
            out[leaf] = ("Conv2D", [kh, kw, i, o])
        elif isinstance(m, nn.BatchNorm2d):
            out[leaf] = ("BatchNormalization", None)
    return out


def _nchw(shape_nhwc: list) -> list:
    n, h, w, c = shape_nhwc
    return [n, c, h, w]


@pytest.mark.parametrize("case", _params("upsampling_stack"))
def test_upsampling_stack_matches_sleap(case):
    kwargs = case["config"]["UpsamplingStack_kwargs"]
    current = case["current_stride"]
    dummies = {d["stride"]: d["shape"] for d in case["dummy_inputs"]}
    skip_channels = {s: sh[3] for s, sh in dummies.items() if s != current}
    with torch.device("meta"):
        stack = UpsamplingStack(
            **kwargs,
            in_channels=case["input_shape"][3],
            current_stride=current,
            skip_channels=skip_channels,
        )
        x = torch.zeros(_nchw(case["input_shape"]))
        skips = {s: torch.zeros(_nchw(sh)) for s, sh in dummies.items() if s != current}
        out, feats = stack(x, skips)

    assert keras_counts(stack) == (
        case["total_params"],
        case["trainable_params"],
        case["non_trainable_params"],
    )
    assert list(out.shape) == _nchw(case["outputs"][0]["shape"])
    assert stack.output_stride == case["backbone_output_stride"]
    expected_feats = {
        f["stride"]: [f["shape"][3], f["shape"][1], f["shape"][2]]
        for f in case["intermediate_features"]
    }
    assert {s: list(t.shape[1:]) for s, t in feats.items()} == expected_feats
    assert {s: c for s, c in stack.feature_channels.items()} == {
        s: v[0] for s, v in expected_feats.items()
    }
    ref_layers = {w["name"]: (w["class"], w["kernel_shape"]) for w in case["weighted_layers"]}
    assert keras_layers(stack) == ref_layers
    for name, attr in case["backbone_attrs"].items():
        assert getattr(stack, name) == attr, name


def test_step_computes_exactly_the_encoder_decoder_block():
    """Renaming the layers to SLEAP's stack names must not change the computation."""
    torch.manual_seed(0)
    stack = UpsamplingStack(
        output_stride=8,
        transposed_conv=True,
        transposed_conv_kernel_size=4,
        skip_add=False,
        refine_convs=2,
        in_channels=6,
        current_stride=16,
        skip_channels={8: 5},
    ).eval()
    block = SimpleUpsamplingBlock(
        6,
        5,
        prefix="upsample",
        current_stride=16,
        transposed_conv=True,
        transposed_conv_filters=64,
        transposed_conv_kernel_size=4,
        skip_connection=True,
        refine_convs=2,
        refine_convs_filters=64,
    ).eval()
    ours = list(stack.blocks[0].state_dict().values())
    theirs = block.state_dict()
    assert len(ours) == len(theirs)
    block.load_state_dict(dict(zip(theirs.keys(), ours)))
    # Randomise BN statistics so eval-mode BatchNorm is not the identity.
    for m in list(stack.modules()) + list(block.modules()):
        if isinstance(m, nn.BatchNorm2d):
            g = torch.Generator().manual_seed(m.num_features)
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    x, skip = torch.randn(2, 6, 4, 5), torch.randn(2, 5, 8, 10)
    out, _ = stack(x, {8: skip})
    torch.testing.assert_close(out, block(x, skip), rtol=0, atol=0)
    names = [n.rsplit(".", 1)[-1] for n, _ in stack.named_modules()]
    assert "upsample_s16_to_s8_bn" in names and "upsample_s16_to_s8_refine1_relu" in names


def test_bilinear_add_skip_is_interpolation_plus_projected_skip():
    """refine_convs=0, skip_add: out = bilinear(x) + conv1x1(skip) (SLEAP's Add order)."""
    torch.manual_seed(1)
    stack = UpsamplingStack(
        output_stride=4,
        transposed_conv=False,
        skip_add=True,
        refine_convs=0,
        in_channels=3,
        current_stride=8,
        skip_channels={4: 2},
    )
    x, skip = torch.randn(1, 3, 5, 6), torch.randn(1, 2, 10, 12)
    out, feats = stack(x, {4: skip})
    proj = dict(stack.named_modules())["blocks.0.skip_projection.upsample_s8_to_s4_skip_conv1x1"]
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False) + F.conv2d(
        skip, proj.weight, proj.bias
    )
    torch.testing.assert_close(out, expected)
    assert feats[8] is x and feats[4] is out


def test_from_config_maps_fields_like_sleap():
    cfg = UpsamplingConfig(
        method="transposed_conv",
        skip_connections="concatenate",
        block_stride=2,
        filters=32,
        filters_rate=2,
        refine_convs=1,
        batch_norm=False,
        transposed_conv_kernel_size=3,
    )
    stack = UpsamplingStack.from_config(cfg, 2, in_channels=16, current_stride=8)
    assert stack.transposed_conv and stack.make_skip_connection and not stack.skip_add
    assert (stack.transposed_conv_filters, stack.refine_convs_filters) == (32, 32)
    assert (stack.transposed_conv_filters_rate, stack.refine_convs_filters_rate) == (2, 2)
    assert not stack.transposed_conv_batchnorm and not stack.refine_convs_batchnorm
    assert stack.transposed_conv_kernel_size == 3 and stack.num_blocks == 2
    # filters scale per step: 32 then 64; no skip sources given -> no concatenation
    assert stack.feature_channels == {8: 16, 4: 32, 2: 64}
    out, _ = stack(torch.randn(1, 16, 3, 3))
    assert out.shape == (1, 64, 12, 12)


def test_unreachable_output_stride_is_refused():
    with pytest.raises(PosekitError, match="output_stride=4 in steps of upsampling_stride=4"):
        UpsamplingStack(output_stride=4, upsampling_stride=4, in_channels=8, current_stride=32)
    with pytest.raises(PosekitError, match="output_stride=16 is larger than the input stride 8"):
        UpsamplingStack(output_stride=16, in_channels=8, current_stride=8)


def test_stride_4_steps_and_missing_skip_error():
    stack = UpsamplingStack(
        output_stride=2,
        upsampling_stride=4,
        transposed_conv=True,
        refine_convs=1,
        in_channels=4,
        current_stride=32,
        skip_channels={8: 3},
    )
    names = {n.rsplit(".", 1)[-1] for n, _ in stack.named_modules()}
    assert {"upsample_s32_to_s8_trans_conv", "upsample_s8_to_s2_trans_conv"} <= names
    out, feats = stack(torch.randn(1, 4, 2, 2), {8: torch.randn(1, 3, 8, 8)})
    assert out.shape == (1, 64, 32, 32) and sorted(feats) == [2, 8, 32]
    with pytest.raises(PosekitError, match="skip source at stride 8"):
        stack(torch.randn(1, 4, 2, 2), {})
