"""What a new frame's instances are compared with: SLEAP's ``simple`` and ``flow`` pools.

- Without a known number of animals, the pool is every tracked instance of the last
  `track_window` frames (SLEAP's ``SimpleCandidateMaker`` / ``FlowCandidateMaker``).
- With ``max_tracks``, each track keeps its own last `track_window` instances, however
  long ago (SLEAP's ``*MaxTracksCandidateMaker``), so an animal that was missed for a
  while is still a candidate when it comes back instead of being given a new track.

For ``flow``, every remembered candidate is moved by optical flow from the previous frame
to the current one each frame, all in one `cv2.calcOpticalFlowPyrLK` call: SLEAP's
``save_shifted_instances`` mode (its CLI default), where a candidate from frame t-3 is the
chain of its shifts t-3 -> t-2 -> t-1 -> t. One flow call per frame instead of one per
window frame, and only the previous image is kept, so memory does not grow with the
window or the video.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from posekit.tracking.poses import n_visible


class CandidatePool:
    """Recent tracked instances, per frame or per track, with optional flow shifting."""

    def __init__(self, track_window: int, per_track: bool, min_points: int = 0, shifter=None):
        self.track_window = int(track_window)
        self.per_track = per_track
        self.min_points = int(min_points)
        self.shifter = shifter
        # entries: [t, points (n, 2) as of the latest frame, point_scores (n,), track id]
        self._frames: deque = deque(maxlen=self.track_window)  # per frame: list of entries
        self._tracks: dict[int, deque] = {}
        self._prev_image = None

    @property
    def uses_image(self) -> bool:
        return self.shifter is not None

    def _entries(self) -> list:
        if self.per_track:
            return [e for q in self._tracks.values() for e in q]
        return [e for fr in self._frames for e in fr]

    def advance(self, image) -> None:
        """Flow only: move every remembered candidate into `image` (the new frame)."""
        entries = self._entries()
        if self._prev_image is not None and entries:
            pts = np.stack([e[1] for e in entries])
            shifted, _ = self.shifter.shift(self._prev_image, image, pts)
            for e, p in zip(entries, shifted):
                e[1] = p
        self._prev_image = image

    def add(self, t: int, points: np.ndarray, point_scores: np.ndarray, track_ids) -> None:
        """Remember frame `t`'s tracked instances."""
        entries = [
            [t, points[i].copy(), point_scores[i], int(tid)]
            for i, tid in enumerate(track_ids)
            if tid >= 0
        ]
        if self.per_track:
            for e in entries:
                q = self._tracks.get(e[3])
                if q is None:
                    q = self._tracks[e[3]] = deque(maxlen=self.track_window)
                q.append(e)
        else:
            self._frames.append(entries)

    def candidates(self):
        """(points (c, n, 2), point_scores (c, n), track ids (c,)) to match against."""
        entries = self._entries()
        if not entries:
            return np.zeros((0, 0, 2)), np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
        pts = np.stack([e[1] for e in entries])
        ps = np.stack([e[2] for e in entries])
        tids = np.array([e[3] for e in entries], dtype=np.int64)
        if self.min_points > 0:
            keep = n_visible(pts) >= self.min_points
            pts, ps, tids = pts[keep], ps[keep], tids[keep]
        return pts, ps, tids

    @property
    def n_tracks(self) -> int:
        return len(self._tracks)
