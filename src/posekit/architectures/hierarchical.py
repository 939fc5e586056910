"""What ConvNeXt and Swin share: sleap-nn's layout of a 4-stage encoder under a UNet decoder.

sleap-nn 0.3.5 builds both the same way, and so does this module, on posekit's
`EncoderDecoder` (strides and skips are bookkept by it, every intermediate feature is
reported by stride):

- stem (`stem0`): a patch convolution (kernel `stem_patch_kernel` / `patch_size`, stride
  `stem_patch_stride`, padding 1) and a LayerNorm; its output is the skip at stride s.
- encoder blocks `stack0_enc0..6`: stage 0, downsampling 0, stage 1, ..., stage 3. The
  skips at strides 2s, 4s, 8s are the *downsampling* outputs (not the stages'), as in
  sleap-nn, so each encoder block is one stage or one downsampling.
- the middle (`stack0_enc7`, `stack0_enc8`): a 2x2 max pool to stride 16s, then
  `convs_per_block - 1` "expand" convolutions to `channels[-1] * filters_rate` filters
  and one "contract" convolution with as many (kernel `kernel_size`, ReLU, no norm).
- decoder blocks `stack0_dec{i}`: x2 upsampling (bilinear, or a 3x3 transposed conv
  cropped the PyTorch way with `up_interpolate=False`), concatenation `[skip, x]` with
  the skip at the new stride, 2 refinement convs (whatever `convs_per_block` says:
  sleap-nn passes it only to the middle) with
  `channels[0] * filters_rate ** (3 - i)` filters (at least `channels[0]`); below the
  stem's stride there is no skip and one refinement conv. They run down to
  `output_stride`.

The network's maximum stride is `16 * stem_patch_stride` (32 by default).

Weights from sleap-nn load with `sleap_nn_state_dict(backbone, state_dict)`: its
`enc.features.{i}.*` (torchvision's layout, also the ImageNet files'), `enc.norm`,
`middle_blocks.*` and `dec.decoder_stack.*` keys are renamed by the table that
`sleap_nn_key_map(backbone)` returns (sleap-nn module -> posekit module, one entry per
weighted module; the names below the module are the same: they are torchvision's).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from posekit.architectures.common import _SKIP_IMAGENET
from posekit.architectures.encoder_decoder import (
    BlockSpec,
    EncoderBlock,
    EncoderDecoder,
    SimpleConvBlock,
    SimpleUpsamplingBlock,
)
from posekit.errors import PosekitError

STAGES = 4
# sleap-nn 0.3.5 does not hand `convs_per_block` to these decoders: always 2 refinements.
DECODER_CONVS = 2


class LayerBlock(EncoderBlock):
    """An encoder block that runs `layers` (an ordered list of named modules) in turn.

    `sleap_nn_names` holds, per layer, the sleap-nn module it corresponds to (None for
    layers without weights), which is what `sleap_nn_key_map` reads.
    """

    def __init__(
        self,
        layers: list[tuple[str, nn.Module]],
        out_channels: int,
        stride_factor: int = 1,
        sleap_nn_names: list[str | None] | None = None,
    ) -> None:
        super().__init__(pool=stride_factor > 1, pooling_stride=max(stride_factor, 1))
        self.layers = nn.Sequential(OrderedDict(layers))
        self.out_channels = int(out_channels)
        self.sleap_nn_names = list(sleap_nn_names or [None] * len(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


class HierarchicalUNet(EncoderDecoder):
    """Base of `ConvNeXt` and `SwinT`: subclasses provide the stem, stages and downsamplings.

    Subclasses set `self.stage_channels` (4 ints), implement `stem_block`,
    `stage_block(k)` and `down_block(k)` (each returns a `LayerBlock` whose
    `sleap_nn_names` say where its weights live in sleap-nn), then call
    `self.build(in_channels)`.
    """

    def __init__(
        self,
        stem_patch_stride: int = 2,
        kernel_size: int = 3,
        filters_rate: float = 2,
        convs_per_block: int = 2,
        up_interpolate: bool = True,
        output_stride: int = 1,
    ) -> None:
        super().__init__(stacks=1)
        stem_stride = stem_patch_stride
        self.kernel_size = int(kernel_size)
        self.filters_rate = filters_rate
        self.convs_per_block = int(convs_per_block)
        self.up_interpolate = bool(up_interpolate)
        self.stem_stride = int(stem_stride)
        self.target_output_stride = int(output_stride)
        self.stage_channels: list[int] = []
        if self.target_output_stride > 16 * self.stem_stride:
            raise PosekitError(
                f"output_stride={output_stride} is larger than the maximum stride "
                f"{16 * self.stem_stride}; use at most that"
            )

    @staticmethod
    def decoder_settings(config) -> dict:
        """The constructor arguments that ConvNeXt and Swin configs share."""
        names = ("stem_patch_stride", "kernel_size", "filters_rate", "convs_per_block")
        return {n: getattr(config, n) for n in names} | {
            "up_interpolate": config.up_interpolate,
            "output_stride": config.output_stride,
        }

    # ---- provided by subclasses: LayerBlock(...) for each part

    def stem_block(
        self, in_channels: int, prefix: str
    ) -> LayerBlock:  # pragma: no cover - abstract
        raise NotImplementedError

    def stage_block(self, k: int, prefix: str) -> LayerBlock:  # pragma: no cover - abstract
        raise NotImplementedError

    def down_block(self, k: int, prefix: str) -> LayerBlock:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- the EncoderDecoder description

    def stem_block_specs(self) -> list[BlockSpec]:
        return [BlockSpec(lambda c, prefix: self.stem_block(c, prefix))]

    def encoder_block_specs(self) -> list[BlockSpec]:
        specs = []
        for k in range(STAGES):
            specs.append(BlockSpec(lambda c, prefix, k=k: self.stage_block(k, prefix)))
            if k < STAGES - 1:
                specs.append(BlockSpec(lambda c, prefix, k=k: self.down_block(k, prefix)))
        wide = int(self.stage_channels[-1] * self.filters_rate)
        middle = []
        if self.convs_per_block > 1:
            middle.append(("_middle_expand", self.convs_per_block - 1))
        middle.append(("_middle_contract", 1))
        for i, (name, convs) in enumerate(middle):
            kwargs = dict(
                pool=i == 0,
                pool_before_convs=True,
                num_convs=convs,
                filters=wide,
                kernel_size=self.kernel_size,
                batch_norm=False,
                block_prefix=name,
            )
            specs.append(BlockSpec(SimpleConvBlock, kwargs))
        return specs

    def decoder_block_specs(self) -> list[BlockSpec]:
        specs = []
        deepest = 16 * self.stem_stride
        for i in range(int(math.log2(deepest // self.target_output_stride))):
            target = deepest // 2 ** (i + 1)
            filters = int(self.stage_channels[0] * self.filters_rate ** max(0, STAGES - 1 - i))
            has_skip = target >= self.stem_stride
            specs.append(
                BlockSpec(
                    SimpleUpsamplingBlock,
                    dict(
                        transposed_conv=not self.up_interpolate,
                        transposed_conv_filters=filters,
                        transposed_conv_kernel_size=3,
                        transposed_conv_batch_norm=False,
                        transposed_conv_crop="torch",
                        interp_method="bilinear",
                        skip_connection=has_skip,
                        refine_convs=DECODER_CONVS if has_skip else 1,
                        refine_convs_filters=filters,
                        refine_convs_kernel_size=self.kernel_size,
                        refine_convs_batch_norm=False,
                    ),
                )
            )
        return specs

    # ---- sleap-nn and ImageNet weights

    def sleap_nn_key_map(self) -> dict[str, str]:
        """sleap-nn module name -> posekit module name, for every module with weights."""
        table: dict[str, str] = {}
        blocks = [("stem.0", self.stem[0])] + [
            (f"encoders.0.{i}", b) for i, b in enumerate(self.encoder_stack)
        ]
        for path, block in blocks:
            if isinstance(block, LayerBlock):
                for (name, _), source in zip(
                    block.layers.named_children(), block.sleap_nn_names, strict=True
                ):
                    if source is not None:
                        table[source] = f"{path}.layers.{name}"
        middle = [(p, b) for p, b in blocks if isinstance(b, SimpleConvBlock)]
        for m, (path, block) in enumerate(middle):
            kind = "expand" if block.block_prefix == "_middle_expand" else "contract"
            for name, layer in block.layers.named_children():
                if isinstance(layer, nn.Conv2d):
                    conv = name.rsplit("_", 1)[-1]  # conv{i}
                    table[f"middle_blocks.{m}.blocks.convnext_middle_{kind}_{conv}"] = (
                        f"{path}.layers.{name}"
                    )
        for i, block in enumerate(self.decoder_stack):
            theirs = block.prefix.replace("stack0_dec", "dec", 1)
            for part in ("upsample", "refine"):
                for name, layer in getattr(block, part).named_children():
                    if any(True for _ in layer.parameters()):
                        their_name = name.replace(block.prefix, theirs, 1)
                        table[f"dec.decoder_stack.{i}.blocks.{their_name}"] = (
                            f"{path_of(self, layer)}"
                        )
        return table

    def load_imagenet_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """torchvision's ImageNet encoder weights (`features.*`, `norm.*`) into the encoder.

        A 1-channel stem gets the RGB kernels summed: the same output as tiling the
        grayscale image to RGB, which is what sleap-nn feeds its ImageNet stems.
        """
        renamed = sleap_nn_state_dict(
            self, {f"enc.{k}": v for k, v in state_dict.items()}, prefix_filter="enc."
        )
        name, stem_conv = next(iter(self.stem[0].layers.named_children()))
        key = f"stem.0.layers.{name}.weight"
        weight = renamed.get(key)
        if weight is not None and weight.shape[1] != stem_conv.in_channels:
            if stem_conv.in_channels != 1 or weight.shape[1] != 3:
                raise PosekitError(
                    f"ImageNet weights have a {weight.shape[1]}-channel stem but the input has "
                    f"{stem_conv.in_channels} channels; use 1 (grayscale) or 3 (RGB)"
                )
            renamed[key] = weight.sum(dim=1, keepdim=True)
        missing, _ = self.load_state_dict(renamed, strict=False)
        not_loaded = [
            k
            for k in missing
            if k.startswith(("stem.", "encoders.0.")) and (not _is_middle(self, k))
        ]
        if not_loaded:
            raise PosekitError(
                f"the ImageNet weights do not fit this encoder ({len(not_loaded)} tensors "
                f"missing, e.g. {not_loaded[0]}); use a preset model_type with them"
            )

    def maybe_load_imagenet(self, weights_name: str | None) -> None:
        """Fetch torchvision's weights `weights_name` (its download and cache) and load them."""
        if weights_name is None or _SKIP_IMAGENET.get() or self.stem[0].layers[0].weight.is_meta:
            return
        import torchvision.models as tvm

        weights = getattr(tvm, weights_name).DEFAULT
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as err:  # network and cache failures come as many types
            raise PosekitError(
                f"could not fetch ImageNet weights {weights_name} ({type(err).__name__}: "
                f"{str(err)[:200]}) from {weights.url}; without network, copy that file into "
                f"the torch hub cache ({torch.hub.get_dir()}/checkpoints) or set "
                f"pre_trained_weights: null"
            ) from err
        self.load_imagenet_state_dict(state)


