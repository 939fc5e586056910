"""ConvNeXt and Swin backbones against sleap-nn 0.3.5 (fixtures from
`scripts/make_sleapnn_backbone_counts.py`; sleap-nn itself is not needed here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.architectures import BACKBONES, build_backbone
from posekit.architectures.common import skip_imagenet_weights
from posekit.architectures.hierarchical import sleap_nn_state_dict
from posekit.config.model import BackboneConfig, ConvNextConfig, ModelConfig, SwinTConfig
from posekit.errors import PosekitError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sleapnn"
COUNTS = json.loads((FIXTURES / "backbone_counts.json").read_text())["backbones"]
TINY = {"depths": [1, 1, 1, 1], "channels": [4, 8, 8, 16]}
CONFIGS = {"convnext": ConvNextConfig, "swint": SwinTConfig}


def _config(entry: dict):
    return CONFIGS[entry["backbone"]](**entry["config"])


@pytest.mark.parametrize("entry", COUNTS, ids=[e["name"] for e in COUNTS])
def test_counts_and_shapes_equal_sleap_nn(entry):
    with torch.device("meta"):
        net = build_backbone(_config(entry), in_channels=entry["input_shape"][1])
        feats = net.forward_features(torch.zeros(entry["input_shape"]))[0]
    assert sum(p.numel() for p in net.parameters()) == entry["params"]
    encoder = [p for n, p in net.named_parameters() if n.startswith(("stem.", "encoders.0."))]
    middle = sum(p.numel() for b in net.encoder_stack[-2:] for p in b.parameters())
    assert sum(p.numel() for p in encoder) - middle == entry["encoder_params"]
    # sleap-nn: decoder outputs by stride, plus the middle block (the decoder's input)
    expected = {o["stride"]: o["shape"] for o in entry["outputs"]}
    expected[net.maximum_stride] = entry["middle_shape"]
    assert {s: list(t.shape) for s, t in feats.items()} == expected


def _load_fixture(path: Path, config) -> tuple[dict, dict]:
    data = np.load(path)
    net = build_backbone(config).eval()
    weights = {
        k[len("weight/") :]: torch.from_numpy(data[k])
        for k in data.files
        if k.startswith("weight/")
    }
    net.load_state_dict(sleap_nn_state_dict(net, weights), strict=True)
    with torch.no_grad():
        feats = net.forward_features(torch.from_numpy(data["input"]))[0]
    expected = {int(k.split("/")[1]): data[k] for k in data.files if k.startswith("output/")}
    expected[net.maximum_stride] = data["middle"]
    return feats, expected


@pytest.mark.parametrize("up_interpolate", [True, False], ids=["bilinear", "transposed"])
def test_convnext_outputs_equal_sleap_nn(up_interpolate):
    name = "convnext_custom_tiny" + ("" if up_interpolate else "_transposed")
    config = ConvNextConfig(model_type="custom", arch=TINY, up_interpolate=up_interpolate)
    feats, expected = _load_fixture(FIXTURES / f"{name}.npz", config)
    assert sorted(feats) == sorted(expected) == [1, 2, 4, 8, 16, 32]
    for stride, want in expected.items():
        err = float((feats[stride] - torch.from_numpy(want)).abs().max())
        assert err <= 1e-5, (stride, err)
        assert float(np.abs(want).max()) > 0.05  # a real signal, not zeros


def test_swint_tiny_outputs_equal_sleap_nn():
    folder = os.environ.get("POSEKIT_SLEAPNN_FIXTURES", "")
    path = Path(folder) / "swint_tiny.npz"
    if not folder or not path.is_file():
        pytest.skip(
            "Swin-T fixture is ~320 MB, not committed: make it with "
            "scripts/make_sleapnn_backbone_counts.py --swin-dir DIR and set "
            "POSEKIT_SLEAPNN_FIXTURES=DIR"
        )
    feats, expected = _load_fixture(path, SwinTConfig())
    for stride, want in expected.items():
        assert float((feats[stride] - torch.from_numpy(want)).abs().max()) <= 1e-5, stride


def test_key_map_names_every_weight_and_rejects_strangers():
    net = build_backbone(ConvNextConfig(model_type="custom", arch=TINY))
    table = net.sleap_nn_key_map()
    assert table["enc.features.0.0"] == "stem.0.layers.stem0_patch_conv"
    assert table["enc.features.3.0"] == "encoders.0.2.layers.stack0_enc2_block0"
    assert table["middle_blocks.1.blocks.convnext_middle_contract_conv0"] == (
        "encoders.0.8.layers.stack0_enc8_middle_contract_conv0"
    )
    # every posekit tensor has exactly one sleap-nn source
    ours = set(net.state_dict())
    mapped = {k for k in ours if any(k.startswith(v + ".") for v in table.values())}
    assert mapped == ours
    with pytest.raises(PosekitError, match="no place"):
        sleap_nn_state_dict(net, {"enc.features.9.0.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    "config, builder",
    [
        (ConvNextConfig(model_type="small"), "convnext_small"),
        (SwinTConfig(model_type="tiny"), "swin_t"),
    ],
)
def test_imagenet_keys_cover_the_encoder(config, builder):
    import torchvision.models as tvm

    with torch.device("meta"):
        ours = build_backbone(config, in_channels=3)
        theirs = getattr(tvm, builder)().state_dict()
    renamed = sleap_nn_state_dict(
        ours, {f"enc.{k}": v for k, v in theirs.items()}, prefix_filter="enc."
    )
    encoder = {
        k for k in ours.state_dict() if k.startswith(("stem.", "encoders.0.")) and "middle" not in k
    }
    assert set(renamed) == encoder
    assert all(renamed[k].shape == ours.state_dict()[k].shape for k in renamed)


def _torchvision_tiny_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    chans, depths = TINY["channels"], TINY["depths"]
    setting = [
        CNBlockConfig(c, chans[i + 1] if i < 3 else None, d)
        for i, (c, d) in enumerate(zip(chans, depths, strict=True))
    ]
    return ConvNeXt(setting, num_classes=10).state_dict()


def test_imagenet_weights_load_through_torchvision(monkeypatch):
    from torchvision.models._api import WeightsEnum

    state = _torchvision_tiny_convnext()
    calls = []

    def fake_get_state_dict(self, *args, **kwargs):
        calls.append(self.url)
        return state

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    config = ConvNextConfig(
        model_type="custom", arch=TINY, pre_trained_weights="ConvNeXt_Tiny_Weights"
    )
    gray = build_backbone(config, in_channels=1)
    rgb = build_backbone(config, in_channels=3)
    assert len(calls) == 2 and calls[0].endswith(".pth")
    stem = state["features.0.0.weight"]
    torch.testing.assert_close(rgb.state_dict()["stem.0.layers.stem0_patch_conv.weight"], stem)
    torch.testing.assert_close(
        gray.state_dict()["stem.0.layers.stem0_patch_conv.weight"], stem.sum(1, keepdim=True)
    )
    torch.testing.assert_close(
        rgb.state_dict()["encoders.0.6.layers.stack0_enc6_block0.block.3.weight"],
        state["features.7.0.block.3.weight"],
    )
    # gray input through summed kernels == the image tiled to RGB, as sleap-nn feeds it
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            gray.stem[0](x), rgb.stem[0](x.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-5
        )
    with skip_imagenet_weights():
        build_backbone(config)
    assert len(calls) == 2  # a trained model's weights come from its file, nothing fetched


def test_imagenet_download_failure_is_one_clear_error(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    config = ConvNextConfig(
        model_type="custom", arch=TINY, pre_trained_weights="ConvNeXt_Tiny_Weights"
    )
    with pytest.raises(PosekitError, match=r"convnext_tiny.*\.pth.*torch hub cache"):
        build_backbone(config)


def test_imagenet_weights_that_do_not_fit(monkeypatch):
    from torchvision.models._api import WeightsEnum

    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda *a, **k: {})
    config = ConvNextConfig(
        model_type="custom", arch=TINY, pre_trained_weights="ConvNeXt_Tiny_Weights"
    )
    with pytest.raises(PosekitError, match="do not fit this encoder"):
        build_backbone(config)


def test_configs_take_sleap_nn_sections_and_reject_what_it_cannot_build():
    section = {  # sleap-nn 0.3.5's backbone_config.convnext as its YAML writes it
        "pre_trained_weights": None,
        "model_type": "tiny",
        "arch": None,
        "stem_patch_kernel": 4,
        "stem_patch_stride": 2,
        "in_channels": 1,
        "kernel_size": 3,
        "filters_rate": 2.0,
        "convs_per_block": 2,
        "up_interpolate": True,
        "output_stride": 2,
        "max_stride": 16,
    }
    config = BackboneConfig(convnext=section)
    assert config.convnext.blocks == {"depths": [3, 3, 9, 3], "channels": [96, 192, 384, 768]}
    assert config.convnext.built_max_stride == 32  # max_stride is not what builds it
    custom = ConvNextConfig(model_type="mine", arch=TINY)
    assert custom.blocks == TINY
    assert ConvNextConfig(model_type="mine").blocks["channels"] == [96, 192, 384, 768]
    for bad in (
        dict(arch={"depths": [1, 1, 1], "channels": [4, 8, 16]}),
        dict(convs_per_block=1),
        dict(pre_trained_weights="Swin_T_Weights"),
        dict(output_stride=64),
    ):
        with pytest.raises(ValueError):
            ConvNextConfig(**bad)
    with pytest.raises(ValueError, match="model_type"):
        SwinTConfig(model_type="large")
    assert SwinTConfig(stem_patch_stride=4).built_max_stride == 64


def test_sleap_files_keep_sleap_keys():
    written = BackboneConfig(unet={}).to_dict()
    assert list(written) == ["leap", "unet", "hourglass", "resnet", "pretrained_encoder"]
    swin = BackboneConfig(swint={"model_type": "small"})
    assert BackboneConfig.model_validate(swin.to_dict()) == swin


def test_registry_has_every_backbone_config_field():
    assert list(BACKBONES) == list(BackboneConfig.model_fields)
    with pytest.raises(PosekitError, match="convnext, swint"):
        build_backbone(BackboneConfig())
    assert BACKBONES["convnext"].default_in_channels(ConvNextConfig()) == 1
    imagenet = ConvNextConfig(pre_trained_weights="ConvNeXt_Tiny_Weights")
    assert BACKBONES["convnext"].default_in_channels(imagenet) == 3


def test_summary_rows_add_up_for_swin():
    from posekit.config.model import CentroidsHeadConfig, HeadsConfig
    from posekit.model.summary import summary

    config = ModelConfig(
        backbone=BackboneConfig(swint=SwinTConfig(output_stride=4)),
        heads=HeadsConfig(centroid=CentroidsHeadConfig(output_stride=4)),
    )
    info = summary(config, (64, 64))
    rows = {r["name"]: r for r in info["layers"]}
    # the attention's qkv/proj weights are used by F.linear inside their parent: still rows
    assert sum(r["params"] for r in rows.values()) == info["total_params"] == 87_241_915
    assert rows["stem0"]["stride"] == 2 and rows["stack0_enc8"]["stride"] == 32
    assert [n for n in rows if n.startswith("stack0_enc")] == [f"stack0_enc{i}" for i in range(9)]
    # attention mixes tokens by content: no theoretical receptive field (ConvNeXt has one)
    assert info["receptive_field"] is None and any("attention" in n for n in info["notes"])
    convnext = summary(BackboneConfig(convnext=ConvNextConfig(output_stride=4)), (64, 64))
    assert convnext["receptive_field"] > 64 and convnext["notes"] == []
