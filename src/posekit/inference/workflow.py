"""From SOURCEs to output files: what ``posekit predict`` does, as library functions.

1. `posekit.inference.sources.expand_sources` turns SOURCE arguments into per-video jobs;
2. `output_groups` decides the files: one ``<video>.predictions.slp`` beside each video
   and one ``<project>.predictions.slp`` per SLEAP project by default (SLEAP's names), or
   everything in the one ``-o`` file;
3. `run_prediction` predicts the jobs of one output frame by frame
   (`Predictor.iter_predict`), drops instances by the `InstanceFilter`, stores results in
   resumable chunks (`posekit.inference.chunks`), assembles them, runs an optional
   post-processing step (tracking: passed in by the caller, since tracking sits above
   inference), merges a project's predictions back into the project (`merge_into_project`:
   its user labels, suggestions and tracks stay, as with ``sleap-track``; the per-frame
   formats keep only the frames predicted: `frames_predicted_only`) and writes the output
   in the format its suffix names (`posekit.data.formats`), atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posekit.data.formats import copy_with_track, output_format, write_predictions
from posekit.data.masks import link_masks
from posekit.errors import PosekitError
from posekit.inference.chunks import ChunkStore
from posekit.inference.filters import InstanceFilter
from posekit.inference.sources import PredictionJob

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "PredictionRun",
    "default_output_path",
    "frames_predicted_only",
    "merge_into_project",
    "output_groups",
    "run_prediction",
]

#: Frames per resumable chunk (rounded up to a multiple of the batch size).
DEFAULT_CHUNK_SIZE = 1024


def default_output_path(source: str | os.PathLike, suffix: str = ".slp") -> Path:
    """SLEAP's naming: ``<source>.predictions.slp`` (``x.slp`` -> ``x.predictions.slp``)."""
    source = Path(source)
    name = source.name
    for end in (".pkg.slp", ".slp"):
        if name.endswith(end):
            return source.with_name(name[: -len(end)] + ".predictions" + suffix)
    return source.with_name(name + ".predictions" + suffix)


def output_groups(
    jobs: Sequence[PredictionJob], output: str | os.PathLike | None = None, suffix: str = ".slp"
) -> list[tuple[Path, list[PredictionJob]]]:
    """(output file, its jobs): all jobs into `output` when given, else one file per plain
    video and one per project, beside it. Two projects cannot share one output."""
    if output is not None:
        projects = {id(j.project): j.source for j in jobs if j.project is not None}
        if len(projects) > 1:
            raise PosekitError(
                "one -o output cannot hold two SLEAP projects ("
                + ", ".join(str(s) for s in projects.values())
                + "); predict them one at a time, or leave out -o for one file per project"
            )
        return [(Path(output), list(jobs))]
    groups: dict[Path, list[PredictionJob]] = {}
    for job in jobs:
        key = job.source if job.project is not None else Path(str(job.video.filename))
        groups.setdefault(default_output_path(key, suffix), []).append(job)
    return list(groups.items())


@dataclass
class PredictionRun:
    """What one output's run did."""

    output: Path
    labels: Any = None
    files: list[Path] = field(default_factory=list)
    frames: int = 0  # predicted in this run
    resumed_frames: int = 0  # taken from an interrupted run's chunks
    skipped: int = 0
    seconds: float = 0.0
    instances: int = 0
    masks: int = 0  # predicted masks

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _target_skeleton(predictor_skeleton, jobs):
    """The project's skeleton when it has the model's nodes (so that the output opens in
    SLEAP with one skeleton), else the model's."""
    names = set(predictor_skeleton.node_names)
    for job in jobs:
        if job.project is not None:
            for skel in job.project.skeletons:
                if set(skel.node_names) == names:
                    return skel
    return predictor_skeleton


def _digest(plan: list[list[int]]) -> str:
    import hashlib

    import numpy as np

    flat = np.asarray([f for chunk in plan for f in chunk], dtype=np.int64)
    return f"{len(flat)}:{hashlib.sha1(flat.tobytes()).hexdigest()}"


def _chunks(frames: list[int], size: int) -> list[list[int]]:
    return [frames[k : k + size] for k in range(0, len(frames), size)]


