"""sleap-nn model folders (`best.ckpt` + `training_config.yaml`), both ways.

SLEAP 1.5+ trains with sleap-nn, which writes a Lightning checkpoint whose `state_dict`
holds `model.backbone.*` and `model.head_layers.<i>.*`. sleap-nn's UNet has the same
blocks and the same layer names as SLEAP's (`stack0_enc0_conv0`, ...), which posekit
already builds, so the weights are matched by layer name; only the module paths around
them differ. Its ConvNeXt and Swin backbones are posekit's `HierarchicalUNet`s, whose
weights are renamed by their own table (`hierarchical.sleap_nn_state_dict`); heads are
matched by layer name for every backbone (sleap-nn attaches each to the decoder output
at its `output_stride`, as posekit does). sleap-nn's `pretrained` backbone comes from
Hugging Face `transformers`: its DINOv2 ViTs (with the ViT neck) are posekit's
`PretrainedViT`, its ConvNeXt(V2), ResNet and Swinv2 encoders `HFPretrained`, whose
`sleap_nn_state_dict` rename them; other families (EfficientNet, ...) have no weight map
and such folders are refused. Two facts of sleap-nn that posekit follows when it loads such a folder:

- its transposed convolutions are PyTorch's `padding=1, output_padding=1`, a one-pixel
  shift from Keras' "same" (posekit's default, SLEAP's): those layers become
  `TorchPaddedConvTranspose2d`;
- its class-vectors head reads the bottleneck (the middle block's output) whatever its
  `output_stride` says; the config mapping points it at `max_stride`.

`save_sleap_nn_folder` writes a posekit model back as a folder sleap-nn 0.3.5 loads (the
Hugging Face encoders through `to_sleap_nn_state_dict`, their renaming read backwards).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError
from posekit.io.atomic import atomic_path

CHECKPOINT = "best.ckpt"
CONFIG = "training_config.yaml"
#: Recorded in posekit's `posekit_model.json` for a model converted from sleap-nn whose
#: transposed convolutions must keep sleap-nn's padding.
LAYOUT_KEY = "transposed_conv_padding"


def is_sleap_nn_folder(folder: Path) -> bool:
    """A folder sleap-nn wrote: `best.ckpt` beside a YAML config with its sections."""
    if not (folder / CHECKPOINT).is_file() or not (folder / CONFIG).is_file():
        return False
    from posekit.config.sleap_nn import is_sleap_nn

    return is_sleap_nn(_read_yaml(folder / CONFIG))


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise PosekitError(f"cannot read {path}: {err}") from err


def _classes(config) -> list[str] | None:
    heads = config.model.heads
    for family, sub in (
        ("multi_class_bottomup", "class_maps"),
        ("multi_class_topdown", "class_vectors"),
    ):
        cfg = getattr(heads, family)
        if cfg is not None:
            return getattr(cfg, sub).classes
    return None


def use_sleap_nn_padding(model) -> int:
    """Swap every Keras-style transposed convolution of `model` for sleap-nn's padding
    (same weights); returns how many were swapped."""
    from posekit.architectures.common import SameConvTranspose2d, TorchPaddedConvTranspose2d

    count = 0
    for module in list(model.modules()):
        if type(module) is SameConvTranspose2d:
            module.__class__ = TorchPaddedConvTranspose2d  # same parameters, other crop
            count += 1
    return count


def uses_sleap_nn_padding(model) -> bool:
    """Whether `model` has transposed convolutions with sleap-nn's padding."""
    from posekit.architectures.common import TorchPaddedConvTranspose2d

    return any(isinstance(m, TorchPaddedConvTranspose2d) for m in model.modules())


def _leaf(key: str) -> str:
    """`layer_name.param`: what names a weight in both posekit and sleap-nn."""
    parts = key.split(".")
    if len(parts) >= 3 and parts[-2] == "0" and parts[-3].endswith("Head"):
        parts = parts[:-2] + parts[-1:]  # sleap-nn's map heads: Sequential(conv, act)
    return ".".join(parts[-2:])


#: Backbones whose sleap-nn folders load and export (the others have no weight map;
#: `pretrained`: Hugging Face DINOv2, ConvNeXt(V2), ResNet and Swinv2 models).
FOLDER_BACKBONES = ("unet", "convnext", "swint", "pretrained")
_BACKBONE = "model.backbone."


def _hierarchical(model) -> bool:
    from posekit.architectures.hierarchical import HierarchicalUNet

    return isinstance(model.backbone, HierarchicalUNet)


def _hugging_face(model) -> bool:
    """Whether `model`'s backbone is sleap-nn's `pretrained` one (a Hugging Face model, or
    a timm one, which sleap-nn builds as transformers' `TimmWrapperModel`)."""
    from posekit.architectures.hf_backbone import HFPretrained
    from posekit.architectures.timm_backbone import TimmPretrained
    from posekit.architectures.vit_backbone import PretrainedViT

    return isinstance(model.backbone, PretrainedViT | HFPretrained | TimmPretrained)


