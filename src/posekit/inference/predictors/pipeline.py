"""Frames in, batches out: what a predictor reads, decoded in the background.

Prediction is limited by the model on a GPU and by decoding on many CPUs, so the two
overlap: a reader thread (`posekit.data.video.BackgroundIterator`) decodes frames in
order and copies them straight into reusable batch buffers (`BufferPool`), while the
main thread runs the model on the previous batch. At most a few batches are in flight,
so memory stays flat whatever the length of the video. A frame that cannot be decoded
travels as a `Skip` notice instead of stopping the run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from posekit.data.video import iter_frames, remember_media_metadata
from posekit.errors import PosekitError


@dataclass
class Item:
    """One frame of a batch: where it comes from and, on labels, its labeled instances."""

    video: Any
    frame_idx: int
    gt: list[np.ndarray] | None = None


@dataclass
class Batch:
    buffer: Any  # (batch_size, H, W, C) uint8 from the pool; the first `n` rows are used
    n: int
    items: list[Item]


@dataclass
class Skip:
    """A frame that failed to decode; the main thread warns about it and counts it."""

    video: Any
    frame_idx: int
    error: BaseException


#: The filename of the `sleap_io.Video` that in-memory frames are predicted as.
IN_MEMORY_FILENAME = "in-memory frames"


def check_frame_array(frames) -> np.ndarray:
    """In-memory frames as predictors take them: a (N, H, W, C) uint8 array, C 1 or 3."""
    arr = np.asarray(frames)
    shape = tuple(arr.shape)
    if (
        arr.dtype != np.uint8
        or arr.ndim != 4
        or arr.shape[3] not in (1, 3)
        or min(shape, default=0) < 1
    ):
        raise PosekitError(
            "in-memory frames must be a uint8 array of shape (N, H, W, C) with C = 1 "
            f"(grayscale) or 3 (RGB) and N, H, W >= 1; got {arr.dtype} {shape} (a single "
            "frame: frames[None]; a grayscale stack (N, H, W): frames[..., None]; float "
            "images: convert to uint8 0-255)"
        )
    return arr


def source_items(source, frames) -> tuple[list, int, Any, dict]:
    """What to predict on `source`: (list of (video, frame_idx, labeled frame or None),
    number of frames, the source's labels or None, readers).

    `source` is a video or ``.slp`` path, a `sleap_io.Video`, a `sleap_io.Labels` or
    in-memory frames, a (N, H, W, C) uint8 numpy array; on labels only the labeled frames
    are predicted (and `frames` selects among them). In-memory frames are predicted as a
    `sleap_io.Video` without a backend (filename `IN_MEMORY_FILENAME`, shape recorded);
    ``readers`` maps ``id(video)`` to the function that returns its frame ``i``.
    """
    import sleap_io as sio

    from posekit.inference.checks import (
        open_source,
        select_frames,
        select_labeled_frames,
        select_video_frames,
    )

    if isinstance(source, np.ndarray):
        arr = check_frame_array(source)
        video = sio.Video(filename=IN_MEMORY_FILENAME, open_backend=False)
        video.backend_metadata["shape"] = tuple(int(x) for x in arr.shape)
        inds = select_frames(frames, len(arr), "the in-memory frames")
        return [(video, i, None) for i in inds], len(inds), None, {id(video): arr.__getitem__}

    # Checked first (`posekit.inference.checks`): a file that does not read, labels without
    # labeled frames or whose videos are missing, and a selection of no frame are refused
    # before any model runs.
    source = open_source(source)
    if isinstance(source, sio.Labels):
        lfs = select_labeled_frames(source, frames)
        return [(lf.video, lf.frame_idx, lf) for lf in lfs], len(lfs), source, {}
    if isinstance(source, sio.Video):
        inds = select_video_frames(source, frames)
        return [(source, i, None) for i in inds], len(inds), None, {}
    raise PosekitError(
        "predict() takes a video or .slp path, a sleap_io.Video, a sleap_io.Labels or "
        f"in-memory frames (a (N, H, W, C) uint8 numpy array); got {type(source).__name__}"
    )


def _runs(items):
    """Split items into runs of one video: (video, [(frame_idx, labeled frame), ...])."""
    run: list = []
    for video, frame_idx, lf in items:
        if run and run[0][0] is not video:
            yield run[0][0], [(i, f) for _, i, f in run]
            run = []
        run.append((video, frame_idx, lf))
    if run:
        yield run[0][0], [(i, f) for _, i, f in run]


def _gt_points(lf, skeleton_names: list[str]) -> list[np.ndarray]:
    """User instances of a labeled frame as (n_nodes, 2) arrays in the model's node order."""
    out = []
    instances = list(getattr(lf, "user_instances", lf.instances))
    for inst in instances:
        pts = np.asarray(inst.numpy(), dtype=np.float64)
        names = list(inst.skeleton.node_names)
        arr = np.full((len(skeleton_names), 2), np.nan)
        for j, name in enumerate(skeleton_names):
            if name in names:
                arr[j] = pts[names.index(name)]
        if not np.isnan(arr).all():
            out.append(arr)
    return out


def read_batches(
    items,
    *,
    batch_size: int | Callable[[tuple], int],
    node_names: list[str],
    threads: bool,
    pool: BufferPool,
    stop: threading.Event,
    readers: dict | None = None,
) -> Iterator[Batch | Skip]:
    """Decode frames in order (sequentially where possible) and yield batches.

    Runs in the reader thread. Frames are copied straight into a batch buffer from `pool`
    (pinned memory on CUDA), so the main thread gets a ready (N, H, W, C) uint8 array and
    never stacks frames itself. A batch holds frames of one video and one shape. Labeled
    instances come along in `node_names` order for the top-down ground-truth modes.
    `threads`: let FFmpeg decode with frame threads (worth it when the CPU is otherwise
    idle, i.e. the model runs on a GPU; on CPU inference torch uses every core already).
    ``readers``: ``id(video)`` -> frame reader, for videos without a backend (in-memory
    frames, `source_items`). `batch_size` may be a function of the frame shape
    (H, W, C) (`Predictor.plan_batch`: large frames get smaller batches).
    """
    buf = None
    metas: list[Item] = []

    def flush():
        nonlocal buf, metas
        if metas:
            batch = Batch(buf, len(metas), metas)
            buf, metas = None, []
            return batch
        return None

    for video, run in _runs(items):
        lfs = {i: lf for i, lf in run if lf is not None}
        fallback = (lambda i, lfs=lfs: lfs[i].image) if lfs else None
        if readers and id(video) in readers:
            fallback = readers[id(video)]
        read_stats: dict = {}
        shape = None
        pending_metadata = True
        frames = iter_frames(
            video, [i for i, _ in run], fallback=fallback, threads=threads, stats=read_stats
        )
        # iter_frames yields exactly one result per requested index, in order.
        for (_, lf), (frame_idx, image, err) in zip(run, frames):
            if stop.is_set():
                frames.close()
                return
            if err is not None:
                yield Skip(video, frame_idx, err)
                continue
            if image.ndim == 2:
                image = image[..., None]
            shape = image.shape
            gt = _gt_points(lf, node_names) if lf is not None else None
            if metas and (metas[0].video is not video or buf.shape[1:] != image.shape):
                yield flush()
            if not metas:
                size = batch_size(image.shape) if callable(batch_size) else batch_size
                buf = pool.acquire((size, *image.shape), stop)
                if buf is None:
                    return
            buf[len(metas)] = image
            metas.append(Item(video, int(frame_idx), gt))
            if len(metas) >= len(buf):
                yield flush()
                if pending_metadata and read_stats.get("mode") == "stream":
                    # Once the first batch is out (overlapping the model's work), record
                    # what saving the predictions needs, so that sleap-io does not
                    # decode the whole video again to learn its shape.
                    remember_media_metadata(video, shape, read_stats.get("num_frames"))
                    pending_metadata = False
        last = flush()
        if last is not None:
            yield last
        if pending_metadata and shape is not None and read_stats.get("mode") == "stream":
            remember_media_metadata(video, shape, read_stats.get("num_frames"))


class BufferPool:
    """Reusable uint8 batch buffers shared by the reader thread and the main thread.

    At most ``size`` buffers exist (bounding memory together with the batch queue); the
    reader blocks until the main thread releases one. Reuse avoids page-faulting fresh
    allocations for every batch and, on CUDA, lets the buffers be pinned (page-locked)
    once so host-to-device copies are fast and asynchronous. A buffer is released only
    after its batch's predictions are back on the CPU, so an in-flight copy never sees
    it overwritten.
    """

    def __init__(self, size: int, pin_memory: bool = False):
        self.size = int(size)
        self.pin_memory = bool(pin_memory)
        self._free: queue.Queue = queue.Queue()
        self._made = 0
        self._shape: tuple | None = None
        self._lock = threading.Lock()

    def _new(self, shape):
        if self.pin_memory:
            import torch

            return torch.empty(shape, dtype=torch.uint8, pin_memory=True).numpy()
        return np.empty(shape, np.uint8)

    def acquire(self, shape: tuple, stop: threading.Event):
        """A free buffer of `shape`; None once `stop` is set while waiting for one."""
        shape = tuple(int(x) for x in shape)
        with self._lock:
            if shape != self._shape:
                # New frame size: drop buffers of the old size (outstanding ones are
                # discarded when released).
                self._shape = shape
                self._made = 0
                while True:
                    try:
                        self._free.get_nowait()
                    except queue.Empty:
                        break
            if self._free.empty() and self._made < self.size:
                self._made += 1
                return self._new(shape)
        while not stop.is_set():
            try:
                buf = self._free.get(timeout=0.1)
            except queue.Empty:
                continue
            if buf.shape == self._shape:
                return buf
        return None

    def release(self, buf) -> None:
        if buf.shape == self._shape:
            self._free.put(buf)

    def as_tensor(self, buf):
        import torch

        return torch.from_numpy(buf)


class LineProgress:
    """Progress as plain lines every `every` of the frames, for output that is not a
    terminal (a log file, a SLURM job's output), where a live bar lands as a block of
    redrawn lines: ``Predicting: 150/1000 frames (15%), 12.3 frames/s, ETA 0:01:09``.
    Takes the calls `Predictor` makes on a rich `Progress`."""

    def __init__(self, total: int, description: str, every: float = 0.05):
        self.total = max(int(total), 1)
        self.step = max(int(self.total * every), 1)
        self.description = description
        self._next = self.step

    def update(self, task, *, completed: int, fps: float, description: str | None = None):
        if completed < self._next and completed < self.total:
            return
        self._next = (completed // self.step + 1) * self.step
        left = (self.total - completed) / fps if fps > 0 else 0.0
        s = int(round(left))
        print(
            f"{description or self.description}: {completed}/{self.total} frames "
            f"({100 * completed // self.total}%), {fps:.1f} frames/s, "
            f"ETA {s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}",
            flush=True,
        )

    def stop(self) -> None:
        pass


def make_progress(total: int, description: str = "Predicting"):
    """A started progress display with frames/s, and its task id: a rich bar in a
    terminal, else `LineProgress`."""
    import sys

    if not getattr(sys.stdout, "isatty", lambda: False)():
        return LineProgress(total, description), 0
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} frames/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    task = progress.add_task(description, total=total, fps=0.0)
    progress.start()
    return progress, task
