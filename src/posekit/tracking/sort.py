"""The SORT family on poses: ``kalman`` (SORT), ``bytetrack`` and ``ocsort``, online.

Multi-object trackers from video detection, carried over to poses. Each track is a
constant-velocity Kalman filter over its keypoints (`kalman.PoseKalman`); each frame,
detections are matched to the tracks' predictions by minimum total cost (Hungarian) of
the Student-t motion cost (`kalman.pose_nll` with the filter's variance, which grows
while a track goes unseen), and pairs costlier than ``GATE`` never match. Keypoints
rather than boxes: two animals crossing head-on have nearly the same box, not the same
head and tail. Then, per tracker:

- ``kalman`` (SORT, Bewley et al. 2016): one association; a track unseen for more than
  ``max_age`` frames ends; an unmatched detection starts a track.
- ``bytetrack`` (Zhang et al. 2022): detections scoring at least ``det_thresh`` are
  matched first; the tracks left over then try the low-scoring ones, which never start
  tracks (a faint detection continues an animal, it does not make a new one).
- ``ocsort`` (Cao et al. 2023): SORT plus *observation-centric momentum* (the angle
  between a track's direction over its last ``delta_t`` observations and the direction
  to the detection costs ``inertia`` per radian), *observation-centric recovery* (tracks
  left unmatched get a second chance against their last observed pose) and
  *re-update*: a track found again after a gap is re-filtered along the straight line
  from its last observation, so the gap's drift does not stay in its velocity.

With ``max_tracks`` frames are culled to that many instances first and no more tracks
are started. Written here rather than taken from a package: the published ones work on
boxes and pull in torch or OpenCV pins, while this is a page of numpy on the filter the
offline tracker already uses.
"""

from __future__ import annotations

import numpy as np

from posekit.tracking.culling import cull_frame
from posekit.tracking.kalman import MotionNoise, PoseKalman, pose_nll
from posekit.tracking.matching import hungarian_matching
from posekit.tracking.poses import UNTRACKED, FramePoses, bounding_boxes, centroids
from posekit.tracking.tracklets import GATE

SORT_TRACKERS = ("kalman", "bytetrack", "ocsort")


def noise_for(points: np.ndarray) -> MotionNoise:
    """Motion noise scaled by the animals' size (pixels), for a tracker with no history."""
    b = bounding_boxes(points)
    size = np.nanmedian(np.hypot(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])) if len(b) else 50.0
    size = float(size) if np.isfinite(size) and size > 0 else 50.0
    return MotionNoise(q=(0.02 * size) ** 2, r=(0.03 * size) ** 2, speed_var=(0.1 * size) ** 2)


class _Track:
    def __init__(self, tid: int, t: int, points: np.ndarray, noise: MotionNoise):
        self.id = tid
        self.kf = PoseKalman.start(t, points, noise)
        self.observed = [(t, points.copy())]  # last observations (delta_t + 1 kept)

    def observe(self, t: int, points: np.ndarray, re_update: bool) -> None:
        last_t, last_p = self.observed[-1]
        if re_update and t - last_t > 1:
            # OC-SORT's re-update: filter along a straight line across the gap
            for g in range(last_t + 1, t):
                w = (g - last_t) / (t - last_t)
                self.kf.update(g, (1 - w) * last_p + w * points)
        self.kf.update(t, points)
        self.observed = (self.observed + [(t, points.copy())])[-8:]

    def direction(self, delta_t: int) -> np.ndarray | None:
        """Unit direction of the centroid over the last `delta_t` observations."""
        if len(self.observed) < 2:
            return None
        p0 = self.observed[max(-delta_t - 1, -len(self.observed))][1]
        p1 = self.observed[-1][1]
        d = centroids(p1[None])[0] - centroids(p0[None])[0]
        n = np.hypot(*d)
        return d / n if np.isfinite(n) and n > 1e-6 else None