def _backbone_renamer(model):
    """The function that renames sleap-nn's backbone keys for `model`, or None when its
    layers are matched by name (the UNet)."""
    from posekit.architectures.hierarchical import sleap_nn_state_dict

    if _hierarchical(model):
        return lambda theirs: sleap_nn_state_dict(model.backbone, theirs)
    if _hugging_face(model):
        return model.backbone.sleap_nn_state_dict
    return None


def rename_state_dict(state: dict[str, Any], model) -> dict[str, Any]:
    """sleap-nn's checkpoint `state_dict` with posekit's keys for `model`."""
    out: dict[str, Any] = {}
    renamer = _backbone_renamer(model)  # the backbone's weights go by its table, heads by name
    by_table = renamer is not None
    if by_table:
        theirs = {k[len(_BACKBONE) :]: v for k, v in state.items() if k.startswith(_BACKBONE)}
        out = {f"backbone.{k}": v for k, v in renamer(theirs).items()}
        state = {k: v for k, v in state.items() if not k.startswith(_BACKBONE)}
    ours: dict[str, str] = {}
    for key in model.state_dict():
        if by_table and key.startswith("backbone."):
            continue
        leaf = _leaf(key)
        if leaf in ours:
            raise PosekitError(
                f"two of posekit's weights are named {leaf}; cannot match sleap-nn's"
            )
        ours[leaf] = key
    unknown = []
    for key, value in state.items():
        if not key.startswith("model."):
            continue
        target = ours.get(_leaf(key))
        if target is None:
            unknown.append(key)
        else:
            out[target] = value
    missing = sorted(set(model.state_dict()) - set(out))
    if unknown or missing:
        raise PosekitError(
            f"the sleap-nn checkpoint does not match the model its config describes: "
            f"unmatched {unknown[:5]}, missing {missing[:5]}"
        )
    return out


