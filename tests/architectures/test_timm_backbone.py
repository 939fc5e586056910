"""sleap-nn's `pretrained` backbone (hierarchical case) on timm encoders, offline."""

from __future__ import annotations

import pytest
import torch

from posekit.architectures import build_backbone
from posekit.architectures.timm_backbone import TimmPretrained
from posekit.config.model import BackboneConfig, PretrainedConfig
from posekit.errors import PosekitError

timm = pytest.importorskip("timm")
ATTO = "timm/convnextv2_atto"  # 3.4 M parameters, stages at strides 4..32 (40..320 ch)


def test_decoder_follows_sleap_nn_layout():
    net = build_backbone(PretrainedConfig(model_name=ATTO, weights=False), in_channels=1)
    # stage maps 4/8/16/32 with 40/80/160/320 channels; 3 skips -> filters 40 * 2 ** (2 - i),
    # then one skip-less block with 40 filters down to output stride 2
    assert net.maximum_stride == 32 and net.output_stride == 2
    assert net.feature_channels == {32: 320, 16: 160, 8: 80, 4: 40, 2: 40}
    assert [b.uses_skip for b in net.decoder] == [True, True, True, False]
    assert [b.refine_convs for b in net.decoder] == [2, 2, 2, 1]
    feats = net.eval().forward_features(torch.rand(2, 1, 64, 96))[0]
    assert {s: tuple(t.shape) for s, t in feats.items()} == {
        32: (2, 320, 2, 3),
        16: (2, 160, 4, 6),
        8: (2, 80, 8, 12),
        4: (2, 40, 16, 24),
        2: (2, 40, 32, 48),
    }


def test_gray_is_tiled_and_inputs_normalised():
    net = TimmPretrained(ATTO, weights=False, output_stride=4).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        gray = net(x)
        rgb = net(x.repeat(1, 3, 1, 1))
        net.normalize = False
        raw = net(x.repeat(1, 3, 1, 1))
    torch.testing.assert_close(gray, rgb)
    assert (rgb - raw).abs().max() > 1e-3  # ImageNet mean/std were applied
    assert net.image_mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_imagenet_weights_load_through_timm_from_a_local_file(tmp_path):
    source = timm.create_model("convnextv2_atto", pretrained=False, num_classes=0)
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-0.1, 0.1)
    path = tmp_path / "atto.pth"
    torch.save(source.state_dict(), path)
    net = TimmPretrained(ATTO, weights=True, weights_file=str(path), freeze=True)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(net.enc.state_dict()[key], value)
    assert not any(p.requires_grad for p in net.enc.parameters())
    assert all(p.requires_grad for p in net.decoder.parameters())
    net.train()
    assert not net.enc.training and net.decoder.training  # frozen encoder stays in eval


def test_what_is_not_built_says_so():
    with pytest.raises(PosekitError, match="not a timm model"):
        build_backbone(PretrainedConfig(model_name="google/efficientnet-b0"))
    with pytest.raises(PosekitError, match="plain ViT"):
        build_backbone(PretrainedConfig(model_name="timm/vit_tiny_patch16_224", weights=False))
    with pytest.raises(PosekitError, match="output_stride=32"):
        build_backbone(PretrainedConfig(model_name=ATTO, weights=False, output_stride=32))


def test_encoder_mode_gives_the_deepest_stage_map_without_a_decoder():
    """sleap-nn's "Case B" on a hierarchical timm model: no decoder; the pooled head reads
    the stride-32 stage map (offered under `max_stride`)."""
    net = build_backbone(PretrainedConfig(model_name=ATTO, weights=False, mode="encoder"))
    assert len(net.decoder) == 0 and net.feature_channels == {32: 320}
    net.eval()
    with torch.no_grad():
        (feats,) = net.forward_features(torch.rand(1, 3, 64, 96))
    assert list(feats) == [32] and feats[32].shape == (1, 320, 2, 3)


def test_summary_of_a_pretrained_backbone_builds_nothing_for_real():
    from posekit.model.summary import summary

    config = BackboneConfig(pretrained=PretrainedConfig(model_name=ATTO))  # weights: true
    info = summary(config, (64, 64))  # meta device: no download
    assert info["input_shape"] == [64, 64, 3]
    assert info["total_params"] == sum(r["params"] for r in info["layers"])
    assert info["outputs"][0]["stride"] == 2