class SortTracker:
    """``kalman``, ``bytetrack`` or ``ocsort`` frame by frame (see the module docstring)."""

    def __init__(self, options) -> None:
        self.options = options
        self.kind = options.tracker
        self.tracks: list[_Track] = []
        self.n_tracks = 0
        self.noise: MotionNoise | None = None

    def track_poses(self, poses: FramePoses) -> FramePoses:
        opts = self.options
        t = int(poses.frame_idx)
        if opts.instance_count and opts.pre_cull_to_target:
            poses = cull_frame(poses, opts.instance_count, opts.pre_cull_iou_threshold)
        poses.track_ids[:] = UNTRACKED
        poses.tracking_scores[:] = 0.0
        if not opts.max_tracks:  # with a known count, tracks wait for their animal
            self.tracks = [tr for tr in self.tracks if t - tr.kf.t <= opts.max_age]
        if not len(poses):
            return poses
        if self.noise is None:
            self.noise = noise_for(poses.points)
        dets = np.arange(len(poses))
        if self.kind == "bytetrack":
            high = poses.scores >= opts.det_thresh
            first, second = dets[high], dets[~high]
        else:
            first, second = dets, dets[:0]
        free = list(range(len(self.tracks)))
        free, left = self._associate(poses, first, free, t, predicted=True)
        if self.kind == "bytetrack":
            free, _ = self._associate(poses, second, free, t, predicted=True)
        elif self.kind == "ocsort":
            free, left = self._associate(poses, left, free, t, predicted=False)
        self._spawn(poses, left, t)
        return poses

    def _associate(self, poses, dets, free, t, predicted: bool):
        """Match detections `dets` to tracks `free`; returns (tracks left, dets left)."""
        if not len(dets) or not free:
            return free, list(dets)
        opts = self.options
        if predicted:
            preds = [self.tracks[j].kf.predict(t) for j in free]
            pts = np.stack([p for p, _ in preds])
            var = np.array([v for _, v in preds])
        else:  # OC-SORT's recovery: the last observation, as sure as a fresh one
            pts = np.stack([self.tracks[j].observed[-1][1] for j in free])
            gaps = np.array([t - self.tracks[j].observed[-1][0] for j in free], dtype=float)
            var = self.noise.r + self.noise.speed_var * gaps**2
        # the full likelihood, with the log-variance term: a long-lost track's vague
        # prediction would otherwise fit anything and steal detections from the rest
        cost = pose_nll(poses.points[dets], pts, var) - np.log(self.noise.r)
        if self.kind == "ocsort" and predicted and opts.inertia > 0:
            cost = cost + opts.inertia * self._angle_cost(poses.points[dets], free)
        cost = np.where(np.isfinite(cost) & (cost < GATE), cost, np.inf)
        matches = hungarian_matching(cost)
        used_d, used_t = set(), set()
        for i, j in matches:
            tr = self.tracks[free[j]]
            tr.observe(t, poses.points[dets[i]], re_update=self.kind == "ocsort")
            poses.track_ids[dets[i]] = tr.id
            poses.tracking_scores[dets[i]] = float(np.exp(-cost[i, j] / GATE))
            used_d.add(i)
            used_t.add(j)
        if len(matches) > 1:
            poses.margin = float(min(_runner_up(cost, i, j) for i, j in matches))
        return (
            [f for n, f in enumerate(free) if n not in used_t],
            [d for n, d in enumerate(dets) if n not in used_d],
        )

    def _angle_cost(self, points, free) -> np.ndarray:
        """(k, m) angle (radians) between each track's direction and the way to each pose."""
        out = np.zeros((len(points), len(free)))
        c = centroids(points)
        for j, f in enumerate(free):
            tr = self.tracks[f]
            d = tr.direction(self.options.delta_t)
            if d is None:
                continue
            to = c - centroids(tr.observed[-1][1][None])[0]
            n = np.hypot(to[:, 0], to[:, 1])
            with np.errstate(all="ignore"):
                cos = np.clip((to @ d) / n, -1.0, 1.0)
            out[:, j] = np.where(n > 1e-6, np.arccos(cos), 0.0)
        return out

    def _spawn(self, poses, dets, t) -> None:
        opts = self.options
        for i in sorted(dets, key=lambda i: -poses.scores[i]):
            if self.kind == "bytetrack" and poses.scores[i] < opts.det_thresh:
                continue
            if opts.max_tracks and self.n_tracks >= opts.max_tracks:
                # with a known count, a lost track takes the detection back instead
                lost = [tr for tr in self.tracks if tr.kf.t < t]
                if not lost:
                    break
                c = centroids(poses.points[i][None])[0]
                tr = min(lost, key=lambda tr: np.nansum((tr.kf.predict(t)[0].mean(0) - c) ** 2))
                tr.observe(t, poses.points[i], re_update=False)
                poses.track_ids[i] = tr.id
                continue
            tr = _Track(self.n_tracks, t, poses.points[i], self.noise)
            self.tracks.append(tr)
            poses.track_ids[i] = tr.id
            self.n_tracks += 1


def _runner_up(cost: np.ndarray, i: int, j: int) -> float:
    c = np.where(np.isfinite(cost), cost, GATE)
    rivals = np.concatenate([np.delete(c[i], j), np.delete(c[:, j], i)])
    return float(rivals.min() - c[i, j]) if len(rivals) else np.inf
