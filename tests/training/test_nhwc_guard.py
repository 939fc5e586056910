"""CPU training skips NHWC for models with a layer whose NHWC weight gradient oneDNN
miscomputes into the heap (1x1 stride-2 convolutions on channel counts that are not a
multiple of 16; see `nhwc_trains_safely`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sleapnn"


def _module():
    from posekit.config.job import TrainingJobConfig
    from posekit.model.network import Model
    from posekit.training.lightning_module import PoseLightningModule

    config = TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {"unet": {"filters": 4, "max_stride": 8, "output_stride": 2}},
                "heads": {"single_instance": {"part_names": ["a", "b"], "output_stride": 2}},
            }
        }
    )
    return PoseLightningModule(Model.from_config(config.model, in_channels=1), config)


@pytest.mark.parametrize(
    ("layer", "safe"),
    [
        (nn.Conv2d(8, 16, 1, stride=2), False),
        (nn.Conv2d(4, 16, 1, stride=2), False),
        (nn.Conv2d(24, 48, 1, stride=2), False),
        (nn.Conv2d(16, 32, 1, stride=2), True),
        (nn.Conv2d(8, 16, 1, stride=1), True),
        (nn.Conv2d(8, 16, 3, stride=2, padding=1), True),
    ],
)
def test_cpu_training_layout_follows_the_guard(layer, safe):
    module = _module()
    assert module.channels_last  # a UNet trains NHWC on the CPU
    module.model.backbone.shortcut = layer
    assert module.channels_last is safe


def test_a_small_hugging_face_resnet_trains_on_cpu(tmp_path):
    """The Hugging Face ResNet fixture (8-channel stages; stride-2 1x1 shortcuts on 8 and
    16 channels) through the training module's layout and backward passes at 256 px. In
    its own process: in NHWC this segfaults on AVX-512 CPUs (seen here)."""
    case = FIXTURES / "hfresnet_single_instance"
    code = textwrap.dedent(
        f"""
        import torch
        import posekit
        from posekit.training.lightning_module import PoseLightningModule

        model = posekit.load_model({str(case)!r}).train()
        module = PoseLightningModule(model, model.config)
        assert not module.channels_last
        module.setup("fit")
        for _ in range(3):
            out = model(torch.rand(4, 1, 256, 256))
            sum(v.mean() for v in out.values()).backward()
        print("trained", flush=True)
        """
    )
    env = {**os.environ, "HF_HUB_CACHE": str(case / "hf_cache"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]
