"""UNet with an ImageNet-pretrained encoder (SLEAP's `UnetPretrainedEncoder`).

SLEAP builds this backbone with the Keras `segmentation_models` package: a classification
network without its classifier as encoder, and a UNet decoder whose block `i` upsamples
by 2 (nearest), concatenates `[upsampled, skip]` with the encoder feature at the new
stride (strides 16, 8, 4, 2; none at stride 1) and applies two 3x3 conv -> BatchNorm ->
ReLU layers (`decoder_stage{i}a`, `decoder_stage{i}b`; convs without bias when followed
by BatchNorm, He-uniform init). VGG encoders, which end in a max-pool, get a "center"
of two such 512-filter layers first. The number of decoder blocks sets the output
stride: `log2(32 / output_stride)`, with `decoder_filters * decoder_filters_rate ** i`
filters in block `i`. The decoder modules carry those Keras layer names.

Encoders: EfficientNet-B0..B7, MobileNetV2 and ResNet18..152 are rebuilt as the Keras
graphs segmentation_models uses (`keras_encoders.py` and the `keras_*.py` files): same
layers and names, the same decoder skips (e.g. EfficientNet's expansion activations,
1952 input channels in `decoder_stage0a_conv`), TF "same" padding, pre-activation ResNets
with the input BatchNorm. Their parameter counts are SLEAP's and SLEAP-trained weights
import by name (`posekit.io.load_keras_weights`). The other encoders come from
segmentation-models-pytorch (timm through smp's `tu-` wrapper where smp has none): the
PyTorch network of that name, with SLEAP's output shapes and strides; VGG is the same
network in both (exact counts), the others differ (see
`benchmarks/pretrained_encoder_counts.md`).

Input handling follows SLEAP: no ImageNet normalisation is applied (inputs stay in
[0, 1]); with pretrained weights a grayscale input is tiled to 3 channels (SLEAP's
`ensure_rgb`, equivalent to summing the first conv's weights over RGB); without
pretrained weights the first conv takes the input channels directly.

smp and timm are imported only when a model needs them (optional extra `pretrained`).
ImageNet weights (`pretrained=True`): smp/timm's own download code and caches for smp
encoders and for EfficientNet / MobileNetV2, whose smp weights are then copied onto the
Keras layers (`load_imagenet_weights`); SLEAP's own Keras file for the ResNets (torch hub
cache). All work offline once cached, a failed download raises one `PosekitError` that
says what to fetch and where it goes, and `skip_imagenet_weights()` builds the pretrained
structure without fetching anything when a checkpoint will fill the weights.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.common import (
    _SKIP_IMAGENET,
    Backbone,
    batch_norm,
    check_input_size,
    skip_imagenet_weights,
)
from posekit.architectures.keras_encoders import (
    KERAS_ENCODERS,
    KerasEncoder,
    copy_mapped,
)
from posekit.errors import PosekitError, unknown_choice

if TYPE_CHECKING:  # pragma: no cover
    from posekit.config.model import PretrainedEncoderConfig

ENCODER_SOURCES: dict[str, str] = {
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
    "resnext50": "resnext50_32x4d",
    "resnext101": "resnext101_32x4d",
    "inceptionv3": "tu-inception_v3",
    "inceptionresnetv2": "inceptionresnetv2",
    "densenet121": "densenet121",
    "densenet169": "densenet169",
    "densenet201": "densenet201",
    "seresnet18": "tu-legacy_seresnet18",
    "seresnet34": "tu-legacy_seresnet34",
    "seresnet50": "se_resnet50",
    "seresnet101": "se_resnet101",
    "seresnet152": "se_resnet152",
    "seresnext50": "se_resnext50_32x4d",
    "seresnext101": "se_resnext101_32x4d",
    "senet154": "senet154",
    "mobilenet": "tu-mobilenetv1_100",
    "mobilenetv2": "mobilenet_v2",
    **{f"efficientnetb{i}": f"efficientnet-b{i}" for i in range(8)},
}
"""SLEAP encoder name -> segmentation-models-pytorch encoder name (`tu-`: timm model)."""

ENCODER_MAX_STRIDE = 32
CENTER_FILTERS = 512


def _import_smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise PosekitError(
            "pretrained-encoder backbones need segmentation-models-pytorch and timm; "
            "install them with: pip install 'posekit[pretrained]'"
        ) from err
    return smp


def _conv_bn_relu(name: str, in_ch: int, out_ch: int, use_bn: bool) -> nn.Sequential:
    """segmentation_models' `Conv3x3BnReLU`: bias only without BatchNorm, He-uniform init."""
    conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not use_bn)
    nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")  # == Keras he_uniform
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[tuple[str, nn.Module]] = [(f"{name}_conv", conv)]
    if use_bn:
        layers.append((f"{name}_bn", batch_norm(out_ch)))
    layers.append((f"{name}_relu", nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


class DecoderBlock(nn.Module):
    """`decoder_stage{i}`: nearest upsampling to the next stride, skip concat, 2 convs."""

    def __init__(
        self, stage: int, in_channels: int, skip_channels: int, filters: int, use_bn: bool
    ) -> None:
        super().__init__()
        self.stage = stage
        self.skip_channels = skip_channels
        name = f"decoder_stage{stage}"
        self.add_module(
            f"{name}a", _conv_bn_relu(f"{name}a", in_channels + skip_channels, filters, use_bn)
        )
        self.add_module(f"{name}b", _conv_bn_relu(f"{name}b", filters, filters, use_bn))
        self.out_channels = filters

    def forward(
        self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Upsample `x` to `size` (2x for aligned encoders) and fuse `skip` if any."""
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            if tuple(skip.shape[-2:]) != tuple(size):
                # Only encoders with unpadded convs (timm's inception_v3) get here.
                skip = F.interpolate(skip, size=size, mode="bilinear", align_corners=False)
            x = torch.cat([x, skip], dim=1)
        x = getattr(self, f"decoder_stage{self.stage}a")(x)
        return getattr(self, f"decoder_stage{self.stage}b")(x)


class TileChannels(nn.Module):
    """SLEAP's `ensure_rgb`: repeat a single channel 3 times."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _weights_tag(smp_name: str) -> str | None:
    """smp's weights tag for ImageNet ("imagenet", else the first one smp offers)."""
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders[smp_name]["pretrained_settings"]
    return "imagenet" if "imagenet" in settings else next(iter(settings), None)


def _weights_source(smp_name: str) -> str:
    """Human-readable origin of the pretrained weights, for error messages."""
    if smp_name.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(smp_name[3:])
        if cfg is not None and cfg.hf_hub_id:
            return f"Hugging Face repo {cfg.hf_hub_id} (timm {smp_name[3:]})"
        if cfg is not None and cfg.url:
            hub = Path(torch.hub.get_dir()) / "checkpoints" / cfg.url.rsplit("/", 1)[-1]
            return f"{cfg.url} (torch hub cache file {hub})"
        return f"timm {smp_name[3:]}"
    from segmentation_models_pytorch.encoders import encoders

    tag = _weights_tag(smp_name)
    s = encoders[smp_name]["pretrained_settings"][tag]
    return f"Hugging Face repo {s['repo_id']} (revision {s['revision']}, files config.json and model.safetensors)"


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def _read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local `.safetensors`, `.pth` or `.bin` file."""
    if not path.is_file():
        raise PosekitError(f"encoder weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _load_state_file(encoder: nn.Module, path: Path, encoder_name: str) -> None:
    """Load an encoder state dict from a local `.safetensors`, `.pth` or `.bin` file."""
    state = _read_state_file(path)
    problem = "no tensors match"
    for target in (encoder, getattr(encoder, "model", None)):
        if target is None:
            continue
        try:
            # nn.Module's own method: some smp encoders override it without returning.
            result = nn.Module.load_state_dict(target, state, strict=False)
        except RuntimeError as err:  # shape mismatches
            problem = str(err).splitlines()[-1].strip()
            continue
        if not result.missing_keys:
            return
        problem = (
            f"it lacks {len(result.missing_keys)} of the encoder's tensors "
            f"(e.g. {', '.join(result.missing_keys[:3])})"
        )
    raise PosekitError(
        f"{path} does not hold weights for the {encoder_name} encoder: {problem}; pass a "
        f"state dict saved from this encoder"
    )


def build_encoder(
    encoder: str,
    in_channels: int = 3,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """The smp encoder for a SLEAP encoder name (features at strides 1, 2, ..., 32)."""
    if encoder not in ENCODER_SOURCES:
        raise PosekitError(unknown_choice("encoder", encoder, ENCODER_SOURCES, "encoder"))
    smp = _import_smp()
    name = ENCODER_SOURCES[encoder]
    if pretrained and torch.empty(0).is_meta:
        # Built on the meta device (structure only): there is nothing to load weights into.
        pretrained = False
    download = pretrained and weights_path is None
    weights: str | bool | None = None
    if download:
        weights = True if name.startswith("tu-") else _weights_tag(name)
    try:
        module = smp.encoders.get_encoder(name, in_channels=in_channels, depth=5, weights=weights)
    except Exception as err:  # download/cache failures surface as many exception types
        if not download:
            raise
        raise PosekitError(
            f"could not load ImageNet weights for encoder {encoder!r} ({type(err).__name__}: "
            f"{str(err)[:300]}). They come from {_weights_source(name)}; without network, "
            f"fetch them on a connected machine (build the model once there) and copy the "
            f"Hugging Face cache ({_hf_cache_dir()}) or torch hub cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}), or pass a local state dict file "
            f"with weights_path=..., or set pretrained=False"
        ) from err
    if pretrained and weights_path is not None:
        _load_state_file(module, Path(weights_path).expanduser(), encoder)
    return module


def _keras_imagenet_file(encoder: str) -> Path:
    """classification_models' Keras ImageNet weights for `encoder`, from the torch hub cache.

    Downloaded once into `<torch hub dir>/checkpoints/` (like timm/torchvision weights) and
    checked against the MD5 classification_models publishes; a cached file is trusted.
    """
    import hashlib

    from posekit.architectures.keras_resnet import IMAGENET_WEIGHTS

    url, md5 = IMAGENET_WEIGHTS[encoder]
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        torch.hub.download_url_to_file(url, str(partial), progress=False)
    except Exception as err:  # network failures surface as many exception types
        partial.unlink(missing_ok=True)
        raise PosekitError(
            f"could not download ImageNet weights for encoder {encoder!r} "
            f"({type(err).__name__}: {str(err)[:300]}). They are SLEAP's Keras weights, {url}; "
            f"without network, download that file on a connected machine and copy it to "
            f"{path} (torch hub cache), or pass it with weights_path=..., or set "
            f"pretrained=False"
        ) from err
    digest = hashlib.md5(partial.read_bytes()).hexdigest()
    if digest != md5:
        partial.unlink(missing_ok=True)
        raise PosekitError(
            f"the download of {url} is damaged (MD5 {digest}, expected {md5}); try again"
        )
    partial.replace(path)
    return path


def _registry() -> dict[str, Callable[[int], KerasEncoder]]:
    from posekit.architectures import keras_efficientnet, keras_mobilenet, keras_resnet

    return {
        **keras_efficientnet.BUILDERS,
        **keras_mobilenet.BUILDERS,
        **keras_resnet.BUILDERS,
    }


def build_keras_encoder(name: str, in_channels: int = 3) -> KerasEncoder:
    """The Keras-graph encoder `name` (one of `KERAS_ENCODERS`), randomly initialised."""
    builders = _registry()
    if name not in builders:
        raise PosekitError(
            f"{name!r} has no Keras-graph encoder; choose one of {', '.join(KERAS_ENCODERS)}"
        )
    return builders[name](in_channels)


def load_imagenet_weights(encoder: KerasEncoder, weights_path: str | Path | None = None) -> None:
    """Fill a Keras-graph encoder with ImageNet weights (SLEAP's `pretrained: true`).

    - EfficientNet / MobileNetV2: smp's `efficientnet-b*` / `mobilenet_v2` ImageNet weights
      (downloaded and cached by smp, as for every other encoder), copied tensor by tensor
      onto the Keras layers (same tensors, other names; see `keras_efficientnet.py`,
      `keras_mobilenet.py`).
    - ResNets: SLEAP's own Keras weights (classification_models' release; no PyTorch copy
      of these pre-activation networks exists), loaded by layer name.

    `weights_path` replaces the download: a Keras `.h5` with the encoder's layer names (any
    of these encoders), or a state dict (`.safetensors`/`.pth`) keyed like posekit's encoder
    or like smp's encoder of that name.
    """
    from posekit.io.keras_h5 import load_keras_weights

    name = encoder.keras_name
    path = Path(weights_path).expanduser() if weights_path is not None else None
    if path is not None and path.suffix == ".h5":
        load_keras_weights(encoder, path)
        return
    if name.startswith("resnet"):
        if path is None:
            load_keras_weights(encoder, _keras_imagenet_file(name))
            return
        _load_state_file(encoder, path, name)
        return
    if path is not None:
        state = _read_state_file(path)
        own = set(encoder.state_dict())
        if own <= set(state):
            encoder.load_state_dict({k: state[k] for k in own})
            return
    from posekit.architectures import keras_efficientnet, keras_mobilenet

    family = keras_mobilenet if name == "mobilenetv2" else keras_efficientnet
    source = build_encoder(name, 3, True, path)
    copy_mapped(
        encoder, source.state_dict(), family.smp_pairs(encoder), f"smp {ENCODER_SOURCES[name]}"
    )


class UnetPretrainedEncoder(Backbone):
    """UNet decoder on an (optionally ImageNet-pretrained) classification encoder.

    Args:
        encoder: SLEAP's encoder name (`posekit.config.model.PRETRAINED_ENCODERS`).
        decoder_filters: filters of each decoder block, deepest first; their number sets
            the output stride `32 / 2 ** len(decoder_filters)` (SLEAP's attribute).
        pretrained: load ImageNet weights into the encoder (downloaded once, cached; see
            `load_imagenet_weights`). Under `torch.device("meta")` or
            `skip_imagenet_weights()` only the structure is built (nothing is loaded).
        in_channels: input channels (1 for grayscale; tiled to RGB when pretrained).
        decoder_batchnorm: BatchNorm in the decoder convs. SLEAP 1.4.1 ignores its config
            field and always uses BatchNorm; posekit honours it (default True = SLEAP).
        weights_path: a local file to load instead of downloading: a state dict
            (`.safetensors`/`.pth`) keyed like smp's encoder of that name (the timm model
            for `tu-` ones) or like posekit's encoder, or, for the Keras-graph encoders,
            a Keras `.h5` with their layer names.

    `forward_features` returns `[{stride: tensor}]` with every decoder block's output
    (strides 16, 8, ..., `output_stride`), as SLEAP's intermediate features.
    """

    stacks = 1

    def __init__(
        self,
        encoder: str = "efficientnetb0",
        decoder_filters: tuple[int, ...] | list[int] = (256, 256, 128, 128),
        pretrained: bool = True,
        in_channels: int = 1,
        decoder_batchnorm: bool = True,
        *,
        weights_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.encoder_name = encoder
        self.decoder_filters = tuple(int(f) for f in decoder_filters)
        if len(self.decoder_filters) > 5:
            raise PosekitError(
                f"decoder_filters has {len(self.decoder_filters)} entries; at most 5 "
                f"upsampling blocks fit an encoder of stride 32 (output stride 1)"
            )
        self.pretrained = bool(pretrained)
        self.in_channels = int(in_channels)
        self.decoder_batchnorm = bool(decoder_batchnorm)

        tile = self.pretrained and self.in_channels == 1
        self.ensure_rgb = TileChannels() if tile else None
        enc_in = 3 if tile else self.in_channels
        if encoder in KERAS_ENCODERS:
            self.encoder = build_keras_encoder(encoder, enc_in)
            if self.pretrained and not torch.empty(0).is_meta and not _SKIP_IMAGENET.get():
                load_imagenet_weights(self.encoder, weights_path)
        else:
            fetch = self.pretrained and not _SKIP_IMAGENET.get()
            self.encoder = build_encoder(encoder, enc_in, fetch, weights_path)
        enc_channels = list(self.encoder.out_channels)  # strides 1, 2, 4, 8, 16, 32
        channels = enc_channels[-1]

        self.center: nn.Sequential | None = None
        if encoder.startswith("vgg"):
            self.center = nn.Sequential(
                OrderedDict(
                    [
                        (
                            "center_block1",
                            _conv_bn_relu(
                                "center_block1", channels, CENTER_FILTERS, self.decoder_batchnorm
                            ),
                        ),
                        (
                            "center_block2",
                            _conv_bn_relu(
                                "center_block2",
                                CENTER_FILTERS,
                                CENTER_FILTERS,
                                self.decoder_batchnorm,
                            ),
                        ),
                    ]
                )
            )
            channels = CENTER_FILTERS

        blocks = []
        stride = ENCODER_MAX_STRIDE
        self._feature_channels: dict[int, int] = {}
        for i, filters in enumerate(self.decoder_filters):
            stride //= 2
            # Skips at strides 16, 8, 4, 2 (segmentation_models' four skip layers).
            skip = enc_channels[int(math.log2(stride))] if stride >= 2 else 0
            block = DecoderBlock(i, channels, skip, filters, self.decoder_batchnorm)
            blocks.append(block)
            channels = filters
            self._feature_channels[stride] = channels
        self.decoder = nn.ModuleList(blocks)
        if not blocks:
            self._feature_channels[ENCODER_MAX_STRIDE] = channels

    @classmethod
    def from_config(
        cls,
        config: PretrainedEncoderConfig,
        in_channels: int = 1,
        *,
        weights_path: str | Path | None = None,
    ) -> UnetPretrainedEncoder:
        """Build from a `PretrainedEncoderConfig` the way SLEAP does."""
        blocks = int(math.log2(ENCODER_MAX_STRIDE // config.output_stride))
        filters = [
            int(config.decoder_filters * config.decoder_filters_rate**i) for i in range(blocks)
        ]
        return cls(
            encoder=config.encoder,
            decoder_filters=filters,
            pretrained=config.pretrained,
            in_channels=in_channels,
            decoder_batchnorm=config.decoder_batchnorm,
            weights_path=weights_path,
        )

    @property
    def encoder_source(self) -> str:
        """Where the encoder comes from: "Keras graph" (built here) or the smp/timm name."""
        if self.encoder_name in KERAS_ENCODERS:
            return "Keras graph"
        return ENCODER_SOURCES[self.encoder_name]

    @property
    def down_blocks(self) -> int:
        return 5

    @property
    def up_blocks(self) -> int:
        return len(self.decoder_filters)

    @property
    def maximum_stride(self) -> int:
        return ENCODER_MAX_STRIDE

    @property
    def output_stride(self) -> int:
        return 2 ** (self.down_blocks - self.up_blocks)

    @property
    def feature_channels(self) -> dict[int, int]:
        return dict(self._feature_channels)

    def forward_features(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """`[{stride: tensor}]`: the output of every decoder block."""
        check_input_size(x, self.maximum_stride)
        h, w = x.shape[-2:]
        if self.ensure_rgb is not None:
            x = self.ensure_rgb(x)
        feats = self.encoder(x)
        out = feats[-1]
        if self.center is not None:
            out = self.center(out)
        result: dict[int, torch.Tensor] = {}
        stride = ENCODER_MAX_STRIDE
        for block in self.decoder:
            stride //= 2
            skip = feats[int(math.log2(stride))] if block.skip_channels else None
            out = block(out, (h // stride, w // stride), skip)
            result[stride] = out
        if not self.decoder:
            result[stride] = out
        return [result]


__all__ = [
    "ENCODER_SOURCES",
    "UnetPretrainedEncoder",
    "build_encoder",
    "load_imagenet_weights",
    "skip_imagenet_weights",
]
