"""ResNet v1 backbones (50/101/152) as SLEAP builds them, with optional upsampling decoder.

Structure follows Keras applications' ResNet (what SLEAP's `resnet.py` reimplements):

- stem: `conv1_conv` 7x7 stride 2 (zero padding 3) -> `conv1_bn` -> ReLU ->
  `pool1_pool` 3x3 stride 2 (padding 1);
- four stacks `conv2`..`conv5` of bottleneck blocks `convN_blockM`: 1x1 (`_1_conv`),
  3x3 (`_2_conv`), 1x1 (`_3_conv`), each with BatchNorm (`_k_bn`, epsilon 1.001e-5), a
  projection shortcut (`_0_conv`, `_0_bn`) in the first block of each stack, and ReLU
  after the addition. Version 1 puts the stride on the *first 1x1* conv of a block (as
  Keras), not on the 3x3 (torchvision's "v1.5"). Every conv has a bias.

Every weighted module's last name component is the Keras layer name, so the Keras
applications ImageNet file and SLEAP `.h5` files load by name
(`posekit.io.keras_h5.load_keras_weights`).

Output stride (`max_stride` < 32), SLEAP's quirk: SLEAP lowers the stride DeepLab-style by
giving the first block of the later stacks stride 1 and a dilation rate that doubles per
skipped stride. But the dilation is set only on that block's 1x1 convolutions (`_0_conv`
and `_1_conv`), where dilating changes nothing; the 3x3 conv keeps dilation 1. So the
receptive field shrinks instead of being preserved. posekit reproduces the layers exactly
(including the meaningless dilation on the 1x1 convs) so that weights and outputs match.

Pretrained weights (`weights="frozen"` or `"tunable"`): SLEAP then (1) tiles a grayscale
input to 3 channels and (2) applies Caffe-style ImageNet preprocessing, inputs in [0, 1]:
`x * 255`, RGB -> BGR, minus the BGR means (103.939, 116.779, 123.68). Both are done in
`ImageNetPreprocess` inside the module. `"frozen"` stops gradients to the encoder and,
because Keras runs a non-trainable BatchNormalization in inference mode, keeps the
encoder's BatchNorm layers in eval mode even when the model is in training mode (their
running statistics never change).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from posekit.architectures.common import Backbone, batch_norm, check_input_size, init_keras_
from posekit.architectures.upsampling import UpsamplingStack
from posekit.errors import PosekitError

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import ResNetConfig, UpsamplingConfig

RESNET_BN_EPS = 1.001e-5
"""BatchNorm epsilon of Keras applications' ResNets (and SLEAP's)."""

IMAGENET_BGR_MEANS = (103.939, 116.779, 123.68)
"""Caffe ImageNet channel means, BGR order, on the 0-255 scale."""

STACK_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "ResNet50": [
        dict(filters=64, blocks=3, stride1=1, name="conv2"),
        dict(filters=128, blocks=4, stride1=2, name="conv3"),
        dict(filters=256, blocks=6, stride1=2, name="conv4"),
        dict(filters=512, blocks=3, stride1=2, name="conv5"),
    ],
    "ResNet101": [
        dict(filters=64, blocks=3, stride1=1, name="conv2"),
        dict(filters=128, blocks=4, stride1=2, name="conv3"),
        dict(filters=256, blocks=23, stride1=2, name="conv4"),
        dict(filters=512, blocks=3, stride1=2, name="conv5"),
    ],
    "ResNet152": [
        dict(filters=64, blocks=3, stride1=1, name="conv2"),
        dict(filters=128, blocks=8, stride1=2, name="conv3"),
        dict(filters=256, blocks=36, stride1=2, name="conv4"),
        dict(filters=512, blocks=3, stride1=2, name="conv5"),
    ],
}
"""Per version: the stacks (bottleneck filters, blocks, stride of the first block, name)."""

WEIGHTS_CHOICES = ("random", "frozen", "tunable")


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    # Keras "same" for the 3x3 (stride 1): symmetric padding 1; the 1x1s are "valid".
    return nn.Conv2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, dilation=dilation, bias=True
    )


class ImageNetPreprocess(nn.Module):
    """SLEAP's input preprocessing for ImageNet-pretrained ResNets.

    Grayscale (1-channel) input is tiled to 3 channels (`tile_channels`), then Caffe
    normalisation is applied (`imagenet_preproc_v1`): values in [0, 1] are scaled to
    [0, 255], channels reversed to BGR and the BGR ImageNet means subtracted.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise PosekitError(
                f"ImageNet-pretrained ResNet weights need 1 (grayscale, tiled to RGB) or 3 "
                f"(RGB) input channels, got in_channels={in_channels}; use weights='random' "
                f"for other inputs"
            )
        self.in_channels = in_channels
        self.register_buffer(
            "bgr_means", torch.tensor(IMAGENET_BGR_MEANS).view(1, 3, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x.flip(1) * 255.0 - self.bgr_means.to(x.dtype)


class BottleneckV1(nn.Module):
    """One ResNet v1 bottleneck block (`convN_blockM`), layers named as in Keras."""

    def __init__(
        self,
        in_channels: int,
        filters: int,
        stride: int = 1,
        dilation: int = 1,
        conv_shortcut: bool = True,
        name: str = "block",
    ) -> None:
        super().__init__()
        self.name = name
        self.conv_shortcut = conv_shortcut
        out = 4 * filters
        layers: list[tuple[str, nn.Module]] = []
        if conv_shortcut:
            layers += [
                (f"{name}_0_conv", _conv(in_channels, out, 1, stride, dilation)),
                (f"{name}_0_bn", batch_norm(out, RESNET_BN_EPS)),
            ]
        layers += [
            (f"{name}_1_conv", _conv(in_channels, filters, 1, stride, dilation)),
            (f"{name}_1_bn", batch_norm(filters, RESNET_BN_EPS)),
            (f"{name}_2_conv", _conv(filters, filters, 3)),
            (f"{name}_2_bn", batch_norm(filters, RESNET_BN_EPS)),
            (f"{name}_3_conv", _conv(filters, out, 1)),
            (f"{name}_3_bn", batch_norm(out, RESNET_BN_EPS)),
        ]
        for key, module in layers:
            self.add_module(key, module)
        self.out_channels = out

    def _layer(self, suffix: str) -> nn.Module:
        return getattr(self, f"{self.name}_{suffix}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.conv_shortcut:
            shortcut = self._layer("0_bn")(self._layer("0_conv")(x))
        else:
            shortcut = x
        x = torch.relu(self._layer("1_bn")(self._layer("1_conv")(x)))
        x = torch.relu(self._layer("2_bn")(self._layer("2_conv")(x)))
        x = self._layer("3_bn")(self._layer("3_conv")(x))
        return torch.relu(shortcut + x)


class ResNetEncoder(nn.Module):
    """Stem + residual stacks, with SLEAP's stride/dilation adjustment for `max_stride`.

    `stage_features(x)` returns `[(stride, tensor)]` after each stack (`convN_blockM_out`
    in Keras), the skip sources SLEAP offers its decoder.
    """

    def __init__(
        self,
        in_channels: int,
        stack_configs: list[dict[str, Any]],
        max_stride: int = 32,
        stem_filters: int = 64,
    ) -> None:
        super().__init__()
        if max_stride not in (1, 2, 4, 8, 16, 32):
            raise PosekitError(f"ResNet max_stride={max_stride} must be one of 1, 2, 4, 8, 16, 32")
        self.max_stride = max_stride
        # SLEAP shortens the stem for tiny output strides.
        stem_stride1 = 1 if max_stride == 1 else 2
        stem_stride2 = 1 if max_stride <= 2 else 2
        self.conv1_conv = nn.Conv2d(
            in_channels, stem_filters, 7, stride=stem_stride1, padding=3, bias=True
        )
        self.conv1_bn = batch_norm(stem_filters, RESNET_BN_EPS)
        # Keras zero-pads then max-pools; after a ReLU (values >= 0) that equals -inf padding.
        self.pool1_pool = nn.MaxPool2d(3, stride=stem_stride2, padding=1)

        stride = stem_stride1 * stem_stride2
        dilation = 1
        channels = stem_filters
        self.stage_strides: list[int] = []
        self.stage_channels: list[int] = []
        stacks = []
        for cfg in stack_configs:
            stride1 = int(cfg["stride1"])
            if stride < max_stride:
                stride *= stride1
            elif stride == max_stride:
                # SLEAP: no more striding; "dilate" instead (only the 1x1 convs, see module doc).
                if stride1 > 1:
                    dilation *= 2
                stride1 = 1
            else:  # pragma: no cover - unreachable with max_stride >= stem stride
                raise PosekitError(f"cannot reach max_stride={max_stride}")
            name = cfg["name"]
            blocks = []
            for b in range(1, int(cfg["blocks"]) + 1):
                first = b == 1
                block = BottleneckV1(
                    channels,
                    int(cfg["filters"]),
                    stride=stride1 if first else 1,
                    dilation=dilation if first else 1,
                    conv_shortcut=first,
                    name=f"{name}_block{b}",
                )
                channels = block.out_channels
                blocks.append((block.name, block))
            stacks.append((name, nn.Sequential(OrderedDict(blocks))))
            self.stage_strides.append(stride)
            self.stage_channels.append(channels)
        self.stages = nn.Sequential(OrderedDict(stacks))
        self.out_channels = channels
        self.output_stride = stride

    def stage_features(self, x: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """`[(stride, output)]` of every stack, shallowest first."""
        x = torch.relu(self.conv1_bn(self.conv1_conv(x)))
        x = self.pool1_pool(x)
        feats = []
        for stride, stack in zip(self.stage_strides, self.stages):
            x = stack(x)
            feats.append((stride, x))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.stage_features(x)[-1][1]


class ResNetv1(Backbone):
    """SLEAP's `ResNetv1` backbone: ResNet50/101/152 encoder + optional `UpsamplingStack`.

    Args:
        version: "ResNet50", "ResNet101" or "ResNet152".
        weights: "random" (Keras-style Glorot init), "tunable" (ImageNet weights, trained
            further) or "frozen" (ImageNet weights, no gradients, BatchNorm kept in eval
            mode). Pretrained weights add SLEAP's input preprocessing (module doc).
        upsampling: an `UpsamplingConfig` for the decoder, or None for the bare encoder.
        max_stride: stride of the encoder output (SLEAP's `features_output_stride`);
            below 32 the later stacks stop striding (SLEAP's 1x1 "dilation", module doc).
        output_stride: stride of the decoder output. Ignored without `upsampling`, as in
            SLEAP: the output is then the encoder's, at `max_stride`.
        in_channels: input channels (1 for grayscale). Pretrained weights accept 1 or 3.
        stack_configs: override the version's stacks (list of dicts with `filters`,
            `blocks`, `stride1`, `name`), e.g. for a tiny test network.
        weights_path: explicit local Keras `.h5` (or a folder holding it) with the
            ImageNet weights; otherwise `posekit.architectures.weights` resolves/downloads
            the Keras applications file.
        load_weights: set False to build a pretrained-layout model without loading the
            file (weights are also skipped on the meta device, where nothing can be loaded).

    The decoder takes skips (when `upsampling.skip_connections` is set) from the outputs
    of the stacks `conv2`..`conv5` (strides 4..32), the first stack reaching a stride
    winning, exactly as SLEAP (which skips the stem features). `forward_features` returns
    `[{stride: tensor}]`: the decoder input (encoder output), every upsampling step and
    the output; without decoder just `{max_stride: encoder output}`.
    """

    stacks = 1

    def __init__(
        self,
        version: str = "ResNet50",
        weights: str = "random",
        upsampling: UpsamplingConfig | None = None,
        max_stride: int = 32,
        output_stride: int = 4,
        in_channels: int = 1,
        *,
        stack_configs: list[dict[str, Any]] | None = None,
        weights_path: str | Path | None = None,
        load_weights: bool = True,
    ) -> None:
        super().__init__()
        if version not in STACK_CONFIGS:
            raise PosekitError(
                f"ResNet version={version!r} is not known; use one of {', '.join(STACK_CONFIGS)}"
            )
        if weights not in WEIGHTS_CHOICES:
            raise PosekitError(
                f"ResNet weights={weights!r} is not allowed; use one of {', '.join(WEIGHTS_CHOICES)}"
            )
        self.version = version
        self.weights = weights
        self.model_name = version.lower()
        self.stack_configs = [dict(c) for c in (stack_configs or STACK_CONFIGS[version])]
        self.features_output_stride = int(max_stride)
        self.in_channels = int(in_channels)
        self.pretrained = weights != "random"
        self.frozen = weights == "frozen"
        self.skip_connections = upsampling is not None and upsampling.skip_connections is not None

        self.preprocess = ImageNetPreprocess(self.in_channels) if self.pretrained else None
        encoder_in = 3 if self.pretrained else self.in_channels
        self.encoder = ResNetEncoder(encoder_in, self.stack_configs, self.features_output_stride)
        init_keras_(self.encoder)

        self.upsampling_stack: UpsamplingStack | None = None
        if upsampling is not None:
            skip_channels: dict[int, int] = {}
            for stride, ch in zip(self.encoder.stage_strides, self.encoder.stage_channels):
                skip_channels.setdefault(stride, ch)
            self.upsampling_stack = UpsamplingStack.from_config(
                upsampling,
                output_stride=int(output_stride),
                in_channels=self.encoder.out_channels,
                current_stride=self.encoder.output_stride,
                skip_channels=skip_channels if self.skip_connections else None,
            )
            init_keras_(self.upsampling_stack)

        if self.pretrained and load_weights and not self._on_meta():
            from posekit.architectures.weights import load_resnet_imagenet_weights

            load_resnet_imagenet_weights(self, path=weights_path)
        if self.frozen:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            self.encoder.eval()

    # ---- construction from config

    @classmethod
    def from_config(
        cls,
        config: ResNetConfig,
        in_channels: int = 1,
        *,
        weights_path: str | Path | None = None,
        load_weights: bool = True,
    ) -> ResNetv1:
        """Build from a `ResNetConfig` (SLEAP's `ResNetv1.from_config`)."""
        return cls(
            version=config.version,
            weights=config.weights,
            upsampling=config.upsampling,
            max_stride=config.max_stride,
            output_stride=config.output_stride,
            in_channels=in_channels,
            weights_path=weights_path,
            load_weights=load_weights,
        )

    # ---- contract

    @property
    def maximum_stride(self) -> int:
        """Input height and width must be divisible by this."""
        return self.features_output_stride

    @property
    def output_stride(self) -> int:
        """Stride of the output: the decoder's, or the encoder's without decoder."""
        if self.upsampling_stack is not None:
            return self.upsampling_stack.output_stride
        return self.encoder.output_stride

    @property
    def feature_channels(self) -> dict[int, int]:
        """`{stride: channels}` of the entries of `forward_features`."""
        if self.upsampling_stack is not None:
            return self.upsampling_stack.feature_channels
        return {self.encoder.output_stride: self.encoder.out_channels}

    def train(self, mode: bool = True) -> ResNetv1:
        """Training mode everywhere except a frozen encoder, whose BatchNorm stays in eval."""
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def _on_meta(self) -> bool:
        return any(p.is_meta for p in self.encoder.parameters())

    def forward_features(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """`[{stride: tensor}]`: decoder input, each upsampling step, output."""
        check_input_size(x, self.maximum_stride)
        if self.preprocess is not None:
            x = self.preprocess(x)
        stages = self.encoder.stage_features(x)
        enc_out = stages[-1][1]
        if self.upsampling_stack is None:
            return [{self.encoder.output_stride: enc_out}]
        skips: dict[int, torch.Tensor] = {}
        if self.skip_connections:
            for stride, t in stages:
                skips.setdefault(stride, t)
        _, feats = self.upsampling_stack(enc_out, skips)
        return [feats]


class ResNet50(ResNetv1):
    """ResNetv1 with 3, 4, 6 and 3 bottleneck blocks."""

    def __init__(self, **kwargs) -> None:
        super().__init__(version="ResNet50", **kwargs)


class ResNet101(ResNetv1):
    """ResNetv1 with 3, 4, 23 and 3 bottleneck blocks."""

    def __init__(self, **kwargs) -> None:
        super().__init__(version="ResNet101", **kwargs)


class ResNet152(ResNetv1):
    """ResNetv1 with 3, 8, 36 and 3 bottleneck blocks."""

    def __init__(self, **kwargs) -> None:
        super().__init__(version="ResNet152", **kwargs)


__all__ = [
    "IMAGENET_BGR_MEANS",
    "RESNET_BN_EPS",
    "STACK_CONFIGS",
    "BottleneckV1",
    "ImageNetPreprocess",
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "ResNetEncoder",
    "ResNetv1",
]
