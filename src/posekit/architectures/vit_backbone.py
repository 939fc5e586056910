"""sleap-nn's `pretrained` backbone on a plain ViT (DINOv2, timm's DINOv3): tokens -> neck -> decoder.

sleap-nn 0.3.5 ("Case C" of its `PretrainedBackbone`) runs a plain ViT on the input and
builds a feature pyramid from its token maps; posekit builds the same network:

1. a 1-channel input is tiled to RGB; inputs in [0, 1] are normalised by `image_mean` /
   `image_std` (buffers, stored in sleap-nn's checkpoints; ImageNet's by default);
2. the image is resized (bilinear) so the token grid is `H / token_stride` x
   `W / token_stride` whatever the patch size (`token_stride`: the power of two nearest
   the patch size, 16 for DINOv2's 14);
3. the patch tokens after the tapped blocks (`layers`, 1-indexed; by default as many
   evenly spaced ones as the neck has levels, the last block last) go through one fresh
   LayerNorm each (`tap_norms`, eps 1e-6);
4. the neck (`neck.levels`) turns them into a pyramid at token_stride x 1/4, 1/2, 1, 2
   (levels finer than `output_stride` are left out): x4 = two 2x2 transposed convs with
   a channel LayerNorm and GELU between them; x2 = one; x1 = identity; x1/2 = a 3x3
   stride-2 conv; then a 1x1 conv, LayerNorm, 3x3 conv, LayerNorm (no biases). "dpt" feeds
   level j from tap j, "sfp" feeds every level from the last tap. Channels
   `neck_channels`, by default hidden/8, /4, /2, hidden (at least 16);
5. with `detail_stem` (sleap-nn's ViTMatte-like "detail stream"), `DetailStem` reads the
   normalised image (before the resize of point 2) and gives maps at strides 2, 4 and 8;
   each one at least as coarse as `output_stride` is concatenated after the neck's level
   at that stride, or becomes a new, finer level. The finest real detail of a ViT is at
   its token stride; this stream gives the decoder's last blocks the image's own edges;
6. sleap-nn's decoder (`sleap_nn_decoder.sleap_nn_decoder`) from the deepest level, with the
   others as skips.

The maximum stride is 2 x token_stride. In `mode: encoder` (sleap-nn's "Case B", for
pooled heads) there is no neck or decoder: a DINOv2 gives its last block's tokens after
its final LayerNorm at the input's own size, a timm ViT its one tapped block through one
fresh LayerNorm after point 2 (the maximum stride is then the token stride). Module
names below `enc` are posekit's (timm's blocks); everything else has sleap-nn's names,
so `sleap_nn_state_dict` only renames the encoder (`dinov2.hf_to_posekit`) and the
decoder blocks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.dinov2 import Dinov2, require_hf_config
from posekit.architectures.hf_hub import read_hf_weights
from posekit.architectures.sleap_nn_decoder import (
    DecodedEncoder,
    encoder_only,
    run_decoder,
    sleap_nn_decoder,
)
from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import PretrainedConfig

#: Scales of the neck's levels relative to the token grid, finest first.
PYRAMID_SCALES = (4.0, 2.0, 1.0, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resample(channels: int, scale: float) -> nn.Module:
    from torchvision.models.convnext import LayerNorm2d

    if scale == 4.0:
        mid = max(channels // 2, 1)
        return nn.Sequential(
            nn.ConvTranspose2d(channels, mid, kernel_size=2, stride=2),
            LayerNorm2d(mid, eps=1e-6),
            nn.GELU(),
            nn.ConvTranspose2d(mid, mid, kernel_size=2, stride=2),
        )
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
    if scale == 1.0:
        return nn.Identity()
    return nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)


#: `PretrainedConfig` fields that `PretrainedViT` takes as they are (beside the model
#: name, channels, output stride and weights).
CONFIG_FIELDS = (
    *("layers", "vit_neck", "neck_channels", "token_stride", "normalize", "image_mean"),
    *("image_std", "filters_rate", "convs_per_block", "kernel_size", "up_interpolate"),
    *("revision", "freeze", "mode", "max_stride", "detail_stem", "detail_channels"),
)
#: The strides of `DetailStem`'s maps, finest first.
DETAIL_STRIDES = (2, 4, 8)


class DetailStem(nn.Module):
    """sleap-nn's detail stream for plain ViTs: three stages, each a 3x3 stride-2 conv and a
    3x3 conv, every conv followed by a channel LayerNorm (eps 1e-6) and ReLU; the output of
    each stage (strides 2, 4, 8) is a map for the decoder. Names are sleap-nn's
    (`stages.{i}.{k}`)."""

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        from torchvision.models.convnext import LayerNorm2d

        super().__init__()
        if len(channels) != len(DETAIL_STRIDES):
            raise PosekitError(
                f"detail_channels={list(channels)}: give 3 channel counts (strides 2, 4, 8)"
            )
        self.stages = nn.ModuleList()
        for c_out in channels:
            self.stages.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, c_out, kernel_size=3, stride=2, padding=1),
                    LayerNorm2d(c_out, eps=1e-6),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c_out, c_out, kernel_size=3, padding=1),
                    LayerNorm2d(c_out, eps=1e-6),
                    nn.ReLU(inplace=True),
                )
            )
            in_channels = c_out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # noqa: D102
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


class ViTNeck(nn.Module):
    """sleap-nn's `ViTPyramidNeck`: single-stride token maps -> a pyramid (point 4 of the
    module docstring). Parameter names are sleap-nn's (`levels.{j}.{k}`)."""

    def __init__(
        self, in_channels: int, out_channels: list[int], scales: list[float], mode: str = "dpt"
    ) -> None:
        from torchvision.models.convnext import LayerNorm2d

        super().__init__()
        if mode not in ("dpt", "sfp"):
            raise PosekitError(f"vit_neck={mode!r} is not a ViT neck; use 'dpt' or 'sfp'")
        self.mode = mode
        self.levels = nn.ModuleList()
        for scale, c_out in zip(scales, out_channels, strict=True):
            c_mid = max(in_channels // 2, 1) if scale == 4.0 else in_channels
            self.levels.append(
                nn.Sequential(
                    _resample(in_channels, scale),
                    nn.Conv2d(c_mid, c_out, kernel_size=1, bias=False),
                    LayerNorm2d(c_out, eps=1e-6),
                    nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False),
                    LayerNorm2d(c_out, eps=1e-6),
                )
            )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:  # noqa: D102
        inputs = [feats[-1]] * len(self.levels) if self.mode == "sfp" else feats
        return [level(f) for level, f in zip(self.levels, inputs, strict=True)]


