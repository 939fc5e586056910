"""`track`: assign tracks to every instance of a `sleap_io.Labels`, SLEAP's way or better.

One call does the whole job a SLEAP user knows from ``sleap-track --tracking.*``:

1. check the input (instances present, one skeleton per video, frames readable for flow);
2. per video, frames in order: cull to the number of animals, then
   - ``simple`` / ``flow``: SLEAP's online tracker (`Tracker`),
   - ``global``: posekit's offline identity assignment for a known number of animals
     (`global_assignment`), the default when ``max_tracks`` is set and no tracker named,
   - ``none``: no tracking (tracks cleared, or kept with ``keep_tracks``);
3. the final pass: connect single breaks, clean the instance count, drop short tracks,
   fill short gaps of a track with interpolated poses (``fill_gaps``);
4. the weakest identity decisions become suggestions (frames to proofread).

The input is never modified: the result holds new frames and instance copies.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from posekit.errors import PosekitError
from posekit.tracking.options import TrackingOptions, resolve_options
from posekit.tracking.poses import UNTRACKED, poses_from_labeled_frame, to_labeled_frame
from posekit.tracking.postprocess import (
    clean_instance_count,
    connect_single_breaks,
    drop_short_tracks,
    fill_gaps,
)
from posekit.tracking.suggestions import make_suggestions, weakest_frames


def track(
    labels,
    tracker: str | None = None,
    *,
    max_tracks: int | None = None,
    track_window: int | None = None,
    similarity: str | None = None,
    match: str | None = None,
    keep_tracks: bool | None = None,
    **options: Any,
):
    """Track every instance of `labels`; returns a new `sleap_io.Labels`.

    Args:
        labels: a `sleap_io.Labels` with (predicted or user) instances.
        tracker: ``"simple"`` (instances of the last frames), ``"flow"`` (those moved by
            optical flow; reads the video), ``"global"`` (offline identities for a known
            number of animals), ``"kalman"``, ``"bytetrack"``, ``"ocsort"`` (the SORT
            family on keypoints, `sort`), ``"none"``; None picks ``"global"`` when
            `max_tracks` is set and ``"simple"`` otherwise. With ``reid_model`` (an
            `embedding` model folder) the global tracker also compares the animals'
            appearance across gaps (``reid_weight`` nats per unit of cosine distance).
        max_tracks: the number of animals; never more tracks than this, and frames are
            culled to this many instances (best score first) before matching.
        track_window, similarity, match: SLEAP's options (defaults 5, ``"instance"``,
            ``"greedy"``).
        keep_tracks: keep the tracks instances already have (only untracked instances
            are assigned); by default every instance is re-assigned.
        **options: every other `TrackingOptions` field, under posekit's name or any
            SLEAP spelling in `ALIASES` (``**{"tracking.of_window_size": 31}``).

    Returns:
        New `Labels`: same videos, skeletons and frames; instance copies with ``track``
        and ``tracking_score`` set; culled instances left out; suggestions added for
        the `n_suggestions` weakest identity decisions; the settings under
        ``provenance["tracking"]``.
    """
    named = {
        "tracker": tracker,
        "max_tracks": max_tracks,
        "track_window": track_window,
        "similarity": similarity,
        "match": match,
        "keep_tracks": keep_tracks,
    }
    for key, value in named.items():
        if value is not None:
            options[key] = value
    opts = resolve_options(**options)
    videos = _check_labels(labels)
    if opts.tracker in ("global", "kalman", "bytetrack", "ocsort") and opts.keep_tracks:
        raise PosekitError(
            f"tracker={opts.tracker!r} re-assigns every identity; keep_tracks=True cannot "
            "apply (use tracker='simple' or 'flow'; with 'global', identity_source='tracks' "
            "uses existing tracks as identity evidence)"
        )

    import sleap_io as sio

    embedder = None
    if opts.reid_model:
        from posekit.inference.embeddings import load_embedder

        embedder = load_embedder(opts.reid_model)
    out_frames = []
    out_tracks: list = []
    suggestions = list(labels.suggestions)
    named_tracks: dict[str, Any] = {}
    counter = [0]
    for video, lfs in videos:
        frames, local_tracks = _track_video(video, lfs, opts, embedder)
        frames = _final_pass(frames, opts)
        used = sorted({int(t) for fr in frames for t in fr.track_ids if t != UNTRACKED})
        track_objs = _track_objects(local_tracks, used, named_tracks, out_tracks, counter)
        out_frames.extend(to_labeled_frame(fr, track_objs) for fr in frames)
        picks = weakest_frames(frames, opts.n_suggestions, opts.suggestion_min_separation)
        existing = {(s.video, s.frame_idx) for s in suggestions}
        suggestions.extend(
            s
            for s in make_suggestions(video, picks, opts.tracker)
            if (s.video, s.frame_idx) not in existing
        )

    provenance = dict(getattr(labels, "provenance", {}) or {})
    provenance["tracking"] = _jsonable(dataclasses.asdict(opts))
    kwargs = dict(
        labeled_frames=out_frames,
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=out_tracks,
        suggestions=suggestions,
        provenance=provenance,
    )
    if hasattr(labels, "identities"):
        kwargs["identities"] = list(labels.identities)
    return sio.Labels(**kwargs)


# --------------------------------------------------------------------------- checks


def _check_labels(labels) -> list[tuple[Any, list]]:
    """[(video, its labeled frames sorted by index)], after checking the input."""
    import sleap_io as sio

    if not isinstance(labels, sio.Labels):
        raise PosekitError(
            f"track() takes a sleap_io.Labels; got {type(labels).__name__} "
            "(load a file with sleap_io.load_slp(path))"
        )
    if not any(len(lf.instances) for lf in labels.labeled_frames):
        raise PosekitError(
            "the labels have no instances to track; run a model first (posekit predict) "
            "or pass labels that contain predictions"
        )
    by_video: dict[int, tuple[Any, list]] = {}
    for lf in labels.labeled_frames:
        by_video.setdefault(id(lf.video), (lf.video, []))[1].append(lf)
    out = []
    for video, lfs in by_video.values():
        lfs.sort(key=lambda lf: lf.frame_idx)
        skeletons = {}
        for lf in lfs:
            for inst in lf.instances:
                skeletons.setdefault(id(inst.skeleton), inst.skeleton)
        if len(skeletons) > 1:
            names = {tuple(s.node_names) for s in skeletons.values()}
            if len(names) > 1:
                desc = "; ".join(f"{len(n)} nodes ({', '.join(n[:4])}...)" for n in names)
                raise PosekitError(
                    f"instances of video {getattr(video, 'filename', video)!r} use different "
                    f"skeletons ({desc}); tracking compares poses node by node, so give them "
                    "one skeleton (sleap_io Labels.replace_skeleton) or track them separately"
                )
        out.append((video, lfs))
    return out


def _open_video_for_flow(video, first_frame: int):
    try:
        image = video[first_frame]
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing
        name = getattr(video, "filename", video)
        raise PosekitError(
            f"tracker='flow' reads the video frames but {name!r} cannot be opened "
            f"({type(exc).__name__}: {exc}); fix the video path (sleap_io "
            "Labels.replace_filenames) or use tracker='simple', which needs no frames"
        ) from None
    if image is None:
        raise PosekitError(
            f"tracker='flow' could not read frame {first_frame} of "
            f"{getattr(video, 'filename', video)!r}; use tracker='simple', which needs no frames"
        )
    return image


# --------------------------------------------------------------------------- per video


def _track_video(video, lfs: list, opts: TrackingOptions, embedder=None):
    """(list of FramePoses with decisions, local track id -> sio.Track or name or None).

    `embedder` (an `EmbeddingPredictor`, with ``reid_model``) gives every instance its
    identity vector, read from the video frames, for the global tracker's linking.
    """
    frames = [poses_from_labeled_frame(lf) for lf in lfs]
    if embedder is not None:
        for fr, emb in zip(frames, embedder.embed_labeled_frames(lfs)):
            fr.embeddings = emb if len(fr) else None
    if opts.tracker == "global":
        from posekit.tracking.global_assignment import assign_identities

        frames, names = assign_identities(frames, opts, _skeleton_edges(lfs))
        return frames, list(names)

    # input tracks -> local ids, when kept (or for "none" + keep_tracks)
    kept: list = []
    fixed_per_frame = []
    if opts.keep_tracks:
        index: dict[int, int] = {}
        for lf in lfs:
            ids = np.full(len(lf.instances), UNTRACKED, dtype=np.int64)
            for i, inst in enumerate(lf.instances):
                if inst.track is not None:
                    if id(inst.track) not in index:
                        index[id(inst.track)] = len(kept)
                        kept.append(inst.track)
                    ids[i] = index[id(inst.track)]
            fixed_per_frame.append(ids)

    if opts.tracker == "none":
        for n, fr in enumerate(frames):
            fr.track_ids[:] = fixed_per_frame[n] if opts.keep_tracks else UNTRACKED
            if opts.keep_tracks:
                for i, inst in enumerate(fr.instances):
                    s = getattr(inst, "tracking_score", None)
                    fr.tracking_scores[i] = 0.0 if s is None else float(s)
        return frames, kept

    if opts.tracker in ("kalman", "bytetrack", "ocsort"):
        from posekit.tracking.sort import SortTracker

        sort = SortTracker(opts)
        out = [sort.track_poses(fr) for fr in frames]
        return out, kept + [None] * sort.n_tracks

    from posekit.tracking.online import Tracker

    tracker = Tracker(opts)
    tracker.reserve_tracks(len(kept))
    if tracker.uses_image:
        _open_video_for_flow(video, lfs[0].frame_idx)
    out = []
    for n, fr in enumerate(frames):
        image = _open_video_for_flow(video, fr.frame_idx) if tracker.uses_image else None
        out.append(tracker.track_poses(fr, image, fixed_per_frame[n] if opts.keep_tracks else None))
    names: list = kept + [None] * (tracker.n_tracks - len(kept))
    return out, names


def _final_pass(frames: list, opts: TrackingOptions) -> list:
    if opts.tracker == "none":
        return frames
    count = opts.instance_count
    if opts.clean_instance_count:
        frames = clean_instance_count(frames, opts.clean_instance_count, opts.clean_iou_threshold)
    elif count and opts.post_connect_single_breaks:
        frames = connect_single_breaks(frames, count)
    if opts.min_track_length:
        frames = drop_short_tracks(frames, opts.min_track_length)
    if opts.gap_fill:
        frames = fill_gaps(frames, opts.gap_fill)
    return frames


def _skeleton_edges(lfs: list) -> list[tuple[int, int]]:
    for lf in lfs:
        for inst in lf.instances:
            return [tuple(e) for e in inst.skeleton.edge_inds]
    return []


def _track_objects(local: list, used: list[int], named: dict, out_tracks: list, counter: list):
    """sio.Track per local id: kept tracks as they are, class names shared, others new."""
    import sleap_io as sio

    objs: list = [None] * len(local)
    for tid in used:
        item = local[tid]
        if isinstance(item, sio.Track):
            obj = item
        elif isinstance(item, str):
            obj = named.get(item)
            if obj is None:
                obj = named[item] = sio.Track(name=item)
        else:
            obj = sio.Track(name=f"track_{counter[0]}")
            counter[0] += 1
        if all(obj is not t for t in out_tracks):
            out_tracks.append(obj)
        objs[tid] = obj
    return objs


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
