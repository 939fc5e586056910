"""The backbones posekit builds: one entry per `BackboneConfig` field.

Every other part asks this table instead of naming backbones itself: `build_backbone`
(which class builds a config), `posekit summary` (input channels when the config names
none; how layers are grouped into rows), the `--auto` recommender (which settings it may
shrink for a CPU budget). Adding a backbone = its config class (a `BackboneConfig` field
in `posekit.config.model`), its module in `architectures/`, and one entry here; see
ARCHITECTURE.md ("A new backbone") for the contract its module must keep.

Importing this module imports no torch: builders are named by import path and loaded
when a backbone is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posekit.errors import PosekitError

# Summary rows: SLEAP's block names (and Keras ResNet's). The summary looks for them in a
# layer's module path from the leaf up, so a container named `stack0_enc3` groups the
# torchvision blocks inside it.
SLEAP_LAYER_GROUPS: tuple[str, ...] = (
    r"^(stem\d+)(?:_|$)",
    r"^(stack\d+_(?:enc|dec)\d+(?:_s\d+_to_s\d+)?)(?:_|$)",
    r"^(conv\d+_block\d+)(?:_|$)",
    r"^(conv1)_(?:conv|bn|relu|pad|pool)",
)


@dataclass(frozen=True)
class BackboneSpec:
    """What posekit knows about one backbone.

    Attributes:
        name: the `BackboneConfig` field (also the key in SLEAP / sleap-nn configs).
        config_class: its config class's name in `posekit.config.model`.
        builder: "module:Class" of the `Backbone` subclass; the class has
            `from_config(config, in_channels=...)`.
        default_in_channels: input channels when nothing else (data config, a loaded
            model) says: a function of the backbone's config.
        auto_shrinks: settings `posekit train --auto` may lower on a CPU budget
            ("filters": the width; "max_stride": the depth, chosen by receptive field).
        layer_groups: regular expressions whose first group names a summary row; tried
            on each module-path component from the leaf up (else the path is the row).
    """

    name: str
    config_class: str
    builder: str
    default_in_channels: Callable[[Any], int] = lambda config: 1
    auto_shrinks: tuple[str, ...] = ()
    layer_groups: tuple[str, ...] = SLEAP_LAYER_GROUPS

    def load_builder(self) -> type:
        """The backbone class (imports torch)."""
        module, _, cls = self.builder.partition(":")
        return getattr(importlib.import_module(module), cls)


def _rgb(config: Any) -> int:
    return 3


def _rgb_if_imagenet(config: Any) -> int:
    """ImageNet stems take RGB; a network trained from scratch takes its config's channels."""
    return 3 if getattr(config, "pre_trained_weights", None) else int(config.in_channels)


_A = "posekit.architectures"
BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("leap", "LEAPConfig", f"{_A}.leap:LeapCNN", auto_shrinks=("filters",)),
        BackboneSpec(
            "unet", "UNetConfig", f"{_A}.unet:UNet", auto_shrinks=("filters", "max_stride")
        ),
        BackboneSpec("hourglass", "HourglassConfig", f"{_A}.hourglass:Hourglass"),
        BackboneSpec("resnet", "ResNetConfig", f"{_A}.resnet:ResNetv1", _rgb),
        BackboneSpec(
            "pretrained_encoder",
            "PretrainedEncoderConfig",
            f"{_A}.pretrained_encoders:UnetPretrainedEncoder",
            _rgb,
        ),
        BackboneSpec("convnext", "ConvNextConfig", f"{_A}.convnext:ConvNeXt", _rgb_if_imagenet),
        BackboneSpec("swint", "SwinTConfig", f"{_A}.swin:SwinT", _rgb_if_imagenet),
        BackboneSpec(
            "pretrained",
            "PretrainedConfig",
            f"{_A}.timm_backbone:TimmPretrained",
            lambda config: int(config.in_channels),
        ),
    )
}
"""Backbone name -> its entry, in `BackboneConfig`'s field order."""


def spec_for(config: Any) -> BackboneSpec:
    """The entry of a `BackboneConfig` (its set field) or of one backbone's config."""
    from posekit.config import model as model_configs

    if isinstance(config, model_configs.BackboneConfig):
        name = config.which_oneof_attrib_name()
        if name is None:
            raise PosekitError(
                f"BackboneConfig has no backbone set; set one of {', '.join(BACKBONES)}"
            )
        return BACKBONES[name]
    for spec in BACKBONES.values():
        if isinstance(config, getattr(model_configs, spec.config_class)):
            return spec
    raise PosekitError(
        f"cannot build a backbone from {type(config).__name__}; pass a BackboneConfig or "
        f"one of {', '.join(s.config_class for s in BACKBONES.values())}"
    )


def backbone_config(config: Any) -> Any:
    """One backbone's config out of a `BackboneConfig` (or the config itself)."""
    from posekit.config.model import BackboneConfig

    if isinstance(config, BackboneConfig):
        spec_for(config)  # raises when none is set
        return config.which_oneof()
    return config


__all__ = ["BACKBONES", "SLEAP_LAYER_GROUPS", "BackboneSpec", "backbone_config", "spec_for"]
