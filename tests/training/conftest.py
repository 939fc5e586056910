"""Shared fixtures for the training tests: synthetic labels and tiny configs.

The machine has 2 cores shared with other work; one torch thread per process avoids the
OpenMP spinning that makes oversubscribed convolutions tens of times slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

PART_NAMES = ["head", "tail", "left", "right"]


@pytest.fixture(scope="session")
def single_labels(tmp_path_factory) -> str:
    """64 frames of one synthetic animal (4 parts, 64 x 64, body 24 px) as a .pkg.slp."""
    from posekit.data.synthetic import save_synthetic_dataset

    folder = tmp_path_factory.mktemp("single")
    return str(
        save_synthetic_dataset(
            folder, n_frames=64, n_animals=1, image_size=64, n_parts=4, seed=1, body_length=24
        )
    )


@pytest.fixture(scope="session")
def multi_labels(tmp_path_factory) -> str:
    """24 frames of two tracked synthetic animals (4 parts, 64 x 64, body 20 px)."""
    from posekit.data.synthetic import save_synthetic_dataset

    folder = tmp_path_factory.mktemp("multi")
    return str(
        save_synthetic_dataset(
            folder, n_frames=24, n_animals=2, image_size=64, n_parts=4, seed=2, body_length=20
        )
    )


HEADS = {
    "single_instance": {"single_instance": {"sigma": 1.5, "output_stride": 4}},
    "centroid": {"centroid": {"sigma": 1.5, "output_stride": 4}},
    "centered_instance": {"centered_instance": {"sigma": 1.5, "output_stride": 4}},
    "multi_instance": {
        "multi_instance": {
            "confmaps": {"sigma": 1.5, "output_stride": 4},
            "pafs": {"sigma": 15.0, "output_stride": 4},
        }
    },
    "multi_class_bottomup": {
        "multi_class_bottomup": {
            "confmaps": {"sigma": 1.5, "output_stride": 4},
            "class_maps": {"sigma": 1.5, "output_stride": 4},
        }
    },
    "multi_class_topdown": {
        "multi_class_topdown": {
            "confmaps": {"sigma": 1.5, "output_stride": 4},
            "class_vectors": {"num_fc_layers": 1, "num_fc_units": 16, "output_stride": 16},
        }
    },
}


def tiny_config(model_type: str, runs_folder, **optimization) -> dict:
    """A job config dict: 8-filter UNet (max stride 16, output stride 4), given heads."""
    opt = {
        "batch_size": 4,
        "epochs": 2,
        "batches_per_epoch": 6,
        "val_batches_per_epoch": 1,
        "initial_learning_rate": 3e-3,
    }
    opt.update(optimization)
    return {
        "model": {
            "backbone": {
                "unet": {"filters": 8, "filters_rate": 2, "max_stride": 16, "output_stride": 4}
            },
            "heads": HEADS[model_type],
        },
        "optimization": opt,
        "outputs": {"runs_folder": str(runs_folder), "save_visualizations": False},
    }


def step_loss_recorder():
    """A Lightning callback that keeps every training step's loss."""
    import lightning as L

    class Recorder(L.Callback):
        def __init__(self):
            self.losses: list[float] = []
            self.epochs: list[int] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs.append(trainer.current_epoch)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(float(loss))

    return Recorder()
