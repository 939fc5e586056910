"""Trajectory filters on synthetic tracks with spikes and noise of known size.

A 5-node animal (a rigid body that walks on a smooth random path and turns) is observed
for `--frames` frames with Gaussian noise of `noise / score` pixels per point (the network
is surer of some points than of others: scores uniform in [0.5, 1]) and a fraction
`--spikes` of points replaced by a wrong peak 30-80 px away (scored lower on average,
uniform in [0.1, 0.8], so a score cut alone cannot find all of them). Every filter of
`posekit.tracking.trajectories` runs on the same tracks; the table gives the error
against the truth over the points each leaves (median, 95th percentile, RMS, in pixels)
and the share of points left.

    PYTHONPATH=src python benchmarks/trajectory_filters.py [--frames 2000 --seeds 3]

Runs in a few seconds on one CPU core.
"""

from __future__ import annotations

import argparse

import numpy as np

from posekit.tracking.trajectories import TrajectoryFilter, filter_track

BODY = np.array([[0.0, 0.0], [12.0, 0.0], [-12.0, 0.0], [4.0, 7.0], [4.0, -7.0]])
EDGES = [(0, 1), (0, 2), (0, 3), (0, 4)]

FILTERS = {
    "none": TrajectoryFilter(),
    "min score 0.5": TrajectoryFilter(min_point_score=0.5),
    "max speed 10": TrajectoryFilter(max_speed=10),
    "edge length 0.5": TrajectoryFilter(max_edge_change=0.5),
    "median 7": TrajectoryFilter(smooth="median"),
    "savgol 7": TrajectoryFilter(smooth="savgol"),
    "kalman": TrajectoryFilter(smooth="kalman"),
    "speed 10 + savgol 7": TrajectoryFilter(max_speed=10, smooth="savgol"),
    "speed 10 + kalman": TrajectoryFilter(max_speed=10, smooth="kalman"),
    "speed 10 + edges 0.5 + fill 5 + kalman": TrajectoryFilter(
        max_speed=10, max_edge_change=0.5, fill_gaps=5, smooth="kalman"
    ),
}


def synthetic_track(seed: int, frames: int, noise: float, spikes: float):
    """(truth, observed, scores, spike mask) of one walking animal."""
    rng = np.random.default_rng(seed)
    accel = rng.normal(0, 0.15, (frames, 2))
    vel = np.cumsum(accel, axis=0)
    vel -= np.convolve(vel[:, 0], np.ones(50) / 50, "same")[:, None] * [1, 0]  # keep it near
    centre = 300 + np.cumsum(np.clip(vel, -4, 4), axis=0)
    angle = np.cumsum(rng.normal(0, 0.02, frames))
    rot = np.stack([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    truth = centre[:, None, :] + np.einsum("ijt,nj->tni", rot, BODY)
    scores = rng.uniform(0.5, 1.0, truth.shape[:2])
    observed = truth + rng.normal(0, 1, truth.shape) * (noise / scores)[..., None]
    spike = rng.random(truth.shape[:2]) < spikes
    r = rng.uniform(30, 80, spike.sum())
    phi = rng.uniform(0, 2 * np.pi, spike.sum())
    observed[spike] = truth[spike] + np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
    scores[spike] = rng.uniform(0.1, 0.8, spike.sum())
    return truth, observed, scores, spike


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--noise", type=float, default=1.5, help="pixels at score 1")
    p.add_argument("--spikes", type=float, default=0.02, help="share of points")
    args = p.parse_args(argv)
    errors = {name: [] for name in FILTERS}
    kept = {name: [] for name in FILTERS}
    for seed in range(args.seeds):
        truth, observed, scores, _ = synthetic_track(seed, args.frames, args.noise, args.spikes)
        for name, flt in FILTERS.items():
            out, _ = filter_track(observed, scores, EDGES, flt)
            err = np.linalg.norm(out - truth, axis=-1).ravel()
            errors[name].append(err[np.isfinite(err)])
            kept[name].append(np.isfinite(err).mean())
    print(
        f"{args.seeds} seeds x {args.frames} frames x {len(BODY)} nodes; noise "
        f"{args.noise}/score px, {args.spikes:.0%} spikes 30-80 px"
    )
    print("| filter | median px | 95% px | RMS px | points kept |")
    print("|---|---|---|---|---|")
    for name in FILTERS:
        e = np.concatenate(errors[name])
        print(
            f"| {name} | {np.median(e):.2f} | {np.percentile(e, 95):.2f} | "
            f"{np.sqrt(np.mean(e**2)):.2f} | {np.mean(kept[name]):.1%} |"
        )


if __name__ == "__main__":
    main()
