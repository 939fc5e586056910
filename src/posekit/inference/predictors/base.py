"""Predictors: trained models + peak finding + grouping -> `sleap_io.Labels`.

One class per SLEAP inference approach, with SLEAP 1.4.1's behaviour and defaults:

- `SingleInstancePredictor`: one global peak per part; instance score = sum of the
  point scores.
- `TopDownPredictor`: a centroid model finds anchor points (local peaks); a crop of the
  centered-instance model's ``crop_size`` is cut around each (bilinear, zero outside the
  frame, as TensorFlow's ``crop_and_resize``) and the centered-instance model finds one
  global peak per part in it. Instance score = centroid confidence. Either model may be
  missing when predicting on labels: without a centroid model the labels' own centroids
  are used (anchor part, else bounding-box centre; score 1); without a centered-instance
  model each centroid takes the nearest labeled instance (SLEAP's ground-truth mode, for
  evaluating a centroid model) and, on unlabeled frames, an instance holding only the
  anchor point.
- `BottomUpPredictor`: local peaks grouped by part affinity fields (`PAFGrouper`).
- `BottomUpMultiClassPredictor`: local peaks grouped into identities by class maps.
- `TopDownMultiClassPredictor`: top-down crops assigned to identities by class vectors.

`load_predictor` picks the class from the model types. `predict(source)` accepts a video
path, an ``.slp`` path, a `sleap_io.Video` or a `sleap_io.Labels` (its labeled frames are
predicted). Frames are decoded by a background thread while the model runs, batched,
and run under `torch.inference_mode`; a frame that fails to decode is skipped with a
warning and counted in `predictor.stats`.

SLEAP conventions kept for parity (see `refinement.to_image_coordinates`): map pixel ``i``
is input pixel ``i * stride``; with input scaling the point is divided by the scale and
0.5 is added. Top-down crops are sampled starting at the crop origin
``centroid - (crop_size - 1) / 2`` (the crop's pixel 0, as in training), and peaks found
in a crop get that origin added back. SLEAP 1.4.1 adds ``centroid - crop_size / 2``
instead, which shifts its top-down predictions by -0.5 px on both axes relative to the
labels its models were trained on; pass ``sleap_crop_offsets=True`` to reproduce that
shift exactly.

A centered-instance model with input scaling ``s != 1`` was trained on crops of
``crop_size`` pixels cut from frames already resized by ``s``; here the matching
full-resolution region (``crop_size / s`` pixels) is cut and then resized. SLEAP 1.4.1
cuts ``crop_size`` full-resolution pixels instead, so the model sees animals at the
wrong scale (its ``centered_instance_with_scaling`` test model misses by tens of pixels
that way, by ~2 px here).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posekit.errors import PosekitError
from posekit.inference.runtime import check_runtime_options, make_runner

DEFAULT_PEAK_THRESHOLD = 0.2


# --------------------------------------------------------------------------- helpers


def resolve_device(device: str | None = "auto") -> str:
    """``"auto"`` -> cuda if available, else mps, else cpu; anything else is passed on."""
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise PosekitError(
            f"device {device!r} requested but CUDA is not available; use --device cpu"
        )
    return str(device)


def _device_type(device: str) -> str:
    """ "cuda:1" -> "cuda"."""
    import torch

    return torch.device(device).type


def parse_frames(spec: Any, n_frames: int | None = None) -> list[int] | None:
    """Frame selection -> sorted unique indices.

    Accepts None (all), an int, an iterable of ints, or a string such as ``"0-999"``
    (inclusive, as SLEAP's ``--frames``) or ``"0-9,20,30-39"``. Indices at or beyond
    ``n_frames`` are dropped with a warning.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, int | np.integer):
        inds = [int(spec)]
    elif isinstance(spec, str):
        inds = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise ValueError
                    inds.extend(range(lo, hi + 1))
                else:
                    inds.append(int(part))
            except ValueError as err:
                raise PosekitError(
                    f"cannot read frame selection {spec!r}: use e.g. '0-999' (inclusive) or "
                    "'0,5,10-20'"
                ) from err
    else:
        inds = [int(i) for i in spec]
    if any(i < 0 for i in inds):
        raise PosekitError(f"frame indices must be >= 0; got {spec!r}")
    inds = sorted(set(inds))
    if n_frames is not None:
        beyond = [i for i in inds if i >= n_frames]
        if beyond:
            warnings.warn(
                f"{len(beyond)} requested frame(s) are beyond the video's {n_frames} frames "
                f"(first: {beyond[0]}); they are skipped",
                stacklevel=2,
            )
            inds = [i for i in inds if i < n_frames]
    return inds


def _head(model, name: str):
    for head in model.heads:
        if head.name == name:
            return head
    return None


def _need_head(model, name: str):
    head = _head(model, name)
    if head is None:
        raise PosekitError(
            f"the {model.model_type} model has no {name}; its heads are "
            f"{[h.name for h in model.heads]}"
        )
    return head


def _skeleton_of(model):
    import sleap_io as sio

    skel = getattr(model, "skeleton", None)
    names = list(model.part_names)
    if skel is not None and (list(skel.node_names) == names or model.model_type == "centroid"):
        # A centroid model predicts no parts of its own; its instances use the skeleton
        # it was trained with.
        return skel
    if not names:
        raise PosekitError(
            "the model knows no part names or skeleton; its training_config.json should list "
            "data.labels.skeletons"
        )
    edges = [(names[a], names[b]) for a, b in model.edges]
    return sio.Skeleton(nodes=names, edges=edges)


