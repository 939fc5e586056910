"""Offline identities for a known number of animals: tracklets joined over the whole video.

An online tracker decides each frame once, with only the past: one bad frame (animals
crossing, a missed detection) can swap two identities for the rest of the video. With N
known animals posekit instead

1. culls every frame to N instances and cuts the video into tracklets that are surely
   one animal each (`tracklets.link_tracklets`: a Kalman filter per tracklet, cut
   wherever the link is ambiguous; short gaps stay inside a tracklet);
2. groups frames into *segments* (runs where the same tracklets span the frames) and
   chooses, for all segments at once, which identity each tracklet gets: a minimum-cost
   path (Viterbi, beam-pruned) over the injective maps tracklets -> identities, where
   - a transition costs the motion likelihood of each new tracklet continuing the last
     tracklet its identity held on the path, however long ago: the Kalman prediction
     across the gap, vaguer the longer the gap (``REAPPEAR_NLL`` for an identity never
     seen),
     plus, with an embedding model (re-identification), ``reid_weight * (1 - cos)`` of
     the two tracklets' mean identity vectors, which does not fade with the gap,
   - a short tracklet may take no identity at all (a false detection) for
     ``CLUTTER_NLL`` per pose times its score,
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
from posekit.tracking.kalman import MotionNoise, PoseKalman, pose_nll
from posekit.tracking.tracklets import GATE, link_tracklets

REAPPEAR_NLL = 8.0  # an identity never seen before takes a tracklet
# per pose of a tracklet declared a false detection (no identity), times the pose's
# instance score: dearer than any plausible continuation, cheaper for a low-scoring pose
# than joining an identity's path far from where that identity was
CLUTTER_NLL = 12.0
CLUTTER_MAX_POSES = 5  # longer tracklets (in summed instance score) are surely animals
APPEARANCE_CORRELATION = 10.0  # frames of one tracklet per independent shape observation
APPEARANCE_MAX_OBS = 20.0
MAX_EXACT_ANIMALS = 4
EM_ROUNDS = 4
BEAM = 40.0  # nats; paths further behind the best are dropped


def assign_identities(frames: list, opts, edges: list[tuple[int, int]]):
    """Identity (track id 0..N-1) per instance over the whole video.

    Returns the culled frames with ``track_ids``, ``tracking_scores`` and ``margin``
    set, and the N track names (class names when identity classes are used).
    """
    n_ids = int(opts.max_tracks)
    frames = [cull_frame(fr, n_ids, opts.pre_cull_iou_threshold) for fr in frames]
    linking = link_tracklets(frames, max_gap=opts.track_window, max_present=n_ids)
    tl = _Tracklets(frames, linking, edges, opts.reid_weight)
    classes, class_nll = _class_evidence(frames, linking, tl.n, n_ids, opts.identity_source)
    segments = _segments(frames, linking)
    if not segments:
        return frames, [f"track_{i}" for i in range(n_ids)]

    assign = None
    app = np.zeros((tl.n, n_ids))
    clutter = CLUTTER_NLL * tl.score_sum[:, None]
    for _ in range(EM_ROUNDS):
        unary = np.concatenate([app + class_nll, clutter], axis=1)  # [:, -1]: no identity
        assign, margins = _solve(segments, tl, unary, n_ids)
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
    """Per tracklet: first/last pose and time, Kalman states at both ends, edge lengths,
    and the mean identity vector when the frames carry embeddings (re-identification)."""

    def __init__(self, frames: list, linking, edges, reid_weight: float = 0.0):
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
        ne = len(self.edges)
        self.f_sum = np.zeros((n, ne))
        self.f_sq = np.zeros((n, ne))
        self.f_cnt = np.zeros((n, ne))
        self.score_sum = np.zeros(n)  # instance scores of each tracklet's poses, summed
        poses: list[list] = [[] for _ in range(n)]
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
                self.last_t[a] = t
                self.last_pts[a] = p
                poses[a].append((t, p))
                self.score_sum[a] += fr.scores[i] if np.isfinite(fr.scores[i]) else 1.0
                ok = np.isfinite(feats[i])
                self.f_sum[a, ok] += feats[i, ok]
                self.f_sq[a, ok] += feats[i, ok] ** 2
                self.f_cnt[a, ok] += 1
        with np.errstate(all="ignore"):
            self.f_mean = self.f_sum / self.f_cnt
        self.reid_weight = float(reid_weight)
        self.emb = _mean_embeddings(frames, linking, n)
        noise = linking.noise or MotionNoise(q=linking.sigma**2, r=0.25 * linking.sigma**2)
        self.noise = noise
        self.end = [_filtered(p, noise) for p in poses]  # state after the last pose
        # run backwards in time (frame -t) for the state before the first pose
        self.start = [_filtered([(-t, q) for t, q in reversed(p)], noise) for p in poses]

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

    def transition_nll(self, a: int, b: int) -> float:
        """Cost of tracklet `b` continuing tracklet `a` after the gap between them.

        Each side's Kalman filter predicts the other's nearest pose (forwards from the
        end of `a`, backwards from the start of `b`); the variance grows with the gap,
        so a long gap is vague evidence rather than no evidence. Measured from the
        cost of a perfect next-frame continuation (``log r``), capped at ``2 * GATE``.
        """
        end, start = self.end[a], self.start[b]
        if end is None or start is None:
            return GATE
        p_fwd, v_fwd = end.predict(int(self.first_t[b]))
        p_bwd, v_bwd = start.predict(-int(self.last_t[a]))
        c1 = pose_nll(self.first_pts[b][None], p_fwd[None], [v_fwd])[0, 0]
        c2 = pose_nll(self.last_pts[a][None], p_bwd[None], [v_bwd])[0, 0]
        if not np.isfinite([c1, c2]).any():
            return GATE
        c = float(np.nanmean([c1, c2])) - np.log(self.noise.r)
        return min(max(c, 0.0), 2 * GATE) + self.reid_nll(a, b)

    def reid_nll(self, a: int, b: int) -> float:
        """Appearance cost of `b` continuing `a`: ``reid_weight * (1 - cos)`` of the two
        tracklets' mean identity vectors (0 when either has none).

        Like a von Mises-Fisher likelihood with concentration ``reid_weight``: the same
        animal (cos ~ 1) costs nothing, a different one up to ``2 * reid_weight`` nats,
        whatever the gap, so it decides where a long gap has made motion vague.
        """
        if self.emb is None or not self.reid_weight:
            return 0.0
        cos = float(self.emb[a] @ self.emb[b])
        return self.reid_weight * (1.0 - cos) if np.isfinite(cos) else 0.0


def _filtered(poses: list, noise: MotionNoise) -> PoseKalman | None:
    """The Kalman state after filtering `poses` [(t, points)] in order; None if empty."""
    if not poses:
        return None
    f = PoseKalman.start(poses[0][0], poses[0][1], noise)
    for t, p in poses[1:]:
        f.update(t, p)
    return f


def _mean_embeddings(frames, linking, n: int) -> np.ndarray | None:
    """(n_tracklets, D) unit mean of each tracklet's identity vectors (NaN rows: none)."""
    dims = {fr.embeddings.shape[1] for fr in frames if fr.embeddings is not None and len(fr)}
    if not dims:
        return None
    total = np.zeros((n, dims.pop()))
    for fr, ids in zip(frames, linking.ids):
        if fr.embeddings is None or not len(ids):
            continue
        ok = np.isfinite(fr.embeddings).all(axis=1)
        np.add.at(total, ids[ok], fr.embeddings[ok])
    norm = np.linalg.norm(total, axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        return np.where(norm > 0, total / norm, np.nan)


def _edge_lengths(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    if not len(edges):
        return np.zeros((len(points), 0))
    d = points[:, edges[:, 0]] - points[:, edges[:, 1]]
    return np.hypot(d[..., 0], d[..., 1])


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
    """Runs of frames with the same tracklets spanning them: [{frames, tracklets, new, decides}].

    A tracklet spans the frames from its first to its last pose, missed ones included.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for pos, ids in enumerate(linking.ids):
        for a in ids.tolist():
            first.setdefault(a, pos)
            last[a] = pos
    starts: dict[int, list] = {}
    for a, p in first.items():
        starts.setdefault(p, []).append(a)
    segs: list[dict] = []
    present: set[int] = set()
    for pos in range(len(linking.ids)):
        present |= set(starts.get(pos, ()))
        present = {a for a in present if last[a] >= pos}
        if not present:
            continue
        key = tuple(sorted(present))
        if segs and segs[-1]["tracklets"] == key:
            segs[-1]["frames"].append(pos)
            continue
        new = [a for a in key if first[a] == pos]
        segs.append(
            {"frames": [pos], "tracklets": key, "new": new, "decides": bool(segs) and bool(new)}
        )
    return segs


def _solve(segments, tl: _Tracklets, unary: np.ndarray, n_ids: int):
    if n_ids <= MAX_EXACT_ANIMALS:
        return _viterbi(segments, tl, unary, n_ids)
    return _sequential(segments, tl, unary, n_ids)


def _states(seg, n_ids, clutter=()):
    """Identity per tracklet of `seg`, no identity twice; at most one tracklet of
    `clutter` (short ones) may be -1, a false detection."""
    k = len(seg["tracklets"])
    out = list(itertools.permutations(range(n_ids), k))
    for pos, a in enumerate(seg["tracklets"]):
        if a in clutter:
            rest = itertools.permutations(range(n_ids), k - 1)
            out.extend(r[:pos] + (-1,) + r[pos:] for r in rest)
    return out


def _unary(seg, states, unary):
    """Cost of each state's new tracklets (column -1 of `unary`: being a false detection)."""
    pos = [seg["tracklets"].index(a) for a in seg["new"]]
    return np.array([sum(unary[a, s[p]] for a, p in zip(seg["new"], pos)) for s in states])


def _transition(prev, seg, s_prev, s_new, tl, cache, last_of):
    """Cost of going from state s_prev of `prev` to s_new of `seg` (inf if inconsistent).

    `last_of` maps each identity to the last tracklet it held on the path to s_prev,
    however long ago: a new tracklet continues that one across the gap (Kalman), and
    only an identity never seen costs ``REAPPEAR_NLL``.
    """
    held = {a: ident for a, ident in zip(prev["tracklets"], s_prev)}
    cost = 0.0
    for a, ident in zip(seg["tracklets"], s_new):
        if a in held and held[a] != ident:
            return np.inf  # a continuing tracklet must keep its identity
        if a in seg["new"] and ident >= 0:
            src = last_of.get(ident)
            if src is None:
                cost += REAPPEAR_NLL
            else:
                key = (src, a)
                if key not in cache:
                    cache[key] = tl.transition_nll(src, a)
                cost += cache[key]
    return cost


def _held(seg, state, before: dict) -> dict:
    return {**before, **{ident: a for a, ident in zip(seg["tracklets"], state) if ident >= 0}}


def _viterbi(segments, tl, unary, n_ids):
    """Min-cost path over the segments' states; each state remembers its path's last
    tracklet per identity (so a transition may reach back across any gap)."""
    cache: dict = {}
    short = set(np.flatnonzero(tl.score_sum <= CLUTTER_MAX_POSES).tolist())
    states = [_states(s, n_ids, short) for s in segments]
    units = [_unary(s, st, unary) for s, st in zip(segments, states)]
    last_of = [_held(segments[0], s, {}) for s in states[0]]
    alpha = [units[0]]
    back, trans = [], []
    for k in range(1, len(segments)):
        prev, seg = segments[k - 1], segments[k]
        # only states that keep every continuing tracklet's identity can follow
        cont = [a for a in seg["tracklets"] if a in prev["tracklets"]]
        pos_new = [seg["tracklets"].index(a) for a in cont]
        pos_old = [prev["tracklets"].index(a) for a in cont]
        follow: dict[tuple, list[int]] = {}
        for j, sn in enumerate(states[k]):
            follow.setdefault(tuple(sn[p] for p in pos_new), []).append(j)
        t = np.full((len(states[k - 1]), len(states[k])), np.inf)
        # beam: a state already BEAM nats behind the best cannot win or be runner-up
        alive = np.flatnonzero(alpha[-1] <= alpha[-1].min() + BEAM)
        for i in alive.tolist():
            sp = states[k - 1][i]
            for j in follow.get(tuple(sp[p] for p in pos_old), ()):
                t[i, j] = _transition(prev, seg, sp, states[k][j], tl, cache, last_of[i])
        trans.append(t)
        tot = alpha[-1][:, None] + t
        best = np.argmin(tot, axis=0)
        back.append(best)
        alpha.append(tot.min(axis=0) + units[k])
        last_of = [
            _held(seg, sn, last_of[best[j]]) if np.isfinite(tot[best[j], j]) else {}
            for j, sn in enumerate(states[k])
        ]
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


def _sequential(segments, tl, unary, n_ids):
    """Segment by segment, each decided by its own cheapest state given the last one."""
    cache: dict = {}
    assign = np.zeros(tl.n, dtype=np.int64)
    margins = []
    prev, prev_state, last_of = None, None, {}
    for seg in segments:
        best = []
        for s in _states(seg, n_ids):
            c = _unary(seg, [s], unary)[0]
            if prev is not None:
                c += _transition(prev, seg, prev_state, s, tl, cache, last_of)
            best.append((c, s))
        best.sort(key=lambda x: x[0])
        prev, prev_state = seg, best[0][1]
        last_of = _held(seg, prev_state, last_of)
        for a, ident in zip(seg["tracklets"], prev_state):
            assign[a] = ident
        finite = [c for c, _ in best if np.isfinite(c)]
        margins.append(finite[1] - finite[0] if len(finite) > 1 else np.inf)
    return assign, margins
