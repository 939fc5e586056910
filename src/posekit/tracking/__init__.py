"""Tracking: linking poses over time into `sleap_io.Track`s.

SLEAP's tracker families with SLEAP's option names and defaults, an offline identity
assignment for a known number of animals, and the SORT family (kalman, bytetrack,
ocsort). Entry points:

- `track(labels, tracker=None, max_tracks=None, ...)`: a whole `sleap_io.Labels`.
- `Tracker(...).track_frame(labeled_frame, image=None)`: frames as they are predicted.
- `tracking_metrics(ground_truth, predicted)`: identity switches, IDF1, MOTA
  (`motmetrics`), HOTA / DetA / AssA and CLEAR-MOT as TrackEval computes them (`hota`),
  with the frames of each switch.
- `ALIASES`: SLEAP's ``tracking.*`` option names -> posekit's.

Modules: `options` (names, defaults, aliases), `poses` (frames as arrays), `similarity`,
`matching`, `culling`, `candidates` + `flow` (what to match against), `online` (the
frame-by-frame tracker), `kalman` (motion with uncertainty that grows over gaps),
`tracklets` + `global_assignment` (offline identities), `sort` (SORT, ByteTrack,
OC-SORT), `postprocess`, `suggestions`, `api`, `metrics` + `hota`.

Nothing here imports training or CLI code; OpenCV and motmetrics load only when used.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "track": "posekit.tracking.api",
    "Tracker": "posekit.tracking.online",
    "TrackingOptions": "posekit.tracking.options",
    "resolve_options": "posekit.tracking.options",
    "ALIASES": "posekit.tracking.options",
    "TRACKERS": "posekit.tracking.options",
    "tracking_metrics": "posekit.tracking.metrics",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