def crop_centered(
    images,
    centroids,
    sample_inds,
    crop_size: int,
):
    """Square crops around centroids with TensorFlow ``crop_and_resize`` semantics.

    Crop pixel ``(i, j)`` samples the image bilinearly at
    ``(cy - (crop_size - 1) / 2 + i, cx - (crop_size - 1) / 2 + j)``; samples outside
    the image are 0. Computed in float32 in TensorFlow's order of operations so that
    integer-aligned crops reproduce SLEAP exactly; integer images are truncated back to
    their dtype as SLEAP does.

    Args:
        images: (N, H, W, C) tensor.
        centroids: (M, 2) (x, y).
        sample_inds: (M,) image of each crop.
        crop_size: side of the crops.

    Returns:
        (M, crop_size, crop_size, C) tensor of the images' dtype.
    """
    import torch

    n, h, w, c = images.shape
    m = centroids.shape[0]
    device = images.device
    if m == 0:
        return images.new_zeros((0, crop_size, crop_size, c))
    cen = centroids.to(device=device, dtype=torch.float32)
    half = torch.tensor((crop_size - 1) * 0.5, dtype=torch.float32, device=device)
    x1 = cen[:, 0] - half
    x2 = cen[:, 0] + half
    y1 = cen[:, 1] - half
    y2 = cen[:, 1] + half
    # A 1-pixel-wide image cannot be normalised (TF divides by zero there); use factor 1.
    fh = torch.tensor(float(max(h - 1, 1)), dtype=torch.float32, device=device)
    fw = torch.tensor(float(max(w - 1, 1)), dtype=torch.float32, device=device)
    # Normalise, then map back like TF's kernel does (this round trip is not exact).
    x1n, x2n, y1n, y2n = x1 / fw, x2 / fw, y1 / fh, y2 / fh
    steps = torch.arange(crop_size, dtype=torch.float32, device=device)
    if crop_size > 1:
        hs = (y2n - y1n) * fh / (crop_size - 1)
        ws = (x2n - x1n) * fw / (crop_size - 1)
        in_y = y1n[:, None] * fh + steps[None, :] * hs[:, None]  # (M, S)
        in_x = x1n[:, None] * fw + steps[None, :] * ws[:, None]
    else:
        in_y = (0.5 * (y1n + y2n) * fh)[:, None]
        in_x = (0.5 * (x1n + x2n) * fw)[:, None]
    valid_y = (in_y >= 0) & (in_y <= h - 1)
    valid_x = (in_x >= 0) & (in_x <= w - 1)
    top = torch.floor(in_y).clamp(0, h - 1).long()
    bottom = torch.ceil(in_y).clamp(0, h - 1).long()
    left = torch.floor(in_x).clamp(0, w - 1).long()
    right = torch.ceil(in_x).clamp(0, w - 1).long()
    y_lerp = (in_y - torch.floor(in_y))[:, :, None, None]
    x_lerp = (in_x - torch.floor(in_x))[:, None, :, None]
    s = sample_inds.to(device).long()[:, None, None]

    def at(rows, cols):
        # Gather in the images' dtype, then convert only the crop pixels (not whole
        # frames): uint8 -> float32 is exact, so the result is the same.
        return images[s, rows[:, :, None], cols[:, None, :]].to(torch.float32)  # (M, S, S, C)

    tl, tr, bl, br = at(top, left), at(top, right), at(bottom, left), at(bottom, right)
    top_v = tl + (tr - tl) * x_lerp
    bottom_v = bl + (br - bl) * x_lerp
    out = top_v + (bottom_v - top_v) * y_lerp
    mask = (valid_y[:, :, None] & valid_x[:, None, :])[..., None]
    out = torch.where(mask, out, torch.zeros_like(out))
    if not images.dtype.is_floating_point:
        out = out.clamp(0, 255 if images.dtype == torch.uint8 else None).to(images.dtype)
    return out.to(images.dtype)


@dataclass
class RawInstance:
    """One predicted instance before it becomes a `sleap_io.PredictedInstance`."""

    points: np.ndarray  # (n_nodes, 2), NaN = missing
    point_scores: np.ndarray  # (n_nodes,)
    score: float
    track: int | None = None
    tracking_score: float | None = None


@dataclass
class _Item:
    video: Any
    frame_idx: int
    image: np.ndarray
    gt: list[np.ndarray] | None = None


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


def instance_centroids(instances: list[np.ndarray], anchor_index: int | None) -> np.ndarray:
    """Centroid of each labeled instance: the anchor part when visible, else the centre of
    the bounding box of its visible points (SLEAP's rule)."""
    out = np.zeros((len(instances), 2), np.float64)
    for i, pts in enumerate(instances):
        if anchor_index is not None and not np.isnan(pts[anchor_index]).any():
            out[i] = pts[anchor_index]
        else:
            out[i] = (np.nanmin(pts, axis=0) + np.nanmax(pts, axis=0)) / 2
    return out


# --------------------------------------------------------------------------- base class