def _is_middle(backbone: HierarchicalUNet, key: str) -> bool:
    return any(
        key.startswith(f"encoders.0.{i}.")
        for i, b in enumerate(backbone.encoder_stack)
        if isinstance(b, SimpleConvBlock)
    )


def path_of(root: nn.Module, module: nn.Module) -> str:
    """The dotted name of `module` inside `root`."""
    for name, m in root.named_modules():
        if m is module:
            return name
    raise KeyError(type(module).__name__)  # pragma: no cover - callers pass submodules


def sleap_nn_key_map(backbone: HierarchicalUNet) -> dict[str, str]:
    """sleap-nn module name -> posekit module name (see `HierarchicalUNet.sleap_nn_key_map`)."""
    return backbone.sleap_nn_key_map()


def sleap_nn_state_dict(
    backbone: HierarchicalUNet,
    state_dict: Mapping[str, torch.Tensor],
    prefix_filter: str | None = None,
) -> dict[str, torch.Tensor]:
    """A sleap-nn backbone state dict (keys without `model.backbone.`) in posekit's names.

    Keys are renamed by `backbone.sleap_nn_key_map()`: the longest sleap-nn module name
    that a key starts with is replaced by the posekit module name. A key that no entry
    covers is an error (it would be a weight silently left at its initial value), unless
    `prefix_filter` is given: then only keys starting with it are taken.
    """
    table = backbone.sleap_nn_key_map()
    ordered = sorted(table, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if prefix_filter is not None and not key.startswith(prefix_filter):
            continue
        source = next((s for s in ordered if key.startswith(s + ".")), None)
        if source is None:
            unknown.append(key)
            continue
        out[table[source] + key[len(source) :]] = value
    if unknown and prefix_filter is None:
        raise PosekitError(
            f"{len(unknown)} sleap-nn weights have no place in this {type(backbone).__name__} "
            f"(e.g. {unknown[0]}); is the config the one the weights were trained with?"
        )
    return out


__all__ = [
    "HierarchicalUNet",
    "LayerBlock",
    "path_of",
    "sleap_nn_key_map",
    "sleap_nn_state_dict",
]
