"""The frame-by-frame tracker: SLEAP's ``simple`` and ``flow`` families.

For each frame, in order:

1. With a known number of animals, cull the frame to that many instances (`culling`).
2. Gather candidates: recent tracked instances, moved by optical flow for ``flow``
   (`candidates`).
3. Score every (instance, track) pair: the best similarity (or the ``robust`` quantile)
   between the instance and that track's candidates (`similarity`).
4. Match with ``greedy`` or ``hungarian`` on ``-similarity`` (`matching`); a matched
   instance gets the track and its similarity as ``tracking_score``.
5. An unmatched instance starts a new track, unless it has fewer than
   ``min_new_track_points`` nodes or ``max_tracks`` tracks exist; it then stays
   untracked.

`Tracker.track_frame` does this for one `sleap_io.LabeledFrame` as frames are predicted;
`posekit.tracking.track` runs it over a whole `Labels` and adds the final pass.
"""

from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError
from posekit.tracking.candidates import CandidatePool
from posekit.tracking.culling import cull_frame
from posekit.tracking.kalman import PoseKalman
from posekit.tracking.matching import MATCHING_FUNCTIONS, match_margins, tie_break
from posekit.tracking.options import TrackingOptions, resolve_options
from posekit.tracking.poses import (
    UNTRACKED,
    FramePoses,
    n_visible,
    poses_from_labeled_frame,
    to_labeled_frame,
)
from posekit.tracking.similarity import similarity_matrix

_NO_FRAMES_HINT = (
    "tracker='simple' tracks without reading frames; pass image= or a video that opens "
    "to use tracker='flow'"
)


