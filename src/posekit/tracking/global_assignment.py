"""Offline identities for a known number of animals: tracklets joined over the whole video.

An online tracker decides each frame once, with only the past: one bad frame (animals
crossing, a missed detection) can swap two identities for the rest of the video. With N
known animals posekit instead

1. culls every frame to N instances and cuts the video into tracklets that are surely
   one animal each (`tracklets.link_tracklets`: constant-velocity motion, cut wherever
   the link is ambiguous);
2. groups frames into *segments* (runs where the same tracklets are present) and
   chooses, for all segments at once, which identity each tracklet gets: a minimum-cost
   path (Viterbi) over the injective maps tracklets -> identities, where
   - a transition costs the motion likelihood of each new tracklet continuing the one
     its identity had before (``REAPPEAR_NLL`` when the identity was absent),
   - each tracklet costs how unlike its identity it looks: the Gaussian negative
     log-likelihood of its mean skeleton edge lengths (body size and shape) under the
     identity's mean, with the frame-to-frame spread around the identities' means as
     noise and frames counted as ``1 / APPEARANCE_CORRELATION`` independent observations
     (capped), and, when
     instances carry identity classes (sleap_io ``Identity``, or the class tracks of
     posekit's and SLEAP's multi-class models), minus the log of the class probability;
   - the identities' mean shapes are re-estimated from the assignment and the path
     recomputed (a few rounds, starting from motion alone);
3. reports, per segment, the max-marginal margin: how much worse (in nats) the best
   assignment that differs in this segment is. That margin sets the instances'
   ``tracking_score`` (``1 / (1 + e^-margin)``, the odds against the runner-up) and picks
   the frames to proofread.

Because every segment's identity is chosen against the whole video's evidence, a wrong
link at one crossing costs its own segment, not the rest of the video.

Up to ``MAX_EXACT_ANIMALS`` animals the path is exact (every injective map is a state);
beyond, segments are decided one after the other with the same costs (Hungarian).
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter

import numpy as np

from posekit.errors import PosekitError
from posekit.tracking.culling import cull_frame
from posekit.tracking.tracklets import GATE, link_tracklets, motion_nll

REAPPEAR_NLL = 8.0  # an identity that was absent in the previous segment takes a tracklet
APPEARANCE_CORRELATION = 10.0  # frames of one tracklet per independent shape observation
APPEARANCE_MAX_OBS = 20.0
MAX_EXACT_ANIMALS = 4
EM_ROUNDS = 4


def assign_identities(frames: list, opts, edges: list[tuple[int, int]]):
    """Identity (track id 0..N-1) per instance over the whole video.

    Returns the culled frames with ``track_ids``, ``tracking_scores`` and ``margin``
    set, and the N track names (class names when identity classes are used).
    """
    n_ids = int(opts.max_tracks)
    frames = [cull_frame(fr, n_ids, opts.pre_cull_iou_threshold) for fr in frames]
    linking = link_tracklets(frames, max_gap=opts.track_window)
    tl = _Tracklets(frames, linking, edges)
    classes, class_nll = _class_evidence(frames, linking, tl.n, n_ids, opts.identity_source)
    segments = _segments(frames, linking)
    if not segments:
        return frames, [f"track_{i}" for i in range(n_ids)]

    assign = None
    app = np.zeros((tl.n, n_ids))
    for _ in range(EM_ROUNDS):
        unary = app + class_nll
        assign, margins = _solve(segments, tl, unary, n_ids, linking.sigma)
        new_app = tl.appearance_nll(assign, n_ids)
        if np.allclose(new_app, app):
            break
        app = new_app

    for fr, ids in zip(frames, linking.ids):
        fr.track_ids[:] = assign[ids] if len(ids) else fr.track_ids
    for seg, margin in zip(segments, margins):
        score = 1.0 / (1.0 + np.exp(-margin)) if np.isfinite(margin) else 1.0
        for pos in seg["frames"]:
            frames[pos].tracking_scores[:] = score
        if seg["decides"]:
            frames[seg["frames"][0]].margin = float(margin)
    names = classes if classes else [f"track_{i}" for i in range(n_ids)]
    return frames, names


# --------------------------------------------------------------------------- evidence


class _Tracklets:
    """Per tracklet: first/last pose, time and velocity; edge-length statistics."""

    def __init__(self, frames: list, linking, edges):
        n = linking.n_tracklets
        self.n = n
        nodes = next((fr.points.shape[1] for fr in frames if len(fr)), 0)
        if not edges:
            edges = [(i, i + 1) for i in range(max(nodes - 1, 0))]
        self.edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        self.first_t = np.full(n, -1)
        self.last_t = np.full(n, -1)
        self.first_pts = np.full((n, nodes, 2), np.nan)
        self.last_pts = np.full((n, nodes, 2), np.nan)
        self.first_vel = np.zeros((n, 2))
        self.last_vel = np.zeros((n, 2))
        prev: dict[int, tuple[int, np.ndarray]] = {}
        ne = len(self.edges)
        self.f_sum = np.zeros((n, ne))
        self.f_sq = np.zeros((n, ne))
        self.f_cnt = np.zeros((n, ne))
        for fr, ids in zip(frames, linking.ids):
            if not len(ids):
                continue
            t = int(fr.frame_idx)
            feats = _edge_lengths(fr.points, self.edges)
            for i, a in enumerate(ids.tolist()):
                p = fr.points[i]
                if self.first_t[a] < 0:
                    self.first_t[a] = t
                    self.first_pts[a] = p
                elif self.first_t[a] == prev[a][0]:
                    self.first_vel[a] = _median_velocity(prev[a][1], p, t - prev[a][0])
                if a in prev:
                    self.last_vel[a] = _median_velocity(prev[a][1], p, t - prev[a][0])
                self.last_t[a] = t
                self.last_pts[a] = p
                prev[a] = (t, p)
                ok = np.isfinite(feats[i])
                self.f_sum[a, ok] += feats[i, ok]
                self.f_sq[a, ok] += feats[i, ok] ** 2
                self.f_cnt[a, ok] += 1
        with np.errstate(all="ignore"):
            self.f_mean = self.f_sum / self.f_cnt

    def appearance_nll(self, assign: np.ndarray, n_ids: int) -> np.ndarray:
        """(n_tracklets, n_ids) shape cost under each identity's mean edge lengths."""
        out = np.zeros((self.n, n_ids))
        if not len(self.edges):
            return out
        obs = np.minimum(self.f_cnt / APPEARANCE_CORRELATION, APPEARANCE_MAX_OBS)
        mus = np.full((n_ids, len(self.edges)), np.nan)
        sq = np.zeros(len(self.edges))
        cnt = np.zeros(len(self.edges))
        for i in range(n_ids):
            mine = assign == i
            with np.errstate(all="ignore"):
                mu = self.f_sum[mine].sum(0) / self.f_cnt[mine].sum(0)
            mus[i] = mu
            ok = np.isfinite(mu)
            # frame-level spread around this identity's mean, pooled over identities
            sq[ok] += (self.f_sq[mine] - 2 * mu * self.f_sum[mine] + self.f_cnt[mine] * mu**2).sum(
                0
            )[ok]
            cnt[ok] += self.f_cnt[mine].sum(0)[ok]
        with np.errstate(all="ignore"):
            var = sq / cnt
        var = np.where(np.isfinite(var) & (var > 0), var, 1.0) + 0.25  # + label rounding
        for i in range(n_ids):
            if not np.isfinite(mus[i]).any():
                continue
            d2 = (self.f_mean - mus[i]) ** 2 / var
            out[:, i] = 0.5 * np.nansum(np.where(np.isfinite(d2), obs * d2, 0.0), axis=1)
        return out

    def transition_nll(self, a: int, b: int, sigma: float) -> float:
        """Cost of tracklet `b` continuing tracklet `a` (motion, both directions)."""
        dt = max(int(self.first_t[b] - self.last_t[a]), 1)
        fwd = self.last_pts[a] + self.last_vel[a] * dt
        bwd = self.first_pts[b] - self.first_vel[b] * dt
        c1 = motion_nll(self.first_pts[b][None], fwd[None], sigma, [dt])[0, 0]
        c2 = motion_nll(self.last_pts[a][None], bwd[None], sigma, [dt])[0, 0]
        c = np.nanmean([c1, c2]) if np.isfinite([c1, c2]).any() else GATE
        return float(c)


