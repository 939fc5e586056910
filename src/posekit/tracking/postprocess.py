"""Cleaning tracks after the whole video is tracked (SLEAP's final pass, plus one step).

All functions work in place on a list of `FramePoses` sorted by frame index, and return
it, so they chain:

- `connect_single_breaks`: when exactly one track disappears and exactly one new track
  appears in the same frame, the new one is the lost one coming back (SLEAP's
  ``post_connect_single_breaks``; it needs the number of animals).
- `clean_instance_count`: cull every frame to N instances, then connect single breaks
  (SLEAP's ``clean_instance_count`` / ``clean_iou_threshold``).
- `drop_short_tracks`: remove the instances of tracks seen in fewer than K frames; a
  track that short is nearly always a false detection, not an animal.
- `fill_gaps`: with a known number of animals, a track missing for a few frames between
  two of its poses is an animal the detector missed: the gap gets poses interpolated
  between the two (instance and point scores 0, so they are told apart from detections).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from posekit.tracking.culling import cull_frame
from posekit.tracking.poses import UNTRACKED


def connect_single_breaks(frames: list, instance_count: int) -> list:
    """Merge each single new track into the single track lost in the same frame.

    Follows SLEAP's `connect_single_track_breaks`: the reference set of tracks is the
    last frame that had exactly `instance_count` tracks; once a track is renamed, its
    later instances follow, unless the old track is present in that frame.
    """
    if not frames or instance_count <= 0:
        return frames
    renamed: dict[int, int] = {}
    last_good = {int(t) for t in frames[0].track_ids if t != UNTRACKED}
    for fr in frames:
        ids = fr.track_ids
        present = {int(t) for t in ids if t != UNTRACKED}
        for i, t in enumerate(ids.tolist()):
            if t in renamed and renamed[t] not in present:
                ids[i] = renamed[t]
                present = {int(x) for x in ids if x != UNTRACKED}
        extra = present - last_good
        missing = last_good - present
        if len(extra) == 1 and len(missing) == 1:
            old, new = next(iter(extra)), next(iter(missing))
            renamed[old] = new
            ids[ids == old] = new
        elif len(present) == instance_count:
            last_good = present
    return frames


def clean_instance_count(frames: list, instance_count: int, iou_threshold=None) -> list:
    """Cull every frame to `instance_count` instances, then connect single breaks."""
    if instance_count <= 0:
        return frames
    for n, fr in enumerate(frames):
        frames[n] = cull_frame(fr, instance_count, iou_threshold)
    return connect_single_breaks(frames, instance_count)


def drop_short_tracks(frames: list, min_length: int) -> list:
    """Remove the instances of tracks present in fewer than `min_length` frames."""
    if min_length <= 1:
        return frames
    counts = Counter(int(t) for fr in frames for t in set(fr.track_ids.tolist()) if t != UNTRACKED)
    short = {t for t, n in counts.items() if n < min_length}
    if not short:
        return frames
    for n, fr in enumerate(frames):
        keep = np.array([int(t) not in short for t in fr.track_ids], dtype=bool)
        if not keep.all():
            frames[n] = fr.select(keep)
    return frames


def fill_gaps(frames: list, max_gap: int) -> list:
    """Interpolate each track across gaps of at most `max_gap` frames.

    A filled instance is a `sleap_io.PredictedInstance` with score 0 and point scores 0,
    on the line between the track's poses before and after the gap; its tracking score
    is the lower of theirs. Only frames in the list are filled: a frame that was never
    predicted (every 10th frame predicted, say) missed nothing.
    """
    import sleap_io as sio

    if max_gap <= 0 or not frames:
        return frames
    by_t = {int(fr.frame_idx): fr for fr in frames}
    last: dict[int, tuple[int, int]] = {}  # track -> (frame index, instance)
    adds: dict[int, list] = {}
    for fr in frames:
        t = int(fr.frame_idx)
        for i, tid in enumerate(fr.track_ids.tolist()):
            if tid == UNTRACKED:
                continue
            prev = last.get(tid)
            if prev is not None and 1 < t - prev[0] <= max_gap + 1:
                src = by_t[prev[0]]
                p0, p1 = src.points[prev[1]], fr.points[i]
                score = min(src.tracking_scores[prev[1]], fr.tracking_scores[i])
                for g in range(prev[0] + 1, t):
                    w = (g - prev[0]) / (t - prev[0])
                    inst = src.instances[prev[1]]
                    adds.setdefault(g, []).append((tid, (1 - w) * p0 + w * p1, score, inst))
            last[tid] = (t, i)
    for g, items in adds.items():
        fr = by_t.get(g)
        if fr is None:
            continue  # a frame that was not predicted: nothing was missed there
        present = set(fr.track_ids.tolist())
        items = [it for it in items if it[0] not in present]
        if not items:
            continue
        pts = np.stack([it[1] for it in items])
        n = pts.shape[1]
        new = [
            sio.PredictedInstance.from_numpy(
                points_data=p, skeleton=it[3].skeleton, point_scores=np.zeros(n), score=0.0
            )
            for p, it in zip(pts, items)
        ]
        by_t[g] = dataclasses.replace(
            fr,
            points=np.concatenate([fr.points.reshape(-1, n, 2), pts]),
            scores=np.concatenate([fr.scores, np.zeros(len(items))]),
            point_scores=np.concatenate(
                [fr.point_scores.reshape(-1, n), np.zeros((len(items), n))]
            ),
            instances=list(fr.instances) + new,
            track_ids=np.concatenate([fr.track_ids, [it[0] for it in items]]).astype(np.int64),
            tracking_scores=np.concatenate([fr.tracking_scores, [it[2] for it in items]]),
            identity_names=list(fr.identity_names) + [None] * len(items),
            identity_scores=np.concatenate([fr.identity_scores, np.full(len(items), np.nan)]),
            embeddings=None,  # filled poses were not seen; identities are decided by now
        )
    return [by_t[t] for t in sorted(by_t)]