class Predictor:
    """Shared loop: read frames, batch, run `_predict_batch`, build labels.

    Args:
        peak_threshold: minimum confidence-map value of a peak (SLEAP default 0.2).
        integral_refinement: integral regression (True) or quarter-pixel local refinement
            (False); ignored when the model has an offset-refinement head.
        integral_patch_size: patch size of integral refinement.
        max_instances: keep at most this many instances per frame (best first).
        batch_size: frames per forward pass.
        device: "auto", "cpu", "cuda", "cuda:1", "mps", ...
        precision: "fp32", "bf16", "fp16" (GPU) or "int8" (CPU); see
            `posekit.inference.runtime`.
        runtime: "torch" or "onnx" (onnxruntime, float32); see `posekit.inference.runtime`.
        progress: show a rich progress bar while predicting.
    """

    def __init__(
        self,
        *,
        peak_threshold: float = DEFAULT_PEAK_THRESHOLD,
        integral_refinement: bool = True,
        integral_patch_size: int = 5,
        max_instances: int | None = None,
        batch_size: int = 4,
        device: str = "auto",
        precision: str = "fp32",
        runtime: str = "torch",
        progress: bool = True,
    ):
        if batch_size < 1:
            raise PosekitError(f"batch_size must be at least 1; got {batch_size}")
        if max_instances is not None and max_instances < 1:
            raise PosekitError(f"max_instances must be at least 1 or None; got {max_instances}")
        self.peak_threshold = float(peak_threshold)
        self.integral_refinement = bool(integral_refinement)
        self.integral_patch_size = int(integral_patch_size)
        self.max_instances = max_instances
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        check_runtime_options(runtime, precision, self.device)
        self.precision = precision
        self.runtime = runtime
        self._runners: dict[int, Any] = {}
        self.progress = progress
        self.stats: dict[str, float] = {}
        self._tracks: list | None = None

    # -- to be provided by subclasses

    def _models(self) -> list:
        raise NotImplementedError

    def _predict_batch(self, images, gt: list | None) -> list[list[RawInstance]]:
        raise NotImplementedError

    @property
    def skeleton(self):
        raise NotImplementedError

    @property
    def class_names(self) -> list[str] | None:
        return None

    # -- shared machinery

    @property
    def refinement(self) -> str:
        return "integral" if self.integral_refinement else "local"

    def _to_device(self) -> None:
        for m in self._models():
            if m is not None:
                m.to(self.device).eval()

    def _forward(self, model, x):
        """``{head name: float32 output}`` of `model` on the preprocessed batch `x`,
        through this predictor's runtime and precision (one runner per model)."""
        runner = self._runners.get(id(model))
        if runner is None:
            runner = make_runner(
                model, device=self.device, precision=self.precision, runtime=self.runtime
            )
            self._runners[id(model)] = runner
        return runner(x)

    def predict_images(self, images, gt: list | None = None) -> list[list[RawInstance]]:
        """Predict a batch of frames given as (N, H, W, C) uint8 (numpy or torch).

        ``gt``: optional list (per frame) of labeled instances as (n_nodes, 2) arrays,
        used by the ground-truth modes of the top-down predictors.
        """
        import torch

        self._to_device()
        if not isinstance(images, torch.Tensor):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise PosekitError(
                f"images must be (N, H, W, C) or (N, H, W); got shape {tuple(images.shape)}"
            )
        with torch.inference_mode():
            return self._predict_batch(images, gt)

    def _track_objects(self, source_labels=None) -> list | None:
        import sleap_io as sio

        names = self.class_names
        if not names:
            return None
        existing = {t.name: t for t in (source_labels.tracks if source_labels else [])}
        return [existing.get(n) or sio.Track(name=n) for n in names]

    def _make_instance(self, raw: RawInstance, skeleton, tracks):
        import sleap_io as sio

        track = None
        if raw.track is not None and tracks is not None and raw.track < len(tracks):
            track = tracks[raw.track]
        return sio.PredictedInstance.from_numpy(
            points_data=np.asarray(raw.points, dtype=np.float64),
            skeleton=skeleton,
            point_scores=np.asarray(raw.point_scores, dtype=np.float64),
            score=float(raw.score),
            track=track,
            tracking_score=None if raw.tracking_score is None else float(raw.tracking_score),
        )

    def _items(self, source, frames) -> tuple[list, int, Any]:
        """(list of lazy (video, frame_idx, labeled_frame|None), total, labels|None)."""
        import sleap_io as sio

        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.exists():
                raise PosekitError(f"source not found: {path}")
            if path.name.endswith(".slp"):
                source = sio.load_slp(str(path))
            else:
                try:
                    source = sio.load_video(str(path))
                except Exception as err:  # noqa: BLE001 - report any backend failure
                    raise PosekitError(f"cannot open video {path}: {err}") from err
        if isinstance(source, sio.Labels):
            wanted = parse_frames(frames)
            lfs = [lf for lf in source.labeled_frames if wanted is None or lf.frame_idx in wanted]
            return [(lf.video, lf.frame_idx, lf) for lf in lfs], len(lfs), source
        if isinstance(source, sio.Video):
            from posekit.data.video import num_frames

            n = num_frames(source)
            inds = parse_frames(frames, n)
            inds = list(range(n)) if inds is None else inds
            return [(source, i, None) for i in inds], len(inds), None
        raise PosekitError(
            "predict() takes a video or .slp path, a sleap_io.Video or a sleap_io.Labels; "
            f"got {type(source).__name__}"
        )

    def _runs(self, items):
        """Split items into runs of one video: (video, [(frame_idx, labeled frame), ...])."""
        run: list = []
        for video, frame_idx, lf in items:
            if run and run[0][0] is not video:
                yield run[0][0], [(i, f) for _, i, f in run]
                run = []
            run.append((video, frame_idx, lf))
        if run:
            yield run[0][0], [(i, f) for _, i, f in run]

    def _batches(self, items, pool: _BufferPool, stop: threading.Event):
        """Decode frames in order (sequentially where possible) and yield batches.

        Runs in the reader thread (`BackgroundIterator`). Frames are copied straight into
        a batch buffer from `pool` (pinned memory on CUDA), so the main thread gets a
        ready (N, H, W, C) uint8 array and never stacks frames itself. Undecodable frames
        become `_Skip` notices that the main thread warns about and counts.
        """
        from posekit.data.video import iter_frames, remember_media_metadata

        names = list(self.skeleton.node_names)
        # FFmpeg frame threads pay off when the CPU is otherwise idle (GPU inference);
        # on CPU inference torch already uses every core and they only add contention.
        threads = _device_type(self.device) != "cpu"
        buf = None
        metas: list[_Item] = []

        def flush():
            nonlocal buf, metas
            if metas:
                batch = _Batch(buf, len(metas), metas)
                buf, metas = None, []
                return batch
            return None

        for video, run in self._runs(items):
            lfs = {i: lf for i, lf in run if lf is not None}
            fallback = (lambda i, lfs=lfs: lfs[i].image) if lfs else None
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
                    yield _Skip(video, frame_idx, err)
                    continue
                if image.ndim == 2:
                    image = image[..., None]
                shape = image.shape
                gt = _gt_points(lf, names) if lf is not None else None
                if metas and (metas[0].video is not video or buf.shape[1:] != image.shape):
                    yield flush()
                if not metas:
                    buf = pool.acquire((self.batch_size, *image.shape), stop)
                    if buf is None:
                        return
                buf[len(metas)] = image
                metas.append(_Item(video, int(frame_idx), None, gt))
                if len(metas) >= self.batch_size:
                    yield flush()
                    if pending_metadata and read_stats.get("mode") == "stream":
                        # Once the first batch is out (overlapping the model's work),
                        # record what saving the predictions needs, so that sleap-io
                        # does not decode the whole video again to learn its shape.
                        remember_media_metadata(video, shape, read_stats.get("num_frames"))
                        pending_metadata = False
            last = flush()
            if last is not None:
                yield last
            if pending_metadata and shape is not None and read_stats.get("mode") == "stream":
                remember_media_metadata(video, shape, read_stats.get("num_frames"))

    def _preprocess(self, model, images):
        """``model.preprocess`` on the uint8 batch moved to the model's device as uint8 (4x
        less to transfer than float; the conversion happens there, after dropping the
        pixels a downscale never reads). Other models (test doubles, wrappers) get the
        uint8 frames unchanged.
        """
        from posekit.model.network import Model

        if isinstance(model, Model):
            images = images.to(model.device, non_blocking=True)
        return model.preprocess(images)

    def predict(self, source, frames=None):
        """Predict poses on every frame of ``source`` -> `sleap_io.Labels`.

        Args:
            source: video path, ``.slp`` path, `sleap_io.Video` or `sleap_io.Labels`.
            frames: frame selection (see `parse_frames`); for labels, the frame indices
                of the labeled frames to predict.

        Media files are decoded sequentially in a background thread
        (`posekit.data.video`), with at most a few batches in flight, so
        memory does not grow with the video. A streamed video's shape, grayscale flag
        and fps are recorded in its ``backend_metadata`` (when absent) so that saving
        the returned labels does not decode the whole video again.
        """
        import sleap_io as sio
        import torch

        from posekit.data.video import BackgroundIterator

        items, total, source_labels = self._items(source, frames)
        self._to_device()
        skeleton = self.skeleton
        tracks = self._track_objects(source_labels)
        pin = _device_type(self.device) == "cuda"
        queue_size = 4
        pool = _BufferPool(size=queue_size + 2, pin_memory=pin)
        stop = threading.Event()
        frames_out = []
        videos: list = []
        skipped = 0
        t0 = time.perf_counter()
        n_done = 0
        progress = None
        task = None
        if self.progress:
            # torch.compile works on the first batch, silently for up to a minute
            first = "Compiling (first batch)" if self.runtime == "compile" else "Predicting"
            progress, task = _make_progress(total, first)
        reader = BackgroundIterator(self._batches(items, pool, stop), maxsize=queue_size)
        try:
            for batch in reader:
                if isinstance(batch, _Skip):
                    skipped += 1
                    warnings.warn(
                        f"skipping frame {batch.frame_idx} of "
                        f"{getattr(batch.video, 'filename', batch.video)}: it could not be "
                        f"decoded ({batch.error})",
                        stacklevel=2,
                    )
                    continue
                metas = batch.items
                gt = [it.gt for it in metas] if metas[0].gt is not None else None
                images = pool.as_tensor(batch.buffer)[: batch.n]
                if pin:
                    images = images.to(self.device, non_blocking=True)
                with torch.inference_mode():
                    results = self._predict_batch(images, gt)
                pool.release(batch.buffer)
                for it, raws in zip(metas, results):
                    insts = [self._make_instance(r, skeleton, tracks) for r in raws]
                    frames_out.append(sio.LabeledFrame(it.video, it.frame_idx, insts))
                    if not any(v is it.video for v in videos):
                        videos.append(it.video)
                n_done += batch.n
                if progress is not None:
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    progress.update(
                        task,
                        completed=n_done + skipped,
                        fps=n_done / elapsed,
                        description="Predicting",
                    )
        finally:
            stop.set()
            reader.close()
            if progress is not None:
                progress.stop()
        elapsed = time.perf_counter() - t0
        self.stats = {
            "frames": n_done,
            "skipped": skipped,
            "seconds": elapsed,
            "fps": n_done / elapsed if elapsed > 0 else 0.0,
        }
        if skipped:
            warnings.warn(
                f"{skipped} frame(s) could not be decoded and were skipped",
                stacklevel=2,
            )
        if source_labels is not None:
            videos = list(source_labels.videos)
        labels = sio.Labels(
            labeled_frames=frames_out,
            videos=videos,
            skeletons=[skeleton],
            tracks=list(tracks) if tracks else [],
        )
        labels.provenance["posekit_predictor"] = type(self).__name__
        return labels


