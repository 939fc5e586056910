"""sleap-nn's `pretrained` backbone, hierarchical case, on timm: an ImageNet encoder + its decoder.

sleap-nn 0.3.5 taps every stage of a hierarchical encoder (or its `out_indices`), keeps
one map per stride (the last), and decodes from the deepest one with the same UNet
decoder as its ConvNeXt (`[skip, x]` concatenation, `convs_per_block` refinements with
`channels[0] * filters_rate ** (skips - 1 - i)` filters, at least `channels[0]`; below the
finest map no skip and one refinement). No middle block. Inputs in [0, 1] are normalised
with the model's mean and std (timm's `pretrained_cfg`, or `image_mean` / `image_std`);
a 1-channel input is tiled to RGB first, as sleap-nn's `Model` does.

The encoder is timm's model of that name, run through its `forward_intermediates`
(ViTs and Swin V2 built with `dynamic_img_size` so any input size works, as sleap-nn
does). ImageNet weights (`weights: true`) come from timm's own download and cache
(`weights_file` loads a local file through timm instead). sleap-nn builds its networks
from Hugging Face `transformers`, whose module names differ from timm's: `from_config`
picks `hf_backbone.HFPretrained` for Hugging Face ConvNeXt(V2) / ResNet / Swinv2 ids and
`vit_backbone.PretrainedViT` (DINOv2 + ViT neck) for DINOv2 ids, whose sleap-nn
checkpoints load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from posekit.architectures.common import _SKIP_IMAGENET
from posekit.architectures.sleap_nn_decoder import (
    DecodedEncoder,
    encoder_only,
    run_decoder,
    sleap_nn_decoder,
)
from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import PretrainedConfig


def _create(
    name: str, weights: bool, weights_file: str | None, model_args: dict | None = None
) -> nn.Module:
    try:
        import timm
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise PosekitError(
            "the pretrained backbone needs timm; install it with: pip install 'posekit[pretrained]'"
        ) from err
    if not timm.is_model(name):
        raise PosekitError(
            f"model_name={name!r} is not a timm model; use a timm name such as "
            f"'timm/convnextv2_nano.fcmae_ft_in22k_in1k'; of Hugging Face ids posekit builds "
            f"DINOv2, ConvNeXt(V2), ResNet and Swinv2 (facebook/dinov2-*, facebook/convnext*-*, "
            f"microsoft/resnet-*, microsoft/swinv2-*, or one whose config.json is in a local folder or the "
            f"Hugging Face cache)"
        )
    kwargs: dict = dict(pretrained=weights, num_classes=0, **(model_args or {}))
    if weights and weights_file is not None:
        kwargs["pretrained_cfg_overlay"] = dict(file=str(weights_file))
    try:
        try:
            return timm.create_model(name, dynamic_img_size=True, **kwargs)
        except TypeError:  # families without the flag (ConvNeXt, ResNet)
            return timm.create_model(name, **kwargs)
    except PosekitError:
        raise
    except Exception as err:  # download and cache failures come as many types
        if not weights:
            raise
        raise PosekitError(
            f"could not load ImageNet weights for {name} ({type(err).__name__}: "
            f"{str(err)[:200]}); timm fetches them from the Hugging Face hub into its cache; "
            f"without network, copy the cache from a connected machine or set weights: false"
        ) from err


def _fetch_weights(asked: bool) -> bool:
    """Whether to fetch ImageNet weights: asked for, and not building a model whose
    weights all come from a checkpoint (`skip_imagenet_weights`, the meta device)."""
    return bool(asked) and not _SKIP_IMAGENET.get() and not torch.empty(0).is_meta


def _wrapped_model(config, wrapped: dict) -> nn.Module:
    """The timm model a `TimmWrapperModel` config describes (`architecture`, `model_args`)."""
    name = wrapped["architecture"] or config.timm_name
    return _create(name, _fetch_weights(config.weights), None, wrapped.get("model_args"))


def _isotropic(model: nn.Module) -> bool:
    """A plain ViT: every feature at one stride."""
    return len({int(f["reduction"]) for f in model.feature_info}) <= 1


def _plain_vit(config, model: nn.Module, in_channels: int):
    """sleap-nn's plain-ViT path (its ViT neck, `vit_backbone.PretrainedViT`) on the timm
    ViT `model`."""
    from posekit.architectures.vit_backbone import CONFIG_FIELDS, PretrainedViT

    return PretrainedViT(
        {},
        model_name=config.model_name,
        in_channels=in_channels,
        output_stride=config.output_stride,
        weights=False,  # timm loaded them
        timm_model=model,
        **{n: getattr(config, n) for n in CONFIG_FIELDS},
    )


class TimmPretrained(DecodedEncoder):
    """A timm encoder's stage maps under sleap-nn's decoder (see the module docstring)."""

    def __init__(
        self,
        model_name: str,
        in_channels: int = 3,
        weights: bool = True,
        out_indices: list[int] | None = None,
        normalize: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        filters_rate: float = 2.0,
        convs_per_block: int = 2,
        kernel_size: int = 3,
        up_interpolate: bool = True,
        output_stride: int = 2,
        freeze: bool = False,
        weights_file: str | None = None,
        model_args: dict | None = None,
        architecture: str | None = None,
        timm_model: nn.Module | None = None,
        mode: str = "auto",
        max_stride: int = 32,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        if self.in_channels not in (1, 3):
            raise PosekitError(f"in_channels={in_channels}: ImageNet encoders take 1 or 3")
        weights = _fetch_weights(weights)
        self.model_name = model_name
        self.wrapped = architecture is not None  # built from a TimmWrapperModel's config
        name = architecture or model_name.removeprefix("timm/")
        self.enc = timm_model or _create(name, weights, weights_file, model_args)
        info = self.enc.feature_info
        if _isotropic(self.enc):
            raise PosekitError(
                f"{model_name} is a plain ViT (one stride); posekit builds only hierarchical "
                f"encoders for the pretrained backbone (sleap-nn's ViT neck is not here)"
            )
        indices = list(range(len(info))) if out_indices is None else [int(i) for i in out_indices]
        by_stride = {int(info[i]["reduction"]): (i, int(info[i]["num_chs"])) for i in indices}
        self.strides = sorted(by_stride)
        self.indices = [by_stride[s][0] for s in self.strides]
        channels = [by_stride[s][1] for s in self.strides]
        cfg = self.enc.pretrained_cfg
        mean = image_mean or cfg.get("mean") or (0.485, 0.456, 0.406)
        std = image_std or cfg.get("std") or (0.229, 0.224, 0.225)
        self.normalize = bool(normalize)
        self.register_buffer("image_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        self.encoder_only = mode == "encoder"
        if self.encoder_only:
            # sleap-nn's "Case B": no decoder, the pooled head reads the deepest stage map
            # (under `max_stride`, as sleap-nn's heads take it)
            self.decoder, self._features = encoder_only(channels[-1], max_stride)
        else:
            self.decoder, self._features = sleap_nn_decoder(
                self.strides,
                channels,
                output_stride,
                filters_rate,
                convs_per_block,
                kernel_size,
                up_interpolate,
            )
        self.freeze = bool(freeze)
        if self.freeze:
            self.enc.requires_grad_(False)

    @classmethod
    def from_config(cls, config: PretrainedConfig, in_channels: int = 3) -> TimmPretrained:
        """Build from sleap-nn's `PretrainedConfig` (see its docstring for what is left out).

        A Hugging Face DINOv2 id (or a local / cached model whose config says DINOv2)
        builds `vit_backbone.PretrainedViT` instead: sleap-nn's plain-ViT path; a
        Hugging Face ConvNeXt(V2) / ResNet / Swinv2 builds `hf_backbone.HFPretrained`."""
        from posekit.architectures.dinov2 import DINOV2_TYPES, hf_config
        from posekit.architectures.hf_convnets import HF_HIERARCHICAL_TYPES

        hf = hf_config(config.model_name, config.revision)
        wrapped: dict = {}  # a `timm/...` id as transformers' TimmWrapperModel saves it
        if hf is not None and hf.get("model_type") == "timm_wrapper":
            wrapped = dict(architecture=hf.get("architecture"), model_args=hf.get("model_args"))
            wrapped["timm_model"] = _wrapped_model(config, wrapped)
            if _isotropic(wrapped["timm_model"]):
                return _plain_vit(config, wrapped["timm_model"], in_channels)
        elif hf is not None and hf.get("model_type") in DINOV2_TYPES:
            from posekit.architectures.vit_backbone import PretrainedViT

            return PretrainedViT.from_config(config, in_channels=in_channels, hf=hf)
        if hf is not None and hf.get("model_type") in HF_HIERARCHICAL_TYPES:
            from posekit.architectures.hf_backbone import HFPretrained

            return HFPretrained.from_config(config, in_channels=in_channels, hf=hf)
        names = ("weights", "out_indices", "normalize", "image_mean", "image_std")
        names += ("filters_rate", "convs_per_block", "kernel_size", "up_interpolate")
        names += ("mode", "max_stride")
        return cls(
            config.model_name,
            in_channels=in_channels,
            output_stride=config.output_stride,
            freeze=config.freeze,
            **wrapped,
            **{n: getattr(config, n) for n in names},
        )

    # ---- sleap-nn's names: transformers' TimmWrapperModel holds timm's model as
    # `timm_model`, and sleap-nn's checkpoints keep the normalisation's mean and std

    def hf_encoder_keys(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's weights (sleap-nn's `enc.timm_model.*`) in posekit's names."""
        prefix = "enc.timm_model."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    def hf_encoder_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's weights (posekit's names, relative to `enc`) in sleap-nn's."""
        return {f"timm_model.{k}": v for k, v in state.items()}

    def sleap_nn_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """As `DecodedEncoder`'s; the checkpoint's mean and std go into the buffers
        (posekit keeps them out of its own checkpoints: they come from the model name)."""
        state = dict(state)
        for name in ("image_mean", "image_std"):
            if name in state:
                getattr(self, name).copy_(state.pop(name).view_as(getattr(self, name)))
        return super().sleap_nn_state_dict(state)

    def to_sleap_nn_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """As `DecodedEncoder`'s, with the mean and std sleap-nn's checkpoints hold."""
        out = super().to_sleap_nn_state_dict(state)
        out.update(image_mean=self.image_mean.clone(), image_std=self.image_std.clone())
        return out

    def sleap_nn_model_name(self) -> str:
        """The id sleap-nn builds this encoder from: a `timm/...` Hugging Face repository
        (timm's own `hf_hub_id` for a plain timm name); a model sleap-nn built keeps its id."""
        if self.wrapped or self.model_name.startswith("timm/"):
            return self.model_name
        hub = self.enc.pretrained_cfg.get("hf_hub_id")
        if not hub or not str(hub).startswith("timm/"):
            raise PosekitError(
                f"the timm model {self.model_name!r} has no timm/ repository on the Hugging "
                f"Face hub, which sleap-nn builds its 'pretrained' backbone from; name it "
                f"by such an id (e.g. timm/convnextv2_nano.fcmae_ft_in22k_in1k)"
            )
        return str(hub)

    def forward_features(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """`{stride: tensor}`: the deepest stage map and every decoder output."""
        x = self.encoder_input(x)
        maps = self.enc.forward_intermediates(
            x, indices=self.indices, output_fmt="NCHW", intermediates_only=True
        )
        if self.encoder_only:
            return [{max(self._features): maps[-1]}]
        return [run_decoder(self.decoder, dict(zip(self.strides, maps, strict=True)))]


__all__ = ["TimmPretrained"]
