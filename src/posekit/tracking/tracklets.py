"""Cutting a video's poses into tracklets: short runs that are surely one animal.

The offline assignment (`global_assignment`) decides identities per tracklet, so a
tracklet must never contain a swap; it can be as short as it likes. Linking is frame to
frame with a constant-velocity motion model:

- each tracklet predicts its pose in the next frame with a constant-velocity Kalman
  filter (`kalman.PoseKalman`), whose variance grows with the frames since it was last
  seen, so a tracklet can wait out a few missed detections;
- the cost of a link is the negative log-likelihood of a heavy-tailed (Student t, 2
  degrees of freedom) error: ``2 * log(1 + r^2 / (2 * var))``, with ``r^2`` the mean
  squared node distance to the prediction and ``var`` the filter's predicted variance.
  The filter's noises come from the video itself: a first pass links with a plain
  velocity model and a size-based guess of the motion noise, and the second-difference
  statistics of its tracklets give the Kalman noises (`kalman.estimate_noise`). Animals
  mostly sit still and sometimes dart: with Gaussian costs every dart would look
  impossible, while here what counts is how much nearer one continuation is than the
  other;
- links are chosen by minimum total cost (Hungarian) with "start a new tracklet" as an
  option at ``gate`` cost, and every link whose best alternative is less than
  ``cut_margin`` worse is cut instead of decided: animals that touch, cross or jump end
  their tracklets there, and the global pass decides who is who with all the evidence.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from posekit.tracking.kalman import MotionNoise, PoseKalman, estimate_noise
from posekit.tracking.poses import bounding_boxes

CUT_MARGIN = 3.0  # nats: a decision less clear than e^3 = 20 : 1 is left to the global pass
GATE = 14.0  # nats: a link this unlikely (r ~ 45 sigma) starts a new tracklet instead
T_DOF = 2.0
MIN_SIGMA_FRACTION = 0.01


@dataclasses.dataclass
class Linking:
    """Tracklet id per instance of every frame, and the motion noise used (pixels)."""

    ids: list  # per frame, (k,) int tracklet ids
    sigma: float
    n_tracklets: int
    noise: MotionNoise | None = None  # the Kalman noises the links were made with


def _velocity(prev_pts: np.ndarray, pts: np.ndarray, dt: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        d = (pts - prev_pts) / dt
        ok = np.all(np.isfinite(d), axis=-1)
        if not ok.any():
            return np.zeros(2)
        return np.median(d[ok], axis=0)


def motion_nll(
    points: np.ndarray, predicted: np.ndarray, sigma: float, dt: np.ndarray
) -> np.ndarray:
    """(k, n, 2) poses vs (m, n, 2) predictions -> (k, m) link costs (NaN: no common node)."""
    diff = points[:, None] - predicted[None]
    d2 = np.sum(diff * diff, axis=-1)  # (k, m, n)
    with np.errstate(all="ignore"):
        ok = np.isfinite(d2)
        r2 = np.where(ok, d2, 0).sum(-1) / ok.sum(-1)
    scale = T_DOF * sigma**2 * np.asarray(dt, dtype=np.float64)[None, :]
    return 0.5 * (T_DOF + 2.0) * np.log1p(r2 / scale)


def _r2(p: np.ndarray, q: np.ndarray) -> float:
    d2 = np.sum((p - q) ** 2, axis=-1)
    return float(np.nanmean(d2)) if np.isfinite(d2).any() else np.nan


def _assign(cost: np.ndarray, gate: float):
    """Hungarian with a "new tracklet" option per row: (pairs, total, augmented cost)."""
    k, m = cost.shape
    aug = np.full((k, m + k), np.inf)
    aug[:, :m] = np.where(np.isfinite(cost) & (cost < gate), cost, np.inf)
    aug[np.arange(k), m + np.arange(k)] = gate
    pairs, total = _assign_aug(aug)
    return pairs, total, aug


def _decide_links(cost: np.ndarray, gate: float, cut_margin: float):
    """(links row -> column, rows whose link is cut as ambiguous) for a link cost matrix.

    A link is cut when forbidding it costs less than `cut_margin` more in total: then
    every row the alternative assignment changes is cut too.
    """
    pairs, best, aug = _assign(np.where(np.isfinite(cost), cost, np.inf), gate)
    cut: set[int] = set()
    for i, j in pairs.items():
        forbidden = aug.copy()
        forbidden[i, j] = np.inf
        alt_pairs, alt_total = _assign_aug(forbidden)
        if alt_total - best < cut_margin:
            cut |= {r for r, c in pairs.items() if alt_pairs.get(r) != c}
    return pairs, cut


def _link_pass(frames: list, sigma: float, max_gap: int, cut_margin: float, gate: float):
    active: dict[int, dict] = {}
    out_ids = []
    residuals = []
    next_id = 0
    for fr in frames:
        t = int(fr.frame_idx)
        for tid in [a for a, s in active.items() if t - s["t"] > max_gap]:
            del active[tid]
        k = len(fr)
        ids = np.full(k, -1, dtype=np.int64)
        tids = list(active)
        if k and tids:
            dt = np.array([t - active[a]["t"] for a in tids], dtype=np.float64)
            pred = np.stack([active[a]["pts"] + active[a]["vel"] * d for a, d in zip(tids, dt)])
            cost = motion_nll(fr.points, pred, sigma, dt)
            pairs, cut = _decide_links(cost, gate, cut_margin)
            for i, j in pairs.items():
                if i not in cut:
                    ids[i] = tids[j]
                    residuals.append(_r2(fr.points[i], pred[j]) / dt[j])
        for i in range(k):
            if ids[i] < 0:
                ids[i] = next_id
                next_id += 1
        for i in range(k):
            a = int(ids[i])
            st = active.get(a)
            if st is None:
                active[a] = {"t": t, "pts": fr.points[i].copy(), "vel": np.zeros(2)}
            else:
                vel = _velocity(st["pts"], fr.points[i], t - st["t"])
                pts = np.where(
                    np.isfinite(fr.points[i]), fr.points[i], st["pts"] + st["vel"] * (t - st["t"])
                )
                active[a] = {"t": t, "pts": pts, "vel": vel}
        out_ids.append(ids)
    return out_ids, np.asarray(residuals), next_id


def _kalman_pass(frames: list, noise: MotionNoise, max_gap: int, cut_margin: float, gate: float):
    """`_link_pass` with a Kalman filter per tracklet (variance growing over gaps)."""
    active: dict[int, PoseKalman] = {}
    out_ids = []
    next_id = 0
    for fr in frames:
        t = int(fr.frame_idx)
        for tid in [a for a, f in active.items() if t - f.t > max_gap]:
            del active[tid]
        k = len(fr)
        ids = np.full(k, -1, dtype=np.int64)
        tids = list(active)
        if k and tids:
            preds = [active[a].predict(t) for a in tids]
            pred = np.stack([p for p, _ in preds])
            var = np.array([v for _, v in preds])
            cost = motion_nll(fr.points, pred, np.sqrt(var), np.ones(len(tids)))
            pairs, cut = _decide_links(cost, gate, cut_margin)
            for i, j in pairs.items():
                if i not in cut:
                    ids[i] = tids[j]
                else:
                    # the tracklet ends here: left active, it would sit beside the new
                    # tracklet that likely continues it, and every later link would
                    # look ambiguous between the two
                    del active[tids[j]]
        for i in range(k):
            a = int(ids[i])
            if a < 0:
                ids[i] = a = next_id
                next_id += 1
                active[a] = PoseKalman.start(t, fr.points[i], noise)
            else:
                active[a].update(t, fr.points[i])
        out_ids.append(ids)
    return out_ids, next_id


def _runs(frames: list, ids: list) -> list[np.ndarray]:
    """Poses of each tracklet over its runs of consecutive frames, (frames, n, 2) each."""
    runs: dict[int, list] = {}
    last: dict[int, int] = {}
    out = []
    for fr, frame_ids in zip(frames, ids):
        t = int(fr.frame_idx)
        for i, a in enumerate(frame_ids.tolist()):
            if a in runs and last[a] != t - 1:
                out.append(np.stack(runs.pop(a)))
            runs.setdefault(a, []).append(fr.points[i])
            last[a] = t
    out.extend(np.stack(r) for r in runs.values())
    return out


def _assign_aug(aug: np.ndarray):
    """Minimum-cost assignment of an augmented cost (inf = forbidden): (pairs, total)."""
    from scipy.optimize import linear_sum_assignment

    k = aug.shape[0]
    m = aug.shape[1] - k
    big = np.nanmax(np.where(np.isfinite(aug), aug, 0)) * (k + 1) * 10.0 + 1e6
    filled = np.where(np.isfinite(aug), aug, big)
    rows, cols = linear_sum_assignment(filled)
    pairs = {int(r): int(c) for r, c in zip(rows, cols) if c < m and np.isfinite(aug[r, c])}
    return pairs, float(filled[rows, cols].sum())


def link_tracklets(
    frames: list,
    max_gap: int = 5,
    cut_margin: float = CUT_MARGIN,
    gate: float = GATE,
    max_present: int | None = None,
) -> Linking:
    """Tracklet ids for every instance of `frames` (sorted `FramePoses`).

    `max_present`: the number of animals; gaps are kept inside tracklets where no more
    than that many tracklets span a frame (see `_split_at_gaps`)."""
    sizes = []
    for fr in frames:
        if len(fr):
            b = bounding_boxes(fr.points)
            sizes.extend(np.hypot(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).tolist())
    sizes = np.asarray([s for s in sizes if np.isfinite(s) and s > 0])
    size = float(np.median(sizes)) if len(sizes) else 100.0
    sigma = 0.05 * size
    ids, res, n = _link_pass(frames, sigma, max_gap, cut_margin, gate)
    res = res[np.isfinite(res)]
    if len(res) >= 10:
        # median of |e|^2 for a 2-D Gaussian error is 2 sigma^2 ln 2
        est = float(np.sqrt(np.median(res) / (2.0 * np.log(2.0))))
        if np.isfinite(est) and est > 0:
            # Animals that mostly sit still make the median tiny; below 1% of the body
            # size it is keypoint noise, not motion, and would cut every dart.
            sigma = max(est, MIN_SIGMA_FRACTION * size, 0.25)
            ids, _, n = _link_pass(frames, sigma, max_gap, cut_margin, gate)
    fallback = MotionNoise(q=sigma**2, r=max(0.25 * sigma**2, 0.25))
    noise = estimate_noise(_runs(frames, ids), fallback, min_q=(MIN_SIGMA_FRACTION * size) ** 2)
    ids, n = _kalman_pass(frames, noise, max_gap, cut_margin, gate)
    ids, n = _split_at_gaps(ids, max_present)
    return Linking(ids=ids, sigma=sigma, n_tracklets=n, noise=noise)


def _split_at_gaps(ids: list, max_present: int | None = None) -> tuple[list, int]:
    """Renumber so that no frame has more than `max_present` tracklets spanning it.

    The linker bridges short gaps; the global pass reasons about the tracklets *spanning*
    each run of frames (a tracklet spans the frames from its first to its last pose,
    missed detections included), so a gap may stay inside a tracklet only where the
    frames it crosses are not crowded: more tracklets spanning a frame than animals
    means one of them was really somebody else, and the gapped one is split there (the
    global pass re-joins the pieces by motion). ``max_present=None`` splits at every gap.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for pos, frame_ids in enumerate(ids):
        for a in frame_ids.tolist():
            first.setdefault(a, pos)
            last[a] = pos
    crowded = np.zeros(len(ids) + 1, dtype=np.int64)
    if max_present is not None:
        span = np.zeros(len(ids) + 1, dtype=np.int64)
        for a, p0 in first.items():
            span[p0] += 1
            span[last[a] + 1] -= 1
        crowded[1:] = np.cumsum(np.cumsum(span)[:-1] > max_present)  # prefix counts
    renum: dict[int, int] = {}
    seen_at: dict[int, int] = {}
    out = []
    n = 0
    for pos, frame_ids in enumerate(ids):
        if not len(frame_ids):
            out.append(frame_ids)
            continue
        new_ids = np.empty_like(frame_ids)
        for i, a in enumerate(frame_ids.tolist()):
            prev = seen_at.get(a)
            gap = prev is not None and prev != pos - 1
            split = gap and (max_present is None or crowded[pos] - crowded[prev + 1] > 0)
            if prev is None or split:
                renum[a] = n
                n += 1
            new_ids[i] = renum[a]
            seen_at[a] = pos
        out.append(new_ids)
    return out, n
