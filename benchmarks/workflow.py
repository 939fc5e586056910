"""`posekit predict` from a SLEAP project to an analysis file: speed, resume, memory.

    PYTHONPATH=src python benchmarks/workflow.py [--frames 120] [--device cpu]

1. speed: a project with two videos (links to centered_pair_low_quality.mp4), frames
   0..N-1 of each, ``-o x.analysis.h5``, against frames 0..2N-1 of one video to ``.slp``;
   end-to-end frames/s of each (model loading excluded, writing included), runs
   alternated to even out a shared CPU;
2. resume: the project run SIGKILLed once half its chunks are on disk, then ``--resume``;
   the analysis file's arrays compared with the uninterrupted run's;
3. memory: peak RSS of predicting K and 4K frames of one video (separate processes).

Everything is written in a temporary folder. Model: minimal_instance.UNet.bottomup.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
MODEL = SHARED / "sleap_models" / "minimal_instance.UNet.bottomup"
VIDEO = SHARED / "data" / "minimal" / "centered_pair_low_quality.mp4"
sys.path.insert(0, str(ROOT / "tests" / "inference"))


def timed_predict(predictor, jobs, out) -> tuple[float, int]:
    from posekit.inference.workflow import run_prediction

    t0 = time.perf_counter()
    run = run_prediction(predictor, jobs, out, chunk_size=64)
    return time.perf_counter() - t0, run.frames


def speed(folder: Path, project: Path, n: int, device: str, repeats: int) -> dict:
    from posekit.inference.predictors import load_predictor
    from posekit.inference.sources import expand_sources

    predictor = load_predictor([str(MODEL)], batch_size=4, device=device, progress=False)
    proj_jobs = expand_sources([project], frames=f"0-{n - 1}")
    one_jobs = expand_sources([folder / "a.mp4"], frames=f"0-{2 * n - 1}")
    timed_predict(predictor, one_jobs[:1], folder / "warmup.slp")
    res = {"project_analysis_h5": [], "one_video_slp": []}
    for _ in range(repeats):
        s, f = timed_predict(predictor, proj_jobs, folder / "x.analysis.h5")
        res["project_analysis_h5"].append(f / s)
        s, f = timed_predict(predictor, one_jobs, folder / "one.slp")
        res["one_video_slp"].append(f / s)
    out = {k: round(max(v), 2) for k, v in res.items()}
    out["all_runs"] = {k: [round(x, 2) for x in v] for k, v in res.items()}
    out["ratio"] = round(out["project_analysis_h5"] / out["one_video_slp"], 3)
    # the writers alone
    import sleap_io as sio

    from posekit.data.formats import write_predictions

    labels = sio.load_slp(str(folder / "one.slp"))
    t0 = time.perf_counter()
    write_predictions(labels, folder / "w.analysis.h5")
    out["write_analysis_h5_s"] = round(time.perf_counter() - t0, 3)
    return out


def cli(args, env) -> list[str]:
    return [sys.executable, "-m", "posekit.cli", "predict", str(MODEL), *map(str, args)]


def resume(folder: Path, project: Path, n: int, device: str, env) -> dict:
    import h5py
    import numpy as np

    common = [project, "--frames", f"0-{n - 1}", "--device", device, "--chunk-size", "16"]
    ref = folder / "ref.analysis.h5"
    subprocess.run(cli([*common, "-o", ref], env), env=env, check=True, capture_output=True)
    out = folder / "killed.analysis.h5"
    chunks = folder / f".{out.name}.posekit-chunks"
    total = 2 * (-(-n // 16))
    proc = subprocess.Popen(
        cli([*common, "-o", out], env),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while len(list(chunks.glob("chunk-*.npz"))) < total // 2 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(list(chunks.glob("chunk-*.npz")))
    t0 = time.perf_counter()
    r = subprocess.run(
        cli([*common, "-o", out, "--resume"], env),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    resumed_s = time.perf_counter() - t0
    same = {}
    for part in ("000_a", "001_b"):  # one analysis file per video
        fa, fb = folder / f"ref.{part}.analysis.h5", folder / f"killed.{part}.analysis.h5"
        with h5py.File(fa, "r") as a, h5py.File(fb, "r") as b:
            for key in ("tracks", "point_scores", "instance_scores", "track_occupancy"):
                same[f"{part}/{key}"] = bool(np.array_equal(a[key][:], b[key][:], equal_nan=True))
    files = sorted(p.name for p in folder.glob("ref*")) == sorted(
        p.name.replace("killed", "ref") for p in folder.glob("killed*")
    )
    return {
        "chunks_total": total,
        "chunks_on_disk_at_kill": kept,
        "resume_seconds": round(resumed_s, 1),
        "resume_message": [line for line in r.stdout.splitlines() if "Predicted" in line],
        "arrays_equal": same,
        "same_files": files,
    }


def memory(folder: Path, k: int, device: str, env) -> dict:
    code = (
        "import resource, sys; from posekit.cli import main; "
        f"main(['predict', {str(MODEL)!r}, {str(folder / 'a.mp4')!r}, '--frames', sys.argv[1], "
        f"'--device', {device!r}, '-o', sys.argv[2]]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = {}
    for n in (k, 4 * k):
        r = subprocess.run(
            [sys.executable, "-c", code, f"0-{n - 1}", str(folder / f"m{n}.slp")],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        out[f"peak_rss_mb_{n}_frames"] = round(int(r.stdout.strip().splitlines()[-1]) / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120, help="frames per video (speed, resume)")
    ap.add_argument("--memory-frames", type=int, default=100, help="K of the memory check")
    ap.add_argument("--repeats", type=int, default=2, help="alternated speed runs")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    ap.add_argument("--skip-speed", action="store_true", help="only resume and memory")
    args = ap.parse_args()
    from test_workflow import make_project

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project = make_project(folder)
        result = {"frames_per_video": args.frames, "device": args.device}
        if not args.skip_speed:
            result["speed"] = speed(folder, project, args.frames, args.device, args.repeats)
            print(json.dumps(result, indent=1), flush=True)
        result["resume"] = resume(folder, project, args.frames, args.device, env)
        print(json.dumps(result["resume"], indent=1), flush=True)
        result["memory"] = memory(folder, args.memory_frames, args.device, env)
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
