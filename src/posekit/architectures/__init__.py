"""Backbones as torch modules, all on one encoder-decoder framework.

`build_backbone(config)` is the entry point; `registry.BACKBONES` lists the backbones.
The classes load lazily (importing this package does not import torch).
"""

from __future__ import annotations

from typing import Any

from posekit._lazy import lazy_exports
from posekit.architectures.registry import BACKBONES

# public name -> module that defines it; the backbone classes come from the registry
_LAZY = {
    "Backbone": ".common",
    "pad_to_stride": ".common",
    "EncoderDecoder": ".encoder_decoder",
    "SimpleConvBlock": ".encoder_decoder",
    "SimpleUpsamplingBlock": ".encoder_decoder",
    "UpsamplingStack": ".upsampling",
    **{
        spec.builder.partition(":")[2]: spec.builder.partition(":")[0]
        for spec in BACKBONES.values()
    },
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


def build_backbone(config: Any, in_channels: int | None = None, output_stride: int | None = None):
    """Build the backbone a config describes (the class comes from `registry.BACKBONES`).

    Args:
        config: a `BackboneConfig` (exactly one field set) or one backbone's config
            (`UNetConfig`, `ConvNextConfig`, ...: see `registry.BACKBONES`).
        in_channels: channels of the input images (1 grayscale, 3 RGB); None takes the
            registry's default for this config.
        output_stride: if given, replaces the config's `output_stride`. SLEAP's `Model`
            does this so the backbone ends at the smallest stride any head needs.

    Returns:
        A `Backbone` module (see `posekit.architectures.common`).
    """
    from posekit.architectures.registry import backbone_config, spec_for

    spec = spec_for(config)
    config = backbone_config(config)
    if output_stride is not None and getattr(config, "output_stride", None) != output_stride:
        config = config.model_copy(update={"output_stride": int(output_stride)})
        config = type(config).model_validate(config.model_dump())  # re-check strides
    if in_channels is None:
        in_channels = spec.default_in_channels(config)
    return spec.load_builder().from_config(config, in_channels=int(in_channels))


__all__ = ["BACKBONES", "build_backbone", *_LAZY]
