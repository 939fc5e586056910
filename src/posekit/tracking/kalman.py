"""Constant-velocity Kalman filtering of poses: where an animal is after a gap, and how sure.

A missed detection or an occlusion leaves a hole in a track. Where the animal is when
it comes back is best guessed by its last position moved by its velocity, and the
guess gets worse the longer the gap: the Kalman filter keeps both, a position and
velocity per node and a variance that grows with the time since the last observation.

Every node of a pose follows the same constant-velocity model (white acceleration noise
of spectral density ``q``, measurement noise ``r``; both px^2 per frame units), so all
nodes share one 2 x 2 covariance over (position, velocity) per axis: the filter costs a
few array operations per pose whatever the skeleton. A node that is not seen keeps its
prediction.

`estimate_noise` reads ``q`` and ``r`` off the poses themselves (the variance and the lag-1
covariance of second differences), so the model fits the video's frame rate, pixel size
and keypoint noise without settings. `pose_nll` scores an observation against a
prediction with a heavy-tailed (Student t) law on the mean node distance, because
animals sit still and then dart.
"""

from __future__ import annotations

import dataclasses

import numpy as np

T_DOF = 2.0
MIN_R = 0.25  # px^2: half-pixel labels are as sure as positions get
MIN_Q = 1e-3


@dataclasses.dataclass(frozen=True)
class MotionNoise:
    """Acceleration noise ``q`` (px^2 / frame^3), measurement noise ``r`` (px^2), and the
    spread of speeds ``speed_var`` (px^2 / frame^2): how unsure a new track's velocity is."""

    q: float
    r: float
    speed_var: float | None = None


def process_noise(q: float, dt: float) -> np.ndarray:
    """Q of the constant-velocity model over `dt` frames (continuous white acceleration)."""
    return q * np.array([[dt**3 / 3.0, dt**2 / 2.0], [dt**2 / 2.0, dt]])


@dataclasses.dataclass
class PoseKalman:
    """One track's filter: node positions and velocities, with their shared covariance."""

    t: int  # frame of the last update
    pos: np.ndarray  # (n, 2)
    vel: np.ndarray  # (n, 2)
    cov: np.ndarray  # (2, 2) over (position, velocity), per node and axis
    noise: MotionNoise
    hits: int = 1

    @classmethod
    def start(cls, t: int, points: np.ndarray, noise: MotionNoise):
        """A filter at `points` with unknown velocity (variance ``noise.speed_var``)."""
        pos = np.array(points, dtype=np.float64)
        v0 = 100.0 * noise.q + noise.r if noise.speed_var is None else noise.speed_var
        return cls(t, pos, np.zeros_like(pos), np.diag([noise.r, v0]), noise)

    def predict(self, t: int) -> tuple[np.ndarray, float]:
        """(predicted points at frame `t`, their position variance incl. measurement)."""
        dt = float(t - self.t)
        cov = self._cov_at(dt)
        return self.pos + self.vel * dt, float(cov[0, 0] + self.noise.r)

    def _cov_at(self, dt: float) -> np.ndarray:
        f = np.array([[1.0, dt], [0.0, 1.0]])
        return f @ self.cov @ f.T + process_noise(self.noise.q, abs(dt))

    def update(self, t: int, points: np.ndarray) -> None:
        """Fold in the observation `points` (NaN nodes keep their prediction) at frame `t`."""
        dt = float(t - self.t)
        pred_pos = self.pos + self.vel * dt
        cov = self._cov_at(dt)
        s = cov[0, 0] + self.noise.r
        gain = cov[:, 0] / s  # (2,)
        obs = np.asarray(points, dtype=np.float64)
        seen = np.all(np.isfinite(obs), axis=-1)
        innov = np.where(seen[:, None], obs - pred_pos, 0.0)
        self.pos = pred_pos + gain[0] * innov
        self.vel = self.vel + gain[1] * innov
        # nodes never seen before take the observation as it is
        fresh = seen & ~np.all(np.isfinite(pred_pos), axis=-1)
        self.pos[fresh], self.vel[fresh] = obs[fresh], 0.0
        self.cov = cov - np.outer(gain, cov[0])
        self.t = int(t)
        self.hits += 1


def pose_nll(points: np.ndarray, predicted: np.ndarray, variance) -> np.ndarray:
    """(k, n, 2) poses vs (m, n, 2) predictions of variance (m,) -> (k, m) costs (nats).

    The mean squared node distance ``r^2`` under a 2-D Student t of scale ``variance``:
    ``log(variance) + (dof + 2) / 2 * log(1 + r^2 / (dof * variance))`` (constants left
    out). The first term makes a vague prediction (a long gap) cost more than a sharp
    one at the same distance, so gaps are compared fairly. NaN: no node in common.
    """
    diff = points[:, None] - predicted[None]
    d2 = np.sum(diff * diff, axis=-1)  # (k, m, n)
    var = np.asarray(variance, dtype=np.float64).reshape(1, -1)
    with np.errstate(all="ignore"):
        ok = np.isfinite(d2)
        r2 = np.where(ok, d2, 0).sum(-1) / ok.sum(-1)
        return np.log(var) + 0.5 * (T_DOF + 2.0) * np.log1p(r2 / (T_DOF * var))


def estimate_noise(
    tracks: list[np.ndarray], fallback: MotionNoise, min_q: float = MIN_Q, lag: int = 3
) -> MotionNoise:
    """``q``, ``r`` and ``speed_var`` from runs of consecutive poses of one animal each.

    For a constant-velocity path observed with noise, the second difference at lag L,
    ``x[t+L] - 2 x[t] + x[t-L]``, has variance ``2/3 q L^3 + 6 r``: lags 1 and `lag`
    give both noises, the longer lag telling motion from keypoint noise. Variances are
    read off medians (darts and wall bounces would dominate mean squares). ``speed_var``
    is the mean squared frame-to-frame step. Too few runs: `fallback`. `min_q` keeps
    animals that mostly sit still from making every dart look impossible.
    """
    steps = [np.nanmean(np.sum(np.diff(r, axis=0) ** 2, -1)) for r in tracks if len(r) > 1]
    var = []
    for step in (1, lag):
        sq = [
            (run[2 * step :] - 2 * run[step:-step] + run[: -2 * step]).reshape(-1) ** 2
            for run in tracks
            if len(run) > 2 * lag
        ]
        sq = np.concatenate(sq) if sq else np.zeros(0)
        sq = sq[np.isfinite(sq)]
        if len(sq) < 50:
            return fallback
        var.append(float(np.median(sq)) / _MEDIAN_CHI2_1)
    q = max((var[1] - var[0]) / (2.0 / 3.0 * (lag**3 - 1)), min_q)
    r = max((var[0] - 2.0 / 3.0 * q) / 6.0, MIN_R)
    speed_var = float(np.nanmean(steps)) if steps else None
    return MotionNoise(q=float(q), r=float(r), speed_var=speed_var)


_MEDIAN_CHI2_1 = 0.4549364  # median of a squared standard normal
