"""Output heads: what each SLEAP head family predicts and how its layer is built.

A head is a small description (name, channels, stride, loss) plus a `make_layer` that
builds the torch layer attaching to a backbone feature of `output_stride`. Layers carry
the SLEAP Keras layer name (the head's class name) so trained SLEAP weights load by name.
Map heads are a linear 1x1 convolution; the class-vectors head pools (or flattens) the
feature and runs dense layers to one logit per class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from posekit.errors import PosekitError


@dataclass
class Head:
    """Base head description. Subclasses fix `name`, the activation and the loss.

    `sigma` is the config's Gaussian spread, in output-grid pixels (see
    `posekit.config.model._MapHeadConfig`); None for heads without Gaussian targets.
    """

    output_stride: int = 1
    loss_weight: float = 1.0
    sigma: float | None = None

    activation = "linear"
    loss_function = "mse"

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def channels(self) -> int:
        raise NotImplementedError

    @property
    def is_map(self) -> bool:
        """True when the head outputs an image-like map (all but class vectors)."""
        return True

    def make_layer(self, in_channels: int) -> nn.Module:
        conv = nn.Conv2d(in_channels, self.channels, kernel_size=1)
        if self.activation == "sigmoid":
            return _Sigmoid1x1(conv)
        return conv


class _Sigmoid1x1(nn.Conv2d):
    """1x1 conv with a sigmoid, as SLEAP's Keras layer with activation="sigmoid"."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv.in_channels, conv.out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x))


@dataclass
class SingleInstanceConfmapsHead(Head):
    """One confidence map per part; one animal per image."""

    part_names: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return len(self.part_names)


@dataclass
class CentroidConfmapsHead(Head):
    """A single map with a peak at every instance's centroid (anchor part)."""

    anchor_part: str | None = None

    @property
    def channels(self) -> int:
        return 1


@dataclass
class CenteredInstanceConfmapsHead(Head):
    """Confidence maps of the instance centred in a crop."""

    part_names: list[str] = field(default_factory=list)
    anchor_part: str | None = None

    @property
    def channels(self) -> int:
        return len(self.part_names)


@dataclass
class MultiInstanceConfmapsHead(Head):
    """Confidence maps with a peak for every instance of every part."""

    part_names: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return len(self.part_names)


@dataclass
class PartAffinityFieldsHead(Head):
    """Unit vectors along each skeleton edge: channels [edge0_x, edge0_y, edge1_x, ...]."""

    edges: list[tuple[str, str]] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return 2 * len(self.edges)


@dataclass
class ClassMapsHead(Head):
    """One identity map per class around that animal's landmarks."""

    classes: list[str] = field(default_factory=list)
    activation = "sigmoid"

    @property
    def channels(self) -> int:
        return len(self.classes)


@dataclass
class ClassVectorsHead(Head):
    """Identity of the crop's animal: pooled features -> dense layers -> class probabilities.

    Like SLEAP's Keras layer the output is softmax probabilities, so imported and native
    models give the same numbers; the training loss is Keras' categorical cross-entropy.
    """

    classes: list[str] = field(default_factory=list)
    num_fc_layers: int = 1
    num_fc_units: int = 64
    global_pool: bool = True
    activation = "softmax"
    loss_function = "categorical_crossentropy"

    @property
    def channels(self) -> int:
        return len(self.classes)

    @property
    def is_map(self) -> bool:
        return False

    def make_layer(
        self, in_channels: int, feature_size: tuple[int, int] | None = None
    ) -> nn.Module:
        return ClassVectorsLayer(self, in_channels, feature_size)


@dataclass
class EmbeddingHead(Head):
    """Identity vector of the crop's animal (re-identification), L2-normalised.

    Not a classifier: the vector has no fixed set of classes, so a model trained on one
    video's animals embeds any others; animals are told apart by cosine similarity.
    `classes` are the training tracks, used only to build the contrastive targets.
    """

    embedding_dim: int = 128
    num_fc_layers: int = 1
    num_fc_units: int = 256
    pool: str = "avg"
    normalize: bool = True
    temperature: float = 0.1
    anchor_part: str | None = None
    classes: list[str] = field(default_factory=list)
    centroid_method: str = "bbox_center"  # crop centre without a visible anchor part
    standardize: bool = False  # per-crop zero mean, unit std (sleap-nn's models)
    loss_function = "supcon"

    @property
    def channels(self) -> int:
        return self.embedding_dim

    @property
    def is_map(self) -> bool:
        return False

    def make_layer(self, in_channels: int, feature_size=None) -> nn.Module:
        return EmbeddingLayer(self, in_channels)


@dataclass
class OffsetRefinementHead(Head):
    """Sub-pixel offsets per part: channels [part0_dx, part0_dy, ...] in output-grid units."""

    part_names: list[str] = field(default_factory=list)
    sigma_threshold: float = 0.2

    @property
    def channels(self) -> int:
        return 2 * len(self.part_names)


@dataclass
class SegmentationHead(Head):
    """Foreground logits (one channel; sigmoid > 0.5 is foreground), trained with BCE + Dice.

    Like sleap-nn's head the layer outputs logits, so imported sleap-nn weights give the
    same numbers; the predictors apply the sigmoid.
    """

    bce_weight: float = 0.5
    dice_weight: float = 0.5
    bce_pos_weight: float | None = None
    target_maxpool: bool = False
    anchor_part: str | None = None  # crops centre on it (top-down segmentation)
    loss_function = "bce_dice"

    @property
    def channels(self) -> int:
        return 1