def run_prediction(
    predictor,
    jobs: Sequence[PredictionJob],
    output: str | os.PathLike,
    *,
    instance_filter: InstanceFilter | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resume: bool = False,
    fingerprint: dict | None = None,
    postprocess: Callable[[Any], Any] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> PredictionRun:
    """Predict `jobs` into `output` in resumable chunks; returns what was done.

    Args:
        predictor: a `Predictor` (its `iter_predict` is used).
        jobs: the videos and frames, all going to this one output.
        instance_filter: drops predicted instances frame by frame.
        chunk_size: frames per chunk; rounded up to a multiple of the batch size, so an
            interrupted and resumed run batches frames exactly as an uninterrupted one.
        resume: continue from the chunks of an interrupted run with the same fingerprint.
        fingerprint: what identifies the run besides the jobs (models, options).
        postprocess: applied to the assembled predictions (e.g. tracking) before they
            are merged into a project and written.
        on_chunk: called with (job index, chunk index) after each chunk is stored.
    """
    output = Path(output)
    output_format(output)
    batch = max(int(getattr(predictor, "batch_size", 1)), 1)
    chunk_size = max(int(chunk_size), 1)
    chunk_size = -(-chunk_size // batch) * batch
    plans = [_chunks(job.frame_list(), chunk_size) for job in jobs]
    fp = dict(fingerprint or {})
    fp["chunk_size"] = chunk_size
    fp["filter"] = repr(instance_filter)
    fp["jobs"] = [
        {
            "video": str(job.video.filename),
            "project": str(job.source) if job.project is not None else None,
            "frames": _digest(plan),
        }
        for job, plan in zip(jobs, plans)
    ]
    warn_channel_conversion(predictor, jobs)
    store = ChunkStore(output, fp, resume=resume)
    run = PredictionRun(output)
    t0 = time.perf_counter()
    for j, (job, plan) in enumerate(zip(jobs, plans)):
        todo = [k for k in range(len(plan)) if not store.done(j, k)]
        run.resumed_frames += sum(len(plan[k]) for k in range(len(plan)) if k not in todo)
        if not todo:
            continue
        where = {f: k for k in todo for f in plan[k]}
        pending: dict[int, list] = {k: [] for k in todo}
        wanted = [f for k in todo for f in plan[k]]
        labels = job.project if predictor.needs_labels else None
        for frame in predictor.iter_predict(job.video, frames=wanted, labels=labels):
            k = where[int(frame.frame_idx)]
            insts = frame.instances
            if insts is None:
                run.skipped += 1
            else:
                run.frames += 1
                if instance_filter is not None:
                    insts = instance_filter.apply(insts)
            pending[k].append((int(frame.frame_idx), insts, frame.masks))
            if len(pending[k]) == len(plan[k]):
                store.write(j, k, pending.pop(k))
                if on_chunk is not None:
                    on_chunk(j, k)
        if pending:  # frames the reader never returned: keep what came, fail loudly
            raise PosekitError(
                f"{sum(len(plan[k]) - len(v) for k, v in pending.items())} frame(s) of "
                f"{job.name} were neither predicted nor reported as undecodable"
            )
    run.seconds = time.perf_counter() - t0

    labels = assemble(store, jobs, plans, predictor.skeleton)
    if postprocess is not None:
        labels = postprocess(labels)
    project = next((j.project for j in jobs if j.project is not None), None)
    if project is not None:
        labels = merge_into_project(project, labels)
        if output_format(output) != "slp":
            labels = frames_predicted_only(labels, jobs)
    run.instances = sum(len(lf.predicted_instances) for lf in labels.labeled_frames)
    run.masks = sum(m.is_predicted for lf in labels.labeled_frames for m in lf.masks)
    labels_path = str(jobs[0].source) if project is not None else None
    run.files = write_predictions(labels, output, labels_path=labels_path)
    run.labels = labels
    store.finish()
    return run


def warn_channel_conversion(predictor, jobs: Sequence[PredictionJob]) -> None:
    """One warning naming the videos whose channels differ from the model's input (their
    frames are converted, `posekit.data.channels`); none for a model whose config asks
    for the conversion (``ensure_rgb`` / ``ensure_grayscale``)."""
    from posekit.data.channels import warn_converted_videos
    from posekit.data.video_probe import video_name

    model = next((m for m in predictor._models() if m is not None), None)
    if getattr(model, "in_channels", None) is None:
        return
    config = getattr(model, "config", None)
    pre = config.data.preprocessing if config is not None else None
    if pre is not None and (pre.ensure_rgb or pre.ensure_grayscale):
        return
    found = []
    for job in jobs:
        shape = getattr(job.video, "shape", None)
        if shape is not None and len(shape) == 4:
            found.append((Path(video_name(job.video)).name, int(shape[3])))
    warn_converted_videos(found, int(model.in_channels), "the model")


def assemble(store: ChunkStore, jobs, plans, predictor_skeleton):
    """The stored chunks of every job as one `sleap_io.Labels` of predictions."""
    import sleap_io as sio

    skeleton = _target_skeleton(predictor_skeleton, jobs)
    tracks: dict[str, Any] = {}
    for job in jobs:
        if job.project is not None:
            for t in job.project.tracks:
                tracks.setdefault(t.name, t)
    frames = []
    for j, (job, plan) in enumerate(zip(jobs, plans)):
        for k in range(len(plan)):
            lfs, _ = store.frames(j, k, job.video, skeleton, tracks)
            frames.extend(lfs)
    videos = []
    for job in jobs:
        if not any(v is job.video for v in videos):
            videos.append(job.video)
    used = {id(i.track) for lf in frames for i in lf.instances if i.track is not None}
    labels = sio.Labels(
        labeled_frames=frames,
        videos=videos,
        skeletons=[skeleton],
        tracks=[t for t in tracks.values() if id(t) in used],
    )
    return labels


def frames_predicted_only(labels, jobs: Sequence[PredictionJob]):
    """`labels` without the frames no job predicted (a shallow copy).

    A project merged into a `.slp` stays whole (it is the project); the per-frame tables
    (analysis HDF5, CSV, NWB) hold what was asked for: ``--frames 0-9`` gives frames 0-9,
    not also the project's user-labeled frame 79.
    """
    import sleap_io as sio

    asked = {(id(job.video), f) for job in jobs for f in job.frame_list()}
    return sio.Labels(
        labeled_frames=[
            lf for lf in labels.labeled_frames if (id(lf.video), int(lf.frame_idx)) in asked
        ],
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=list(labels.tracks),
        suggestions=list(labels.suggestions),
        provenance=dict(labels.provenance),
    )


def merge_into_project(project, predictions):
    """`predictions` merged into `project`, as ``sleap-track`` on a project does.

    The result holds every video of the project (then any other video of the
    predictions), the project's skeletons, tracks and suggestions (plus suggestions the
    predictions bring, e.g. tracking's weakest frames) and every user instance. On a
    predicted frame, the new predictions replace the frame's old predicted instances;
    frames that were not predicted keep what they had. Predicted tracks join the
    project's by name. A frame predicted by a mask model (masks, no instances) keeps its
    poses, and each new mask is linked to the predicted (else user) instance whose
    points it holds (`posekit.data.masks.link_masks`). `project` itself is not modified
    (the new masks are).
    """
    import sleap_io as sio

    tracks = {t.name: t for t in project.tracks}
    new_tracks = []

    def track_of(t):
        if t is None:
            return None
        if t.name not in tracks:
            tracks[t.name] = sio.Track(name=t.name)
            new_tracks.append(tracks[t.name])
        return tracks[t.name]

    skeletons = list(project.skeletons)
    predicted: dict[tuple[int, int], list] = {}
    masks: dict[tuple[int, int], list] = {}
    for lf in predictions.labeled_frames:
        insts, moved = [], {}
        for inst in lf.instances:
            track = track_of(inst.track)
            if track is not inst.track:
                moved[id(inst)] = inst = copy_with_track(inst, track)
            if not any(s is inst.skeleton for s in skeletons):
                skeletons.append(inst.skeleton)
            insts.append(inst)
        predicted[(id(lf.video), int(lf.frame_idx))] = insts
        for m in lf.masks:  # predicted masks follow their instance onto its new track
            if m.instance is not None and id(m.instance) in moved:
                m.instance = moved[id(m.instance)]
                m.track = m.instance.track
        masks[(id(lf.video), int(lf.frame_idx))] = list(lf.masks)

    frames = []
    seen = set()
    for lf in project.labeled_frames:
        key = (id(lf.video), int(lf.frame_idx))
        if key in predicted and not predicted[key] and masks[key]:
            # A mask model's frame: its poses stay, and the masks join the animals they hold.
            seen.add(key)
            insts = list(lf.instances)
            link_masks(masks[key], list(lf.predicted_instances) or list(lf.user_instances))
            kept = [m for m in lf.masks if not m.is_predicted] + masks[key]
        elif key in predicted:
            seen.add(key)
            insts = list(lf.user_instances) + predicted[key]
            kept = [m for m in lf.masks if not m.is_predicted] + masks[key]
        else:
            insts, kept = list(lf.instances), list(lf.masks)
        frames.append(
            sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=insts, masks=kept)
        )
    for lf in predictions.labeled_frames:
        key = (id(lf.video), int(lf.frame_idx))
        if key not in seen:
            frames.append(
                sio.LabeledFrame(
                    video=lf.video,
                    frame_idx=lf.frame_idx,
                    instances=predicted[key],
                    masks=masks[key],
                )
            )
    order = {id(v): i for i, v in enumerate(project.videos)}
    videos = list(project.videos)
    for v in predictions.videos:
        if id(v) not in order:
            order[id(v)] = len(videos)
            videos.append(v)
    frames.sort(key=lambda lf: (order.get(id(lf.video), len(videos)), int(lf.frame_idx)))
    suggestions = list(project.suggestions)
    have = {(id(s.video), int(s.frame_idx)) for s in suggestions}
    for s in getattr(predictions, "suggestions", []) or []:
        if (id(s.video), int(s.frame_idx)) not in have:
            suggestions.append(s)
    out = sio.Labels(
        labeled_frames=frames,
        videos=videos,
        skeletons=skeletons,
        tracks=list(project.tracks) + new_tracks,
        suggestions=suggestions,
        provenance={**dict(project.provenance), **dict(predictions.provenance)},
    )
    return out
