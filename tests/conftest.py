"""Shared test fixtures."""

from __future__ import annotations

import os
import tempfile

import pytest

# torch.compile's on-disk cache does not key its compiled graphs on the CPU kind that
# oneDNN and ATen were limited to (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY): a graph
# compiled under a simulated AVX2 CPU crashed (abort) when a normal run reused it. One
# cache per simulated kind keeps each run to graphs made for it.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _kind = "-".join(
        os.environ.get(k, "native").lower() for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
    )
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(
        tempfile.gettempdir(), f"posekit-tests-inductor-{_kind}"
    )


@pytest.fixture
def single_instance_unet():
    """Builder of a small single-instance UNet `Model` (1 input channel unless
    `in_channels`, eval mode, weights from a fixed seed, its job config attached for
    `save_model`): ``single_instance_unet(filters=8, max_stride=8, ...)``,
    where the keywords are `UNetConfig` fields and ``output_stride`` also sets the head's."""

    def build(parts=("a", "b", "c"), output_stride: int = 2, seed: int = 0, in_channels=1, **unet):
        import torch

        from posekit.config.job import TrainingJobConfig
        from posekit.config.model import (
            BackboneConfig,
            HeadsConfig,
            ModelConfig,
            SingleInstanceConfmapsHeadConfig,
            UNetConfig,
        )
        from posekit.model.network import Model

        torch.manual_seed(seed)
        head = SingleInstanceConfmapsHeadConfig(output_stride=output_stride)
        config = ModelConfig(
            backbone=BackboneConfig(unet=UNetConfig(output_stride=output_stride, **unet)),
            heads=HeadsConfig(single_instance=head),
        )
        model = Model.from_config(config, in_channels=in_channels, part_names=list(parts))
        model.config = TrainingJobConfig(model=config)  # so save_model can write it
        return model.eval()

    return build