def _edge_lengths(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    if not len(edges):
        return np.zeros((len(points), 0))
    d = points[:, edges[:, 0]] - points[:, edges[:, 1]]
    return np.hypot(d[..., 0], d[..., 1])


def _median_velocity(p0: np.ndarray, p1: np.ndarray, dt: int) -> np.ndarray:
    with np.errstate(all="ignore"):
        d = (p1 - p0) / max(dt, 1)
        ok = np.all(np.isfinite(d), axis=-1)
        return np.median(d[ok], axis=0) if ok.any() else np.zeros(2)


def _class_evidence(frames, linking, n_tracklets: int, n_ids: int, source: str):
    """(class names or [], (n_tracklets, n_ids) class cost) from identity classes."""
    zero = np.zeros((n_tracklets, n_ids))
    if source == "none":
        return [], zero
    per_inst = []  # (tracklet, name, prob)
    for fr, ids in zip(frames, linking.ids):
        for i, a in enumerate(ids.tolist()):
            name, prob = None, np.nan
            if source in ("auto", "identity") and fr.identity_names[i] is not None:
                name, prob = fr.identity_names[i], fr.identity_scores[i]
            elif source == "tracks":
                track = getattr(fr.instances[i], "track", None)
                if track is not None:
                    name = track.name
                    prob = getattr(fr.instances[i], "tracking_score", None)
            if name is not None:
                per_inst.append((a, name, np.nan if prob is None else float(prob)))
    if not per_inst:
        if source in ("identity", "tracks"):
            raise PosekitError(
                f"identity_source={source!r} but no instance carries "
                f"{'an identity' if source == 'identity' else 'a track'}; use "
                "identity_source='auto' (motion and body shape only)"
            )
        return [], zero
    counts = Counter(name for _, name, _ in per_inst)
    if len(counts) != n_ids:
        warnings.warn(
            f"identity classes ({', '.join(sorted(counts))}) do not match max_tracks={n_ids}; "
            "tracking ignores them and uses motion and body shape",
            stacklevel=3,
        )
        return [], zero
    classes = sorted(counts)
    col = {c: i for i, c in enumerate(classes)}
    logp = np.zeros((n_tracklets, n_ids))
    nobs = np.zeros(n_tracklets)
    for a, name, prob in per_inst:
        p = 0.9 if not np.isfinite(prob) else float(np.clip(prob, 1e-3, 1 - 1e-3))
        other = (1.0 - p) / max(n_ids - 1, 1)
        row = np.full(n_ids, np.log(max(other, 1e-3)))
        row[col[name]] = np.log(p)
        logp[a] += row
        nobs[a] += 1
    with np.errstate(all="ignore"):
        mean = np.where(nobs[:, None] > 0, logp / nobs[:, None], 0.0)
    weight = np.minimum(nobs / APPEARANCE_CORRELATION, APPEARANCE_MAX_OBS)[:, None]
    return classes, -(mean - mean.max(axis=1, keepdims=True)) * weight


# --------------------------------------------------------------------------- segments


def _segments(frames, linking) -> list[dict]:
    """Runs of frames with the same tracklets present: [{frames, tracklets, new, decides}]."""
    segs: list[dict] = []
    seen: set[int] = set()
    for pos, ids in enumerate(linking.ids):
        if not len(ids):
            continue
        key = tuple(sorted(ids.tolist()))
        if segs and segs[-1]["tracklets"] == key:
            segs[-1]["frames"].append(pos)
            continue
        new = [a for a in key if a not in seen]
        seen.update(key)
        segs.append(
            {"frames": [pos], "tracklets": key, "new": new, "decides": bool(segs) and bool(new)}
        )
    return segs


def _solve(segments, tl: _Tracklets, unary: np.ndarray, n_ids: int, sigma: float):
    if n_ids <= MAX_EXACT_ANIMALS:
        return _viterbi(segments, tl, unary, n_ids, sigma)
    return _sequential(segments, tl, unary, n_ids, sigma)


def _states(seg, n_ids):
    return list(itertools.permutations(range(n_ids), len(seg["tracklets"])))


def _unary(seg, states, unary):
    pos = [seg["tracklets"].index(a) for a in seg["new"]]
    return np.array([sum(unary[a, s[p]] for a, p in zip(seg["new"], pos)) for s in states])


def _transition(prev, seg, s_prev, s_new, tl, sigma, cache):
    """Cost of going from state s_prev of `prev` to s_new of `seg` (inf if inconsistent)."""
    held = {ident: a for a, ident in zip(prev["tracklets"], s_prev)}
    cost = 0.0
    for a, ident in zip(seg["tracklets"], s_new):
        if a in held.values() and held.get(ident) != a:
            return np.inf  # a continuing tracklet must keep its identity
        if a in seg["new"]:
            src = held.get(ident)
            if src is None:
                cost += REAPPEAR_NLL
            else:
                key = (src, a)
                if key not in cache:
                    cache[key] = tl.transition_nll(src, a, sigma)
                cost += cache[key]
    for a, ident in zip(prev["tracklets"], s_prev):
        if a in seg["tracklets"] and s_new[seg["tracklets"].index(a)] != ident:
            return np.inf
    return cost


def _viterbi(segments, tl, unary, n_ids, sigma):
    cache: dict = {}
    states = [_states(s, n_ids) for s in segments]
    units = [_unary(s, st, unary) for s, st in zip(segments, states)]
    trans = []
    for k in range(1, len(segments)):
        t = np.array(
            [
                [
                    _transition(segments[k - 1], segments[k], sp, sn, tl, sigma, cache)
                    for sn in states[k]
                ]
                for sp in states[k - 1]
            ]
        ).reshape(len(states[k - 1]), len(states[k]))
        trans.append(t)
    alpha = [units[0]]
    back = []
    for k in range(1, len(segments)):
        tot = alpha[-1][:, None] + trans[k - 1]
        back.append(np.argmin(tot, axis=0))
        alpha.append(tot.min(axis=0) + units[k])
    beta = [np.zeros(len(states[-1]))]
    for k in range(len(segments) - 2, -1, -1):
        tot = trans[k] + (units[k + 1] + beta[0])[None, :]
        beta.insert(0, tot.min(axis=1))
    path = [int(np.argmin(alpha[-1]))]
    for k in range(len(segments) - 2, -1, -1):
        path.insert(0, int(back[k][path[0]]))
    assign = np.zeros(tl.n, dtype=np.int64)
    margins = []
    for k, seg in enumerate(segments):
        for a, ident in zip(seg["tracklets"], states[k][path[k]]):
            assign[a] = ident
        mm = alpha[k] + beta[k]
        order = np.sort(mm[np.isfinite(mm)])
        margins.append(float(order[1] - order[0]) if len(order) > 1 else np.inf)
    return assign, margins


def _sequential(segments, tl, unary, n_ids, sigma):
    """Segment by segment, each decided by its own cheapest state given the last one."""
    cache: dict = {}
    assign = np.zeros(tl.n, dtype=np.int64)
    margins = []
    prev, prev_state = None, None
    for seg in segments:
        best = []
        for s in _states(seg, n_ids):
            c = _unary(seg, [s], unary)[0]
            if prev is not None:
                c += _transition(prev, seg, prev_state, s, tl, sigma, cache)
            best.append((c, s))
        best.sort(key=lambda x: x[0])
        prev, prev_state = seg, best[0][1]
        for a, ident in zip(seg["tracklets"], prev_state):
            assign[a] = ident
        finite = [c for c, _ in best if np.isfinite(c)]
        margins.append(finite[1] - finite[0] if len(finite) > 1 else np.inf)
    return assign, margins
