"""Backbones as torch modules, all on one encoder-decoder framework.

`build_backbone(config)` is the entry point; the classes load lazily (importing this
package does not import torch).
"""

from __future__ import annotations

from typing import Any

from posekit._lazy import lazy_exports
from posekit.errors import PosekitError

# public name -> module that defines it
_LAZY = {
    "Backbone": ".common",
    "pad_to_stride": ".common",
    "EncoderDecoder": ".encoder_decoder",
    "SimpleConvBlock": ".encoder_decoder",
    "SimpleUpsamplingBlock": ".encoder_decoder",
    "UNet": ".unet",
    "LeapCNN": ".leap",
    "Hourglass": ".hourglass",
    "ResNetv1": ".resnet",
    "UpsamplingStack": ".upsampling",
    "UnetPretrainedEncoder": ".pretrained_encoders",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


def build_backbone(config: Any, in_channels: int = 1, output_stride: int | None = None):
    """Build the backbone a config describes.

    Args:
        config: a `BackboneConfig` (exactly one field set) or one of `LEAPConfig`,
            `UNetConfig`, `HourglassConfig`, `ResNetConfig`, `PretrainedEncoderConfig`.
        in_channels: channels of the input images (1 grayscale, 3 RGB).
        output_stride: if given, replaces the config's `output_stride`. SLEAP's `Model`
            does this so the backbone ends at the smallest stride any head needs.

    Returns:
        A `Backbone` module (see `posekit.architectures.common`).
    """
    from posekit.config.model import (
        BackboneConfig,
        HourglassConfig,
        LEAPConfig,
        PretrainedEncoderConfig,
        ResNetConfig,
        UNetConfig,
    )

    if isinstance(config, BackboneConfig):
        config = config.which_oneof()
        if config is None:
            raise PosekitError(
                "BackboneConfig has no backbone set; set one of leap, unet, hourglass, "
                "resnet, pretrained_encoder"
            )
    if output_stride is not None and getattr(config, "output_stride", None) != output_stride:
        config = config.model_copy(update={"output_stride": int(output_stride)})
        config = type(config).model_validate(config.model_dump())  # re-check strides

    if isinstance(config, UNetConfig):
        from posekit.architectures.unet import UNet

        return UNet.from_config(config, in_channels=in_channels)
    if isinstance(config, LEAPConfig):
        from posekit.architectures.leap import LeapCNN

        return LeapCNN.from_config(config, in_channels=in_channels)
    if isinstance(config, HourglassConfig):
        from posekit.architectures.hourglass import Hourglass

        return Hourglass.from_config(config, in_channels=in_channels)
    if isinstance(config, ResNetConfig):
        from posekit.architectures.resnet import ResNetv1

        return ResNetv1.from_config(config, in_channels=in_channels)
    if isinstance(config, PretrainedEncoderConfig):
        from posekit.architectures.pretrained_encoders import UnetPretrainedEncoder

        return UnetPretrainedEncoder.from_config(config, in_channels=in_channels)
    raise PosekitError(
        f"cannot build a backbone from {type(config).__name__}; pass a BackboneConfig or "
        f"one of LEAPConfig, UNetConfig, HourglassConfig, ResNetConfig, "
        f"PretrainedEncoderConfig"
    )


__all__ = ["build_backbone", *_LAZY]