class Tracker:
    """Online tracker with SLEAP's options; feed it frames in order.

    Args:
        options: a `TrackingOptions`; or pass the options as keywords (any spelling in
            `posekit.tracking.ALIASES`), e.g. ``Tracker(tracker="flow", max_tracks=2)``.
    """

    def __init__(self, options: TrackingOptions | None = None, **kwargs) -> None:
        if options is None:
            kwargs.setdefault("tracker", "simple")
            options = resolve_options(**kwargs)
        elif kwargs:
            raise TypeError("pass either options or keyword options, not both")
        if options.tracker not in ("simple", "flow"):
            raise PosekitError(
                f"Tracker runs tracker='simple' or 'flow' frame by frame; got "
                f"tracker={options.tracker!r} (use posekit.tracking.track for 'global' and 'none')"
            )
        self.options = options
        shifter = None
        if options.tracker == "flow":
            from posekit.tracking.flow import FlowShifter

            shifter = FlowShifter(options.img_scale, options.of_window_size, options.of_max_levels)
        self._pool = CandidatePool(
            options.track_window,
            per_track=bool(options.max_tracks),
            min_points=options.min_match_points,
            shifter=shifter,
        )
        self._match = MATCHING_FUNCTIONS[options.match]
        self.n_tracks = 0  # track ids are 0..n_tracks-1, in spawn order
        self.spawned_on: list[int] = []  # frame index where each track started
        self._tracks: list = []  # sleap_io.Track per id, made on demand
        self._last_t: int | None = None
        self._motion: dict[int, PoseKalman] = {}  # kalman_candidates: filter per track
        self._noise = None

    # ----------------------------------------------------------------- public API

    @property
    def uses_image(self) -> bool:
        """True for ``flow``: every frame's image is needed."""
        return self._pool.uses_image

    @property
    def tracks(self) -> list:
        """The `sleap_io.Track` of every track id so far (names ``track_0``, ``track_1``...)."""
        import sleap_io as sio

        while len(self._tracks) < self.n_tracks:
            self._tracks.append(sio.Track(name=f"track_{len(self._tracks)}"))
        return self._tracks

    def track_frame(self, labeled_frame, image: np.ndarray | None = None):
        """Track one `sleap_io.LabeledFrame`; returns a new frame with tracked copies.

        For ``flow``, `image` is the frame's pixels; when omitted it is read from the
        frame's video. Instances culled to ``max_tracks`` are left out of the result.
        """
        poses = poses_from_labeled_frame(labeled_frame)
        if self.uses_image and image is None:
            try:
                image = labeled_frame.image
            except Exception as exc:  # noqa: BLE001 - any reader failure means the same
                raise PosekitError(
                    f"frame {labeled_frame.frame_idx}: cannot read the image for optical "
                    f"flow ({type(exc).__name__}: {exc}); {_NO_FRAMES_HINT}"
                ) from None
            if image is None:
                raise PosekitError(
                    f"frame {labeled_frame.frame_idx} has no video to read; {_NO_FRAMES_HINT}"
                )
        poses = self.track_poses(poses, image)
        return to_labeled_frame(poses, self.tracks)

    def reserve_tracks(self, n: int) -> None:
        """Make track ids ``0..n-1`` exist before tracking (tracks kept from the input)."""
        while self.n_tracks < n:
            self.spawned_on.append(-1)
            self.n_tracks += 1

    def track_poses(
        self, poses: FramePoses, image: np.ndarray | None = None, fixed_ids=None
    ) -> FramePoses:
        """Track one frame given as `FramePoses`; returns it (culled) with decisions.

        `fixed_ids` (k,) gives instances whose track is already decided (an id from
        `reserve_tracks`, or -1 for free ones): they keep it, take part as candidates
        for later frames, and their tracks are not offered to the other instances.
        """
        opts = self.options
        t = int(poses.frame_idx)
        if self._last_t is not None and t <= self._last_t:
            raise PosekitError(
                f"frames must come in increasing frame order; got frame {t} after {self._last_t}"
            )
        self._last_t = t
        if self.uses_image:
            if image is None:
                raise PosekitError(f"frame {t}: tracker='flow' needs the image; {_NO_FRAMES_HINT}")
            self._pool.advance(self._pool.shifter.pyramid(image))

        if fixed_ids is not None:
            poses.track_ids[:] = fixed_ids
        count = opts.instance_count
        if count and opts.pre_cull_to_target:
            poses = cull_frame(poses, count, opts.pre_cull_iou_threshold)

        k = len(poses)
        ids = poses.track_ids
        fixed = ids >= 0 if fixed_ids is not None else np.zeros(k, dtype=bool)
        ids[~fixed] = UNTRACKED
        poses.tracking_scores[~fixed] = 0.0
        if fixed.any():
            poses.tracking_scores[fixed] = 1.0
        if k and not fixed.all():
            c_pts, c_ps, c_ids = self._with_predictions(*self._pool.candidates(), t)
            taken = np.isin(c_ids, ids[fixed])
            c_pts, c_ps, c_ids = c_pts[~taken], c_ps[~taken], c_ids[~taken]
            matched = fixed.copy()
            if len(c_ids):
                track_list, sim = self._track_similarity(poses, c_pts, c_ps, c_ids)
                sim[fixed] = np.nan
                cost = -sim + tie_break(
                    self._centroid_distance(poses.points, c_pts, c_ids, track_list)
                )
                cost[~np.isfinite(sim)] = np.inf
                matches = self._match(cost)
                for i, j in matches:
                    ids[i] = track_list[j]
                    poses.tracking_scores[i] = sim[i, j]
                    matched[i] = True
                if matches and (len(track_list) > 1 or k > 1):
                    poses.margin = float(np.min(match_margins(sim, matches)))
            self._spawn(poses, ~matched, t)
        self._pool.add(t, poses.points, poses.point_scores, ids)
        if opts.kalman_candidates:
            self._update_motion(poses, t)
        return poses

    def _with_predictions(self, c_pts, c_ps, c_ids, t):
        """The pool's candidates plus each track's Kalman prediction for frame `t`."""
        if not self._motion:
            return c_pts, c_ps, c_ids
        tids = sorted(self._motion)
        pred = np.stack([self._motion[tid].predict(t)[0] for tid in tids])
        if not len(c_ids):
            return pred, np.ones(pred.shape[:2]), np.asarray(tids, dtype=np.int64)
        return (
            np.concatenate([c_pts, pred]),
            np.concatenate([c_ps, np.ones(pred.shape[:2])]),
            np.concatenate([c_ids, tids]).astype(np.int64),
        )

    def _update_motion(self, poses, t: int) -> None:
        if self._noise is None and len(poses):
            from posekit.tracking.sort import noise_for

            self._noise = noise_for(poses.points)
        for i, tid in enumerate(poses.track_ids.tolist()):
            if tid < 0:
                continue
            if tid in self._motion:
                self._motion[tid].update(t, poses.points[i])
            else:
                self._motion[tid] = PoseKalman.start(t, poses.points[i], self._noise)

    # ----------------------------------------------------------------- internals

    def _track_similarity(self, poses, c_pts, c_ps, c_ids):
        """(track ids, (k, n_tracks) best similarity per track) for this frame."""
        opts = self.options
        sim_all = similarity_matrix(
            opts.similarity,
            poses.points,
            c_pts,
            options=opts,
            point_scores=poses.point_scores,
            candidate_point_scores=c_ps,
        )
        track_list = np.unique(c_ids)
        if opts.max_tracks:
            track_list = track_list[track_list < opts.max_tracks]
        out = np.full((len(poses), len(track_list)), np.nan)
        for j, tid in enumerate(track_list):
            cols = sim_all[:, c_ids == tid]
            with np.errstate(all="ignore"):
                finite = np.isfinite(cols)
                if opts.robust >= 1.0:
                    vals = np.where(finite, cols, -np.inf).max(axis=1)
                else:
                    vals = np.array(
                        [
                            np.quantile(r[f], opts.robust) if f.any() else -np.inf
                            for r, f in zip(cols, finite)
                        ]
                    )
            out[:, j] = np.where(np.isfinite(vals), vals, np.nan)
        return track_list, out

    @staticmethod
    def _centroid_distance(points, c_pts, c_ids, track_list):
        """(k, n_tracks) distance from each instance to each track's nearest candidate."""
        a, b = _mean_points(points), _mean_points(c_pts)
        d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
        d = np.where(np.isfinite(d), d, np.inf)
        out = np.empty((len(points), len(track_list)))
        for j, tid in enumerate(track_list):
            out[:, j] = d[:, c_ids == tid].min(axis=1)
        return out

    def _spawn(self, poses: FramePoses, unmatched: np.ndarray, t: int) -> None:
        opts = self.options
        if not unmatched.any():
            return
        visible = n_visible(poses.points)
        # Best-scoring instances get new tracks first when only some may.
        for i in np.argsort(-poses.scores, kind="stable"):
            if not unmatched[i] or visible[i] < opts.min_new_track_points:
                continue
            if opts.max_tracks and self.n_tracks >= opts.max_tracks:
                break
            poses.track_ids[i] = self.n_tracks
            poses.tracking_scores[i] = 0.0
            self.spawned_on.append(t)
            self.n_tracks += 1


def _mean_points(points: np.ndarray) -> np.ndarray:
    """(k, n, 2) -> (k, 2) mean of the visible nodes (NaN when none), without warnings."""
    ok = np.isfinite(points[..., 0]) & np.isfinite(points[..., 1])
    total = np.where(ok[..., None], points, 0.0).sum(axis=1)
    count = ok.sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count