def _taps(layers: list[int] | None, depth: int, n_levels: int, mode: str) -> list[int]:
    """The 1-indexed blocks to tap, sorted (sleap-nn's defaults and checks)."""
    if layers is None:
        n = n_levels if mode == "dpt" else 1
        layers = [max(1, round(depth * (i + 1) / n)) for i in range(n)]
    elif mode in ("sfp", "encoder") and len(layers) != 1:
        what = "vit_neck 'sfp' taps" if mode == "sfp" else "mode 'encoder' pools"
        raise PosekitError(f"layers={list(layers)}: {what} exactly one layer (e.g. [-1])")
    elif mode == "dpt" and len(layers) != n_levels:
        raise PosekitError(
            f"layers={list(layers)}: the 'dpt' ViT neck taps one layer per pyramid level "
            f"({n_levels} here)"
        )
    out = []
    for layer in layers:
        idx = int(layer) if layer > 0 else depth + 1 + int(layer)
        if not 1 <= idx <= depth:
            raise PosekitError(
                f"layers: {layer} is out of range; the ViT has {depth} blocks (1..{depth} "
                f"or -1..-{depth})"
            )
        out.append(idx)
    return sorted(out)


class TimmViT(nn.Module):
    """A timm plain ViT (DINOv3, EVA, ...) with what `PretrainedViT` asks of its encoder.

    sleap-nn builds `timm/...` ViT ids as transformers' `TimmWrapperModel`: timm's model
    as `timm_model` (so the checkpoint's keys are timm's under `enc.timm_model.`, as
    here), run through `forward_intermediates` (NCHW grids, prefix tokens dropped, no
    final norm; `dynamic_img_size` so any input size works).
    """

    def __init__(self, timm_model: nn.Module) -> None:
        super().__init__()
        self.timm_model = timm_model
        patch = getattr(getattr(timm_model, "patch_embed", None), "patch_size", None)
        patch = patch[0] if isinstance(patch, tuple | list) else patch
        self.patch_size = int(patch or timm_model.feature_info[-1]["reduction"])
        self.hidden_size = int(getattr(timm_model, "embed_dim", None) or timm_model.num_features)
        self.depth = len(timm_model.blocks)

    def forward(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:  # noqa: D102
        unique = sorted(set(layers))
        maps = self.timm_model.forward_intermediates(
            x,
            indices=[layer - 1 for layer in unique],
            output_fmt="NCHW",
            intermediates_only=True,
            stop_early=True,
        )
        by_layer = dict(zip(unique, maps, strict=True))
        return [by_layer[layer] for layer in layers]

    def load_hf_state_dict(self, state: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
        """The weights under `prefix` (sleap-nn's names are this module's)."""
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


class PretrainedViT(DecodedEncoder):
    """A DINOv2 or timm plain ViT under sleap-nn's ViT neck and decoder, or alone in
    encoder mode (see the module docstring)."""

    sleap_nn_kept = ("tap_norms.", "neck.", "stem.")  # sleap-nn's names, kept as they are

    def __init__(
        self,
        hf: Mapping,
        model_name: str = "",
        in_channels: int = 3,
        output_stride: int = 2,
        layers: list[int] | None = None,
        vit_neck: str = "dpt",
        neck_channels: list[int] | None = None,
        token_stride: int | None = None,
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
        timm_model: nn.Module | None = None,
        detail_stem: bool = False,
        detail_channels: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        if self.in_channels not in (1, 3):
            raise PosekitError(f"in_channels={in_channels}: a ViT takes 1 or 3 channels")
        self.model_name = model_name
        self.enc = Dinov2(hf) if timm_model is None else TimmViT(timm_model)
        self.normalize = bool(normalize)
        mean = image_mean if image_mean and image_std else IMAGENET_MEAN
        std = image_std if image_mean and image_std else IMAGENET_STD
        self.encoder_only = mode == "encoder"
        if self.encoder_only and timm_model is None:
            # sleap-nn's "Case B" on a DINOv2 (its `*Backbone` class): the last block's
            # layer-normed patch tokens, at the input's own size (no resampling to a
            # power-of-two grid, no neck)
            self.decoder, self._features = encoder_only(self.enc.hidden_size, max_stride)
            self.strides = [max_stride]
            self.finish(mean, std, weights, revision, freeze)
            return
        patch, hidden = self.enc.patch_size, self.enc.hidden_size
        self.token_stride = int(token_stride or 2 ** round(math.log2(patch)))
        if self.token_stride < 4 or self.token_stride & (self.token_stride - 1):
            raise PosekitError(
                f"token_stride={self.token_stride} must be a power of two >= 4 (the neck "
                f"reaches token_stride / 4)"
            )
        if self.encoder_only:
            # sleap-nn's "Case B" on a timm ViT (no `*Backbone` class): one tapped block
            # (the last by default) through a fresh LayerNorm on the token grid; the token
            # stride is then the model's maximum stride, and the pooled head reads the map
            # under `max_stride`, as sleap-nn's heads take it
            self.layers = _taps(layers, self.enc.depth, 1, "encoder")
            self.tap_norms = nn.ModuleList([nn.LayerNorm(hidden, eps=1e-6)])
            self.decoder, self._features = encoder_only(hidden, max_stride)
            self.strides = [self.token_stride]
            self.finish(mean, std, weights, revision, freeze)
            return
        scales = [s for s in PYRAMID_SCALES if self.token_stride / s >= output_stride]
        if len(scales) < 2:
            raise PosekitError(
                f"output_stride={output_stride} is too coarse for a token stride of "
                f"{self.token_stride}; use output_stride <= {self.token_stride}"
            )
        self.layers = _taps(layers, self.enc.depth, len(scales), vit_neck)
        self.tap_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-6) for _ in self.layers)
        if neck_channels is None:
            neck_channels = [max(hidden // 8, 16), max(hidden // 4, 16), max(hidden // 2, 16)]
            neck_channels.append(hidden)
        neck_channels = [int(c) for c in neck_channels]
        if len(neck_channels) == len(PYRAMID_SCALES):
            neck_channels = neck_channels[len(PYRAMID_SCALES) - len(scales) :]
        if len(neck_channels) != len(scales):
            raise PosekitError(
                f"neck_channels={neck_channels}: give {len(PYRAMID_SCALES)} channel counts"
            )
        self.neck = ViTNeck(hidden, neck_channels, scales, vit_neck)
        self.neck_strides = [int(self.token_stride / s) for s in scales]
        by_stride = dict(zip(self.neck_strides, neck_channels, strict=True))
        # the detail stream's maps the decoder reads: none finer than its output
        self.detail_strides = [s for s in DETAIL_STRIDES if s >= output_stride]
        if detail_stem and self.detail_strides:
            detail_channels = [int(c) for c in detail_channels or (32, 64, 128)]
            self.stem = DetailStem(3, detail_channels)
            for s, c in zip(DETAIL_STRIDES, detail_channels, strict=True):
                if s in self.detail_strides:
                    by_stride[s] = by_stride.get(s, 0) + c
        elif detail_stem:
            warnings.warn(
                f"pretrained detail_stem ignored: output_stride={output_stride} is "
                f"coarser than its coarsest map (stride 8), as in sleap-nn",
                stacklevel=2,
            )
        self.strides = sorted(by_stride)
        self.decoder, self._features = sleap_nn_decoder(
            self.strides,
            [by_stride[s] for s in self.strides],
            output_stride,
            filters_rate,
            convs_per_block,
            kernel_size,
            up_interpolate,
        )
        self.finish(mean, std, weights, revision, freeze)

    @classmethod
    def from_config(
        cls, config: PretrainedConfig, in_channels: int = 3, hf: Mapping | None = None
    ) -> PretrainedViT:
        """Build from sleap-nn's `PretrainedConfig`; `hf`: the model's Hugging Face config
        (read by `dinov2.require_hf_config` when not given)."""
        hf = hf or require_hf_config(config.model_name, config.revision)
        return cls(
            hf,
            model_name=config.model_name,
            in_channels=in_channels,
            output_stride=config.output_stride,
            weights=config.weights,
            **{n: getattr(config, n) for n in CONFIG_FIELDS},
        )

    def forward_features(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """`{stride: tensor}`: the deepest neck level and every decoder output."""
        x = self.encoder_input(x)
        if self.encoder_only and isinstance(self.enc, Dinov2):
            return [{self.strides[-1]: self.enc.last_normed(x)}]
        h, w = x.shape[-2] // self.token_stride, x.shape[-1] // self.token_stride
        size = (h * self.enc.patch_size, w * self.enc.patch_size)
        tokens_in = x
        if tuple(x.shape[-2:]) != size:
            tokens_in = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        maps = self.enc(tokens_in, self.layers)
        maps = [
            norm(m.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for norm, m in zip(self.tap_norms, maps, strict=True)
        ]
        if self.encoder_only:
            return [{max(self._features): maps[-1]}]
        pyramid = dict(zip(self.neck_strides, self.neck(maps), strict=True))
        if hasattr(self, "stem"):  # the detail stream, after the neck's level (sleap-nn's order)
            for s, detail in zip(DETAIL_STRIDES, self.stem(x), strict=True):
                if s in self.detail_strides:
                    pyramid[s] = torch.cat([pyramid[s], detail], 1) if s in pyramid else detail
        return [run_decoder(self.decoder, pyramid)]

    # ---- weights

    def load_hf_weights(self, revision: str | None = None) -> None:
        """The encoder's weights from the model's Hugging Face files (`read_hf_weights`);
        a timm ViT got its weights from timm when it was built."""
        if isinstance(self.enc, TimmViT):
            return
        state = read_hf_weights(self.model_name, revision)
        prefix = "dinov2." if any(k.startswith("dinov2.") for k in state) else ""
        self.enc.load_state_dict(self.enc.load_hf_state_dict(state, prefix))

    def hf_encoder_keys(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's weights (Hugging Face names under `enc.`) in posekit's names."""
        return self.enc.load_hf_state_dict(state, "enc.")

    def hf_encoder_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's weights (posekit's names, relative to `enc`) in Hugging Face's."""
        from posekit.architectures.dinov2 import posekit_to_hf

        return dict(state) if isinstance(self.enc, TimmViT) else posekit_to_hf(state)


__all__ = ["PretrainedViT", "TimmViT", "ViTNeck"]
