"""Model = backbone + heads, built from a `ModelConfig` the way SLEAP builds it.

SLEAP's rules, kept here so imported models have the same layers:
- the model type (which `HeadsConfig` field is set) decides the heads and their order;
  an offset-refinement head comes last when the primary head asks for one;
- the backbone is built to the output stride of the primary head; other heads attach to
  the decoder feature at their own stride (a coarser PAF or class-vector head reads an
  intermediate feature). Unlike SLEAP, when another head is finer than the primary head the
  backbone is built down to that finer stride instead of failing;
- part names and edges come from the head config, or from the skeleton when it leaves
  them null.

Unlike SLEAP, stacked backbones (stacks > 1) get one set of head layers per stack
(`<Head>_<i>`), for intermediate supervision; `forward` returns the last stack's outputs
and `forward_stacks` all of them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posekit.config.model import (
    BackboneConfig,
    ModelConfig,
)
from posekit.errors import PosekitError
from posekit.heads import (
    CenteredInstanceConfmapsHead,
    CentroidConfmapsHead,
    ClassMapsHead,
    ClassVectorsHead,
    Head,
    PartAffinityFieldsHead,
)
from posekit.model.registry import make_heads, model_type

#: sleap-nn's floor on a crop's standard deviation: one grey level (here in [0, 1] units).
_STD_FLOOR = 1.0 / 255.0


def standardize_crops(x: torch.Tensor) -> torch.Tensor:
    """Each image and channel of `x` (N, C, H, W) to zero mean and unit standard deviation.

    sleap-nn's embedding input, on posekit's [0, 1] scale: the standard deviation (plus
    1e-5 grey levels) is floored at one grey level, so a flat crop is not blown up to
    noise. Dividing by 255 leaves the result as sleap-nn's on its 0-255 scale.
    """
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt() + 1e-5 * _STD_FLOOR
    return (x - mean) / std.clamp(min=_STD_FLOOR)


class Model(nn.Module):
    """A backbone and its output heads; forward returns `{head name: output}`.

    Map outputs are NCHW at the head's stride; `ClassVectorsHead` is (N, classes)
    probabilities. The input must be preprocessed (float in [0, 1], NCHW, height and width
    multiples of `maximum_stride`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        heads: list[Head],
        model_type: str,
        input_size: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.head_specs = list(heads)
        self.model_type = model_type
        self.in_channels = 1  # set by from_config
        self.input_size = input_size
        # Set by `posekit.load_model` / training: the TrainingJobConfig it came from.
        self.config: Any = None
        self.skeleton: Any = None
        stacks = int(getattr(backbone, "stacks", 1))
        self.stacks = stacks
        channels: dict[int, int] = dict(backbone.feature_channels)
        self.head_layers = nn.ModuleDict()
        for head in heads:
            if head.output_stride not in channels:
                raise PosekitError(
                    f"{head.name} wants output_stride={head.output_stride}, but the backbone "
                    f"only has features at strides {sorted(channels)}; set the head's "
                    f"output_stride to one of these"
                )
            for i in range(stacks):
                layer_name = head.name if stacks == 1 else f"{head.name}_{i}"
                if isinstance(head, ClassVectorsHead):
                    size = None
                    if input_size is not None:
                        size = (
                            input_size[0] // head.output_stride,
                            input_size[1] // head.output_stride,
                        )
                    layer = head.make_layer(channels[head.output_stride], size)
                else:
                    layer = head.make_layer(channels[head.output_stride])
                self.head_layers[layer_name] = layer
        # Heads keep PyTorch's default init (smaller than Keras' Glorot for 1x1 convs):
        # measured to make the first steps of training converge faster.
        #: Per-crop standardisation of the input (sleap-nn's embedding models), part of
        #: the network so that training, inference and exported graphs all apply it.
        self.standardize_input = any(getattr(h, "standardize", False) for h in heads)

    @property
    def heads(self) -> list[Head]:
        return self.head_specs

    # ---- what inference needs to know, derived from the heads and the job config

    @property
    def part_names(self) -> list[str]:
        for head in self.head_specs:
            names = getattr(head, "part_names", None)
            if names:
                return list(names)
        anchor = self.anchor_part
        return [anchor] if anchor else []

    @property
    def edges(self) -> list[tuple[int, int]]:
        """Skeleton edges as (source, destination) part indices."""
        names = self.part_names
        for head in self.head_specs:
            if isinstance(head, PartAffinityFieldsHead):
                return [(names.index(a), names.index(b)) for a, b in head.edges]
        if self.skeleton is not None:
            return [
                (names.index(a), names.index(b))
                for a, b in self.skeleton.edge_names
                if a in names and b in names
            ]
        return []

    @property
    def classes(self) -> list[str] | None:
        for head in self.head_specs:
            if isinstance(head, ClassMapsHead | ClassVectorsHead):
                return list(head.classes)
        return None

    @property
    def anchor_part(self) -> str | None:
        for head in self.head_specs:
            if isinstance(head, CentroidConfmapsHead | CenteredInstanceConfmapsHead):
                return head.anchor_part
        return None

    @property
    def input_scale(self) -> float:
        if self.config is None:
            return 1.0
        return float(self.config.data.preprocessing.input_scaling)

    @property
    def crop_size(self) -> int | None:
        if self.config is None or not model_type(self.model_type).crops:
            return None
        size = self.config.data.instance_cropping.crop_size
        return None if size is None else int(size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def preprocess(self, frames: Any, resize: bool = True) -> torch.Tensor:
        """uint8 frames (N, H, W, C) -> the float NCHW input this model expects.

        Applies the job config's preprocessing (grayscale/RGB, input scaling, padding to
        the stride) on the model's device. ``resize=False`` skips the input scaling, for
        frames already resized by it (top-down crops cut from resized frames).
        """
        from posekit.model.preprocessing import preprocess_frames

        pre = self.config.data.preprocessing if self.config is not None else None
        stride = self.maximum_stride
        if pre is not None and pre.pad_to_stride:
            stride = max(stride, int(pre.pad_to_stride))
        return preprocess_frames(
            frames,
            in_channels=self.in_channels,
            input_scaling=self.input_scale if resize else 1.0,
            pad_to_stride=stride,
            imagenet_mode=getattr(pre, "imagenet_mode", None),
            device=self.device,
        )

    @property
    def maximum_stride(self) -> int:
        return int(self.backbone.maximum_stride)

    @property
    def output_stride(self) -> int:
        return int(self.backbone.output_stride)

    def forward_stacks(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Outputs of every stack: `{head name: [stack0, stack1, ...]}` (for training)."""
        if self.standardize_input:
            x = standardize_crops(x)
        features = self.backbone.forward_features(x)
        out: dict[str, list[torch.Tensor]] = {h.name: [] for h in self.head_specs}
        for i, feats in enumerate(features):
            for head in self.head_specs:
                layer_name = head.name if self.stacks == 1 else f"{head.name}_{i}"
                out[head.name].append(self.head_layers[layer_name](feats[head.output_stride]))
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: outs[-1] for name, outs in self.forward_stacks(x).items()}

    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        in_channels: int = 1,
        part_names: list[str] | None = None,
        edges: list[tuple[str, str]] | None = None,
        classes: list[str] | None = None,
        skeleton: Any = None,
        input_size: tuple[int, int] | None = None,
    ) -> Model:
        """Build the model SLEAP would build for `config`.

        `skeleton` (a `sleap_io.Skeleton`) supplies part names and edges the config leaves
        null; `classes` supplies class names (track names) for multi-class models.
        `input_size` (H, W) is only needed for a class-vectors head without global pooling.
        """
        from posekit.architectures import build_backbone

        if skeleton is not None:
            part_names = part_names or list(skeleton.node_names)
            edges = edges or [tuple(e) for e in skeleton.edge_names]
        model_type, heads = make_heads(config.heads, part_names, edges, classes)
        backbone_cfg = config.backbone
        if isinstance(backbone_cfg, BackboneConfig):
            if backbone_cfg.which_oneof() is None:
                raise PosekitError(
                    "the config has no backbone: set one of model.backbone."
                    + ", model.backbone.".join(BackboneConfig.model_fields)
                )
        # SLEAP builds the backbone to the primary head's stride; a finer secondary head
        # (which SLEAP rejects) gets a backbone built down to its stride instead.
        finest = min(h.output_stride for h in heads)
        backbone = build_backbone(backbone_cfg, in_channels=in_channels, output_stride=finest)
        model = cls(backbone, heads, model_type, input_size=input_size)
        model.in_channels = int(in_channels)
        return model


def build(config: Any, in_channels: int = 1, **model_kwargs: Any) -> nn.Module:
    """Build a torch module from a config object.

    A backbone config (`BackboneConfig`, `UNetConfig`, ...) gives the backbone alone; a
    `ModelConfig` or `TrainingJobConfig` gives a `Model` whose forward returns a dict of
    head outputs. `model_kwargs` (part_names, edges, classes, skeleton, input_size) go to
    `Model.from_config`.
    """
    model_config = getattr(config, "model", None)
    if isinstance(model_config, ModelConfig):
        config = model_config
    if isinstance(config, ModelConfig):
        return Model.from_config(config, in_channels=in_channels, **model_kwargs)
    from posekit.architectures import build_backbone

    return build_backbone(config, in_channels=in_channels)
