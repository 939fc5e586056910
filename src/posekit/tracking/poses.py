"""The tracker's working copy of a frame: instances as arrays, plus their track decisions.

Trackers compare every instance with every candidate in every frame; doing that on
`sleap_io` objects would spend most of the time in attribute access. `FramePoses` holds
one frame's instances as (k, n_nodes, 2) arrays once, the trackers write track ids and
scores into it, and `to_labeled_frame` turns it back into `sleap_io` objects at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any

import numpy as np

UNTRACKED = -1


@dataclasses.dataclass
class FramePoses:
    """One frame's instances as arrays, with the tracking result per instance."""

    frame_idx: int
    points: np.ndarray  # (k, n_nodes, 2) float64, NaN where a node is missing
    scores: np.ndarray  # (k,) instance scores (1.0 for user instances)
    point_scores: np.ndarray  # (k, n_nodes)
    instances: list  # the source sleap_io instances, same order
    video: Any = None
    track_ids: np.ndarray | None = None  # (k,) int, UNTRACKED when none
    tracking_scores: np.ndarray | None = None  # (k,) float
    identity_names: list | None = None  # (k,) class name or None
    identity_scores: np.ndarray | None = None  # (k,) probability of that class
    # The weakest identity decision taken in this frame (higher = safer), NaN when the
    # frame decided nothing (first frame, single track, ...). Units depend on the tracker.
    margin: float = float("nan")
    # (k, D) unit identity vectors from an embedding model (re-identification), NaN rows
    # where an instance has none; None when no embedding model was used.
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = len(self.points)
        if self.track_ids is None:
            self.track_ids = np.full(k, UNTRACKED, dtype=np.int64)
        if self.tracking_scores is None:
            self.tracking_scores = np.zeros(k, dtype=np.float64)
        if self.identity_names is None:
            self.identity_names = [None] * k
        if self.identity_scores is None:
            self.identity_scores = np.full(k, np.nan)

    def __len__(self) -> int:
        return len(self.points)

    def select(self, keep) -> FramePoses:
        """The frame with only the instances at indices (or boolean mask) `keep`."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        keep = keep.astype(np.int64)
        return dataclasses.replace(
            self,
            points=self.points[keep],
            scores=self.scores[keep],
            point_scores=self.point_scores[keep],
            instances=[self.instances[i] for i in keep],
            track_ids=self.track_ids[keep],
            tracking_scores=self.tracking_scores[keep],
            identity_names=[self.identity_names[i] for i in keep],
            identity_scores=self.identity_scores[keep],
            embeddings=None if self.embeddings is None else self.embeddings[keep],
        )


def poses_from_instances(instances, frame_idx: int, video=None) -> FramePoses:
    """`FramePoses` for `sleap_io` instances (user instances count with score 1)."""
    k = len(instances)
    if k == 0:
        return FramePoses(
            frame_idx=int(frame_idx),
            points=np.zeros((0, 0, 2)),
            scores=np.zeros(0),
            point_scores=np.zeros((0, 0)),
            instances=[],
            video=video,
        )
    points = np.stack([np.asarray(inst.numpy(), dtype=np.float64) for inst in instances])
    scores = np.ones(k)
    point_scores = np.ones(points.shape[:2])
    names: list = [None] * k
    id_scores = np.full(k, np.nan)
    for i, inst in enumerate(instances):
        data = inst.points
        if data.dtype.names and "score" in data.dtype.names:
            scores[i] = float(getattr(inst, "score", 1.0))
            point_scores[i] = np.asarray(data["score"], dtype=np.float64)
        ident = getattr(inst, "identity", None)
        if ident is not None:
            names[i] = ident.name
            s = getattr(inst, "identity_score", None)
            id_scores[i] = np.nan if s is None else float(s)
    return FramePoses(
        frame_idx=int(frame_idx),
        points=points,
        scores=scores,
        point_scores=point_scores,
        instances=list(instances),
        video=video,
        identity_names=names,
        identity_scores=id_scores,
    )


def poses_from_labeled_frame(labeled_frame) -> FramePoses:
    """`FramePoses` for every instance of a `sleap_io.LabeledFrame`."""
    return poses_from_instances(
        labeled_frame.instances, labeled_frame.frame_idx, labeled_frame.video
    )


def to_labeled_frame(poses: FramePoses, tracks: list):
    """A new `sleap_io.LabeledFrame` whose instances are copies carrying the decisions.

    Predicted instances stay `PredictedInstance`; user instances stay `Instance` (a
    tracker must not turn a person's labels into predictions). `tracks[i]` is the
    `sleap_io.Track` of track id ``i``.
    """
    import sleap_io as sio

    out = []
    for i, inst in enumerate(poses.instances):
        tid = int(poses.track_ids[i])
        track = tracks[tid] if tid != UNTRACKED else None
        tscore = float(poses.tracking_scores[i])
        common = dict(
            points_data=np.asarray(poses.points[i], dtype=np.float64),
            skeleton=inst.skeleton,
            track=track,
            tracking_score=tscore,
            identity=getattr(inst, "identity", None),
            identity_score=getattr(inst, "identity_score", None),
        )
        if isinstance(inst, sio.PredictedInstance):
            new = sio.PredictedInstance.from_numpy(
                point_scores=np.asarray(poses.point_scores[i], dtype=np.float64),
                score=float(inst.score),
                **common,
            )
        else:
            new = sio.Instance.from_numpy(from_predicted=inst.from_predicted, **common)
        out.append(new)
    return sio.LabeledFrame(video=poses.video, frame_idx=int(poses.frame_idx), instances=out)


# --------------------------------------------------------------------------- geometry


def centroids(points: np.ndarray) -> np.ndarray:
    """(k, n, 2) -> (k, 2): median of the visible nodes, as SLEAP's tracker uses."""
    if len(points) == 0:
        return np.zeros((0, 2))
    with np.errstate(all="ignore"), _quiet():
        return np.nanmedian(points, axis=1)


def bounding_boxes(points: np.ndarray) -> np.ndarray:
    """(k, n, 2) -> (k, 4) as (x0, y0, x1, y1) over the visible nodes (NaN when none)."""
    if len(points) == 0:
        return np.zeros((0, 4))
    with np.errstate(all="ignore"), _quiet():
        lo = np.nanmin(points, axis=1)
        hi = np.nanmax(points, axis=1)
    return np.concatenate([lo, hi], axis=1)


def n_visible(points: np.ndarray) -> np.ndarray:
    """(k, n, 2) -> (k,) number of nodes with both coordinates."""
    return np.sum(np.all(np.isfinite(points), axis=-1), axis=-1)


@contextlib.contextmanager
def _quiet():
    """Silence numpy's all-NaN warnings: an instance with no visible node is expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