@dataclass
class _Batch:
    buffer: Any  # (batch_size, H, W, C) uint8 from the pool; the first `n` rows are used
    n: int
    items: list[_Item]


@dataclass
class _Skip:
    video: Any
    frame_idx: int
    error: BaseException


class _BufferPool:
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


def _make_progress(total: int, description: str = "Predicting"):
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


# --------------------------------------------------------------------------- predictors


class _OneModelPredictor(Predictor):
    """A predictor that runs one full-frame model of type `model_type`."""

    model_type = ""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        if model.model_type != self.model_type:
            raise PosekitError(
                f"{type(self).__name__} needs a {self.model_type} model; got {model.model_type}"
            )
        self.model = model

    def _models(self):
        return [self.model]

    def _local_peaks(self, out: dict):
        """Local peaks (with refinement) of the multi-instance confidence-map head."""
        from posekit.ops.peaks import find_local_peaks

        return find_local_peaks(
            out[self.confmaps_head.name],
            threshold=self.peak_threshold,
            refinement=self.refinement,
            integral_patch_size=self.integral_patch_size,
            offsets=out.get("OffsetRefinementHead"),
        )

    @property
    def skeleton(self):
        return _skeleton_of(self.model)


class SingleInstancePredictor(_OneModelPredictor):
    """One animal per frame: a global peak per part."""

    model_type = "single_instance"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.confmaps_head = _need_head(model, "SingleInstanceConfmapsHead")

    def _predict_batch(self, images, gt):
        from posekit.ops.coordinates import to_image_coordinates
        from posekit.ops.peaks import find_global_peaks

        out = self._forward(self.model, self._preprocess(self.model, images))
        cms = out[self.confmaps_head.name]
        offsets = out.get("OffsetRefinementHead")
        pts, vals = find_global_peaks(
            cms,
            threshold=self.peak_threshold,
            refinement=self.refinement,
            integral_patch_size=self.integral_patch_size,
            offsets=offsets,
        )
        pts = to_image_coordinates(pts, self.confmaps_head.output_stride, self.model.input_scale)
        pts, vals = pts.cpu().numpy(), vals.cpu().numpy()
        results = []
        for p, v in zip(pts, vals):
            if np.isnan(p).all():
                results.append([])
            else:
                results.append([RawInstance(p, v, float(np.nansum(v)))])
        return results


