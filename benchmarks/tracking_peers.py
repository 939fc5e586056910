"""Re-tracking real predictions: posekit's trackers next to sleap-nn's, as one table.

Given untracked predictions of a video whose true tracks are known (default: the flies
clip, /work/shared/data/flies/clip.slp, 1500 frames, two flies), every tracker links the
SAME predicted instances into tracks and posekit scores each result against the true
tracks with `posekit.tracking.tracking_metrics` (identity switches, IDF1, MOTA; the
predicted poses are whatever the model found, so misses and false positives count too).

posekit: `simple`, `flow`, `global`, `kalman`, `bytetrack` and `ocsort` at
``max_tracks`` (2), otherwise defaults (`flow` only where the video exists).

``--case crossing`` (or ``wander``, ``return``) tracks a generated case instead
(`posekit.data.synthetic_tracks`: two look-alike animals crossing head-on, 15% of
detections missed, 2 px noise, 600 frames by default), written to the work folder so
sleap-nn reads the very same instances.

sleap-nn runs in its own interpreter (``--sleap-nn-python /path/to/venv/bin/python``) as
a subprocess per setting: the child reads the untracked .slp with sleap-io, calls
`sleap_nn.tracking.tracker.run_tracker` on its frames and writes a tracked .slp, which
this script loads and scores exactly like posekit's. Settings (sleap-nn's defaults
otherwise: window 5, keypoint features, OKS scoring with stddev 0.025, mean reduction,
Hungarian matching):

- ``sleap-nn simple``: ``max_tracks=N`` (sleap-nn switches ``fixed_window`` to
  ``local_queues`` itself so that the cap holds);
- ``sleap-nn flow``: the same with ``use_flow=True`` (optical flow: scale 1.0, window 21,
  3 levels);
- ``sleap-nn simple+cull+connect`` and ``sleap-nn flow+cull+connect``: as above with
  ``tracking_target_instance_count=N``, ``tracking_pre_cull_to_target=1`` and
  ``post_connect_single_breaks=True`` (SLEAP's usual settings for a known count);
- ``sleap-nn kalman``: ``use_kalman=True`` with ``tracking_target_instance_count=N``.

frames/s is the tracking call alone (both sides; video decoding included for flow), not
loading or saving. Without ``--sleap-nn-python`` only posekit is measured.

    PYTHONPATH=src python benchmarks/tracking_peers.py --predictions PRED.slp \
        [--ground-truth clip.slp] [--sleap-nn-python PY] [--max-tracks 2] [--only NAME]
    PYTHONPATH=src python benchmarks/tracking_peers.py --case crossing [--missed 0.15] ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLIES = ROOT / ".." / "shared" / "data" / "flies" / "clip.slp"

# The child program, run by sleap-nn's interpreter: argv = input .slp, output .slp, JSON
# settings, result .json. Imports only sleap_io and sleap_nn.
CHILD = r"""
import json, sys, time, traceback
src, dst, settings, result = sys.argv[1:5]
out = {}
try:
    import sleap_io as sio
    import sleap_nn
    from sleap_nn.tracking.tracker import run_tracker
    out["sleap_nn"] = getattr(sleap_nn, "__version__", "?")
    out["sleap_io"] = getattr(sio, "__version__", "?")
    labels = sio.load_slp(src)
    lfs = sorted(labels.labeled_frames, key=lambda f: f.frame_idx)
    for lf in lfs:
        for inst in lf.instances:
            inst.track = None
    kwargs = json.loads(settings)
    t0 = time.perf_counter()
    tracked = run_tracker(lfs, **kwargs)
    out["seconds"] = time.perf_counter() - t0
    out["frames"] = len(lfs)
    tracks = []
    for lf in tracked:
        for inst in lf.instances:
            if inst.track is not None and inst.track not in tracks:
                tracks.append(inst.track)
    sio.Labels(tracked, videos=list(labels.videos), skeletons=list(labels.skeletons),
               tracks=tracks).save(dst)
except Exception as err:
    out["error"] = "%s: %s" % (type(err).__name__, err)
    out["traceback"] = traceback.format_exc()[-3000:]
