"""`posekit filter PREDICTIONS -o OUT [--max-speed PX] [--smooth kalman] ...`.

Also the home of the trajectory options that `posekit predict` shares (the same names,
so a filter tried on saved predictions is the one put on the prediction run). The
filters and their order are `posekit.tracking.trajectories`; the defaults are written
there, once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from posekit.tracking.trajectories import SMOOTHERS, TrajectoryFilter

_D = TrajectoryFilter()


def add_trajectory_arguments(p: argparse.ArgumentParser) -> None:
    """Outlier removal and smoothing per track (`posekit.tracking.trajectories`)."""
    g = p.add_argument_group("trajectory filters (per track; all off by default)")
    g.add_argument(
        "--min-point-score",
        type=float,
        default=None,
        help="remove points the network scored below this (default: keep all)",
    )
    g.add_argument(
        "--max-speed",
        type=float,
        default=None,
        metavar="PX",
        help="remove points further than PX pixels from their node's median over the 7 "
        "frames around (a spike that went there and back faster than an animal moves) "
        "(default: off)",
    )
    g.add_argument(
        "--max-edge-change",
        type=float,
        default=None,
        metavar="FRACTION",
        help="remove the wrong end of an edge whose length is off the track's median length "
        "of that edge by more than this fraction, e.g. 0.5 (default: off)",
    )
    g.add_argument(
        "--fill-gaps",
        type=int,
        default=_D.fill_gaps,
        metavar="FRAMES",
        help="interpolate missing points over gaps of at most this many frames "
        "(default: %(default)s, no filling)",
    )
    g.add_argument(
        "--smooth",
        choices=SMOOTHERS,
        default=None,
        help="median or savgol (Savitzky-Golay) over --window frames, or kalman (constant "
        "velocity, point scores as measurement noise, forward-backward) (default: off)",
    )
    g.add_argument(
        "--window",
        type=int,
        default=_D.window,
        help="frames of the median and savgol smoothers, odd (default: %(default)s)",
    )
    g.add_argument(
        "--kalman-noise",
        type=float,
        default=_D.kalman_noise,
        metavar="PX",
        help="measurement noise of a point scored 1; a point scored s gets PX/s "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--kalman-accel",
        type=float,
        default=_D.kalman_accel,
        metavar="PX",
        help="how much a point's velocity may change per frame (default: %(default)s)",
    )


def trajectory_filter(args: argparse.Namespace) -> TrajectoryFilter:
    return TrajectoryFilter(
        min_point_score=args.min_point_score,
        max_speed=args.max_speed,
        max_edge_change=args.max_edge_change,
        fill_gaps=args.fill_gaps,
        smooth=args.smooth,
        window=args.window,
        kalman_noise=args.kalman_noise,
        kalman_accel=args.kalman_accel,
    )


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "filter", help="remove outliers from and smooth tracked predictions (trajectories)"
    )
    p.add_argument("predictions", help="predictions file (.slp), tracked for several animals")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="filtered file; its suffix picks the format: .slp (keeps the original points in "
        "its provenance), .analysis.h5 or .csv (with a per-frame flag of what changed), .nwb",
    )
    add_trajectory_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from posekit.data.formats import OUTPUT_FORMATS, write_predictions
    from posekit.data.labels import read_labels_file
    from posekit.errors import PosekitError
    from posekit.io.outputs import check_output_path
    from posekit.tracking.trajectories import FLAGS, filter_labels

    flt = trajectory_filter(args)
    if not flt.active:
        raise PosekitError(
            "no filter chosen: give at least one of --min-point-score, --max-speed, "
            "--max-edge-change, --fill-gaps, --smooth"
        )
    source = Path(args.predictions)
    check_output_path(args.output, tuple(OUTPUT_FORMATS), inputs=[source], what="filtered")
    labels = read_labels_file(source, open_videos=False)
    filtered = filter_labels(labels, flt, source=str(source))
    rows = filtered.provenance["posekit.filter"]["flags"]
    counts = {name: sum(1 for r in rows if r[3] & bit) for name, bit in FLAGS.items()}
    n = sum(len(lf.predicted_instances) for lf in filtered.labeled_frames)
    print(
        f"Filtered {n} instances: {len(rows)} changed ("
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)
        + ")"
    )
    for f in write_predictions(filtered, args.output, labels_path=str(source)):
        print(f"Wrote {f}")
    return 0