class _TopDownBase(Predictor):
    """Centroid detection and cropping shared by the top-down predictors."""

    def __init__(
        self, centroid_model=None, confmap_model=None, sleap_crop_offsets: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.sleap_crop_offsets = bool(sleap_crop_offsets)
        if centroid_model is not None and centroid_model.model_type != "centroid":
            raise PosekitError(
                f"the first top-down model must be a centroid model; got {centroid_model.model_type}"
            )
        self.centroid_model = centroid_model
        self.confmap_model = confmap_model
        if centroid_model is not None:
            self.centroid_head = _need_head(centroid_model, "CentroidConfmapsHead")

    def _models(self):
        return [self.centroid_model, self.confmap_model]

    @property
    def crop_size(self) -> int:
        size = getattr(self.confmap_model, "crop_size", None) if self.confmap_model else None
        if not size:
            raise PosekitError(
                "the centered-instance model has no crop size: set "
                "data.instance_cropping.crop_size in its training_config.json"
            )
        return int(size)

    def _anchor_index(self, names: list[str]) -> int | None:
        anchor = None
        for m in (self.confmap_model, self.centroid_model):
            if m is not None and anchor is None:
                anchor = m.anchor_part
                if anchor is None and getattr(m, "config", None) is not None:
                    anchor = m.config.data.instance_cropping.center_on_part
        return names.index(anchor) if anchor in names else None

    def _find_centroids(self, images, gt):
        """(centroids (M, 2) full-image xy, values (M,), sample_inds (M,)) as tensors."""
        import torch

        from posekit.ops.coordinates import to_image_coordinates
        from posekit.ops.peaks import find_local_peaks, top_k_per_sample

        if self.centroid_model is None:
            if gt is None:
                raise PosekitError(
                    "without a centroid model the centroids come from labeled instances, so "
                    "predict on a labels file (.slp) or pass a centroid model as well"
                )
            anchor = self._anchor_index(list(self.skeleton.node_names))
            cents, samples = [], []
            for i, insts in enumerate(gt):
                if insts:
                    cents.append(instance_centroids(insts, anchor))
                    samples.extend([i] * len(insts))
            if cents:
                c = torch.as_tensor(np.concatenate(cents), dtype=torch.float32)
            else:
                c = torch.zeros((0, 2))
            s = torch.as_tensor(samples, dtype=torch.long)
            return c.to(self.device), torch.ones(len(s), device=self.device), s.to(self.device)

        model = self.centroid_model
        out = self._forward(model, self._preprocess(model, images))
        cms = out[self.centroid_head.name]
        offsets = out.get("OffsetRefinementHead")
        pts, vals, samples, _ = find_local_peaks(
            cms,
            threshold=self.peak_threshold,
            refinement=self.refinement,
            integral_patch_size=self.integral_patch_size,
            offsets=offsets,
        )
        pts = to_image_coordinates(pts, self.centroid_head.output_stride, model.input_scale)
        keep = top_k_per_sample(vals, samples, self._centroid_limit())
        return pts[keep], vals[keep], samples[keep]

    def _centroid_limit(self) -> int | None:
        return self.max_instances

    def _run_crops(self, images, centroids, samples):
        """Crop, run the centered-instance model, find one peak per part.

        Returns (points (M, n_nodes, 2) full-image coordinates, values (M, n_nodes), outputs
        of the model for the crops) as tensors.
        """
        import torch

        from posekit.ops.coordinates import to_image_coordinates
        from posekit.ops.peaks import find_global_peaks

        model = self.confmap_model
        head = self._confmap_head
        scale = float(model.input_scale)
        # The crop size is in the model's (scaled) input pixels, as in training, where
        # frames are resized before cropping: cut the matching full-resolution region.
        size = int(round(self.crop_size / scale)) if scale != 1.0 else self.crop_size
        images_dev = images.to(self.device)
        all_pts, all_vals, all_out = [], [], []
        chunk = max(16, 4 * self.batch_size)
        for start in range(0, centroids.shape[0], chunk):
            c = centroids[start : start + chunk]
            s = samples[start : start + chunk]
            crops = crop_centered(images_dev, c, s, size)
            out = self._forward(model, self._preprocess(model, crops))
            cms = out[head.name]
            pts, vals = find_global_peaks(
                cms,
                threshold=self.peak_threshold,
                refinement=self.refinement,
                integral_patch_size=self.integral_patch_size,
                offsets=out.get("OffsetRefinementHead"),
            )
            shift = size / 2 if self.sleap_crop_offsets else (size - 1) / 2
            offsets = c.to(torch.float32) - shift
            pts = to_image_coordinates(pts, head.output_stride, model.input_scale, offsets)
            all_pts.append(pts)
            all_vals.append(vals)
            all_out.append(out)
        n_nodes = len(model.part_names)
        if not all_pts:
            return (
                torch.zeros((0, n_nodes, 2), device=self.device),
                torch.zeros((0, n_nodes), device=self.device),
                [],
            )
        return torch.cat(all_pts), torch.cat(all_vals), all_out


class TopDownPredictor(_TopDownBase):
    """Centroid model -> crops -> centered-instance model (either may be None on labels).

    ``sleap_crop_offsets=True`` reproduces SLEAP's -0.5 px top-down shift (module doc).
    """

    def __init__(self, centroid_model=None, confmap_model=None, **kwargs):
        if centroid_model is None and confmap_model is None:
            raise PosekitError(
                "TopDownPredictor needs a centroid model, a centered-instance model, or both"
            )
        if confmap_model is not None and confmap_model.model_type != "centered_instance":
            raise PosekitError(
                f"the second top-down model must be a centered_instance model; got "
                f"{confmap_model.model_type}"
            )
        super().__init__(centroid_model, confmap_model, **kwargs)
        if confmap_model is not None:
            self._confmap_head = _need_head(confmap_model, "CenteredInstanceConfmapsHead")

    @property
    def skeleton(self):
        if self.confmap_model is not None:
            return _skeleton_of(self.confmap_model)
        return _skeleton_of(self.centroid_model)

    def _predict_batch(self, images, gt):
        n = images.shape[0]
        centroids, cvals, samples = self._find_centroids(images, gt)
        results: list[list[RawInstance]] = [[] for _ in range(n)]
        if self.confmap_model is None:
            return self._centroid_only(centroids, cvals, samples, gt, results)
        pts, vals, _ = self._run_crops(images, centroids, samples)
        pts, vals = pts.cpu().numpy(), vals.cpu().numpy()
        cvals_np, samples_np = cvals.cpu().numpy(), samples.cpu().numpy()
        for p, v, cv, s in zip(pts, vals, cvals_np, samples_np):
            if np.isnan(p).all():
                continue
            results[int(s)].append(RawInstance(p, v, float(cv)))
        return results

    def _centroid_only(self, centroids, cvals, samples, gt, results):
        """SLEAP's ground-truth instance mode; anchor-only instances without labels."""
        names = list(self.skeleton.node_names)
        anchor = self._anchor_index(names)
        cents = centroids.cpu().numpy()
        cvals = cvals.cpu().numpy()
        samples = samples.cpu().numpy()
        for c, cv, s in zip(cents, cvals, samples):
            s = int(s)
            frame_gt = gt[s] if gt is not None else None
            if frame_gt:
                # Nearest labeled instance: smallest distance from the centroid to any of
                # its points.
                d = [np.nanmin(np.linalg.norm(g - c[None], axis=-1)) for g in frame_gt]
                best = frame_gt[int(np.nanargmin(d))]
                results[s].append(
                    RawInstance(best.copy(), np.where(np.isnan(best[:, 0]), np.nan, 1.0), float(cv))
                )
            elif anchor is not None:
                pts = np.full((len(names), 2), np.nan)
                pts[anchor] = c
                sc = np.full((len(names),), np.nan)
                sc[anchor] = cv
                results[s].append(RawInstance(pts, sc, float(cv)))
            else:
                raise PosekitError(
                    "a centroid model without an anchor part only finds bounding-box centres, "
                    "which are not skeleton points: predict on labels (its instances are then "
                    "matched to the centroids) or add a centered-instance model"
                )
        return results


class BottomUpPredictor(_OneModelPredictor):
    """Multi-instance confidence maps + part affinity fields."""

    model_type = "multi_instance"

    def __init__(
        self,
        model,
        *,
        max_edge_length_ratio: float = 0.25,
        dist_penalty_weight: float = 1.0,
        paf_line_points: int = 10,
        min_line_scores: float = 0.25,
        min_instance_peaks: int | float = 0,
        **kwargs,
    ):
        from posekit.inference.paf_grouping import PAFGrouper

        super().__init__(model, **kwargs)
        self.confmaps_head = _need_head(model, "MultiInstanceConfmapsHead")
        self.pafs_head = _need_head(model, "PartAffinityFieldsHead")
        self.grouper = PAFGrouper(
            edges=list(model.edges),
            n_nodes=len(model.part_names),
            pafs_stride=self.pafs_head.output_stride,
            max_edge_length_ratio=max_edge_length_ratio,
            dist_penalty_weight=dist_penalty_weight,
            n_points=paf_line_points,
            min_instance_peaks=min_instance_peaks,
            min_line_scores=min_line_scores,
            max_instances=self.max_instances,
        )

    def _predict_batch(self, images, gt):

        out = self._forward(self.model, self._preprocess(self.model, images))
        pafs = out[self.pafs_head.name]
        pts, vals, samples, channels = self._local_peaks(out)
        pts = pts * self.confmaps_head.output_stride
        grouped = self.grouper.group(pafs, pts, vals, samples, channels)
        scale = self.model.input_scale
        results = []
        for g in grouped:
            frame = []
            for p, v, sc in zip(g.points, g.point_scores, g.instance_scores):
                if scale != 1.0:
                    p = p / scale + 0.5
                if np.isnan(p).all():
                    continue
                frame.append(RawInstance(p, v, float(sc)))
            results.append(frame)
        return results


class BottomUpMultiClassPredictor(_OneModelPredictor):
    """Multi-instance confidence maps + class maps: one instance per identity."""

    model_type = "multi_class_bottomup"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.confmaps_head = _need_head(model, "MultiInstanceConfmapsHead")
        self.class_maps_head = _need_head(model, "ClassMapsHead")

    @property
    def class_names(self):
        return self.model.classes

    def _predict_batch(self, images, gt):
        from posekit.inference.identity import classify_peaks_from_maps

        out = self._forward(self.model, self._preprocess(self.model, images))
        class_maps = out[self.class_maps_head.name]
        pts, vals, samples, channels = self._local_peaks(out)
        cls_stride = self.class_maps_head.output_stride
        pts = pts * self.confmaps_head.output_stride / cls_stride
        points, point_vals, class_probs = classify_peaks_from_maps(
            class_maps,
            pts,
            vals,
            samples,
            channels,
            n_channels=out[self.confmaps_head.name].shape[1],
        )
        points = points * cls_stride
        scale = self.model.input_scale
        if scale != 1.0:
            points = points / scale + 0.5
        results = []
        for p_frame, v_frame, c_frame in zip(points, point_vals, class_probs):
            frame = []
            for k, (p, v, c) in enumerate(zip(p_frame, v_frame, c_frame)):
                if np.isnan(p).all():
                    continue
                frame.append(
                    RawInstance(
                        p, v, float(np.nanmean(v)), track=k, tracking_score=float(np.nanmean(c))
                    )
                )
            if self.max_instances is not None and len(frame) > self.max_instances:
                frame = sorted(frame, key=lambda r: -r.score)[: self.max_instances]
            results.append(frame)
        return results


class TopDownMultiClassPredictor(_TopDownBase):
    """Centroid model -> crops -> centered-instance model with class vectors."""

    def __init__(self, centroid_model=None, confmap_model=None, **kwargs):
        if confmap_model is None or confmap_model.model_type != "multi_class_topdown":
            raise PosekitError(
                "TopDownMultiClassPredictor needs a multi_class_topdown model (plus a centroid "
                "model, or labels to take centroids from)"
            )
        super().__init__(centroid_model, confmap_model, **kwargs)
        self._confmap_head = _need_head(confmap_model, "CenteredInstanceConfmapsHead")
        self.class_vectors_head = _need_head(confmap_model, "ClassVectorsHead")

    @property
    def skeleton(self):
        return _skeleton_of(self.confmap_model)

    @property
    def class_names(self):
        return self.confmap_model.classes

    def _centroid_limit(self) -> int | None:
        return None  # identities already bound the number of instances

    def _predict_batch(self, images, gt):
        import torch

        from posekit.inference.identity import classify_peaks_from_vectors, ensure_probabilities

        n = images.shape[0]
        centroids, cvals, samples = self._find_centroids(images, gt)
        pts, vals, outs = self._run_crops(images, centroids, samples)
        k = len(self.class_names or [])
        if outs:
            probs = ensure_probabilities(torch.cat([o[self.class_vectors_head.name] for o in outs]))
        else:
            probs = torch.zeros((0, k))
        points, point_vals, class_probs, crop_inds = classify_peaks_from_vectors(
            pts, vals, probs, samples, n_samples=n
        )
        cvals_np = cvals.cpu().numpy()
        results = []
        for f in range(n):
            frame = []
            for cls in range(points.shape[1]):
                p = points[f, cls]
                if crop_inds[f, cls] < 0 or np.isnan(p).all():
                    continue
                frame.append(
                    RawInstance(
                        p,
                        point_vals[f, cls],
                        float(cvals_np[crop_inds[f, cls]]),
                        track=cls,
                        tracking_score=float(class_probs[f, cls]),
                    )
                )
            if self.max_instances is not None and len(frame) > self.max_instances:
                frame = sorted(frame, key=lambda r: -r.score)[: self.max_instances]
            results.append(frame)
        return results


# --------------------------------------------------------------------------- loading


def load_predictor(
    model_paths,
    peak_threshold: float = DEFAULT_PEAK_THRESHOLD,
    integral_refinement: bool = True,
    max_instances: int | None = None,
    min_line_scores: float = 0.25,
    batch_size: int = 4,
    device: str = "auto",
    **kwargs,
) -> Predictor:
    """Load one or two model folders and return the matching predictor.

    ``model_paths``: a folder (SLEAP or posekit), a list of them, or already loaded
    models. Combinations: single_instance; centroid and/or centered_instance (top-down);
    multi_instance (bottom-up); multi_class_bottomup; multi_class_topdown with an optional
    centroid model. Extra keyword arguments go to the predictor (e.g. ``precision``,
    ``progress``, ``integral_patch_size``; bottom-up: ``max_edge_length_ratio``,
    ``dist_penalty_weight``, ``paf_line_points``, ``min_instance_peaks``).
    """
    if isinstance(model_paths, str | os.PathLike) or hasattr(model_paths, "model_type"):
        model_paths = [model_paths]
    model_paths = list(model_paths)
    if not model_paths:
        raise PosekitError("load_predictor needs at least one model folder")
    dev = resolve_device(device)
    models = []
    for p in model_paths:
        if hasattr(p, "model_type"):
            models.append(p)
        else:
            from posekit.model.folder import load_model

            models.append(load_model(p, device=dev))
    by_type: dict[str, Any] = {}
    for m in models:
        if m.model_type in by_type:
            raise PosekitError(
                f"two {m.model_type} models given; pass one model of each type "
                f"(got types {[x.model_type for x in models]})"
            )
        by_type[m.model_type] = m
    common = dict(
        peak_threshold=peak_threshold,
        integral_refinement=integral_refinement,
        max_instances=max_instances,
        batch_size=batch_size,
        device=dev,
        **kwargs,
    )
    types = set(by_type)
    bottomup_keys = {
        "max_edge_length_ratio",
        "dist_penalty_weight",
        "paf_line_points",
        "min_instance_peaks",
    }
    if types != {"multi_instance"}:
        stray = bottomup_keys & set(kwargs)
        if stray:
            raise PosekitError(f"{sorted(stray)} only apply to bottom-up (multi_instance) models")
    if types == {"single_instance"}:
        return SingleInstancePredictor(by_type["single_instance"], **common)
    if types <= {"centroid", "centered_instance"}:
        return TopDownPredictor(by_type.get("centroid"), by_type.get("centered_instance"), **common)
    if types == {"multi_instance"}:
        return BottomUpPredictor(
            by_type["multi_instance"], min_line_scores=min_line_scores, **common
        )
    if types == {"multi_class_bottomup"}:
        return BottomUpMultiClassPredictor(by_type["multi_class_bottomup"], **common)
    if types <= {"centroid", "multi_class_topdown"} and "multi_class_topdown" in types:
        return TopDownMultiClassPredictor(
            by_type.get("centroid"), by_type["multi_class_topdown"], **common
        )
    raise PosekitError(
        f"cannot combine models of types {sorted(types)}; valid sets are: single_instance; "
        "centroid + centered_instance (either alone on labels); multi_instance; "
        "multi_class_bottomup; centroid + multi_class_topdown"
    )
