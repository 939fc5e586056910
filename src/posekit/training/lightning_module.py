"""The LightningModule that trains a posekit `Model` the way SLEAP trains its Keras model.

Loss: every head's loss (see `posekit.training.losses`) times its `loss_weight`, summed
over heads and over the stacks of a stacked backbone (intermediate supervision: each
stack's outputs are compared with the same targets, so early stacks learn the task
too). Optimizer: Adam (with AMSGrad, as SLEAP) or AdamW at `initial_learning_rate`;
torch's fused kernel is a switch (`fused_optimizer`), off: it saved ~2% of a CPU step, and
its float32 rounding alone sends short trainings down other paths (two of the suite's
few-step trainings learnt less with it).

Batches are dicts ``{"image": (N, C, H, W) float, <head name>: target, ...}``. A
`batch_transform` (the data package's batched augmentation and, where the targets depend
on the augmented points, target drawing) runs on the training device in
`on_after_batch_transfer`, so augmentation costs GPU time instead of data-loader time.

The learning-rate schedule and early stopping are callbacks (`posekit.training.callbacks`),
because SLEAP's Keras callbacks act on the epoch's validation loss after validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from posekit.errors import PosekitError
from posekit.training.losses import head_loss

TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"


class NonFiniteLossError(PosekitError):
    """The training loss became NaN or infinite; training stopped without a bad update."""


class PoseLightningModule(L.LightningModule):
    """Wraps a `posekit.model.Model` for Lightning.

    Args:
        model: the network (`Model.from_config(...)`).
        config: the `TrainingJobConfig` (its `optimization` section is used here).
        train_transform: callable ``batch -> batch`` applied to training batches on the
            device (augmentation); None for none.
        eval_transform: the same for validation batches (e.g. target drawing only).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Any,
        train_transform: Callable[[dict], dict] | None = None,
        eval_transform: Callable[[dict], dict] | None = None,
    ):
        super().__init__()
        self.model = model
        self.config = config
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.head_names = [h.name for h in model.heads]
        self.last_train_losses: dict[str, float] = {}

    # ------------------------------------------------------------------ forward / loss

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(x)

    def compute_losses(
        self, outputs: dict[str, list[torch.Tensor]], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total weighted loss and each head's unweighted loss summed over stacks."""
        mining = self.config.optimization.hard_keypoint_mining
        total = None
        per_head: dict[str, torch.Tensor] = {}
        for head in self.model.heads:
            if head.name not in batch:
                raise PosekitError(
                    f"the training batch has no target for {head.name}; it has "
                    f"{sorted(k for k in batch if k != 'image')}. The data pipeline must "
                    f"produce a target for every head of the model."
                )
            target = batch[head.name]
            loss = None
            for pred in outputs[head.name]:
                term = head_loss(head, pred, target, mining)
                loss = term if loss is None else loss + term
            per_head[head.name] = loss
            weighted = loss * float(head.loss_weight)
            total = weighted if total is None else total + weighted
        return total, per_head

    def _step(self, batch: dict[str, torch.Tensor]):
        image = batch["image"]
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        outputs = self.model.forward_stacks(image)
        return self.compute_losses(outputs, batch)

    @property
    def channels_last(self) -> bool:
        """Train in NHWC memory layout on CPUs and CUDA GPUs (not MPS).

        oneDNN and cuDNN run convolutions natively in NHWC; in NCHW they reorder every
        activation first. On the 2-core CPU this was measured on, a 144 px UNet step ran
        1.3x faster in float32 and, with bf16 autocast, 2.3x faster than float32 NCHW.
        Shapes, losses and checkpoints do not change (weights are saved contiguous).
        CPU models that `nhwc_trains_safely` rejects train in NCHW.
        """
        return self._nhwc_on(self.device)

    def _nhwc_on(self, device: torch.device) -> bool:
        if device.type == "cuda":
            return True
        if device.type != "cpu":
            return False
        # fixed once fitting starts (`setup`), so no step walks the modules again
        safe = getattr(self, "_nhwc_safe", None)
        return nhwc_trains_safely(self.model) if safe is None else safe

    def setup(self, stage: str) -> None:
        # NHWC before the strategy wraps the model: DDP registers each gradient's layout
        # when it wraps, and weights changed afterwards cost every step a copy (and a
        # "Grad strides do not match bucket view strides" warning per process).
        trainer = self._trainer
        device = trainer.strategy.root_device if trainer is not None else self.device
        self._nhwc_safe = nhwc_trains_safely(self.model)
        if self._nhwc_on(device):
            self.model.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ hooks

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self._trainer
        training = trainer is not None and trainer.training
        transform = self.train_transform if training else self.eval_transform
        if transform is not None:
            batch = transform(batch)
        return batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, per_head = self._step(batch)
        self._check_finite(loss, per_head, batch_idx)
        n = int(batch["image"].shape[0])
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self._trainer else None
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        if lr is not None:
            self.log("lr", float(lr), prog_bar=True, on_step=True, on_epoch=False)
        self.log(
            TRAIN_LOSS, loss.detach(), on_step=False, on_epoch=True, batch_size=n, sync_dist=True
        )
        for name, value in per_head.items():
            self.log(
                f"train/{name}",
                value.detach(),
                on_step=False,
                on_epoch=True,
                batch_size=n,
                sync_dist=True,
            )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, per_head = self._step(batch)
        n = int(batch["image"].shape[0])
        self.log(
            VAL_LOSS,
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=n,
            sync_dist=True,
        )
        for name, value in per_head.items():
            self.log(
                f"val/{name}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True
            )
        return loss

    def _check_finite(self, loss: torch.Tensor, per_head: dict, batch_idx: int) -> None:
        """Stop before a NaN/inf loss can update the weights (all ranks stop together)."""
        bad = not bool(torch.isfinite(loss.detach()))
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            bad = bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
        if not bad:
            return
        heads = [n for n, v in per_head.items() if not bool(torch.isfinite(v.detach()))]
        epoch = trainer.current_epoch if trainer is not None else 0
        raise NonFiniteLossError(
            f"training stopped: the loss became {float(loss.detach())} at epoch {epoch}, "
            f"batch {batch_idx}"
            + (f" (head {', '.join(heads)})" if heads else " (on another process)")
            + ". No update was made with it and the last good checkpoint is kept. "
            "Usual causes: a learning rate that is too high "
            "(optimization.initial_learning_rate), NaN/inf values in the images, or "
            "mixed precision overflow."
        )

    # ------------------------------------------------------------------ optimizer

    #: Update all weights in one fused kernel on CPUs and CUDA GPUs (default False: torch's
    #: loop over tensors). Same formula, different float32 rounding; no measured gain.
    fused_optimizer: bool = False

    def configure_optimizers(self):
        opt = self.config.optimization
        params = [p for p in self.model.parameters() if p.requires_grad]
        lr = float(opt.initial_learning_rate)
        fused = {"fused": True} if self.fused_optimizer and _fusable(params) else {}
        if opt.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, **fused)
        # SLEAP builds tf.keras Adam with amsgrad=True; Keras' epsilon is 1e-7.
        return torch.optim.Adam(params, lr=lr, amsgrad=True, eps=1e-7, **fused)