def load_sleap_nn_folder(folder: Path):
    """A ready posekit `Model` (eval mode, CPU) from a sleap-nn model folder."""
    import torch

    from posekit.architectures.common import skip_imagenet_weights
    from posekit.config.job import from_sleap_nn
    from posekit.config.sleap_nn import in_channels
    from posekit.model.network import Model

    tree = _read_yaml(folder / CONFIG)
    config = from_sleap_nn(tree, str(folder / CONFIG))
    config.filename = os.path.abspath(folder / CONFIG)
    backbone = config.model.backbone.which_oneof_attrib_name()
    if backbone not in FOLDER_BACKBONES:
        raise PosekitError(f"{folder}: posekit cannot load sleap-nn's {backbone!r} backbone")
    if backbone == "pretrained":
        _refuse_hierarchical_pretrained(config.model.backbone.pretrained, folder)
    skeletons = config.data.labels.skeletons
    skeleton = skeletons[0].to_sleap_io() if skeletons else None
    with skip_imagenet_weights():  # every weight comes from the checkpoint
        model = Model.from_config(
            config.model,
            in_channels=in_channels(tree),
            skeleton=skeleton,
            classes=_classes(config),
        )
    use_sleap_nn_padding(model)
    try:
        ckpt = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure means "not a readable checkpoint"
        raise PosekitError(
            f"{folder / CHECKPOINT} cannot be read as a sleap-nn checkpoint ({err}); copy the "
            f"model folder again"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise PosekitError(
            f"{folder / CHECKPOINT} has no state_dict; it is not a sleap-nn checkpoint"
        )
    model.load_state_dict(rename_state_dict(ckpt["state_dict"], model))
    model.config = config
    model.skeleton = skeleton
    model.source_folder = folder
    model.sleap_nn = True
    return model.eval()


def _refuse_hierarchical_pretrained(pretrained, folder: Path) -> None:
    """Only DINOv2, ConvNeXt(V2), ResNet and Swinv2 models of sleap-nn's `pretrained` backbone
    have a weight map; a model posekit cannot size (not in its tables, no config.json
    here) is named as such."""
    from posekit.architectures.dinov2 import DINOV2_TYPES, hf_config
    from posekit.architectures.hf_convnets import HF_HIERARCHICAL_TYPES

    hf = hf_config(pretrained.model_name, pretrained.revision)
    if pretrained.model_name.startswith("timm/") or (hf or {}).get("model_type") == "timm_wrapper":
        return  # timm builds it by name (and the cached config's `model_args`)
    if hf is None:
        raise PosekitError(
            f"{folder}: its pretrained backbone {pretrained.model_name!r} is not one posekit "
            f"knows and has no config.json in the Hugging Face cache; copy the model's "
            f"config.json there (or into a folder named by model_name)"
        )
    if hf.get("model_type") not in DINOV2_TYPES + HF_HIERARCHICAL_TYPES:
        raise PosekitError(
            f"{folder}: sleap-nn builds its {hf.get('model_type')!r} 'pretrained' backbone "
            f"through Hugging Face transformers, whose weight names posekit cannot map (DINOv2, "
            f"ConvNeXt(V2), ResNet and Swinv2 load); train it with posekit instead (posekit train "
            f"{folder / CONFIG})"
        )


# --------------------------------------------------------------------------- the way back


def sleap_nn_state_dict(model) -> dict[str, Any]:
    """`model`'s weights under the keys sleap-nn's `Model` gives them."""
    from posekit.heads import ClassVectorsHead, EmbeddingHead

    names = {
        "encoders": "model.backbone.encoders.0.encoder_stack",
        "decoders": "model.backbone.decoders.0.decoder_stack",
    }
    if model.stacks != 1:
        raise PosekitError("stacked UNets (stacks > 1) have no sleap-nn folder form here")
    backbone_key = _hierarchical_keys(model.backbone) if _hierarchical(model) else None
    heads = [h.name for h in model.heads]
    out: dict[str, Any] = {}
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if _hugging_face(model):
        ours = {k[9:]: state.pop(k) for k in list(state) if k.startswith("backbone.")}
        theirs = model.backbone.to_sleap_nn_state_dict(ours)
        out.update({_BACKBONE + k: v for k, v in theirs.items()})
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "head_layers":
            i = heads.index(parts[1])
            if isinstance(model.heads[i], EmbeddingHead):  # sleap-nn's layer names
                out[f"model.head_layers.{i}.{'.'.join(parts[2:])}"] = value
            elif isinstance(model.heads[i], ClassVectorsHead):
                out[f"model.head_layers.{i}.{'.'.join(parts[-2:])}"] = value
            else:
                out[f"model.head_layers.{i}.{parts[1]}.0.{parts[-1]}"] = value
            continue
        if backbone_key is not None:
            out[backbone_key(key.removeprefix("backbone."))] = value
            continue
        layer = parts[-2]
        if parts[1] == "encoders" and "_middle_" in layer:
            # sleap-nn keeps the middle block apart from the encoder
            idx = 0 if "_middle_expand" in layer else 1  # posekit's UNet: 2 convs per block
            out[f"model.backbone.middle_blocks.{idx}.blocks.{layer}.{parts[-1]}"] = value
        elif parts[1] in names:
            out[f"{names[parts[1]]}.{parts[3]}.blocks.{layer}.{parts[-1]}"] = value
        else:
            raise PosekitError(f"{key}: no sleap-nn counterpart")
    return out


def _hierarchical_keys(backbone):
    """posekit key of a ConvNeXt / Swin backbone -> sleap-nn's checkpoint key: the
    backbone's own table (sleap-nn module -> posekit module) read backwards."""
    table = {ours: theirs for theirs, ours in backbone.sleap_nn_key_map().items()}
    ordered = sorted(table, key=len, reverse=True)

    def key(ours: str) -> str:
        module = next((m for m in ordered if ours.startswith(m + ".")), None)
        if module is None:
            raise PosekitError(f"backbone.{ours}: no sleap-nn counterpart")
        return _BACKBONE + table[module] + ours[len(module) :]

    return key


def save_sleap_nn_folder(model, out_dir: str | os.PathLike) -> Path:
    """Write `model` (a posekit UNet, ConvNeXt, Swin or Hugging Face `pretrained` model) as a
    sleap-nn 0.3.5 model folder."""
    import torch

    from posekit.architectures.common import SameConvTranspose2d, TorchPaddedConvTranspose2d
    from posekit.config.sleap_nn import to_sleap_nn_yaml

    if model.config is None:
        raise PosekitError("the model has no job config; load it with posekit.load_model")
    backbone = model.config.model.backbone.which_oneof_attrib_name()
    if backbone not in FOLDER_BACKBONES:
        raise PosekitError(
            f"{backbone} models cannot be written as sleap-nn folders; only "
            f"{', '.join(FOLDER_BACKBONES)} backbones can"
        )
    config = model.config
    if hasattr(model.backbone, "sleap_nn_model_name"):  # a timm encoder: its timm/ id
        pretrained = config.model.backbone.pretrained.model_copy(
            update={"model_name": model.backbone.sleap_nn_model_name()}
        )
        backbone_cfg = config.model.backbone.model_copy(update={"pretrained": pretrained})
        config = config.model_copy(
            update={"model": config.model.model_copy(update={"backbone": backbone_cfg})}
        )
    text = to_sleap_nn_yaml(config, in_channels=model.in_channels)  # refuses first
    if any(
        isinstance(m, SameConvTranspose2d) and not isinstance(m, TorchPaddedConvTranspose2d)
        for m in model.modules()
    ):
        raise PosekitError(
            "this UNet upsamples with Keras-style transposed convolutions, which sleap-nn pads "
            "differently (a one-pixel shift); train with model.backbone.unet.up_interpolate: "
            "true to export it to sleap-nn"
        )
    ckpt = {
        "state_dict": sleap_nn_state_dict(model),
        "pytorch-lightning_version": "2.5.0",
        "epoch": 0,
        "global_step": 0,
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        torch.save(ckpt, tmp / CHECKPOINT)
        (tmp / CONFIG).write_text(text)
    return out_dir


__all__ = [
    "is_sleap_nn_folder",
    "load_sleap_nn_folder",
    "rename_state_dict",
    "save_sleap_nn_folder",
    "sleap_nn_state_dict",
    "use_sleap_nn_padding",
    "uses_sleap_nn_padding",
]