@dataclass
class InstanceCenterHead(Head):
    """Gaussian peaks at each instance mask's centre of mass (bottom-up segmentation)."""

    @property
    def channels(self) -> int:
        return 1


@dataclass
class CenterOffsetHead(Head):
    """(dx, dy) in input pixels from each foreground cell to its instance's centre; the
    loss (smooth L1) counts foreground cells only (NaN targets elsewhere)."""

    loss_function = "masked_smooth_l1"

    @property
    def channels(self) -> int:
        return 2


class ClassVectorsLayer(nn.Module):
    """Global max pool (or flatten) -> `num_fc_layers` x (dense + ReLU) -> dense logits.

    Flattening follows Keras' NHWC order so imported SLEAP dense weights line up.
    """

    def __init__(self, head: ClassVectorsHead, in_channels: int, feature_size=None):
        super().__init__()
        self.global_pool = head.global_pool
        if head.global_pool:
            features = in_channels
        else:
            if feature_size is None:
                raise PosekitError(
                    "ClassVectorsHead with global_pool=false flattens its input feature, so "
                    "the input image size must be known when the model is built; pass "
                    "input_shape, or set global_pool: true"
                )
            features = in_channels * feature_size[0] * feature_size[1]
        for i in range(head.num_fc_layers):
            self.add_module(f"pre_classification{i}_fc", nn.Linear(features, head.num_fc_units))
            features = head.num_fc_units
        self.num_fc_layers = head.num_fc_layers
        self.add_module(head.name, nn.Linear(features, head.channels))
        self._out_name = head.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pool:
            x = torch.amax(x, dim=(2, 3))
        else:
            x = x.permute(0, 2, 3, 1).flatten(1)
        for i in range(self.num_fc_layers):
            x = torch.relu(getattr(self, f"pre_classification{i}_fc")(x))
        return torch.softmax(getattr(self, self._out_name)(x), dim=-1)


class GeM(nn.Module):
    """Generalised-mean pooling ``mean(max(x, eps)^p)^(1/p)`` over H, W with a learnt `p`.

    `p` is used clamped to [1, 6] as sleap-nn does (1: average pooling; towards 6: near
    max pooling), so sleap-nn's trained exponents give its numbers. Only the positive
    part of each channel counts (the floor at `eps`), which suits features after a ReLU.
    """

    P_MIN, P_MAX = 1.0, 6.0

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(self.P_MIN, self.P_MAX)
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class EmbeddingLayer(nn.Module):
    """Pool (avg, max, or GeM with a learnt exponent) -> dense + ReLU layers -> dense ->
    L2 normalisation, with sleap-nn's layer names (`pre_embedding_pool`,
    `pre_embedding{i}_fc`, `EmbeddingHead`) so its checkpoints load by name.

    GeM (generalised mean, ``mean(x^p)^(1/p)`` over positive parts) sits between average
    (p=1) and max (p -> inf) pooling and learns where. No batch norm before the
    normalisation (re-ID's "BNNeck"): tried here, it trained well in train mode but its
    running statistics lagged the drifting features of a short run, and in eval mode
    every crop got the same vector. Without it a failed run shows in the loss instead:
    SupCon stuck at log(positives + negatives) means the vectors collapsed (lower the
    learning rate or raise `temperature`).
    """

    def __init__(self, head: EmbeddingHead, in_channels: int):
        super().__init__()
        if head.pool not in ("avg", "max", "gem"):
            raise PosekitError(f"embedding pool={head.pool!r}: use 'avg', 'max' or 'gem'")
        self.pool = head.pool
        self.normalize = head.normalize
        if head.pool == "gem":
            self.pre_embedding_pool = GeM()
        self.num_fc_layers = head.num_fc_layers
        features = in_channels
        for i in range(head.num_fc_layers):
            self.add_module(f"pre_embedding{i}_fc", nn.Linear(features, head.num_fc_units))
            features = head.num_fc_units
        self.EmbeddingHead = nn.Linear(features, head.embedding_dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of posekit 0.x before sleap-nn's names: `gem_p`, `fc.{2i}`, last `fc`
        if prefix + "gem_p" in state_dict:
            state_dict[prefix + "pre_embedding_pool.p"] = state_dict.pop(prefix + "gem_p")
        for i in range(self.num_fc_layers + 1):
            new = f"pre_embedding{i}_fc" if i < self.num_fc_layers else "EmbeddingHead"
            for param in ("weight", "bias"):
                old = f"{prefix}fc.{2 * i}.{param}"
                if old in state_dict:
                    state_dict[f"{prefix}{new}.{param}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "avg":
            x = x.mean(dim=(2, 3))
        elif self.pool == "max":
            x = torch.amax(x, dim=(2, 3))
        else:
            x = self.pre_embedding_pool(x)
        for i in range(self.num_fc_layers):
            x = torch.relu(getattr(self, f"pre_embedding{i}_fc")(x))
        x = self.EmbeddingHead(x)
        return nn.functional.normalize(x, dim=-1) if self.normalize else x
