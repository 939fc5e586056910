"""What every predictor shares: the prediction loop, model outputs, labels out.

A predictor provides `_predict_batch` (uint8 frames -> `RawInstance`s per frame) and
`skeleton`; the base class reads the source (`pipeline`), runs batches under
`torch.inference_mode` through the chosen runtime and precision, and turns the raw
instances into `sleap_io.Labels`. Which model types a predictor runs is the model-type
registry's answer (`posekit.model.registry`), not a list kept here: a predictor accepts a
model when the registry names it (or a class it derives from) as that type's predictor.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posekit.data.video import BackgroundIterator
from posekit.errors import PosekitError
from posekit.inference.memory import (
    AUTO_MAX_BATCH,
    BatchPlan,
    FrameCost,
    choose_batch_size,
    measure_frame_cost,
    parse_memory,
    probe_side,
)
from posekit.inference.predictors.pipeline import (
    BufferPool,
    Skip,
    make_progress,
    read_batches,
    source_items,
)
from posekit.inference.runtime import check_runtime_options, make_runner
from posekit.model.device import device_type, resolve_device
from posekit.model.registry import MODEL_TYPES, ModelType, model_type
from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD, frame_map_size

#: Undecodable frames warned about one by one; the rest are counted in the summary.
MAX_SKIP_WARNINGS = 5


@dataclass
class RawInstance:
    """One predicted instance before it becomes a `sleap_io.PredictedInstance`."""

    points: np.ndarray  # (n_nodes, 2), NaN = missing
    point_scores: np.ndarray  # (n_nodes,)
    score: float
    track: int | None = None
    tracking_score: float | None = None


#: Foreground probability above which a pixel belongs to an animal (mask heads).
MASK_THRESHOLD = 0.5


@dataclass
class RawMask:
    """One predicted segmentation mask before it becomes a `PredictedSegmentationMask`:
    (H, W) bool in frame pixels, its score, and the index of the frame's `RawInstance`
    it belongs to (None: not linked)."""

    mask: np.ndarray
    score: float
    instance: int | None = None


@dataclass
class PredictedFrame:
    """One predicted frame: its video, index and `sleap_io.PredictedInstance`s (None when
    the frame could not be decoded), and its `PredictedSegmentationMask`s."""

    video: Any
    frame_idx: int
    instances: list | None
    masks: list = field(default_factory=list)


def _make_mask(raw: RawMask, instances: list):
    from posekit.data.masks import to_sleap_mask

    inst = instances[raw.instance] if raw.instance is not None else None
    track = inst.track if inst is not None else None
    return to_sleap_mask(raw.mask, instance=inst, score=raw.score, track=track)


def need_head(model, name: str):
    """The head called `name` of `model`, with an error naming the heads it has."""
    for head in model.heads:
        if head.name == name:
            return head
    raise PosekitError(
        f"the {model.model_type} model has no {name}; its heads are {[h.name for h in model.heads]}"
    )


def skeleton_of(model):
    """The skeleton of the instances a model predicts: the one it was trained with when
    it matches its part names, else one built from its part names and edges."""
    import sleap_io as sio

    skel = getattr(model, "skeleton", None)
    names = list(model.part_names)
    anchor_only = not model_type(model.model_type).needs_part_names
    if skel is not None and (list(skel.node_names) == names or anchor_only):
        # A model that predicts only an anchor (centroid) has no parts of its own; its
        # instances use the skeleton it was trained with.
        return skel
    if not names:
        raise PosekitError(
            "the model knows no part names or skeleton; its training_config.json should list "
            "data.labels.skeletons"
        )
    edges = [(names[a], names[b]) for a, b in model.edges]
    return sio.Skeleton(nodes=names, edges=edges)


def types_run_by(cls: type) -> list[ModelType]:
    """The registry's model types whose predictor is `cls` or a class it derives from."""
    paths = {f"{k.__module__}:{k.__qualname__}" for k in cls.__mro__}
    return [t for t in MODEL_TYPES.values() if t.predictor in paths]


