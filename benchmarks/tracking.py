"""Tracking on the real flies clip: identity accuracy, speed and memory, as a printed table.

Re-tracks /work/shared/data/flies/clip.slp (1500 frames, two flies with true tracks):
tracks stripped, instance order shuffled in every frame, then tracked with each
tracker at max_tracks=2; once clean and once with spurious instances (a low-score
near-duplicate and a random false instance in 5% of frames). Accuracy from
`posekit.tracking.tracking_metrics` (motmetrics). Speed is wall time of `track()` on
this machine (video decoding included for flow; the decode alone is reported too).
Memory: peak Python allocations of the online tracker's state over 300 vs 1500 frames
(outputs not kept), which should not grow with the video.

    PYTHONPATH=src python benchmarks/tracking.py [--frames N]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLIES = ROOT / ".." / "shared" / "data" / "flies" / "clip.slp"


def predictions(labels, n_frames, spurious=0.0, seed=0):
    import sleap_io as sio

    rng = np.random.default_rng(seed)
    lfs = sorted(labels.labeled_frames, key=lambda f: f.frame_idx)[:n_frames]
    skel = labels.skeletons[0]
    n = len(skel.nodes)
    frames = []
    for lf in lfs:
        insts = [
            sio.PredictedInstance.from_numpy(
                points_data=i.numpy(), skeleton=i.skeleton, point_scores=np.ones(n), score=1.0
            )
            for i in lf.instances
        ]
        if rng.random() < spurious:
            dup = lf.instances[0].numpy() + rng.normal(0, 2, (n, 2))
            false = rng.uniform(0, 1024, (n, 2))
            for pts, score in ((dup, 0.3), (false, 0.2)):
                insts.append(
                    sio.PredictedInstance.from_numpy(
                        points_data=pts, skeleton=skel, point_scores=np.ones(n), score=score
                    )
                )
        order = rng.permutation(len(insts))
        frames.append(
            sio.LabeledFrame(
                video=lf.video, frame_idx=lf.frame_idx, instances=[insts[o] for o in order]
            )
        )
    pred = sio.Labels(frames, videos=list(labels.videos), skeletons=list(labels.skeletons))
    gt = sio.Labels(
        lfs,
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=list(labels.tracks),
    )
    return pred, gt


def state_peak(pred, tracker, n_frames):
    """Peak traced memory (MiB) of an online tracker over the first n_frames frames."""
    from posekit.tracking import Tracker
    from posekit.tracking.poses import poses_from_labeled_frame

    lfs = sorted(pred.labeled_frames, key=lambda f: f.frame_idx)[:n_frames]
    video = lfs[0].video
    tr = Tracker(tracker=tracker, max_tracks=2)
    tracemalloc.start()
    for lf in lfs:
        image = video[lf.frame_idx] if tr.uses_image else None
        tr.track_poses(poses_from_labeled_frame(lf), image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500)
    args = parser.parse_args(argv)
    if not FLIES.exists():
        print(f"flies clip not found at {FLIES}; nothing to measure")
        return 0
    import sleap_io as sio

    from posekit.tracking import track, tracking_metrics

    labels = sio.load_slp(str(FLIES))
    n = min(args.frames, len(labels.labeled_frames))
    video = labels.videos[0]
    t0 = time.perf_counter()
    for i in range(n):
        video[i]
    decode_ms = 1000 * (time.perf_counter() - t0) / n

    rows = []
    for scenario, spurious in (("clean", 0.0), ("spurious 5%", 0.05)):
        pred, gt = predictions(labels, n, spurious)
        for tracker in ("simple", "flow", "global", "kalman", "bytetrack", "ocsort"):
            t0 = time.perf_counter()
            out = track(pred, tracker, max_tracks=2)
            dt = time.perf_counter() - t0
            m = tracking_metrics(gt, out)
            rows.append(
                (
                    tracker,
                    scenario,
                    n,
                    dt,
                    n / dt,
                    1000 * dt / n,
                    m["identity_switches"],
                    m["idf1"],
                    m["mota"],
                    m["predicted_tracks"],
                    len(out.suggestions),
                )
            )

    header = (
        "tracker",
        "input",
        "frames",
        "time s",
        "frames/s",
        "ms/frame",
        "ID sw",
        "IDF1",
        "MOTA",
        "tracks",
        "suggest",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.0f} | {r[5]:.2f} | {r[6]} | {r[7]:.3f} | {r[8]:.3f} | {r[9]} | {r[10]} |"
        )
    print(
        f"\nvideo decode alone (sleap_io, 1024x1024 gray): {decode_ms:.2f} ms/frame (part of flow's ms/frame)"
    )

    pred, _ = predictions(labels, n)
    short = min(300, n)
    print("\nonline tracker state, peak traced memory (MiB):")
    print(f"| tracker | {short} frames | {n} frames |")
    print("|---|---|---|")
    for tracker in ("simple", "flow"):
        print(
            f"| {tracker} | {state_peak(pred, tracker, short):.2f} | {state_peak(pred, tracker, n):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
