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
"""

from __future__ import annotations

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