class Predictor:
    """Shared loop: read frames, batch, run `_predict_batch`, build labels.

    Args:
        peak_threshold: minimum confidence-map value of a peak (SLEAP default 0.2).
        integral_refinement: integral regression (True) or quarter-pixel local refinement
            (False); ignored when the model has an offset-refinement head.
        integral_patch_size: patch size of integral refinement.
        max_instances: keep at most this many instances per frame (best first).
        batch_size: frames per forward pass; None (the default): the largest of 1, 2 or
            4 that fits the memory budget for each frame size (`posekit.inference.memory`).
            An explicit batch is kept, with a warning when it may exceed the budget.
        max_memory: the memory budget for sizing the batch: ``"4G"``, ``"60%"`` (of the
            available memory), bytes, or None (80% of the free GPU memory on CUDA, 25% of
            the available memory elsewhere: `posekit.inference.memory.DEFAULT_FRACTION`).
        device: "auto", "cpu", "cuda", "cuda:1", "mps", ...
        precision: "fp32", "bf16", "fp16" (GPU) or "int8" (CPU); see
            `posekit.inference.runtime`.
        runtime: "torch" or "onnx" (onnxruntime, float32); see `posekit.inference.runtime`.
        progress: show a rich progress bar while predicting.
        sleap_compatible: reproduce SLEAP 1.4.1's predicted points wherever posekit
            deliberately differs (the top-down crop offsets, see `topdown`; peaks of
            full-frame maps looked for on the frame only, not on the stride padding,
            see `posekit.ops.peaks`); segmentation models: sleap-nn 0.3.5's masks (see
            `segmentation`). ``sleap_crop_offsets`` is an accepted alias.
        tta: test-time augmentation: confidence maps averaged over turned (and
            mirrored) copies of each batch (`posekit.inference.test_time_augmentation`);
            a `TestTimeAugmentation`, a ``--tta`` spelling (``"on"``, ``"rot:10+flip"``)
            or None (off, the default).
    """

    def __init__(
        self,
        *,
        peak_threshold: float = DEFAULT_PEAK_THRESHOLD,
        integral_refinement: bool = True,
        integral_patch_size: int = 5,
        max_instances: int | None = None,
        batch_size: int | None = None,
        max_memory: str | int | float | None = None,
        device: str = "auto",
        precision: str = "fp32",
        runtime: str = "torch",
        progress: bool = True,
        sleap_compatible: bool = False,
        sleap_crop_offsets: bool | None = None,
        tta=None,
    ):
        if sleap_crop_offsets is not None:
            if sleap_compatible and not sleap_crop_offsets:
                raise PosekitError(
                    "sleap_crop_offsets is an alias of sleap_compatible; pass only one of them"
                )
            sleap_compatible = bool(sleap_crop_offsets)
        if batch_size is not None and batch_size < 1:
            raise PosekitError(f"batch_size must be at least 1; got {batch_size}")
        if max_instances is not None and max_instances < 1:
            raise PosekitError(f"max_instances must be at least 1 or None; got {max_instances}")
        self.peak_threshold = float(peak_threshold)
        self.integral_refinement = bool(integral_refinement)
        self.integral_patch_size = int(integral_patch_size)
        self.max_instances = max_instances
        # the largest batch used (resumable chunks are multiples of it); per frame shape
        # the batch is this or a divisor of it (`plan_batch`)
        self.batch_size = int(batch_size) if batch_size is not None else AUTO_MAX_BATCH
        self.explicit_batch_size = batch_size is not None
        self.device = resolve_device(device)
        self.max_memory = max_memory
        if max_memory is not None:
            parse_memory(max_memory, self.device)  # a bad size fails before any work
        self.batch_plans: dict[tuple, BatchPlan] = {}
        self._frame_cost: FrameCost | None = None
        self._probe_runners: dict[int, Any] = {}
        check_runtime_options(runtime, precision, self.device)
        if precision == "bf16":
            from posekit.optimize import usable_bf16

            precision = "bf16" if usable_bf16(self.device) else "fp32"
        self.precision = precision
        self.runtime = runtime
        self._runners: dict[int, Any] = {}
        self.progress = progress
        self.sleap_compatible = bool(sleap_compatible)
        from posekit.inference.test_time_augmentation import TestTimeAugmentation

        if tta is not None and not isinstance(tta, TestTimeAugmentation):
            tta = TestTimeAugmentation.parse(tta)
        if tta is not None and sleap_compatible:
            raise PosekitError(
                "tta and sleap_compatible cannot be combined: SLEAP predicts each frame once"
            )
        self.tta = tta
        self._flip_perms: dict[int, dict] = {}
        self.stats: dict[str, float] = {}

    # -- to be provided by subclasses

    @classmethod
    def from_models(cls, models: Mapping[str, Any], **options) -> Predictor:
        """The predictor for `models` (model type -> loaded model), as `load_predictor`
        builds it once the registry has chosen this class."""
        raise NotImplementedError

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

    def _check_labels(self, labels, items) -> None:
        """Refuse labels this predictor would silently find nothing on (before any frame
        is read); the top-down predictors check the nodes they take from the labels."""

    # -- shared machinery

    @property
    def sleap_crop_offsets(self) -> bool:
        """The former name of `sleap_compatible` (kept as an alias)."""
        return self.sleap_compatible

    @property
    def refinement(self) -> str:
        return "integral" if self.integral_refinement else "local"

    def _keep_best(self, frame: list[RawInstance]) -> list[RawInstance]:
        """At most `max_instances` of a frame's instances, highest score first (the
        multi-class predictors, whose identities are not ranked otherwise)."""
        if self.max_instances is not None and len(frame) > self.max_instances:
            return sorted(frame, key=lambda r: -r.score)[: self.max_instances]
        return frame

    def _frame_map_hw(self, images, model, head) -> tuple[int, int] | None:
        """The rows and columns of `head`'s maps of full `images` (N, H, W, C) that lie on
        the frames, not on the stride padding: peaks are looked for there only
        (`posekit.ops.peaks`). None with `sleap_compatible` (SLEAP reads the whole map).
        """
        if self.sleap_compatible:
            return None
        scale = float(getattr(model, "input_scale", 1.0))
        return frame_map_size(images.shape[1:3], scale, int(head.output_stride))

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
        if self.tta is None:
            return runner(x)
        return self._augmented(model, runner, x)

    def _augmented(self, model, runner, x):
        """`runner(x)` with its confidence maps averaged over `self.tta`'s copies."""
        from posekit.inference.test_time_augmentation import (
            augmented_forward,
            head_flip_permutations,
            model_symmetries,
        )

        perms = self._flip_perms.get(id(model))
        if perms is None and self.tta.flip:
            pairs = model_symmetries(model)
            perms = head_flip_permutations(model, pairs)
            if len(model.part_names) > 1 and not pairs:
                warnings.warn(
                    "test-time flips: no left/right parts in the skeleton's symmetries or "
                    "the part names; every part is taken as its own mirror image",
                    stacklevel=2,
                )
            self._flip_perms[id(model)] = perms
        return augmented_forward(runner, x, self.tta, model.heads, perms)

    def _preprocess(self, model, images, resize: bool = True):
        """``model.preprocess`` on the uint8 batch moved to the model's device as uint8 (4x
        less to transfer than float; the conversion happens there, after dropping the
        pixels a downscale never reads). Other models (test doubles, wrappers) get the
        uint8 frames unchanged. ``resize=False``: the images are already resized by the
        model's input scaling (top-down crops of resized frames).
        """
        from posekit.model.network import Model

        if isinstance(model, Model):
            images = images.to(model.device, non_blocking=True)
        if not resize:
            return model.preprocess(images, resize=False)
        return model.preprocess(images)

    def _probe_batch(self, frames):
        """`_predict_batch` through eager float32 runners, whatever the runtime and
        precision: what `measure_frame_cost` measures (an upper bound for reduced
        precision; a compiled or ONNX graph runs the same layers). No peak passes the
        threshold, so blank frames cost no grouping work (its memory is per peak, small).
        """
        plain = self.runtime == "torch" and self.precision == "fp32"
        runners = self._runners if plain else self._probe_runners  # plain: built once
        saved = self._runners, self.runtime, self.precision, self.peak_threshold
        self._runners, self.runtime, self.precision = runners, "torch", "fp32"
        self.peak_threshold = float("inf")
        try:
            return self._predict_batch(frames, None)
        finally:
            self._runners, self.runtime, self.precision, self.peak_threshold = saved

    def frame_cost(self) -> FrameCost | None:
        """The measured memory cost of a frame (`posekit.inference.memory`), once per
        predictor; None for models that are not posekit models (test doubles, wrappers),
        whose batches are not sized."""
        from posekit.model.network import Model

        if self._frame_cost is None:
            models = [m for m in self._models() if m is not None]
            if not models or not all(isinstance(m, Model) for m in models):
                return None
            full = [m for m in models if not m.crop_size]
            if not full:  # crops alone (centres from the labels): small, and no blank probe
                return None
            side = max(probe_side(m.maximum_stride, m.input_scale) for m in full)
            self._to_device()
            self._frame_cost = measure_frame_cost(self._probe_batch, full[0].in_channels, side)
        return self._frame_cost

    def plan_batch(self, frame_shape: tuple) -> int:
        """The batch for frames of `frame_shape` (H, W, C) under the memory budget,
        chosen once per shape and kept in `batch_plans` (what the CLI prints)."""
        shape = tuple(int(x) for x in frame_shape)
        plan = self.batch_plans.get(shape)
        if plan is None:
            cost = self.frame_cost()
            if cost is None:
                return self.batch_size
            plan = choose_batch_size(
                cost.frame_bytes(shape),
                parse_memory(self.max_memory, self.device),
                self.batch_size if self.explicit_batch_size else None,
                fixed=cost.fixed,
                frame_shape=shape,
            )
            self.batch_plans[shape] = plan
        return plan.batch_size

    def _announce_plan(self, frame_shape) -> None:
        """Say a batch plan's warning once (in the caller's thread, where warning
        filters and tests see it)."""
        plan = self.batch_plans.get(tuple(int(x) for x in frame_shape))
        if plan is not None and plan.warning:
            warnings.warn(plan.warning, stacklevel=3)
            plan.warning = None

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

    def predict(self, source, frames=None):
        """Predict poses on every frame of ``source`` -> `sleap_io.Labels`.

        Args:
            source: video path, ``.slp`` path, `sleap_io.Video`, `sleap_io.Labels`, or
                in-memory frames: a (N, H, W, C) uint8 numpy array (C = 1 or 3), e.g.
                from a camera or a notebook, predicted as they are (no decoding); the
                labels then reference a `sleap_io.Video` named "in-memory frames".
            frames: frame selection (see `posekit.data.video.parse_frames`); for labels,
                the frame indices of the labeled frames to predict.

        Media files are decoded sequentially in a background thread
        (`posekit.data.video`), with at most a few batches in flight, so
        memory does not grow with the video. A streamed video's shape, grayscale flag
        and fps are recorded in its ``backend_metadata`` (when absent) so that saving
        the returned labels does not decode the whole video again.
        """
        import sleap_io as sio

        items, total, source_labels, readers = source_items(source, frames)
        if source_labels is not None:
            self._check_labels(source_labels, items)
        skeleton = self.skeleton
        tracks = self._track_objects(source_labels)
        frames_out = []
        videos: list = []
        for frame in self._stream(items, total, skeleton, tracks, readers):
            if frame.instances is None:  # undecodable, warned about in _stream
                continue
            frames_out.append(
                sio.LabeledFrame(
                    frame.video, frame.frame_idx, frame.instances, masks=list(frame.masks)
                )
            )
            if not any(v is frame.video for v in videos):
                videos.append(frame.video)
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

    @property
    def needs_labels(self) -> bool:
        """Whether this predictor takes part of its answer from labeled instances (a
        top-down pair missing its centroid model): then it predicts labeled frames only."""
        return False

    def iter_predict(self, video, frames=None, labels=None):
        """Predict frame by frame: yields a `PredictedFrame` per requested frame, in order.

        The streaming form of `predict` for one `sleap_io.Video` (or video path): nothing
        accumulates, so a caller can write results as they come (`posekit.inference.
        workflow` writes resumable chunks). A frame that cannot be decoded is yielded
        with ``instances=None`` (and warned about), so callers can count every frame.
        Identity models' tracks are the same `Track` objects for the whole stream. With
        `labels` (the project `video` belongs to), only its labeled frames are predicted,
        with their instances at hand (what a predictor that `needs_labels` uses).
        """
        if labels is not None:
            # The labeled frames of this one video, each with its instances (ground truth
            # for a predictor that `needs_labels`).
            items, _, _, readers = source_items(labels, frames)
            items = [it for it in items if it[0] is video]
            self._check_labels(labels, items)
            yield from self._stream(
                items, len(items), self.skeleton, self._track_objects(labels), readers
            )
            return
        items, total, source_labels, readers = source_items(video, frames)
        if source_labels is not None:
            raise PosekitError("iter_predict takes one video; use predict() for labels")
        yield from self._stream(items, total, self.skeleton, self._track_objects(None), readers)

    def _stream(self, items, total, skeleton, tracks, readers=None):
        """The shared loop: decode in the background, run batches, yield frames.

        A run in which no frame decodes fails (nothing is predicted, so nothing must be
        written); a few undecodable frames are skipped with a counted warning.
        """
        import torch

        self._to_device()
        self.frame_cost()  # measured here, not in the reader thread that plans batches
        kind = device_type(self.device)
        pin = kind == "cuda"
        queue_size = 4
        pool = BufferPool(size=queue_size + 2, pin_memory=pin)
        stop = threading.Event()
        skipped = 0
        first_error = None
        t0 = time.perf_counter()
        n_done = 0
        progress = None
        task = None
        if self.progress:
            # torch.compile works on the first batch, silently for up to a minute
            first = "Compiling (first batch)" if self.runtime == "compile" else "Predicting"
            progress, task = make_progress(total, first)
        batches = read_batches(
            items,
            batch_size=self.plan_batch,
            node_names=list(skeleton.node_names),
            threads=kind != "cpu",
            pool=pool,
            stop=stop,
            readers=readers or {},
        )
        reader = BackgroundIterator(batches, maxsize=queue_size)
        self.stats = {"frames": 0, "skipped": 0, "seconds": 0.0, "fps": 0.0}
        try:
            for batch in reader:
                if isinstance(batch, Skip):
                    skipped += 1
                    first_error = first_error or batch
                    if skipped <= MAX_SKIP_WARNINGS:
                        more = (
                            "; further undecodable frames are counted, not listed"
                            if skipped == MAX_SKIP_WARNINGS
                            else ""
                        )
                        warnings.warn(
                            f"skipping frame {batch.frame_idx} of "
                            f"{getattr(batch.video, 'filename', batch.video)}: it could not be "
                            f"decoded ({batch.error}){more}",
                            stacklevel=2,
                        )
                    yield PredictedFrame(batch.video, int(batch.frame_idx), None)
                    continue
                self._announce_plan(batch.buffer.shape[1:])
                metas = batch.items
                gt = [it.gt for it in metas] if metas[0].gt is not None else None
                images = pool.as_tensor(batch.buffer)[: batch.n]
                if pin:
                    images = images.to(self.device, non_blocking=True)
                with torch.inference_mode():
                    results = self._predict_batch(images, gt)
                pool.release(batch.buffer)
                n_done += batch.n
                elapsed = max(time.perf_counter() - t0, 1e-9)
                self.stats = {
                    "frames": n_done,
                    "skipped": skipped,
                    "seconds": elapsed,
                    "fps": n_done / elapsed,
                }
                if progress is not None:
                    progress.update(
                        task,
                        completed=n_done + skipped,
                        fps=n_done / elapsed,
                        description="Predicting",
                    )
                for it, raws in zip(metas, results):
                    poses = [r for r in raws if isinstance(r, RawInstance)]
                    insts = [self._make_instance(r, skeleton, tracks) for r in poses]
                    masks = [_make_mask(r, insts) for r in raws if isinstance(r, RawMask)]
                    yield PredictedFrame(it.video, it.frame_idx, insts, masks)
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
        if total and not n_done:
            detail = ""
            if first_error is not None:
                detail = (
                    f" (frame {first_error.frame_idx} of "
                    f"{getattr(first_error.video, 'filename', first_error.video)}: "
                    f"{first_error.error})"
                )
            raise PosekitError(
                f"none of the {total} frame(s) to predict could be decoded{detail}; the video "
                "is damaged or unreadable: copy it again or re-encode it with ffmpeg"
            )
        if skipped:
            warnings.warn(
                f"{skipped} frame(s) could not be decoded and were skipped",
                stacklevel=2,
            )


class OneModelPredictor(Predictor):
    """A predictor that runs one full-frame model, of a type the registry runs with it."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        types = [t.name for t in types_run_by(type(self))]
        if model.model_type not in types:
            raise PosekitError(
                f"{type(self).__name__} needs a {' or '.join(types)} model; got {model.model_type}"
            )
        self.model = model

    @classmethod
    def from_models(cls, models, **options):
        (model,) = models.values()
        return cls(model, **options)

    def _models(self):
        return [self.model]

    @property
    def skeleton(self):
        return skeleton_of(self.model)
