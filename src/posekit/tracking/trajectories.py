"""Trajectories a lab can trust: outlier removal and smoothing of tracked predictions.

A prediction run gives each frame on its own; an animal does not teleport, does not
stretch its legs to twice their length and does not shake by a pixel every frame. The
filters here use that, per track and node, in this order:

1. ``min_point_score``: a point the network scored below this is removed.
2. ``max_speed`` (pixels per frame): a point further than this from the median of its
   own node over the 7 frames around it is removed. An isolated spike (a wrong peak for
   a frame or two) went there and back faster than the limit; a real movement stays near
   that running median, however fast it is, so long runs are not clipped.
3. ``max_edge_change`` (a fraction): an edge whose length is off the track's own median
   length of that edge by more than this fraction is wrong at one end. Its endpoint
   with more bad than good edges is removed; when neither has, the lower-scoring one.
4. ``fill_gaps`` (frames): gaps of at most this many frames inside an instance (points
   removed above, or never found) are filled by linear interpolation.
5. ``smooth``: ``median`` (running median over ``window`` frames), ``savgol``
   (Savitzky-Golay, order 2, ``window`` frames, per unbroken run), or ``kalman`` (a
   constant-velocity Kalman filter with a Rauch-Tung-Striebel backward pass: the point
   scores set the measurement noise, ``kalman_noise / score`` pixels, so a doubtful
   point moves the track less than a sure one).

Frames without the instance stay without it (no instance is invented). What changed is
kept twice: per frame and track a bit flag (`FLAGS`; the analysis ``.h5``/``.csv``
writers of `posekit.data.formats` carry it), and the original points of every changed
instance in ``labels.provenance["posekit.filter"]``, from which `original_labels` gives
the unfiltered predictions back. Only predicted instances are touched; user labels are
the truth and stay as they are.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from posekit.data.formats import FILTER_PROVENANCE_KEY, video_key
from posekit.errors import PosekitError

__all__ = [
    "FLAGS",
    "SMOOTHERS",
    "TrajectoryFilter",
    "filter_labels",
    "filter_track",
    "original_labels",
]

SMOOTHERS = ("median", "savgol", "kalman")
#: What the per-frame flag's bits mean (a frame's flag ORs its instances').
FLAGS = {"low_score": 1, "jump": 2, "edge": 4, "filled": 8, "smoothed": 16}
#: A point that smoothing moves by more than this many pixels sets the "smoothed" bit.
SMOOTHED_PX = 1.0
JUMP_WINDOW = 7
MIN_KALMAN_SCORE = 0.05


@dataclass(frozen=True)
class TrajectoryFilter:
    """Which filters to apply (none with the defaults); see the module docstring."""

    min_point_score: float | None = None
    max_speed: float | None = None
    max_edge_change: float | None = None
    fill_gaps: int = 0
    smooth: str | None = None
    window: int = 7
    kalman_noise: float = 2.0  # pixels, measurement noise of a point scored 1
    kalman_accel: float = 1.0  # pixels per frame^2, the process noise

    def __post_init__(self):
        if self.smooth is not None and self.smooth not in SMOOTHERS:
            raise PosekitError(f"smooth must be one of {SMOOTHERS}; got {self.smooth!r}")
        if self.window < 3 or self.window % 2 == 0:
            raise PosekitError(f"the smoothing window must be odd and >= 3; got {self.window}")
        for name in ("max_speed", "max_edge_change", "kalman_noise", "kalman_accel"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise PosekitError(f"{name} must be > 0; got {value}")
        if self.fill_gaps < 0:
            raise PosekitError(f"fill_gaps must be >= 0 frames; got {self.fill_gaps}")

    @property
    def active(self) -> bool:
        return bool(
            self.min_point_score is not None
            or self.max_speed is not None
            or self.max_edge_change is not None
            or self.fill_gaps
            or self.smooth is not None
        )


def _running(values: np.ndarray, window: int, fn) -> np.ndarray:
    """`fn` (a nan-aware reduction) over a centred window along axis 0; NaN-padded."""
    half = window // 2
    pad = np.full((half, *values.shape[1:]), np.nan)
    padded = np.concatenate([pad, values, pad])
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        return fn(view, axis=-1)


def _edge_outliers(pts, scores, edges, tolerance) -> np.ndarray:
    """(T, N) points to remove: endpoints of edges off their median length."""
    drop = np.zeros(pts.shape[:2], dtype=bool)
    if not edges:
        return drop
    e = np.asarray(edges)
    lengths = np.linalg.norm(pts[:, e[:, 0]] - pts[:, e[:, 1]], axis=-1)  # (T, E)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(lengths, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        bad = np.abs(lengths / median - 1) > tolerance  # NaN compares False
    good = np.isfinite(lengths) & ~bad
    n_bad = np.zeros(drop.shape, dtype=int)
    n_good = np.zeros(drop.shape, dtype=int)
    for k, (a, b) in enumerate(e):
        n_bad[:, a] += bad[:, k]
        n_bad[:, b] += bad[:, k]
        n_good[:, a] += good[:, k]
        n_good[:, b] += good[:, k]
    drop = n_bad > n_good
    s = np.nan_to_num(scores, nan=-np.inf)
    for k, (a, b) in enumerate(e):
        rest = bad[:, k] & ~drop[:, a] & ~drop[:, b]
        worse_a = s[:, a] <= s[:, b]
        drop[rest & worse_a, a] = True
        drop[rest & ~worse_a, b] = True
    return drop


def _fill(pts: np.ndarray, present: np.ndarray, max_gap: int) -> np.ndarray:
    """Linear interpolation over gaps of <= max_gap frames within frames that have the
    instance (`present`); longer gaps and frames without it stay NaN."""
    out = pts.copy()
    t = np.arange(len(pts))
    for n in range(pts.shape[1]):
        ok = np.isfinite(pts[:, n, 0])
        if ok.sum() < 2:
            continue
        idx = t[ok]
        gaps = np.diff(idx) - 1
        for start, gap in zip(idx[:-1], gaps):
            if 0 < gap <= max_gap:
                span = np.arange(start + 1, start + 1 + gap)
                span = span[present[span]]
                for c in range(2):
                    out[span, n, c] = np.interp(span, idx, pts[ok, n, c])
    return out


def _savgol(pts: np.ndarray, window: int) -> np.ndarray:
    from scipy.signal import savgol_filter

    out = pts.copy()
    for n in range(pts.shape[1]):
        ok = np.isfinite(pts[:, n, 0])
        edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            w = min(window, (stop - start) if (stop - start) % 2 else (stop - start) - 1)
            if w >= 5:  # order 2 needs a few points more than 3 to smooth anything
                out[start:stop, n] = savgol_filter(pts[start:stop, n], w, 2, axis=0)
    return out


def _kalman(pts, scores, noise, accel) -> np.ndarray:
    """Constant-velocity Kalman filter + RTS smoother on every coordinate of every node
    at once (they are independent 1-D problems); measurement noise noise/score."""
    T = len(pts)
    z = pts.reshape(T, -1)  # (T, B)
    s = np.repeat(np.clip(np.nan_to_num(scores, nan=0.0), MIN_KALMAN_SCORE, None), 2, axis=1)
    r = (noise / s.reshape(T, -1)) ** 2
    F = np.array([[1.0, 1.0], [0.0, 1.0]])
    Q = accel**2 * np.array([[0.25, 0.5], [0.5, 1.0]])
    B = z.shape[1]
    x = np.zeros((B, 2))
    P = np.tile(np.diag([1e8, 1e4]), (B, 1, 1))
    xs_f, Ps_f, xs_p, Ps_p = [], [], [], []
    for t in range(T):
        if t:
            x = x @ F.T
            P = F @ P @ F.T + Q
        xs_p.append(x)
        Ps_p.append(P)
        ok = np.isfinite(z[t])
        if ok.any():
            S = P[ok, 0, 0] + r[t, ok]
            K = P[ok, :, 0] / S[:, None]
            innov = z[t, ok] - x[ok, 0]
            x = x.copy()
            x[ok] = x[ok] + K * innov[:, None]
            P = P.copy()
            P[ok] = P[ok] - K[:, :, None] * P[ok, 0, None, :]
        xs_f.append(x)
        Ps_f.append(P)
    xs = xs_f[-1]
    out = np.empty_like(z)
    out[-1] = xs[:, 0]
    Ps = Ps_f[-1]
    for t in range(T - 2, -1, -1):
        C = Ps_f[t] @ F.T @ np.linalg.inv(Ps_p[t + 1])
        xs = xs_f[t] + np.einsum("bij,bj->bi", C, xs - xs_p[t + 1])
        Ps = Ps_f[t] + C @ (Ps - Ps_p[t + 1]) @ np.transpose(C, (0, 2, 1))
        out[t] = xs[:, 0]
    return out.reshape(pts.shape)


def filter_track(points, scores, edges, flt: TrajectoryFilter, present=None):
    """Filter one track: `points` (T, N, 2) over consecutive frames (NaN: missing),
    `scores` (T, N) point scores, `edges` skeleton node-index pairs, `present` (T,) the
    frames that have the instance (default: those with any point).

    Returns (points, flags): the filtered (T, N, 2) points (NaN outside `present`) and
    (T,) uint8 flags (`FLAGS`) of what changed in each frame.
    """
    pts = np.array(points, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if present is None:
        present = np.isfinite(pts).any(axis=(1, 2))
    present = np.asarray(present, dtype=bool)
    flags = np.zeros(len(pts), dtype=np.uint8)

    def remove(mask, bit):
        mask = mask & np.isfinite(pts[..., 0])
        pts[mask] = np.nan
        flags[mask.any(axis=1)] |= bit

    if flt.min_point_score is not None:
        remove(np.nan_to_num(scores, nan=-np.inf) < flt.min_point_score, FLAGS["low_score"])
    if flt.max_speed is not None and len(pts) > 2:
        ref = _running(pts, JUMP_WINDOW, np.nanmedian)
        with np.errstate(invalid="ignore"):
            remove(np.linalg.norm(pts - ref, axis=-1) > flt.max_speed, FLAGS["jump"])
    if flt.max_edge_change is not None:
        remove(_edge_outliers(pts, scores, edges, flt.max_edge_change), FLAGS["edge"])
    if flt.fill_gaps:
        before = np.isfinite(pts[..., 0])
        pts = _fill(pts, present, flt.fill_gaps)
        flags[(np.isfinite(pts[..., 0]) & ~before).any(axis=1)] |= FLAGS["filled"]
    if flt.smooth is not None and len(pts) > 1:
        valid = np.isfinite(pts[..., 0])
        if flt.smooth == "median":
            smoothed = _running(pts, flt.window, np.nanmedian)
        elif flt.smooth == "savgol":
            smoothed = _savgol(pts, flt.window)
        else:
            s = np.where(np.isfinite(scores), scores, 1.0)  # filled points: no score
            smoothed = _kalman(pts, s, flt.kalman_noise, flt.kalman_accel)
        smoothed[~valid] = np.nan
        moved = np.linalg.norm(smoothed - pts, axis=-1) > SMOOTHED_PX
        flags[moved.any(axis=1)] |= FLAGS["smoothed"]
        pts = smoothed
    pts[~present] = np.nan
    return pts, flags


def _slots(lfs) -> dict:
    """Group each frame's predicted instances by track (key: the Track, or None for the
    one untracked animal); several untracked instances in a frame cannot be followed."""
    slots: dict = {}
    for lf in lfs:
        insts = list(lf.predicted_instances)
        if sum(i.track is None for i in insts) > 1:
            raise PosekitError(
                f"frame {lf.frame_idx} has several untracked instances: trajectories need "
                "tracks; run `posekit track` first (or predict with --tracker / --max-tracks)"
            )
        for inst in insts:
            slots.setdefault(inst.track, {})[int(lf.frame_idx)] = inst
    return slots


def _points(values) -> list:
    return [[None if not np.isfinite(v) else round(float(v), 3) for v in p] for p in values]


def filter_labels(labels, flt: TrajectoryFilter, source: str | None = None):
    """A filtered copy of `labels` (the input is not modified); see the module docstring.

    The copy's ``provenance["posekit.filter"]`` holds the settings, `source` (the file
    the predictions came from), per-frame ``flags`` rows ``[video, frame, track
    name or None, flag]`` (non-zero ones) and the ``original`` points of every changed
    instance (rows ``[video, frame, track name or None, points]``). Videos are named by
    file name, which survives merging the predictions into a project (indices do not).
    """
    import sleap_io as sio

    if FILTER_PROVENANCE_KEY in labels.provenance:
        raise PosekitError(
            "these predictions were filtered already; filter the original predictions "
            "(posekit.tracking.trajectories.original_labels gives them back)"
        )
    replaced: dict[int, object] = {}
    flag_rows, original_rows = [], []
    for video in labels.videos:
        vi = video_key(video)
        lfs = [lf for lf in labels.labeled_frames if lf.video is video]
        for track, by_frame in _slots(lfs).items():
            first, last = min(by_frame), max(by_frame)
            insts = [by_frame.get(f) for f in range(first, last + 1)]
            skeleton = next(i for i in insts if i is not None).skeleton
            n = len(skeleton.nodes)
            pts = np.full((len(insts), n, 2), np.nan)
            scores = np.full((len(insts), n), np.nan)
            for t, inst in enumerate(insts):
                if inst is not None:
                    data = inst.numpy(scores=True)
                    pts[t], scores[t] = data[:, :2], data[:, 2]
            present = np.array([i is not None for i in insts])
            new, flags = filter_track(pts, scores, skeleton.edge_inds, flt, present)
            name = None if track is None else track.name
            for t in np.flatnonzero(flags):
                inst, frame = insts[t], first + int(t)
                flag_rows.append([vi, frame, name, int(flags[t])])
                original_rows.append([vi, frame, name, _points(inst.numpy())])
                point_scores = np.where(np.isfinite(scores[t]), scores[t], 0.0)
                replaced[id(inst)] = _with_points(inst, new[t], point_scores)
    frames = [
        sio.LabeledFrame(lf.video, lf.frame_idx, [replaced.get(id(i), i) for i in lf.instances])
        for lf in labels.labeled_frames
    ]
    provenance = dict(labels.provenance)
    provenance[FILTER_PROVENANCE_KEY] = {
        "settings": asdict(flt),
        "source": None if source is None else str(source),
        "flag_bits": dict(FLAGS),
        "flags": flag_rows,
        "original": original_rows,
    }
    return _relabel(labels, frames, provenance)


def _with_points(inst, points, point_scores):
    """A copy of a predicted instance with other points (score, track kept)."""
    import sleap_io as sio

    return sio.PredictedInstance.from_numpy(
        points_data=points,
        skeleton=inst.skeleton,
        point_scores=point_scores,
        score=float(inst.score),
        track=inst.track,
        tracking_score=inst.tracking_score,
    )


def _relabel(labels, frames, provenance):
    import sleap_io as sio

    return sio.Labels(
        labeled_frames=frames,
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=list(labels.tracks),
        suggestions=list(labels.suggestions),
        provenance=provenance,
    )


def original_labels(labels):
    """The unfiltered predictions of labels made by `filter_labels` (also after saving
    and loading: the originals travel in the provenance)."""
    import sleap_io as sio

    record = labels.provenance.get(FILTER_PROVENANCE_KEY)
    if not record:
        raise PosekitError("these labels were not filtered by posekit (no original kept)")
    originals = {
        (str(vi), int(f), name): np.array(p, dtype=np.float64)
        for vi, f, name, p in record["original"]
    }
    frames = []
    for lf in labels.labeled_frames:
        insts = []
        for inst in lf.instances:
            key = (video_key(lf.video), int(lf.frame_idx), inst.track.name if inst.track else None)
            if isinstance(inst, sio.PredictedInstance) and key in originals:
                inst = _with_points(inst, originals[key], inst.numpy(scores=True)[:, 2])
            insts.append(inst)
        frames.append(sio.LabeledFrame(lf.video, lf.frame_idx, insts))
    provenance = {k: v for k, v in labels.provenance.items() if k != FILTER_PROVENANCE_KEY}
    return _relabel(labels, frames, provenance)