def _fusable(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam/AdamW can update `params` (float weights on CPU or CUDA).

    Same update formula as the default, in one kernel over all tensors: on CPU torch
    otherwise loops tensor by tensor (a 1.5M-weight UNet's AMSGrad step took 20 ms that way,
    2 ms fused, one core); weights agree to float32 rounding (~1e-7). MPS keeps the default.
    """
    return bool(params) and all(
        p.device.type in ("cpu", "cuda") and torch.is_floating_point(p) for p in params
    )


def nhwc_trains_safely(model: torch.nn.Module) -> bool:
    """Whether `model` can train in NHWC on a CPU.

    oneDNN in PyTorch 2.14 on AVX-512 CPUs corrupts the heap (a segfault or "free():
    invalid next size" a few steps later) computing the weight gradient of a 1x1
    convolution with stride 2 in NHWC when its input channels are not a multiple of 16:
    8 -> 16 and 4 -> 16 channels at 64 px crash, 16 -> 16, 32 -> 64 and the same layers in
    NCHW or on AVX2 do not. Such layers are the shortcuts of small ResNets (a Hugging Face
    ResNet with 8-channel stages); models that have one train in NCHW (slower, never
    wrong), whatever the CPU, as no check can run the crash safely in-process.
    """
    for m in model.modules():
        if (
            isinstance(m, torch.nn.Conv2d)
            and m.kernel_size == (1, 1)
            and max(m.stride) > 1
            and m.in_channels % 16
        ):
            return False
    return True


__all__ = [
    "NonFiniteLossError",
    "PoseLightningModule",
    "TRAIN_LOSS",
    "VAL_LOSS",
    "nhwc_trains_safely",
]
