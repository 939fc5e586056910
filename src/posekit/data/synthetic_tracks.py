"""Hard tracking cases with known identities: crossings, missed detections, noise, exits.

Trackers fail where real videos are hard: two look-alike animals cross head-on while the
detector misses one of them now and then, every point jitters by a pixel or two, a false
detection pops up, an animal leaves the view and comes back. These generators make such
videos as poses only (no pixels), with the truth kept, so tracking can be measured and
tested without a model:

- ``crossing``: two (or more) animals on one line walking towards each other, passing
  through each other and bouncing off the arena's walls, so they cross head-on again
  and again with identical bodies;
- ``wander``: animals wandering the arena on smooth random paths (turning, speeding up
  and slowing down), reflecting off the walls;
- ``return``: ``wander`` where animal 0 leaves the view for a long stretch (it keeps
  moving, but is neither detected nor in the ground truth) and comes back elsewhere.

On top of any kind: each detection is missed with probability `missed`, every point gets
Gaussian noise of `noise` px, and a spurious instance (a random pose, lower score) is
added to a frame with probability `spurious`. Predictions come untracked, in shuffled
order; the ground truth holds the noise-free poses with tracks ``animal_0``...
"""

from __future__ import annotations

import dataclasses

import numpy as np

from posekit.data.synthetic import _keypoints, synthetic_skeleton
from posekit.errors import PosekitError, unknown_choice

KINDS = ("crossing", "wander", "return")


@dataclasses.dataclass
class TrackingCase:
    """A generated case: untracked predictions, the truth, and what was generated."""

    predictions: object  # sleap_io.Labels, untracked
    ground_truth: object  # sleap_io.Labels, true poses with tracks
    n_animals: int
    centers: np.ndarray  # (n_animals, n_frames, 2) true body centres
    visible: np.ndarray  # (n_animals, n_frames) in view (in the ground truth)
    detected: np.ndarray  # (n_animals, n_frames) detected (in the predictions)


def _crossing(n_animals, n_frames, arena, speed, rng):
    """Animals on one horizontal line, moving at `speed`, bouncing between the walls."""
    lo, hi = 0.15 * arena, 0.85 * arena
    span = hi - lo
    centers = np.zeros((n_animals, n_frames, 2))
    headings = np.zeros((n_animals, n_frames))
    t = np.arange(n_frames)
    for a in range(n_animals):
        # position along the line folded at the walls: s in [0, span) moves right
        s = (2 * span * (a + 0.25) / n_animals + speed * t) % (2 * span)
        moving_right = s < span
        centers[a, :, 0] = lo + np.where(moving_right, s, 2 * span - s)
        centers[a, :, 1] = arena / 2 + 1.5 * np.sin(2 * np.pi * t / 40 + a)
        headings[a] = _turn_gradually(np.where(moving_right, 0.0, np.pi))
    return centers, headings


def _turn_gradually(target: np.ndarray, rate: float = 0.3) -> np.ndarray:
    """Headings that follow `target` turning at most `rate` rad per frame (no flips)."""
    out = np.empty_like(target)
    h = float(target[0])
    for t, goal in enumerate(target):
        diff = (goal - h + np.pi) % (2 * np.pi) - np.pi
        h += float(np.clip(diff if abs(diff) < np.pi - 1e-9 else np.pi, -rate, rate))
        out[t] = h
    return out


def _wander(n_animals, n_frames, arena, speed, rng):
    """Smooth random paths: heading and speed drift slowly; walls reflect."""
    margin = 0.1 * arena
    centers = np.zeros((n_animals, n_frames, 2))
    headings = np.zeros((n_animals, n_frames))
    for a in range(n_animals):
        p = rng.uniform(margin, arena - margin, 2)
        h = rng.uniform(0, 2 * np.pi)
        v = speed
        for t in range(n_frames):
            h += rng.normal(0, 0.08)
            v = float(np.clip(v + rng.normal(0, 0.2), 0.3 * speed, 1.7 * speed))
            step = v * np.array([np.cos(h), np.sin(h)])
            q = p + step
            for d in range(2):
                if not margin <= q[d] <= arena - margin:
                    step[d] = -step[d]
                    q = p + step
            h = float(np.arctan2(step[1], step[0]))
            p = q
            centers[a, t], headings[a, t] = p, h
        headings[a] = _turn_gradually(np.unwrap(headings[a]))  # no flips at the walls
    return centers, headings


