"""Tiny stand-ins for `posekit.Model` that follow the predictor contract.

Each fake "network" reads its outputs straight from the input channels, so a test that
paints Gaussian blobs into the frames knows exactly where every peak must come out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sleap_io as sio
import torch
from torch import nn


@dataclass
class FakeHead:
    name: str
    output_stride: int
    channels: int


def blob_frame(h, w, channels_points, sigma=2.0):
    """uint8 (H, W, C) frame: channel c has a Gaussian blob at each point of
    channels_points[c] (list of (x, y))."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, len(channels_points)))
    for c, pts in enumerate(channels_points):
        for x, y in pts:
            out[..., c] = np.maximum(
                out[..., c], np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
            )
    return np.round(out * 255).astype(np.uint8)


class FakeModel(nn.Module):
    """Outputs are channel slices of the (unscaled, unpadded) input, subsampled by the stride.

    `maps` maps head name -> (first channel, n channels, stride); ``extra`` maps head name
    -> callable(x) for anything else (PAFs, class vectors).
    """

    def __init__(
        self,
        model_type,
        part_names,
        maps,
        edges=(),
        classes=None,
        anchor_part=None,
        crop_size=None,
        extra=None,
        skeleton_nodes=None,
    ):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.model_type = model_type
        self._part_names = list(part_names)
        self.maps = maps
        self.extra = extra or {}
        self._edges = list(edges)
        self.classes = classes
        self.anchor_part = anchor_part
        self.crop_size = crop_size
        self.input_scale = 1.0
        self.config = None
        nodes = skeleton_nodes or self._part_names
        self.skeleton = (
            sio.Skeleton(nodes=list(nodes), edges=[(nodes[a], nodes[b]) for a, b in self._edges])
            if nodes
            else None
        )
        self.heads = [FakeHead(n, s, c) for n, (_, c, s) in maps.items()]
        self.heads += [FakeHead(n, 1, 0) for n in self.extra]
        self.calls = 0

    @property
    def part_names(self):
        return self._part_names

    @property
    def edges(self):
        return self._edges

    @property
    def device(self):
        return self.dummy.device

    def preprocess(self, frames):
        if not isinstance(frames, torch.Tensor):
            frames = torch.from_numpy(np.asarray(frames))
        return frames.to(self.device).permute(0, 3, 1, 2).float() / 255.0

    def forward(self, x):
        self.calls += 1
        out = {}
        for name, (c0, n, s) in self.maps.items():
            out[name] = x[:, c0 : c0 + n, ::s, ::s].clone()
        for name, fn in self.extra.items():
            out[name] = fn(x)
        return out


def tiny_bottomup(filters=4, max_stride=8, in_channels=3, seed=0, random_biases=False):
    """A real (not fake) small bottom-up UNet `Model`: parts a, b; confidence maps at
    stride 2, PAFs at stride 4. ``random_biases``: non-zero biases, for outputs that are
    not flat (comparisons between devices)."""
    from posekit.config.model import (
        BackboneConfig,
        HeadsConfig,
        ModelConfig,
        MultiInstanceConfig,
        MultiInstanceConfmapsHeadConfig,
        PartAffinityFieldsHeadConfig,
        UNetConfig,
    )
    from posekit.model.network import Model

    torch.manual_seed(seed)
    unet = UNetConfig(filters=filters, max_stride=max_stride, output_stride=2)
    config = ModelConfig(
        backbone=BackboneConfig(unet=unet),
        heads=HeadsConfig(
            multi_instance=MultiInstanceConfig(
                confmaps=MultiInstanceConfmapsHeadConfig(part_names=["a", "b"], output_stride=2),
                pafs=PartAffinityFieldsHeadConfig(edges=[("a", "b")], output_stride=4),
            )
        ),
    )
    model = Model.from_config(config, in_channels=in_channels).eval()
    if random_biases:
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 1:
                    p.uniform_(-0.2, 0.2)
    return model