with open(result, "w") as f:
    json.dump(out, f)
"""


def sleap_nn_settings(n: int) -> dict[str, dict]:
    """sleap-nn's run_tracker keyword arguments per table row."""
    known = dict(
        tracking_target_instance_count=n,
        tracking_pre_cull_to_target=1,
        post_connect_single_breaks=True,
    )
    return {
        "sleap-nn simple": dict(max_tracks=n),
        "sleap-nn flow": dict(max_tracks=n, use_flow=True),
        "sleap-nn simple+cull+connect": dict(max_tracks=n, **known),
        "sleap-nn flow+cull+connect": dict(max_tracks=n, use_flow=True, **known),
        "sleap-nn kalman": dict(max_tracks=n, use_kalman=True, tracking_target_instance_count=n),
    }


def _blank_video(folder: Path, n_frames: int, size: int = 512):
    """A black HDF5 video (compressed to almost nothing) for a generated case."""
    import h5py
    import numpy as np
    import sleap_io as sio

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "blank.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "video",
            data=np.zeros((n_frames, size, size, 1), np.uint8),
            chunks=(1, size, size, 1),
            compression="gzip",
        )
    return sio.Video.from_filename(str(path), dataset="video")


def on_video(labels, video):
    """`labels` with every frame on `video` (the ground truth's), tracks kept.

    The metrics pair frames by video filename; predictions may name the same video by
    another path."""
    import sleap_io as sio

    frames = [
        sio.LabeledFrame(video=video, frame_idx=lf.frame_idx, instances=list(lf.instances))
        for lf in labels.labeled_frames
    ]
    tracks = []
    for lf in frames:
        for inst in lf.instances:
            if inst.track is not None and inst.track not in tracks:
                tracks.append(inst.track)
    return sio.Labels(frames, videos=[video], skeletons=list(labels.skeletons), tracks=tracks)


def untracked(labels):
    """A copy of `labels` with no tracks (instances copied, order kept)."""
    import copy

    import sleap_io as sio

    frames = []
    for lf in sorted(labels.labeled_frames, key=lambda f: f.frame_idx):
        insts = []
        for inst in lf.instances:
            c = copy.copy(inst)
            c.track = None
            insts.append(c)
        frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=insts))
    return sio.Labels(frames, videos=list(labels.videos), skeletons=list(labels.skeletons))


def run_sleap_nn(python, src, settings, workdir, name, timeout):
    dst = Path(workdir) / (name.replace(" ", "_").replace("+", "_") + ".slp")
    result = Path(workdir) / (dst.stem + ".json")
    log = Path(workdir) / (dst.stem + ".log")
    with open(log, "w") as f:
        proc = subprocess.run(
            [python, "-c", CHILD, str(src), str(dst), json.dumps(settings), str(result)],
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": ""},
        )
    if not result.exists():
        return {"error": f"child exited {proc.returncode} without a result; see {log}"}
    out = json.loads(result.read_text())
    out["path"] = str(dst)
    return out


