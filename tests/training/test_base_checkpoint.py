"""`model.base_checkpoint`: start training from a posekit or a SLEAP model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _training_helpers import tiny_config

from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


def test_training_starts_from_the_base_checkpoint(single_labels, tmp_path):
    import lightning as L

    from posekit.model.folder import load_model
    from posekit.training import train

    config = tiny_config("single_instance", tmp_path, epochs=1, batches_per_epoch=2)
    first = train(config, labels=single_labels, run_name="a", device="cpu", progress=False)
    source = load_model(first / "best_model").state_dict()

    seen = {}

    class Capture(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.update({k: v.clone() for k, v in pl_module.model.state_dict().items()})

    config["model"]["base_checkpoint"] = str(first / "best_model")
    train(
        config,
        labels=single_labels,
        run_name="b",
        device="cpu",
        progress=False,
        callbacks=[Capture()],
    )
    assert seen.keys() == source.keys()
    assert all(torch.equal(seen[k], source[k]) for k in source)


def test_base_checkpoint_of_another_architecture(single_labels, tmp_path):
    from posekit.training import train

    config = tiny_config("single_instance", tmp_path, epochs=1, batches_per_epoch=1)
    first = train(config, labels=single_labels, run_name="a", device="cpu", progress=False)
    other = tiny_config("single_instance", tmp_path, epochs=1, batches_per_epoch=1)
    other["model"]["backbone"] = {"leap": {"filters": 4, "max_stride": 16, "output_stride": 4}}
    other["model"]["base_checkpoint"] = str(first / "best_model")
    with pytest.raises(PosekitError, match="none of its weights fit"):
        train(other, labels=single_labels, run_name="b", device="cpu", progress=False)


def test_sleap_model_folder_as_base_checkpoint():
    folder = SHARED / "sleap_models" / "minimal_robot.UNet.single_instance"
    if not folder.exists():
        pytest.skip("shared SLEAP models not available")
    from posekit.model.folder import load_model
    from posekit.model.network import Model
    from posekit.training.run import load_base_checkpoint

    sleap = load_model(folder)
    torch.manual_seed(0)
    fresh = Model.from_config(
        sleap.config.model, in_channels=sleap.in_channels, skeleton=sleap.skeleton
    )
    assert not all(torch.equal(v, sleap.state_dict()[k]) for k, v in fresh.state_dict().items())
    copied, total = load_base_checkpoint(fresh, folder)
    assert copied == total
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sleap.state_dict()[k]), k