def tracking_case(
    kind: str = "crossing",
    *,
    n_frames: int = 600,
    n_animals: int = 2,
    missed: float = 0.15,
    noise: float = 2.0,
    spurious: float = 0.0,
    n_parts: int = 5,
    body_length: float = 40.0,
    speed: float = 4.0,
    arena: float = 512.0,
    away: tuple[float, float] = (0.3, 0.55),
    seed: int = 0,
) -> TrackingCase:
    """Generate a tracking case (see the module docstring for the kinds).

    Args:
        kind: ``"crossing"``, ``"wander"`` or ``"return"``.
        missed: probability that a detection is missing (each animal, each frame).
        noise: standard deviation (px) of the noise added to every predicted point.
        spurious: probability per frame of one false instance (score 0.3-0.5; real
            detections score 0.6-1.0).
        away: for ``return``, the share of the video during which animal 0 is away.
        speed: pixels per frame.
    """
    import sleap_io as sio

    if kind not in KINDS:
        raise PosekitError(unknown_choice("kind", kind, KINDS, "tracking case"))
    for name, p in (("missed", missed), ("spurious", spurious)):
        if not 0.0 <= p < 1.0:
            raise PosekitError(f"{name}={p!r}: a probability in [0, 1)")
    rng = np.random.default_rng(seed)
    make = _crossing if kind == "crossing" else _wander
    centers, headings = make(n_animals, n_frames, arena, speed, rng)
    width = 0.4 * body_length
    truth = np.stack(
        [
            np.stack(
                [
                    _keypoints(centers[a, t], headings[a, t], body_length, width, n_parts)
                    for t in range(n_frames)
                ]
            )
            for a in range(n_animals)
        ]
    )  # (animals, frames, parts, 2)
    visible = np.ones((n_animals, n_frames), dtype=bool)
    if kind == "return":
        visible[0, int(away[0] * n_frames) : int(away[1] * n_frames)] = False
    detected = visible & (rng.random((n_animals, n_frames)) >= missed)

    skeleton = synthetic_skeleton(n_parts)
    video = sio.Video(filename=f"synthetic_{kind}.mp4")
    tracks = [sio.Track(name=f"animal_{a}") for a in range(n_animals)]
    gt_frames, pr_frames = [], []
    for t in range(n_frames):
        gt_insts = [
            sio.Instance.from_numpy(points_data=truth[a, t], skeleton=skeleton, track=tracks[a])
            for a in range(n_animals)
            if visible[a, t]
        ]
        gt_frames.append(sio.LabeledFrame(video=video, frame_idx=t, instances=gt_insts))
        preds = []
        for a in np.flatnonzero(detected[:, t]):
            pts = truth[a, t] + rng.normal(0, noise, (n_parts, 2)) if noise else truth[a, t]
            preds.append((pts, float(rng.uniform(0.6, 1.0))))
        if spurious and rng.random() < spurious:
            c = rng.uniform(0.1 * arena, 0.9 * arena, 2)
            pts = _keypoints(c, rng.uniform(0, 2 * np.pi), body_length, width, n_parts)
            preds.append((pts, float(rng.uniform(0.3, 0.5))))
        insts = [
            sio.PredictedInstance.from_numpy(
                points_data=pts, skeleton=skeleton, point_scores=np.full(n_parts, s), score=s
            )
            for pts, s in (preds[i] for i in rng.permutation(len(preds)))
        ]
        pr_frames.append(sio.LabeledFrame(video=video, frame_idx=t, instances=insts))
    gt = sio.Labels(gt_frames, videos=[video], skeletons=[skeleton], tracks=tracks)
    pred = sio.Labels(pr_frames, videos=[video], skeletons=[skeleton])
    return TrackingCase(pred, gt, n_animals, centers, visible, detected)
