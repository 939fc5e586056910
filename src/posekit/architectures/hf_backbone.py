"""sleap-nn's `pretrained` backbone on a Hugging Face hierarchical model: encoder + decoder.

sleap-nn 0.3.5 ("Case A" of its `PretrainedBackbone`) asks `AutoBackbone` for every
entry of the model's `stage_names` (or `out_indices`), keeps the last map of each stride
(the stem map, stride 4 like stage 1, is dropped; ConvNeXt's output norm for it stays
in the weights) and decodes from the deepest one with `sleap_nn_decoder`. posekit
builds the encoder without transformers (`hf_convnets`, `hf_swinv2`); the normalisation is the one of `DecodedEncoder` (mean and std are
buffers in sleap-nn's checkpoints; for a fresh model `image_mean` / `image_std`, else
the model's `preprocessor_config.json`, else ImageNet's, as sleap-nn reads them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from posekit.architectures.dinov2 import require_hf_config
from posekit.architectures.hf_convnets import build_hf_hierarchical, hf_to_posekit, posekit_to_hf
from posekit.architectures.hf_hub import hf_model_dir, read_hf_weights
from posekit.architectures.sleap_nn_decoder import (
    DecodedEncoder,
    encoder_only,
    run_decoder,
    sleap_nn_decoder,
)
from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import PretrainedConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _processor_stats(model_name: str, revision: str | None) -> tuple[list, list] | None:
    """`image_mean` / `image_std` of the model's `preprocessor_config.json`, if found."""
    folder = hf_model_dir(model_name, revision)
    path = folder / "preprocessor_config.json" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        proc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if proc.get("image_mean") and proc.get("image_std"):
        return list(proc["image_mean"]), list(proc["image_std"])
    return None


class HFPretrained(DecodedEncoder):
    """A Hugging Face ConvNeXt(V2) / ResNet / Swinv2 under sleap-nn's decoder (module
    docstring)."""

    def __init__(
        self,
        hf: Mapping,
        model_name: str = "",
        in_channels: int = 3,
        output_stride: int = 2,
        out_indices: list[int] | None = None,
        normalize: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        filters_rate: float = 2.0,
        convs_per_block: int = 2,
        kernel_size: int = 3,
        up_interpolate: bool = True,
        weights: bool = False,
        revision: str | None = None,
        freeze: bool = False,
        mode: str = "auto",
        max_stride: int = 32,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        if self.in_channels not in (1, 3):
            raise PosekitError(f"in_channels={in_channels}: ImageNet encoders take 1 or 3")
        self.model_name = model_name
        self.encoder_only = mode == "encoder"
        if self.encoder_only:  # the deepest stage map alone, whatever out_indices says
            self.enc = build_hf_hierarchical(hf, [-1])
            self.decoder, self._features = encoder_only(
                self.enc.channels[self.enc.indices[-1]], max_stride
            )
            self.strides = [max_stride]
        else:
            self.enc = build_hf_hierarchical(hf, out_indices)
            by_stride = {self.enc.strides[i]: self.enc.channels[i] for i in self.enc.indices}
            self.strides = sorted(by_stride)
            if len(self.strides) < 2:
                raise PosekitError(
                    f"out_indices={out_indices} give one stride ({self.strides[0]}); the "
                    f"decoder needs maps at two strides or more"
                )
            self.decoder, self._features = sleap_nn_decoder(
                self.strides,
                [by_stride[s] for s in self.strides],
                output_stride,
                filters_rate,
                convs_per_block,
                kernel_size,
                up_interpolate,
            )
        self.normalize = bool(normalize)
        if image_mean and image_std:
            mean, std = image_mean, image_std
        elif not self.normalize:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            mean, std = _processor_stats(model_name, revision) or (IMAGENET_MEAN, IMAGENET_STD)
        self.finish(mean, std, weights, revision, freeze)

    @classmethod
    def from_config(
        cls, config: PretrainedConfig, in_channels: int = 3, hf: Mapping | None = None
    ) -> HFPretrained:
        """Build from sleap-nn's `PretrainedConfig`; `hf`: the model's Hugging Face config
        (read by `dinov2.require_hf_config` when not given)."""
        hf = hf or require_hf_config(config.model_name, config.revision)
        names = ("out_indices", "normalize", "image_mean", "image_std", "filters_rate")
        names += ("convs_per_block", "kernel_size", "up_interpolate", "weights", "revision")
        names += ("mode", "max_stride")
        return cls(
            hf,
            model_name=config.model_name,
            in_channels=in_channels,
            output_stride=config.output_stride,
            freeze=config.freeze,
            **{n: getattr(config, n) for n in names},
        )

    def forward_features(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """`{stride: tensor}`: the deepest stage map and every decoder output."""
        maps = self.enc(self.encoder_input(x))
        if self.encoder_only:
            return [{self.strides[-1]: maps[-1]}]
        by_stride = {self.enc.strides[i]: m for i, m in zip(self.enc.indices, maps, strict=True)}
        return [run_decoder(self.decoder, by_stride)]

    def load_hf_weights(self, revision: str | None = None) -> None:
        """The encoder's ImageNet weights from the model's Hugging Face files. Output
        norms a classifier checkpoint lacks keep their fresh values, as in transformers."""
        state = read_hf_weights(self.model_name, revision)
        # a classifier checkpoint nests the backbone under its family's name
        bases = ("convnext.", "convnextv2.", "resnet.", "swinv2.")
        prefix = next((b for b in bases if any(k.startswith(b) for k in state)), "")
        ours = hf_to_posekit(state, self.enc, prefix)
        missing, unexpected = self.enc.load_state_dict(ours, strict=False)
        missing = [k for k in missing if not k.startswith("hidden_states_norms.")]
        if missing or unexpected:
            raise PosekitError(
                f"the weights of {self.model_name} do not fit its config (missing "
                f"{missing[:3]}, unexpected {unexpected[:3]}); check model_name and revision"
            )

    def hf_encoder_keys(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's weights (Hugging Face names under `enc.`) in posekit's names."""
        return hf_to_posekit(state, self.enc, "enc.")

    def hf_encoder_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's weights (posekit's names, relative to `enc`) in Hugging Face's."""
        return posekit_to_hf(state, self.enc)


__all__ = ["HFPretrained"]
