"""LightningDataModule: labels -> raw batches, with SLEAP's epoch lengths, on one or many ranks.

Data loading is split as in `posekit.data.dataset`: DataLoader workers decode frames into
raw samples (uint8 image + points); the model's device finishes each batch
(`DataPipeline.process`: augmentation, normalisation, scaling, crops, targets) from the
LightningModule's `on_after_batch_transfer`.

Epoch length (SLEAP's rule; SLEAP streams a repeated, shuffled dataset and cuts epochs by
step count): ``batches_per_epoch`` when set, else ``max(min_batches_per_epoch,
ceil(n / (batch_size * world_size)))`` optimizer steps, and the same with the `val_`
fields for validation. One epoch is therefore one pass over the data split across all
ranks, or longer when the data are few: then the sampler concatenates fresh shuffles of
the data until the epoch is full (each example is drawn once per shuffle, i.e. sampling
with replacement across shuffles but balanced), which is what SLEAP's `repeat()` +
shuffle buffer does.

Distributed training: `EpochSampler` draws one global index sequence per epoch from a
seed shared by every rank (`seed + epoch`) and gives rank `r` the positions
``r, r + world, r + 2 * world, ...``. The shards are disjoint, every rank runs the same
number of steps (no DDP hang on uneven data), and Lightning's own distributed sampler is
switched off (`use_distributed_sampler=False`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler


def epoch_batches(
    n_examples: int, batch_size: int, batches: int | None, min_batches: int, world_size: int = 1
) -> int:
    """Optimizer steps per epoch on each rank (SLEAP's rule, split across ranks)."""
    if batches is not None:
        return int(batches)
    per_pass = math.ceil(n_examples / (batch_size * max(world_size, 1)))
    return max(int(min_batches), per_pass, 1)


class EpochSampler(Sampler[int]):
    """Indices of one epoch of `num_samples` per rank, shuffled per epoch, rank-sharded.

    Args:
        n_items: dataset length.
        num_samples: indices this rank yields per epoch (steps x batch size).
        shuffle: shuffle every epoch (validation: False, a fixed cyclic order).
        seed: base seed; epoch `e` uses ``seed + e`` on every rank.
        rank, world_size: this process's position in the distributed job.
    """

    def __init__(
        self,
        n_items: int,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if n_items <= 0:
            raise ValueError("EpochSampler needs a non-empty dataset")
        self.n_items = int(n_items)
        self.num_samples = int(num_samples)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch so every epoch gets a new shuffle."""
        self.epoch = int(epoch)

    def global_indices(self) -> torch.Tensor:
        """The whole epoch's index sequence (all ranks), identical on every rank."""
        total = self.num_samples * self.world_size
        reps = math.ceil(total / self.n_items)
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            parts = [torch.randperm(self.n_items, generator=g) for _ in range(reps)]
        else:
            parts = [torch.arange(self.n_items)] * reps
        return torch.cat(parts)[:total]

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples


def default_num_workers(devices_per_node: int = 1) -> int:
    """DataLoader workers per rank: none on a 1-2 core machine, else a share of the cores.

    Decoding runs in the workers while the model trains; with very few cores the extra
    processes only compete with the training process.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = int(cores or 1)
    per_rank = cores // max(int(devices_per_node), 1)
    if per_rank <= 2:
        return 0
    return min(8, per_rank - 1)


class PoseDataModule(L.LightningDataModule):
    """Training and validation loaders for one `DataPipeline`.

    Args:
        pipeline: the `posekit.data.DataPipeline` for the model.
        train_labels, val_labels: `PoseLabels` splits.
        optimization: the `OptimizationConfig` (batch size and epoch lengths).
        num_workers: DataLoader workers per rank (None: `default_num_workers`).
        seed: shuffling seed.
    """

    def __init__(
        self,
        pipeline: Any,
        train_labels: Any,
        val_labels: Any,
        optimization: Any,
        num_workers: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.pipeline = pipeline
        self.train_labels = train_labels
        self.val_labels = val_labels
        self.optimization = optimization
        self.num_workers = num_workers
        self.seed = int(seed)
        from posekit.data.channels import video_channels, warn_converted_videos

        warn_converted_videos(
            [*video_channels(train_labels), *video_channels(val_labels)],
            pipeline.frame_channels,
            "the model",
        )
        self.train_dataset = pipeline.dataset(train_labels)
        self.val_dataset = pipeline.dataset(val_labels)

    @classmethod
    def from_config(
        cls,
        config: Any,
        train_labels: Any,
        val_labels: Any,
        heads: Any,
        max_stride: int | None = None,
        num_workers: int | None = None,
        seed: int = 0,
    ) -> PoseDataModule:
        """From a `TrainingJobConfig`, `PoseLabels` splits and the model's heads.

        Builds the `DataPipeline` for `heads` (`Model.head_specs`). `max_stride` is the
        model's (`model.maximum_stride`); by default the backbone config's `max_stride`.
        """
        from posekit.data.dataset import DataPipeline

        pipeline = DataPipeline.from_config(
            config, train_labels, heads, max_stride=max_stride, seed=seed
        )
        return cls(pipeline, train_labels, val_labels, config.optimization, num_workers, seed)

    # ---------------------------------------------------------------- distributed view

    def _dist(self) -> tuple[int, int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1, 1
        per_node = max(int(getattr(trainer, "num_devices", 1) or 1), 1)
        return int(trainer.global_rank), int(trainer.world_size), per_node

    @property
    def batch_size(self) -> int:
        return int(self.optimization.batch_size)

    def train_batches(self, world_size: int | None = None) -> int:
        ws = self._dist()[1] if world_size is None else world_size
        o = self.optimization
        return epoch_batches(
            len(self.train_dataset), o.batch_size, o.batches_per_epoch, o.min_batches_per_epoch, ws
        )

    def val_batches(self, world_size: int | None = None) -> int:
        ws = self._dist()[1] if world_size is None else world_size
        o = self.optimization
        return epoch_batches(
            len(self.val_dataset),
            o.batch_size,
            o.val_batches_per_epoch,
            o.min_val_batches_per_epoch,
            ws,
        )

    # ---------------------------------------------------------------- loaders

    def _loader(self, dataset, batches: int, shuffle: bool, seed: int) -> DataLoader:
        from posekit.data.dataset import collate_samples

        rank, world, per_node = self._dist()
        sampler = EpochSampler(
            len(dataset),
            batches * self.batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world,
        )
        workers = (
            self.num_workers if self.num_workers is not None else default_num_workers(per_node)
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_samples,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.train_batches(), True, self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batches(), False, self.seed)

    def viz_batch(self) -> dict[str, Any] | None:
        """A raw batch of the first validation example (for per-epoch pictures)."""
        from posekit.data.dataset import collate_samples

        if len(self.val_dataset) == 0:
            return None
        return collate_samples([self.val_dataset.raw_sample(0)])


__all__ = ["EpochSampler", "PoseDataModule", "default_num_workers", "epoch_batches"]
