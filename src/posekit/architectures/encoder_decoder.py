"""Generic encoder-decoder backbones, block by block as in SLEAP's `encoder_decoder`.

SLEAP describes a backbone as three lists of small declarative blocks (stem, encoder,
decoder) and derives every stride from those lists. posekit keeps that shape with one
difference forced by PyTorch: a block is built once, as a module, so it needs its input
channels (and, for decoder blocks, the channels of its skip source) at construction time.
The declarative part survives as `BlockSpec` (block class + its seed keyword arguments),
which `EncoderDecoder.build` turns into modules while tracking strides and channels
exactly the way SLEAP's `make_backbone` tracks tensors.

Every weighted layer is registered under SLEAP's Keras layer name (`stack0_enc0_conv0`,
`stack0_dec1_s4_to_s2_trans_conv`, ...) as the last component of its module path, so a
SLEAP `.h5` imports by leaf name.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from posekit.architectures.common import (
    Backbone,
    SameConvTranspose2d,
    SameMaxPool2d,
    activation,
    batch_norm,
    check_input_size,
    same_conv2d,
)
from posekit.errors import PosekitError

# --------------------------------------------------------------------------- blocks


class EncoderBlock(nn.Module):
    """Base class of encoder blocks: what the stride bookkeeping needs to know.

    Attributes:
        pool: whether the block pools (changes the stride).
        pooling_stride: stride of that pooling; the block's output is at
            `input stride * pooling_stride` when `pool` is True.
        out_channels: channels of the block's output (set by subclasses).
    """

    def __init__(self, pool: bool = True, pooling_stride: int = 2) -> None:
        super().__init__()
        self.pool = bool(pool)
        self.pooling_stride = int(pooling_stride)
        self.out_channels: int = 0

    @property
    def stride_factor(self) -> int:
        """How much this block multiplies the stride."""
        return self.pooling_stride if self.pool else 1


class SimpleConvBlock(EncoderBlock):
    """Convolutions (each with optional BatchNorm and an activation) and max pooling.

    Keyword arguments are SLEAP's attributes with SLEAP's defaults; `in_channels` and
    `prefix` are what the Keras version got from its input tensor and `make_block`.
    Layers are named `{prefix}{block_prefix}_conv{i}`, `_bn{i}`, `_act{i}_{activation}` and
    `_pool`, like SLEAP's. Used by LEAP CNN and UNet.
    """

    def __init__(
        self,
        in_channels: int,
        prefix: str = "conv_block",
        pool: bool = True,
        pooling_stride: int = 2,
        pool_before_convs: bool = False,
        num_convs: int = 2,
        filters: int = 32,
        kernel_size: int = 3,
        use_bias: bool = True,
        batch_norm: bool = False,
        batch_norm_before_activation: bool = True,
        activation: str = "relu",
        block_prefix: str = "",
    ) -> None:
        super().__init__(pool=pool, pooling_stride=pooling_stride)
        self.in_channels = int(in_channels)
        self.pool_before_convs = bool(pool_before_convs)
        self.num_convs = int(num_convs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.use_bias = bool(use_bias)
        self.batch_norm = bool(batch_norm)
        self.batch_norm_before_activation = bool(batch_norm_before_activation)
        self.activation = activation
        self.block_prefix = block_prefix

        name = prefix + block_prefix
        layers: list[tuple[str, nn.Module]] = []
        if self.pool and self.pool_before_convs:
            layers.append((f"{name}_pool", SameMaxPool2d(2, self.pooling_stride)))
        channels = self.in_channels
        for i in range(self.num_convs):
            layers.append(
                (
                    f"{name}_conv{i}",
                    _same_conv(channels, self.filters, self.kernel_size, self.use_bias),
                )
            )
            channels = self.filters
            layers += _norm_act(
                channels,
                self.batch_norm,
                self.batch_norm_before_activation,
                f"{name}_bn{i}",
                f"{name}_act{i}_{activation}",
                activation,
            )
        if self.pool and not self.pool_before_convs:
            layers.append((f"{name}_pool", SameMaxPool2d(2, self.pooling_stride)))
        self.layers = nn.Sequential(OrderedDict(layers))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


class DecoderBlock(nn.Module):
    """Base class of decoder blocks.

    Attributes:
        upsampling_stride: how much the block enlarges its input (the stride is divided
            by it).
        out_channels: channels of the block's output (set by subclasses).
        uses_skip: whether `forward` needs a skip tensor (decided at construction from
            the block's configuration and whether a source exists at the target stride).
    """

    def __init__(self, upsampling_stride: int = 2) -> None:
        super().__init__()
        self.upsampling_stride = int(upsampling_stride)
        self.out_channels: int = 0
        self.uses_skip: bool = False


class SimpleUpsamplingBlock(DecoderBlock):
    """Upsampling (transposed conv or interpolation), optional skip, refinement convs.

    Keyword arguments are SLEAP's attributes with SLEAP's defaults. `skip_channels` is the
    channel count of the skip source found at the target stride (None if there is none);
    `current_stride`, when given, adds `_s{current}_to_s{next}` to the layer names as in
    SLEAP. The skip is concatenated as `[skip, upsampled]` (SLEAP's order) or added after
    a 1x1 projection when the channel counts differ (`skip_add`).

    `transposed_conv_crop`: which window of the full transposed convolution is kept:
    "keras" (Keras' "same", `SameConvTranspose2d`) or "torch" (PyTorch's symmetric
    `padding=(k - 1) // 2` plus `output_padding`, as sleap-nn builds it); for k=3 they
    are one pixel apart.

    SLEAP quirk kept for parity: the refinement convolutions use
    `transposed_conv_activation` as their activation (their layer *name* uses
    `refine_convs_activation`). Both default to "relu".
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int | None = None,
        prefix: str = "upsample",
        current_stride: int | None = None,
        upsampling_stride: int = 2,
        transposed_conv: bool = False,
        transposed_conv_filters: int = 64,
        transposed_conv_kernel_size: int = 3,
        transposed_conv_use_bias: bool = True,
        transposed_conv_batch_norm: bool = True,
        transposed_conv_batch_norm_before_activation: bool = True,
        transposed_conv_activation: str = "relu",
        transposed_conv_crop: str = "keras",
        interp_method: str = "bilinear",
        skip_connection: bool = False,
        skip_add: bool = False,
        refine_convs: int = 2,
        refine_convs_first_filters: int | None = None,
        refine_convs_filters: int = 64,
        refine_convs_use_bias: bool = True,
        refine_convs_kernel_size: int = 3,
        refine_convs_batch_norm: bool = True,
        refine_convs_batch_norm_before_activation: bool = True,
        refine_convs_activation: str = "relu",
    ) -> None:
        super().__init__(upsampling_stride=upsampling_stride)
        self.in_channels = int(in_channels)
        self.skip_channels = None if skip_channels is None else int(skip_channels)
        self.transposed_conv = bool(transposed_conv)
        self.transposed_conv_filters = int(transposed_conv_filters)
        self.transposed_conv_kernel_size = int(transposed_conv_kernel_size)
        self.transposed_conv_use_bias = bool(transposed_conv_use_bias)
        self.transposed_conv_batch_norm = bool(transposed_conv_batch_norm)
        self.transposed_conv_batch_norm_before_activation = bool(
            transposed_conv_batch_norm_before_activation
        )
        self.transposed_conv_activation = transposed_conv_activation
        if interp_method not in ("bilinear", "nearest"):
            raise PosekitError(
                f"interp_method={interp_method!r} is not supported; use 'bilinear' or 'nearest'"
            )
        self.interp_method = interp_method
        self.skip_connection = bool(skip_connection)
        self.skip_add = bool(skip_add)
        self.refine_convs = int(refine_convs)
        self.refine_convs_first_filters = (
            None if refine_convs_first_filters is None else int(refine_convs_first_filters)
        )
        self.refine_convs_filters = int(refine_convs_filters)
        self.refine_convs_use_bias = bool(refine_convs_use_bias)
        self.refine_convs_kernel_size = int(refine_convs_kernel_size)
        self.refine_convs_batch_norm = bool(refine_convs_batch_norm)
        self.refine_convs_batch_norm_before_activation = bool(
            refine_convs_batch_norm_before_activation
        )
        self.refine_convs_activation = refine_convs_activation

        if current_stride is not None:
            prefix += f"_s{current_stride}_to_s{current_stride // self.upsampling_stride}"
        self.prefix = prefix

        # Upsampling.
        up: list[tuple[str, nn.Module]] = []
        if self.transposed_conv:
            up.append(
                (
                    f"{prefix}_trans_conv",
                    _transposed_conv(
                        transposed_conv_crop,
                        self.in_channels,
                        self.transposed_conv_filters,
                        self.transposed_conv_kernel_size,
                        self.upsampling_stride,
                        self.transposed_conv_use_bias,
                    ),
                )
            )
            channels = self.transposed_conv_filters
            up += _norm_act(
                channels,
                self.transposed_conv_batch_norm,
                self.transposed_conv_batch_norm_before_activation,
                f"{prefix}_trans_conv_bn",
                f"{prefix}_trans_conv_act_{transposed_conv_activation}",
                transposed_conv_activation,
            )
        else:
            up.append(
                (
                    f"{prefix}_interp_{interp_method}",
                    Interpolate(self.upsampling_stride, interp_method),
                )
            )
            channels = self.in_channels
        self.upsample = nn.Sequential(OrderedDict(up))

        # Skip connection.
        self.uses_skip = self.skip_connection and self.skip_channels is not None
        self.skip_projection: nn.Module | None = None
        if self.uses_skip:
            if self.skip_add:
                if self.skip_channels != channels:
                    self.skip_projection = nn.Sequential(
                        OrderedDict(
                            [
                                (
                                    f"{prefix}_skip_conv1x1",
                                    _same_conv(self.skip_channels, channels, 1),
                                )
                            ]
                        )
                    )
            else:
                channels = self.skip_channels + channels

        # Refinement.
        refine: list[tuple[str, nn.Module]] = []
        for i in range(self.refine_convs):
            filters = self.refine_convs_filters
            if i == 0 and self.refine_convs_first_filters is not None:
                filters = self.refine_convs_first_filters
            refine.append(
                (
                    f"{prefix}_refine_conv{i}",
                    _same_conv(
                        channels, filters, self.refine_convs_kernel_size, self.refine_convs_use_bias
                    ),
                )
            )
            channels = filters
            refine += _norm_act(
                channels,
                self.refine_convs_batch_norm,
                self.refine_convs_batch_norm_before_activation,
                f"{prefix}_refine_conv{i}_bn",
                f"{prefix}_refine_conv{i}_act_{refine_convs_activation}",
                transposed_conv_activation,  # SLEAP's quirk, see the class docstring
            )
        self.refine = nn.Sequential(OrderedDict(refine))
        self.out_channels = channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        x = self.upsample(x)
        if self.uses_skip:
            if skip is None:
                raise ValueError(
                    f"{self.prefix}: this block was built with a skip source of "
                    f"{self.skip_channels} channels but forward got skip=None"
                )
            if self.skip_add:
                if self.skip_projection is not None:
                    skip = self.skip_projection(skip)
                x = skip + x
            else:
                x = torch.cat([skip, x], dim=1)
        return self.refine(x)


class Interpolate(nn.Module):
    """Keras `UpSampling2D(size, interpolation)`: nearest or bilinear (half-pixel centres).

    Bilinear matches `F.interpolate(..., align_corners=False)`; nearest with an integer
    factor repeats each pixel, as Keras does.
    """

    def __init__(self, scale: int = 2, mode: str = "bilinear") -> None:
        super().__init__()
        self.scale = int(scale)
        self.mode = mode

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        if self.mode == "nearest":
            return nn.functional.interpolate(x, size=size, mode="nearest")
        return nn.functional.interpolate(x, size=size, mode=self.mode, align_corners=False)


def _default(cls: type, name: str) -> Any:
    """Default value of a constructor argument (for stride bookkeeping before building)."""
    return inspect.signature(cls.__init__).parameters[name].default


def _transposed_conv(
    crop: str, in_ch: int, out_ch: int, kernel_size: int, stride: int, bias: bool
) -> nn.ConvTranspose2d:
    """A transposed conv giving `stride * H` rows, cropped the Keras or the PyTorch way."""
    if crop == "keras":
        return SameConvTranspose2d(in_ch, out_ch, kernel_size, stride=stride, bias=bias)
    if crop == "torch":
        pad = (kernel_size - 1) // 2
        return nn.ConvTranspose2d(
            in_ch,
            out_ch,
            kernel_size,
            stride=stride,
            padding=pad,
            output_padding=stride + 2 * pad - kernel_size,
            bias=bias,
        )
    raise PosekitError(f"transposed_conv_crop={crop!r} is not supported; use 'keras' or 'torch'")


def _same_conv(in_ch: int, out_ch: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    return same_conv2d(in_ch, out_ch, kernel_size, bias=bias)


def _norm_act(
    channels: int,
    use_bn: bool,
    bn_first: bool,
    bn_name: str,
    act_name: str,
    act: str,
) -> list[tuple[str, nn.Module]]:
    """[BN, act] or [act, BN] (or just [act]), named like SLEAP's Keras layers."""
    layers: list[tuple[str, nn.Module]] = []
    if use_bn and bn_first:
        layers.append((bn_name, batch_norm(channels)))
    layers.append((act_name, activation(act)))
    if use_bn and not bn_first:
        layers.append((bn_name, batch_norm(channels)))
    return layers


# --------------------------------------------------------------------------- backbone


@dataclass
class BlockSpec:
    """A block before it is built: its class and its seed keyword arguments.

    This is SLEAP's declarative block (an attrs instance) split from the module: building
    needs the input channels, which only `EncoderDecoder.build` knows.
    """

    cls: type
    kwargs: dict[str, Any] = field(default_factory=dict)


class EncoderDecoder(Backbone):
    """Stem -> (encoder -> decoder) x stacks, with skips matched by stride.

    Subclasses describe their blocks with `stem_block_specs`, `encoder_block_specs` and
    `decoder_block_specs` and call `build(in_channels)` at the end of `__init__`. Building
    follows SLEAP's `make_backbone`:

    - the stem runs once (`stem{i}` layers); its output is a skip source at its stride;
    - each encoder block's output is a skip source at its output stride (the first block
      reaching a stride wins; the deepest stride is dropped);
    - each decoder block takes the first source at its target stride (stem first), and
      its input is recorded as an intermediate feature at its input stride.

    The built block lists are `stem_stack`, `encoder_stack` and `decoder_stack` (those of
    the first stack), and every stride is derived from them.
    """

    def __init__(self, stacks: int = 1) -> None:
        super().__init__()
        self.stacks = int(stacks)
        if self.stacks < 1:
            raise PosekitError(f"stacks={stacks} must be >= 1")
        self.stem: nn.ModuleList | None = None
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        # Per stack, per decoder block: where its skip comes from (-1: stem output,
        # j >= 0: output of encoder block j, None: no skip).
        self._skip_sources: list[list[int | None]] = []
        self._feature_channels: dict[int, int] = {}

    # ---- description, to be provided by subclasses

    def stem_block_specs(self) -> list[BlockSpec] | None:
        """Blocks of the stem (run once, not repeated per stack); None for no stem."""
        return None

    def encoder_block_specs(self) -> list[BlockSpec]:
        """Blocks of one encoder."""
        raise NotImplementedError("EncoderDecoder subclasses must define encoder blocks")

    def decoder_block_specs(self) -> list[BlockSpec]:
        """Blocks of one decoder."""
        raise NotImplementedError("EncoderDecoder subclasses must define decoder blocks")

    # ---- the seed's block lists and derived strides

    @property
    def stem_stack(self) -> nn.ModuleList | None:
        """Built stem blocks (None without a stem)."""
        return self.stem

    @property
    def encoder_stack(self) -> nn.ModuleList:
        """Built encoder blocks of the first stack."""
        return self.encoders[0]

    @property
    def decoder_stack(self) -> nn.ModuleList:
        """Built decoder blocks of the first stack."""
        return self.decoders[0]

    @property
    def stem_features_stride(self) -> int:
        """Stride of the stem's output relative to the input."""
        if self.stem_stack is None:
            return 1
        return math.prod([b.stride_factor for b in self.stem_stack])

    @property
    def encoder_features_stride(self) -> int:
        """Stride of the encoder's output relative to the input."""
        return self.stem_features_stride * math.prod([b.stride_factor for b in self.encoder_stack])

    @property
    def decoder_features_stride(self) -> int:
        """Stride of the decoder's output relative to the input."""
        return self.encoder_features_stride // math.prod(
            [b.upsampling_stride for b in self.decoder_stack]
        )

    @property
    def maximum_stride(self) -> int:
        """What the input height and width must be divisible by."""
        return self.encoder_features_stride

    @property
    def output_stride(self) -> int:
        """Stride of the backbone's output."""
        return self.decoder_features_stride

    @property
    def feature_channels(self) -> dict[int, int]:
        """`{stride: channels}` of the decoder's intermediate features and the output."""
        return dict(self._feature_channels)

    # ---- construction

    def build(self, in_channels: int) -> None:
        """Instantiate every block, wiring channels and skip sources by stride."""
        channels = int(in_channels)
        stem_sources: list[tuple[int, int, int]] = []  # (stride, channels, -1)
        specs = self.stem_block_specs()
        if specs is not None:
            blocks = []
            for i, spec in enumerate(specs):
                block = spec.cls(channels, prefix=f"stem{i}", **spec.kwargs)
                channels = block.out_channels
                blocks.append(block)
            self.stem = nn.ModuleList(blocks)
            stem_sources = [(self.stem_features_stride, channels, -1)]

        for s in range(self.stacks):
            # Encoder.
            stride = self.stem_features_stride
            enc_blocks = []
            enc_sources: list[tuple[int, int, int]] = []
            for i, spec in enumerate(self.encoder_block_specs()):
                block = spec.cls(channels, prefix=f"stack{s}_enc{i}", **spec.kwargs)
                channels = block.out_channels
                enc_blocks.append(block)
                stride *= block.stride_factor
                if stride not in [src[0] for src in enc_sources]:
                    enc_sources.append((stride, channels, i))
            self.encoders.append(nn.ModuleList(enc_blocks))
            sources = stem_sources + enc_sources[:-1]

            # Decoder.
            dec_blocks = []
            skips: list[int | None] = []
            features: dict[int, int] = {}
            for i, spec in enumerate(self.decoder_block_specs()):
                features[stride] = channels
                next_stride = stride // spec.kwargs.get(
                    "upsampling_stride", _default(spec.cls, "upsampling_stride")
                )
                src = next((src for src in sources if src[0] == next_stride), None)
                block = spec.cls(
                    channels,
                    skip_channels=None if src is None else src[1],
                    prefix=f"stack{s}_dec{i}",
                    current_stride=stride,
                    **spec.kwargs,
                )
                skips.append(src[2] if (src is not None and block.uses_skip) else None)
                dec_blocks.append(block)
                channels = block.out_channels
                stride //= block.upsampling_stride
            features[stride] = channels
            self.decoders.append(nn.ModuleList(dec_blocks))
            self._skip_sources.append(skips)
            if s == 0:
                self._feature_channels = features
                if self.stacks > 1 and self.stem_features_stride != self.decoder_features_stride:
                    raise PosekitError(
                        f"{type(self).__name__}: stacks={self.stacks} needs the decoder to "
                        f"return to the stem's stride ({self.stem_features_stride}) so the "
                        f"next stack can start there, but the output stride is "
                        f"{self.decoder_features_stride}. Use a stem (stem_stride) for "
                        f"initial downsampling if an output stride > 1 is wanted, or stacks=1."
                    )

    # ---- forward

    def forward_features(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """Per stack: `{stride: tensor}` of each decoder block's input and the output."""
        check_input_size(x, self.maximum_stride)
        stem_out = None
        if self.stem is not None:
            for block in self.stem:
                x = block(x)
            stem_out = x
        results = []
        for s in range(self.stacks):
            wanted = {j for j in self._skip_sources[s] if j is not None and j >= 0}
            kept: dict[int, torch.Tensor] = {}
            for i, block in enumerate(self.encoders[s]):
                x = block(x)
                if i in wanted:
                    kept[i] = x
            stride = self.encoder_features_stride
            feats: dict[int, torch.Tensor] = {}
            for i, block in enumerate(self.decoders[s]):
                feats[stride] = x
                j = self._skip_sources[s][i]
                skip = None if j is None else (stem_out if j < 0 else kept[j])
                x = block(x, skip)
                stride //= block.upsampling_stride
            feats[stride] = x
            results.append(feats)
        return results


__all__ = [
    "BlockSpec",
    "DecoderBlock",
    "EncoderBlock",
    "EncoderDecoder",
    "Interpolate",
    "SimpleConvBlock",
    "SimpleUpsamplingBlock",
]