def row(name, labels, gt, video, seconds, n_frames):
    from posekit.tracking import tracking_metrics

    m = tracking_metrics(gt, on_video(labels, video))
    return dict(
        tracker=name,
        fps=n_frames / seconds,
        switches=m["identity_switches"],
        idf1=m["idf1"],
        mota=m["mota"],
        tracks=m["predicted_tracks"],
        fp=m["false_positives"],
        misses=m["misses"],
        hota=m["hota"],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", default=None, help="untracked predictions, .slp")
    parser.add_argument("--case", default=None, help="a generated case: crossing, wander, return")
    parser.add_argument("--missed", type=float, default=0.15, help="--case: share missed")
    parser.add_argument("--noise", type=float, default=2.0, help="--case: px of point noise")
    parser.add_argument("--spurious", type=float, default=0.0, help="--case: false detections")
    parser.add_argument("--frames", type=int, default=600, help="--case: frames")
    parser.add_argument("--seed", type=int, default=0, help="--case: random seed")
    parser.add_argument("--ground-truth", default=str(FLIES), help="labels with true tracks")
    parser.add_argument("--sleap-nn-python", default=None, help="sleap-nn's interpreter")
    parser.add_argument("--max-tracks", type=int, default=2)
    parser.add_argument("--only", action="append", default=None, help="run only these rows")
    parser.add_argument("--workdir", default=None, help="keep sleap-nn's outputs here")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    import sleap_io as sio

    from posekit.tracking import track

    if args.case:
        from posekit.data.synthetic_tracks import tracking_case

        case = tracking_case(
            args.case,
            n_frames=args.frames,
            n_animals=args.max_tracks,
            missed=args.missed,
            noise=args.noise,
            spurious=args.spurious,
            seed=args.seed,
        )
        gt, pred = case.ground_truth, case.predictions
        if args.sleap_nn_python:  # sleap-nn reads every frame's image, even without flow
            blank = _blank_video(Path(args.workdir or tempfile.mkdtemp()), args.frames)
            for labels in (gt, pred):
                for lf in labels.labeled_frames:
                    lf.video = blank
                labels.videos = [blank]
    elif args.predictions:
        gt = sio.load_slp(args.ground_truth)
        pred = untracked(sio.load_slp(args.predictions))
    else:
        parser.error("give --predictions PRED.slp or --case NAME")
    video = gt.videos[0]
    n_frames = len(pred.labeled_frames)
    counts = [len(lf.instances) for lf in pred.labeled_frames]
    print(
        f"predictions: {n_frames} frames, {sum(counts)} instances; frames with "
        f"0/1/2/>2 instances: {counts.count(0) + len(gt.labeled_frames) - n_frames}/"
        f"{counts.count(1)}/{counts.count(2)}/{sum(c > 2 for c in counts)}"
    )

    def wanted(name):
        return args.only is None or any(o in name for o in args.only)

    rows = []
    has_video = not args.case  # a generated case's video is blank: nothing for flow
    for tracker in ("simple", "flow", "global", "kalman", "bytetrack", "ocsort"):
        name = f"posekit {tracker}"
        if not wanted(name) or (tracker == "flow" and not has_video):
            continue
        t0 = time.perf_counter()
        out = track(pred, tracker, max_tracks=args.max_tracks)
        rows.append(row(name, out, gt, video, time.perf_counter() - t0, n_frames))
        print(f"  done: {name}", file=sys.stderr)

    notes = []
    if args.sleap_nn_python:
        python = os.path.abspath(shutil.which(args.sleap_nn_python) or args.sleap_nn_python)
        workdir = args.workdir or tempfile.mkdtemp(prefix="tracking_peers.")
        Path(workdir).mkdir(parents=True, exist_ok=True)
        src = Path(workdir) / "untracked.slp"
        pred.save(str(src))
        for name, settings in sleap_nn_settings(args.max_tracks).items():
            if not wanted(name) or ("flow" in name and not has_video):
                continue
            res = run_sleap_nn(python, src, settings, workdir, name, args.timeout)
            if "error" in res:
                notes.append(f"{name}: {res['error']}")
                print(
                    f"  failed: {name}: {res['error']}\n{res.get('traceback', '')}", file=sys.stderr
                )
                continue
            tracked = sio.load_slp(res["path"])
            rows.append(row(name, tracked, gt, video, res["seconds"], res["frames"]))
            versions = f"sleap-nn {res['sleap_nn']}, sleap-io {res['sleap_io']}"
            print(f"  done: {name} ({versions})", file=sys.stderr)
        notes.insert(0, f"sleap-nn: {python}")
        for name, settings in sleap_nn_settings(args.max_tracks).items():
            if wanted(name):
                notes.append(
                    f"{name}: run_tracker({', '.join(f'{k}={v!r}' for k, v in settings.items())})"
                )

    header = (
        "tracker",
        "ID switches",
        "IDF1",
        "HOTA",
        "MOTA",
        "tracks",
        "FP",
        "misses",
        "frames/s",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r['tracker']} | {r['switches']} | {r['idf1']:.3f} | {r['hota']:.3f} | {r['mota']:.3f} | "
            f"{r['tracks']} | {r['fp']} | {r['misses']} | {r['fps']:.0f} |"
        )
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
