"""Every encoder name SLEAP accepts builds, on the meta device, with SLEAP's output shape."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("segmentation_models_pytorch")

from posekit.architectures.pretrained_encoders import UnetPretrainedEncoder  # noqa: E402
from posekit.config.model import PRETRAINED_ENCODERS, PretrainedEncoderConfig  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", PRETRAINED_ENCODERS)
def test_every_encoder_builds_with_sleaps_output_shape(encoder):
    cfg = PretrainedEncoderConfig(
        encoder=encoder,
        pretrained=False,
        decoder_filters=16,
        decoder_filters_rate=2,
        output_stride=4,
    )
    with torch.device("meta"):
        model = UnetPretrainedEncoder.from_config(cfg, in_channels=1)
        feats = model.forward_features(torch.zeros(1, 1, 128, 128))[0]
    # Decoder outputs at strides 16, 8, 4 with 16, 32, 64 filters; the last is the output.
    assert {s: tuple(t.shape) for s, t in feats.items()} == {
        16: (1, 16, 8, 8),
        8: (1, 32, 16, 16),
        4: (1, 64, 32, 32),
    }
    assert model.output_stride == 4 and model.maximum_stride == 32
    assert model.feature_channels == {16: 16, 8: 32, 4: 64}
