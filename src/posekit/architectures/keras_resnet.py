"""ResNet18..152 as `classification_models` builds them for SLEAP's segmentation_models.

These are not torchvision's ResNets (which is why the smp-based backbone had other counts:
resnet18 16,353,216 instead of 16,353,993 with 12,672 instead of 11,014 non-trainable,
resnet50 +15,095): they are pre-activation ResNets ported from MXNet:

- `bn_data`: BatchNorm on the input with an offset but no scale (`scale=False`);
- `conv0` 7x7 stride 2 (zero padding 3), `bn0`, ReLU (`relu0`), zero padding 1 and a 3x3
  stride-2 max-pool;
- units `stage{s}_unit{u}_`: `bn1` + ReLU (`relu1`) first; the first unit of a stage takes
  its shortcut from that activation through a 1x1 conv `sc` (stride 2 from stage 2 on),
  the others add their input unchanged. Basic units (18, 34): 3x3 `conv1` (the stride),
  `bn2`, ReLU, 3x3 `conv2`. Bottleneck units (50+): 1x1 `conv1`, `bn2`, ReLU, 3x3 `conv2`
  (the stride), `bn3`, ReLU, 1x1 `conv3` to 4x the filters;
- a final `bn1` + ReLU (`relu1`); every BatchNorm has epsilon 2e-5, momentum 0.99, and no
  conv has a bias.

segmentation_models' skips: `stage4_unit1_relu1`, `stage3_unit1_relu1`, `stage2_unit1_relu1`
and `relu0` (strides 16, 8, 4, 2).

ImageNet weights exist only as those Keras files (classification_models' GitHub release,
the MXNet models converted); no PyTorch library ships a pre-activation ResNet18-152 with
this layout, so pretrained weights are downloaded as the Keras `.h5` and loaded by name.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from posekit.architectures.keras_encoders import (
    BatchNormNoScale,
    KerasConv2d,
    KerasEncoder,
    init_keras_conv,
    keras_bn,
)

_EPS = 2e-5
REPETITIONS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
    "resnet152": ((3, 8, 36, 3), True),
}
"""Units per stage and whether they are bottlenecks."""

IMAGENET_WEIGHTS = {
    name: (
        f"https://github.com/qubvel/classification_models/releases/download/0.0.1/"
        f"{name}_imagenet_1000_no_top.h5",
        md5,
    )
    for name, md5 in {
        "resnet18": "318e3ac0cd98d51e917526c9f62f0b50",
        "resnet34": "8caaa0ad39d927cb8ba5385bf945d582",
        "resnet50": "db3b217156506944570ac220086f09b6",
        "resnet101": "1016e7663980d5597a4e224d915c342d",
        "resnet152": "5867b94098df4640918941115db93734",
    }.items()
}
"""URL and MD5 of the Keras ImageNet weights (no classifier) SLEAP's encoders load."""


def _bn(channels: int) -> nn.BatchNorm2d:
    return keras_bn(channels, _EPS)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> KerasConv2d:
    # "valid" convs; the 3x3 ones get Keras' ZeroPadding2D((1, 1)) as symmetric padding.
    conv = KerasConv2d(cin, cout, k, stride, padding="valid")
    if k == 3:
        conv.padding = (1, 1)
    return conv


class PreActUnit(nn.Module):
    """One residual unit; the layers carry the Keras names."""

    def __init__(
        self, stage: int, unit: int, cin: int, filters: int, stride: int, bottleneck: bool
    ) -> None:
        super().__init__()
        self.prefix = p = f"stage{stage}_unit{unit}_"
        self.bottleneck = bottleneck
        cout = filters * 4 if bottleneck else filters
        self.add_module(p + "bn1", _bn(cin))
        self.projects = unit == 1
        if self.projects:
            self.add_module(p + "sc", _conv(cin, cout, 1, stride))
        if bottleneck:
            self.add_module(p + "conv1", _conv(cin, filters, 1))
            self.add_module(p + "bn2", _bn(filters))
            self.add_module(p + "conv2", _conv(filters, filters, 3, stride))
            self.add_module(p + "bn3", _bn(filters))
            self.add_module(p + "conv3", _conv(filters, cout, 1))
        else:
            self.add_module(p + "conv1", _conv(cin, filters, 3, stride))
            self.add_module(p + "bn2", _bn(filters))
            self.add_module(p + "conv2", _conv(filters, filters, 3))
        self.out_channels = cout

    def _layer(self, name: str) -> nn.Module:
        return getattr(self, self.prefix + name)

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        """`{prefix}relu1`: the unit's pre-activation (a decoder skip for some units)."""
        return F.relu(self._layer("bn1")(x))

    def finish(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The unit's output from its input `x` and pre-activation `a`."""
        shortcut = self._layer("sc")(a) if self.projects else x
        h = self._layer("conv1")(a)
        h = self._layer("conv2")(F.relu(self._layer("bn2")(h)))
        if self.bottleneck:
            h = self._layer("conv3")(F.relu(self._layer("bn3")(h)))
        return h + shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.preact(x))


class KerasResNet(KerasEncoder):
    """classification_models' ResNet encoder with Keras' layers and names (no classifier)."""

    skip_layers = ("stage4_unit1_relu1", "stage3_unit1_relu1", "stage2_unit1_relu1", "relu0")

    def __init__(self, name: str = "resnet18", in_channels: int = 3) -> None:
        super().__init__()
        self.keras_name = name
        repetitions, bottleneck = REPETITIONS[name]
        self.bn_data = BatchNormNoScale(in_channels, _EPS, 0.01)
        self.conv0 = KerasConv2d(in_channels, 64, 7, 2, padding="valid")
        self.conv0.padding = (3, 3)
        self.bn0 = _bn(64)
        units, channels = [], 64
        for s, reps in enumerate(repetitions):
            filters = 64 * 2**s
            for u in range(reps):
                stride = 2 if u == 0 and s > 0 else 1
                unit = PreActUnit(s + 1, u + 1, channels, filters, stride, bottleneck)
                units.append(unit)
                channels = unit.out_channels
        self.units = nn.ModuleList(units)
        self.bn1 = _bn(channels)
        self._taps = {name.rsplit("_", 1)[0] + "_" for name in self.skip_layers[:3]}
        skip_ch = [u._layer("bn1").num_features for u in self.units if u.prefix in self._taps]
        self.out_channels = [in_channels, 64, *skip_ch, channels]
        init_keras_conv(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`[input, relu0, stage2/3/4 unit1 relu1, relu1]`."""
        feats = [x]
        x = F.relu(self.bn0(self.conv0(self.bn_data(x))))
        feats.append(x)
        # ZeroPadding2D(1) + MaxPool(3, 2, "valid"): zeros never win after a ReLU.
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)
        for unit in self.units:
            if unit.prefix in self._taps:
                a = unit.preact(x)
                feats.append(a)
                x = unit.finish(x, a)
            else:
                x = unit(x)
        feats.append(F.relu(self.bn1(x)))
        return feats


BUILDERS = {name: partial(lambda n, c: KerasResNet(n, c), name) for name in REPETITIONS}
