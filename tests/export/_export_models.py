"""Tiny models, inputs and runners shared by the export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MODELS = SHARED / "sleap_models"
needs_shared = pytest.mark.skipif(not MODELS.exists(), reason="../shared is absent")
PARTS = ["head", "thorax", "tail"]


def job_config(heads, unet=None, scale: float = 1.0):
    from posekit.config.job import TrainingJobConfig
    from posekit.config.model import BackboneConfig, ModelConfig, UNetConfig

    unet = unet or UNetConfig(filters=4, filters_rate=1.5, max_stride=8, output_stride=2)
    job = TrainingJobConfig(model=ModelConfig(backbone=BackboneConfig(unet=unet), heads=heads))
    job.data.preprocessing.input_scaling = scale
    return job


def make_model(heads, seed: int = 0, scale: float = 1.0, input_size=None, unet=None):
    """A tiny randomly initialised UNet model with its job config attached."""
    from posekit.model.network import Model

    torch.manual_seed(seed)
    job = job_config(heads, unet=unet, scale=scale)
    model = Model.from_config(job.model, in_channels=1, input_size=input_size)
    # Non-zero biases so that outputs are not trivially symmetric.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(-0.2, 0.2)
    model.config = job
    return model.eval()


def single_instance_model(scale: float = 1.0):
    from posekit.config.model import HeadsConfig, SingleInstanceConfmapsHeadConfig

    heads = HeadsConfig(
        single_instance=SingleInstanceConfmapsHeadConfig(
            part_names=PARTS, output_stride=2, offset_refinement=True
        )
    )
    return make_model(heads, scale=scale)


def multi_instance_model():
    from posekit.config.model import (
        HeadsConfig,
        MultiInstanceConfig,
        MultiInstanceConfmapsHeadConfig,
        PartAffinityFieldsHeadConfig,
    )

    heads = HeadsConfig(
        multi_instance=MultiInstanceConfig(
            confmaps=MultiInstanceConfmapsHeadConfig(part_names=PARTS, output_stride=2),
            pafs=PartAffinityFieldsHeadConfig(
                edges=[("head", "thorax"), ("thorax", "tail")], output_stride=4
            ),
        )
    )
    return make_model(heads, seed=1)


def ort_session(path: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_outputs(model, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(x)
    return [out[h.name].numpy() for h in model.heads]


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def smooth_frames(n: int, h: int, w: int, c: int = 1, seed: int = 0) -> np.ndarray:
    """Smooth-ish uint8 frames (blurred noise) so maps have clear maxima."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=gen)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2)
    x = (x - x.amin()) / (x.amax() - x.amin())
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
