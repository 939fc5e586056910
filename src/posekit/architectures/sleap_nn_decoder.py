"""sleap-nn's decoder under a pretrained encoder's pyramid (its `pretrained` backbone).

sleap-nn 0.3.5 decodes from the deepest map with the others as skips: `[skip, x]`
concatenation, `convs_per_block` refinements with `channels[0] * filters_rate **
(skips - 1 - i)` filters (at least `channels[0]`); below the finest map no skip and one
refinement. No middle block. Used by the timm (hierarchical) and the DINOv2 (ViT neck)
versions of that backbone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from posekit.architectures.common import Backbone, check_input_size
from posekit.architectures.encoder_decoder import SimpleUpsamplingBlock
from posekit.errors import PosekitError


def sleap_nn_decoder(
    strides: list[int],
    channels: list[int],
    output_stride: int,
    filters_rate: float = 2.0,
    convs_per_block: int = 2,
    kernel_size: int = 3,
    up_interpolate: bool = True,
) -> tuple[nn.ModuleList, dict[int, int]]:
    """sleap-nn's decoder on a pyramid (`strides` ascending, their `channels`): the blocks
    (`stack0_dec{i}`) and the channels of every feature it reports, by stride."""
    deepest = strides[-1]
    if output_stride >= deepest:
        raise PosekitError(
            f"output_stride={output_stride} is not below the encoder's deepest stride "
            f"{deepest}; lower it"
        )
    skips = len(strides) - 1
    skip_channels = channels[:-1][::-1]
    blocks = []
    x_channels, stride = channels[-1], deepest
    features = {deepest: x_channels}
    for i in range(int(math.log2(deepest // output_stride))):
        filters = int(channels[0] * filters_rate ** max(0, skips - 1 - i))
        has_skip = i < skips
        block = SimpleUpsamplingBlock(
            x_channels,
            skip_channels=skip_channels[i] if has_skip else None,
            prefix=f"stack0_dec{i}",
            current_stride=stride,
            transposed_conv=not up_interpolate,
            transposed_conv_filters=filters,
            transposed_conv_batch_norm=False,
            transposed_conv_crop="torch",
            skip_connection=has_skip,
            refine_convs=convs_per_block if has_skip else 1,
            refine_convs_filters=filters,
            refine_convs_kernel_size=kernel_size,
            refine_convs_batch_norm=False,
        )
        blocks.append(block)
        x_channels, stride = block.out_channels, stride // 2
        features[stride] = x_channels
    return nn.ModuleList(blocks), features


def run_decoder(decoder: nn.ModuleList, by_stride: dict[int, torch.Tensor]) -> dict:
    """`{stride: tensor}`: the deepest map of `by_stride` and every decoder output (each
    block takes the map at its new stride as its skip)."""
    by_stride = dict(by_stride)
    stride = max(by_stride)
    out = by_stride.pop(stride)
    feats = {stride: out}
    for block in decoder:
        stride //= 2
        out = block(out, by_stride.get(stride) if block.uses_skip else None)
        feats[stride] = out
    return feats


def encoder_only(channels: int, max_stride: int) -> tuple[nn.ModuleList, dict[int, int]]:
    """sleap-nn's `mode: encoder` ("Case B"): no decoder; the pooled heads it serves
    (embedding, class vectors) read the encoder's last map, offered at `max_stride`
    whatever its true stride (a patch-14 ViT's is 14), as sleap-nn's heads take it."""
    return nn.ModuleList(), {int(max_stride): int(channels)}


def sleap_nn_decoder_keys(decoder: nn.ModuleList) -> dict[str, str]:
    """sleap-nn's key prefix of each decoder layer (`dec.decoder_stack.{i}.blocks.
    pretrained_dec...`) -> posekit's (`decoder.{i}.upsample|refine.stack0_dec...`)."""
    out = {}
    for i, block in enumerate(decoder):
        theirs = block.prefix.replace("stack0_dec", "pretrained_dec", 1)
        for part in ("upsample", "refine"):
            for name, _ in getattr(block, part).named_children():
                their = name.replace(block.prefix, theirs, 1)
                out[f"dec.decoder_stack.{i}.blocks.{their}."] = f"decoder.{i}.{part}.{name}."
    return out


class DecodedEncoder(Backbone):
    """What the two versions share: an encoder `enc` whose pyramid (`strides`) feeds the
    decoder (features `_features`), normalised RGB input, and a `freeze` that keeps the
    encoder in eval mode (its norms' statistics do not drift)."""

    strides: list[int]
    _features: dict[int, int]
    freeze: bool = False
    normalize: bool = True

    def train(self, mode: bool = True) -> DecodedEncoder:
        super().train(mode)
        if self.freeze:
            self.enc.eval()
        return self

    @property
    def maximum_stride(self) -> int:
        return self.strides[-1]

    @property
    def output_stride(self) -> int:
        return min(self._features)

    @property
    def feature_channels(self) -> dict[int, int]:
        return dict(self._features)

    def finish(self, mean, std, weights: bool, revision: str | None, freeze: bool) -> None:
        """What the Hugging Face versions share after building: the mean / std buffers
        (persistent: sleap-nn's checkpoints hold them), the encoder's Hugging Face weights
        (`load_hf_weights`; not on the meta device or under `skip_imagenet_weights`),
        and `freeze`."""
        from posekit.architectures.common import _SKIP_IMAGENET

        for name, value in (("image_mean", mean), ("image_std", std)):
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1))
        if weights and not _SKIP_IMAGENET.get() and not self.image_mean.is_meta:
            self.load_hf_weights(revision)
        self.freeze = bool(freeze)
        if self.freeze:
            self.enc.requires_grad_(False)

    #: module prefixes whose sleap-nn names are posekit's (the ViT neck's)
    sleap_nn_kept: tuple[str, ...] = ()

    def hf_encoder_keys(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sleap_nn_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """sleap-nn's backbone weights (keys without `model.backbone.`) in posekit's names:
        the encoder by `hf_encoder_keys`, the decoder by `sleap_nn_decoder_keys`."""
        out = {f"enc.{k}": v for k, v in self.hf_encoder_keys(state).items()}
        out_of_table = self._rename_outside_encoder(state, sleap_nn_decoder_keys(self.decoder), out)
        if out_of_table:
            raise PosekitError(
                f"{len(out_of_table)} sleap-nn weights have no place in this backbone (e.g. "
                f"{out_of_table[0]}); is the config the one the weights were trained with?"
            )
        return out

    def _rename_outside_encoder(
        self, state: Mapping[str, torch.Tensor], decoder: dict[str, str], out: dict
    ) -> list[str]:
        """Both directions' non-encoder weights into `out`: the decoder's by the prefix
        table `decoder` (source prefix -> target prefix), the ViT neck's and the mean / std
        under their own names. Returns the keys that fit nowhere."""
        unknown = []
        for key, value in state.items():
            if key.startswith("enc."):
                continue
            if key.startswith(self.sleap_nn_kept) or key in ("image_mean", "image_std"):
                out[key] = value
                continue
            source = next((s for s in decoder if key.startswith(s)), None)
            if source is None:
                unknown.append(key)
            else:
                out[decoder[source] + key[len(source) :]] = value
        return unknown

    def hf_encoder_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`hf_encoder_keys` backwards (the versions built from Hugging Face models)."""
        raise NotImplementedError

    def to_sleap_nn_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`sleap_nn_state_dict` backwards: posekit's backbone weights (keys relative to
        the backbone) under sleap-nn's keys (without `model.backbone.`)."""
        encoder = {k[4:]: v for k, v in state.items() if k.startswith("enc.")}
        out = {f"enc.{k}": v for k, v in self.hf_encoder_state(encoder).items()}
        decoder = {ours: theirs for theirs, ours in sleap_nn_decoder_keys(self.decoder).items()}
        unknown = self._rename_outside_encoder(state, decoder, out)
        if unknown:
            raise PosekitError(f"backbone.{unknown[0]} has no sleap-nn counterpart")
        return out

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (B, 1 or 3, H, W) in [0, 1] as the encoder takes it: RGB (a grayscale
        image tiled, as sleap-nn's `Model` does), normalised by `image_mean` / `image_std`."""
        check_input_size(x, self.maximum_stride)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.normalize:
            x = (x - self.image_mean) / self.image_std
        return x


__all__ = [
    "DecodedEncoder",
    "encoder_only",
    "run_decoder",
    "sleap_nn_decoder",
    "sleap_nn_decoder_keys",
]
