"""`posekit train --auto`: training settings derived from the labels and the hardware.

The recommender leaves the architecture alone (the config chooses it) and sets what
depends on the data and the machine. Its rules, in order:

1. **Input scaling** (`data.preprocessing.input_scaling`), from the frame size (H, W), the
   typical animal size `a` (median of the largest bounding-box side of each instance, in
   frame pixels) and the model type:
   - centroid models only need to find animals: ``s = min(1, 512 / max(H, W))``, but not
     below ``32 / a`` (animals stay >= 32 px);
   - other full-frame models (single instance, bottom-up): ``s = min(1, 1024 / max(H,
     W))``, but not below ``64 / a`` (parts of an animal stay resolvable);
   - top-down models work on crops: ``s = 1`` unless the largest instance exceeds 512 px,
     then ``s = 512 / largest``.
   `s` is rounded down to a multiple of 0.05 (at least 0.05), and never above 1.
2. **Crop size** (top-down): SLEAP's automatic rule at that scale, i.e. the largest
   bounding-box side of any instance times `s`, plus `crop_size_detection_padding`,
   rounded up to a multiple of the backbone's max stride.
3. **Batch size**: on CPU 4 (small batches train fastest per second there). On a GPU the
   activation memory of one sample is estimated as ``160 bytes x pixels x filters`` (the
   model input after scaling/cropping, padded to the stride, and the backbone's base
   filter count) and the batch is the largest power of two whose samples fit in half of
   the GPU's memory, between 2 and 64. Never more than the number of training examples.
4. **Learning rate**: ``1e-4 x sqrt(batch / 4)`` (SLEAP's 1e-4 is tuned for batch 4;
   Adam's step scales with the square root of the batch), capped at 1e-3.
5. **Epochs**: one epoch is ``batches_per_epoch = clamp(ceil(n / batch), 50, 200)`` steps
   (`n` = training examples: frames, or instances for top-down). Training should show
   each example about 300 times (augmented) and at least 20 000 samples in total, so
   ``epochs = clamp(ceil(max(300 n, 20000) / (batch x batches_per_epoch)), 10, 300)``.
6. **Schedule**: reduce-on-plateau with factor 0.5, patience ``p = clamp(epochs // 20, 3,
   10)``, cooldown ``max(1, p // 2)``, min LR 1e-8; early stopping after ``2p + cooldown``
   epochs without improvement, so the learning rate is lowered at least once before
   training gives up. Validation runs one pass over the validation set per epoch
   (`min_val_batches_per_epoch = 1`).
7. **Data loader workers**: none on machines with 2 cores or fewer, else cores - 1 (<= 8).

Every setting is returned as a dotted override with the reason for it; explicit user
overrides are applied after these and win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TOPDOWN = ("centered_instance", "multi_class_topdown")


@dataclass
class Hardware:
    """What the recommender needs to know about the machine."""

    kind: str = "cpu"  # "cpu", "cuda" or "mps"
    devices: int = 1
    memory_bytes: int | None = None  # per accelerator
    cpu_count: int = 1


def detect_hardware(device: str = "auto") -> Hardware:
    """Inspect the machine (CUDA memory via torch, cores via the OS)."""
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if device in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Hardware("cuda", torch.cuda.device_count(), int(props.total_memory), int(cores or 1))
    if device in ("auto", "mps") and getattr(torch.backends, "mps", None) is not None:
        if torch.backends.mps.is_available():
            return Hardware("mps", 1, None, int(cores or 1))
    return Hardware("cpu", 1, None, int(cores or 1))


@dataclass
class Recommendation:
    """Dotted config overrides and why each was chosen."""

    overrides: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    num_workers: int = 0

    def set(self, key: str, value: Any, reason: str) -> None:
        self.overrides[key] = value
        self.reasons[key] = reason

    def describe(self) -> str:
        lines = [f"  {k} = {v!r}  ({self.reasons.get(k, '')})" for k, v in self.overrides.items()]
        lines.append(f"  num_workers = {self.num_workers}")
        return "\n".join(lines)


def _instance_sizes(labels: Any) -> np.ndarray:
    sizes = []
    for pts in labels.all_points():
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        pts = pts[~np.isnan(pts).any(axis=1)]
        if len(pts):
            sizes.append(float((pts.max(axis=0) - pts.min(axis=0)).max()))
    return np.asarray(sizes if sizes else [1.0])


def _frame_hw(labels: Any) -> tuple[int, int]:
    used = sorted({e.video_index for e in labels.entries})
    shapes = [labels.frame_shape(i) for i in used]
    return max(s[0] for s in shapes), max(s[1] for s in shapes)


def _round_scale(s: float) -> float:
    s = min(1.0, s)
    return max(0.05, math.floor(s / 0.05 + 1e-9) * 0.05)


def _backbone_filters(config: Any) -> int:
    chosen = config.model.backbone.which_oneof()
    for name in ("filters", "stem_filters", "decoder_filters"):
        value = getattr(chosen, name, None)
        if value:
            return int(value)
    return 64


def _max_stride(config: Any) -> int:
    chosen = config.model.backbone.which_oneof()
    return int(getattr(chosen, "max_stride", 32) or 32)


def recommend(config: Any, labels: Any, hardware: Hardware | None = None) -> Recommendation:
    """Settings for training `config` on `labels` (`PoseLabels`) on `hardware`."""
    from posekit.data.instance_cropping import find_instance_crop_size

    hw = hardware or detect_hardware()
    rec = Recommendation()
    model_type = config.model.heads.which_oneof_attrib_name()
    h, w = _frame_hw(labels)
    sizes = _instance_sizes(labels)
    typical, largest = float(np.median(sizes)), float(sizes.max())
    stride = _max_stride(config)

    # 1. input scaling
    if model_type in TOPDOWN:
        s = 1.0 if largest <= 512 else 512.0 / largest
        why = "top-down crops: full resolution unless instances exceed 512 px"
    elif model_type == "centroid":
        s = max(min(1.0, 512.0 / max(h, w)), 32.0 / typical)
        why = f"centroids: frame side -> <=512 px, animals ({typical:.0f} px) kept >= 32 px"
    else:
        s = max(min(1.0, 1024.0 / max(h, w)), 64.0 / typical)
        why = f"frame side -> <=1024 px, animals ({typical:.0f} px) kept >= 64 px"
    s = _round_scale(s)
    rec.set("data.preprocessing.input_scaling", s, why)

    # 2. crop size / model input size
    if model_type in TOPDOWN:
        padding = int(config.data.instance_cropping.crop_size_detection_padding)
        crop = find_instance_crop_size(
            labels.all_points(), padding=padding, maximum_stride=stride, input_scaling=s
        )
        rec.set(
            "data.instance_cropping.crop_size",
            crop,
            f"largest instance {largest:.0f} px x {s} + {padding}, to a multiple of {stride}",
        )
        in_h = in_w = crop
        n_examples = int(labels.n_instances)
    else:
        in_h = math.ceil(int(h * s) / stride) * stride
        in_w = math.ceil(int(w * s) / stride) * stride
        n_examples = len(labels)
    n_examples = max(n_examples, 1)

    # 3. batch size
    if hw.kind == "cuda" and hw.memory_bytes:
        per_sample = 160.0 * in_h * in_w * _backbone_filters(config)
        fit = max(1.0, 0.5 * hw.memory_bytes / per_sample)
        batch = int(min(64, max(2, 2 ** int(math.floor(math.log2(fit))))))
        why = f"~{per_sample / 2**20:.0f} MiB/sample in half of {hw.memory_bytes / 2**30:.0f} GiB"
    else:
        batch, why = 4, f"{hw.kind}: small batches train fastest per second"
    if batch > n_examples:
        batch = max(1, 2 ** int(math.floor(math.log2(n_examples))))
        why += f"; capped by {n_examples} training examples"
    rec.set("optimization.batch_size", batch, why)

    # 4. learning rate
    lr = float(min(1e-3, 1e-4 * math.sqrt(batch / 4.0)))
    rec.set("optimization.initial_learning_rate", float(f"{lr:.3g}"), "1e-4 x sqrt(batch / 4)")

    # 5. epochs
    bpe = int(min(200, max(50, math.ceil(n_examples / batch))))
    samples = max(300 * n_examples, 20000)
    epochs = int(min(300, max(10, math.ceil(samples / (batch * bpe)))))
    rec.set("optimization.batches_per_epoch", bpe, "ceil(n / batch) within [50, 200]")
    rec.set(
        "optimization.epochs", epochs, f"~{samples} samples ({n_examples} examples x 300, >= 20000)"
    )

    # 6. schedule
    patience = int(min(10, max(3, epochs // 20)))
    cooldown = max(1, patience // 2)
    rec.set("optimization.learning_rate_schedule.reduce_on_plateau", True, "Keras/SLEAP plateau")
    rec.set("optimization.learning_rate_schedule.reduction_factor", 0.5, "halve on plateau")
    rec.set(
        "optimization.learning_rate_schedule.plateau_patience", patience, "epochs // 20 in [3, 10]"
    )
    rec.set("optimization.learning_rate_schedule.plateau_cooldown", cooldown, "patience // 2")
    rec.set("optimization.learning_rate_schedule.min_learning_rate", 1e-8, "SLEAP default")
    rec.set("optimization.early_stopping.stop_training_on_plateau", True, "stop when flat")
    rec.set(
        "optimization.early_stopping.plateau_patience",
        2 * patience + cooldown,
        "lets the learning rate drop at least once first",
    )
    rec.set("optimization.val_batches_per_epoch", None, "one pass over the validation set")
    rec.set("optimization.min_val_batches_per_epoch", 1, "one pass over the validation set")

    # 7. loader workers
    rec.num_workers = 0 if hw.cpu_count <= 2 else min(8, hw.cpu_count - 1)
    return rec


__all__ = ["Hardware", "Recommendation", "detect_hardware", "recommend"]
