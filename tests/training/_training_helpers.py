"""Helpers shared by the training tests (tiny configs, a loss recorder)."""

from __future__ import annotations

import copy

HEADS = {
    "single_instance": {"single_instance": {"sigma": 1.5, "output_stride": 4}},
    # A wide centroid Gaussian: with two small animals a narrow one leaves the model in the
    # "predict zeros" plateau for longer than these tests train.
    "centroid": {"centroid": {"sigma": 3.0, "output_stride": 4}},
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
            # Identity from a crop takes this tiny model hundreds of steps; a small weight
            # keeps the confidence-map progress visible in a few-step test.
            "class_vectors": {
                "num_fc_layers": 1,
                "num_fc_units": 16,
                "output_stride": 16,
                "loss_weight": 0.1,
            },
        }
    },
    # Identity vectors read the bottleneck (stride 16): 8-d, small dense layer.
    "embedding": {
        "embedding": {
            "embedding": {
                "embedding_dim": 8,
                "num_fc_units": 16,
                "output_stride": 16,
                "temperature": 0.2,
            }
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
            "heads": copy.deepcopy(HEADS[model_type]),
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
