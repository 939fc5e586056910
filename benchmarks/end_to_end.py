"""End-to-end `posekit predict` speed versus the network alone, on 1024 x 1024 video.

What is timed, per model type (single instance, bottom-up, top-down):

- **network-only fps**: the forward pass(es) alone on a preprocessed batch (batch
  ``--batch-size``, `torch.inference_mode`); for top-down, the centroid network on the
  frames plus the centered-instance network on ``animals`` crops per frame;
- **end-to-end fps**: what `posekit predict` runs (`posekit.inference.cli.run_predict`:
  decode the video, preprocess, run the networks, find peaks, group, build the labels and
  write the ``.slp``) on the first 100 and the first 300 frames, each in a fresh
  subprocess; imports and model loading (a fixed start-up cost of ~1-3 s, not
  throughput) are left out of the fps and reported in the JSON. The subprocess's peak
  RSS is reported too: equal peaks after 100 and 300 frames mean memory does not grow
  with video length (streaming).

The video is rendered with `posekit.data.synthetic.save_synthetic_dataset` (H.264 mp4,
1024 x 1024, 1/2/4 animals) and the models are small UNets built from configs with random
weights (speed does not depend on the weights), saved with
`posekit.io.model_folder.save_model`: UNet (filters 16, rate 2, max stride 16, output
stride 2); the full-frame models take the frames at input scaling 0.25 (256 x 256), the
centered-instance model takes 96 x 96 full-resolution crops. Random weights would make every pixel of noise a
peak; so that peak finding and grouping see realistic work, each confidence-map head's
bias is shifted once (on the first frame) so that about one peak per animal and part
clears the 0.2 threshold, and the PAF head outputs a uniform field (so that grouping has
connections to score and assemble). The number of instances found per frame is reported.

Top-down is also run with 1, 2 and 4 animals (``max_instances`` = animals): its cost per
frame should grow linearly with the number of animals (one crop each).

The machine may be shared: run the benchmark twice and compare (``--repeat 2`` does
that in one invocation). Usage:

    python benchmarks/end_to_end.py [--frames 100 300] [--batch-size 4] [--device cpu]
        [--repeat 1] [--workdir DIR] [--only single,bottomup,topdown]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 1024
N_PARTS = 5
BODY_LENGTH = 64.0  # pixels; the crop below holds a whole animal
CROP_SIZE = 96
# Full-frame models (single instance, bottom-up, centroid) see the 1024 x 1024 frames
# resized by this factor, as SLEAP configs for large frames usually do; it keeps a
# 300-frame CPU run to minutes. Crops for the centered-instance model are full resolution.
FULL_FRAME_SCALING = 0.25
BOTTOMUP_ANIMALS = 2
TOPDOWN_ANIMALS = (1, 2, 4)


# --------------------------------------------------------------------------- data + models


def render_video(workdir: Path, n_animals: int, n_frames: int) -> Path:
    """A 1024 x 1024 grayscale H.264 video with `n_animals` moving animals (cached)."""
    from posekit.data.synthetic import save_synthetic_dataset

    name = f"synthetic_{n_animals}animals_{n_frames}f_clean"
    mp4 = workdir / f"{name}.mp4"
    if not mp4.exists():
        save_synthetic_dataset(
            workdir,
            n_frames=n_frames,
            n_animals=n_animals,
            image_size=IMAGE_SIZE,
            n_parts=N_PARTS,
            seed=n_animals,
            video_format="mp4",
            name=name,
            body_length=BODY_LENGTH,
            # Pixel noise would make the H.264 stream ~80 Mbit/s (45 ms of CPU to decode
            # a frame); without it the stream is ~2-3 Mbit/s, like lab camera footage.
            noise_std=0.0,
        )
    return mp4


def video_info(path: Path) -> str:
    """ "H.264 yuv420p, 2.3 Mbit/s" for the table caption."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate or 30)
        mbit = path.stat().st_size * 8 / (max(s.frames, 1) / rate) / 1e6
        return (
            f"{s.codec_context.name} {s.codec_context.pix_fmt}, {mbit:.1f} Mbit/s at {rate:g} fps"
        )


def _config(kind: str):
    from posekit.config.job import TrainingJobConfig
    from posekit.data.synthetic import part_names_for

    parts = part_names_for(N_PARTS)
    unet = {"filters": 16, "filters_rate": 2.0, "max_stride": 16, "output_stride": 2}
    if kind == "single_instance":
        heads = {"single_instance": {"part_names": parts, "output_stride": 2}}
    elif kind == "multi_instance":
        edges = [[parts[0], p] for p in parts[1:]]
        heads = {
            "multi_instance": {
                "confmaps": {"part_names": parts, "output_stride": 2},
                "pafs": {"edges": edges, "output_stride": 4},
            }
        }
    elif kind == "centroid":
        unet["output_stride"] = 4
        heads = {"centroid": {"anchor_part": parts[0], "output_stride": 4}}
    elif kind == "centered_instance":
        heads = {
            "centered_instance": {"anchor_part": parts[0], "part_names": parts, "output_stride": 2}
        }
    else:
        raise ValueError(kind)
    scaling = 1.0 if kind == "centered_instance" else FULL_FRAME_SCALING
    return TrainingJobConfig.from_dict(
        {
            "data": {
                "preprocessing": {"input_scaling": scaling},
                "instance_cropping": {"center_on_part": parts[0], "crop_size": CROP_SIZE},
            },
            "model": {"backbone": {"unet": unet}, "heads": heads},
        }
    )


def _local_peak_values(maps):
    """Values of 3 x 3 local maxima per channel of (N, C, H, W) maps: list over channels."""
    import torch.nn.functional as F

    pooled = F.max_pool2d(maps, 3, stride=1, padding=1)
    is_peak = maps == pooled
    return [maps[:, c][is_peak[:, c]].flatten() for c in range(maps.shape[1])]


def calibrate(model, frames, peaks_per_channel: int, threshold: float = 0.2) -> None:
    """Shift each confidence-map channel's bias so that ~`peaks_per_channel` local peaks
    per frame clear `threshold` (random weights otherwise give either none or thousands)."""
    import torch

    from posekit.inference.predictors import crop_centered

    model.eval()
    with torch.inference_mode():
        x = torch.from_numpy(frames)
        if model.model_type == "centered_instance":
            # Crops of the frame centres stand in for centered crops.
            n, h, w, _ = frames.shape
            cen = torch.tensor([[w / 2, h / 2]] * n, dtype=torch.float32)
            x = crop_centered(x, cen, torch.arange(n), CROP_SIZE)
        out = model(model.preprocess(x))
    for head in model.heads:
        if head.name == "PartAffinityFieldsHead":
            # Random PAFs are ~0 everywhere, so no connection would pass min_line_scores
            # and grouping would do nothing. A uniform field pointing along +x makes every
            # candidate connection that points rightwards score well: grouping then
            # scores, matches and assembles instances as it would on real data.
            layer = model.head_layers[head.name]
            with torch.no_grad():
                layer.weight.zero_()
                layer.bias.zero_()
                layer.bias[0::2] = 1.0
            continue
        if "Confmaps" not in head.name:
            continue
        maps = out[head.name]
        layer = model.head_layers[head.name]
        with torch.no_grad():
            for c, vals in enumerate(_local_peak_values(maps)):
                vals = vals.sort(descending=True).values
                k = min(peaks_per_channel * frames.shape[0], len(vals))
                if k == 0:
                    continue
                hi = vals[k - 1]
                lo = vals[k] if k < len(vals) else hi - 1.0
                # Threshold halfway between the k-th and (k+1)-th strongest peak.
                layer.bias[c] += threshold - float(hi + lo) / 2


def make_model_folder(kind: str, out: Path, frames, peaks_per_channel: int) -> Path:
    """Build, calibrate and save a random-weight model of `kind` as a model folder."""
    import torch

    from posekit.data.synthetic import synthetic_skeleton
    from posekit.io.model_folder import save_model
    from posekit.model import Model

    if (out / "model.safetensors").exists():
        return out
    torch.manual_seed(0)
    cfg = _config(kind)
    skel = synthetic_skeleton(N_PARTS)
    model = Model.from_config(cfg.model, in_channels=1, skeleton=skel)
    model.config = cfg
    model.skeleton = skel
    calibrate(model, frames, peaks_per_channel)
    save_model(model, out)
    return out


def prepare(workdir: Path, n_frames: int, only: set[str], animals=TOPDOWN_ANIMALS) -> dict:
    """Videos and model folders for every case: {case: (model folders, video, animals)}."""
    import sleap_io as sio

    cases = {}
    models = workdir / "models"

    def first_frames(video_path: Path, n: int = 2):
        import numpy as np

        v = sio.load_video(str(video_path))
        return np.stack([v[i] for i in range(n)])

    if "single" in only:
        video = render_video(workdir, 1, n_frames)
        frames = first_frames(video)
        folder = make_model_folder("single_instance", models / "single_instance", frames, 1)
        cases["single instance"] = ([folder], video, 1)
    if "bottomup" in only:
        video = render_video(workdir, BOTTOMUP_ANIMALS, n_frames)
        frames = first_frames(video)
        folder = make_model_folder("multi_instance", models / "bottomup", frames, BOTTOMUP_ANIMALS)
        cases["bottom-up"] = ([folder], video, BOTTOMUP_ANIMALS)
    if "topdown" in only:
        for k in animals:
            video = render_video(workdir, k, n_frames)
            frames = first_frames(video)
            # More candidate centroids than animals clear the threshold; the predictor
            # keeps the best `k` (max_instances), so every frame gets k crops.
            centroid = make_model_folder("centroid", models / f"centroid_{k}x4", frames, 4 * k)
            centered = make_model_folder(
                "centered_instance", models / "centered_instance", frames, 1
            )
            cases[f"top-down, {k} animal{'s' if k > 1 else ''}"] = ([centroid, centered], video, k)
    return cases


# --------------------------------------------------------------------------- timing


def _time_calls(fn, seconds: float) -> float:
    """Median seconds per call of `fn` over ~`seconds` (after one warm-up call)."""
    import statistics

    fn()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def network_fps(models, frame, animals: int, batch_size: int, seconds: float) -> float:
    """Frames/s of the network(s) alone on preprocessed input.

    `models`: the predictor's loaded models; for top-down (two models) the centroid
    network runs on the frames and the centered-instance network on ``animals`` crops
    per frame, in the predictor's chunks of ``max(16, 4 * batch_size)`` crops.
    """
    import numpy as np
    import torch

    from posekit.inference.predictors import crop_centered

    batch = np.repeat(frame[None], batch_size, axis=0)
    with torch.inference_mode():
        x = models[0].preprocess(batch)
        per_frame = _time_calls(lambda: models[0](x), seconds) / batch_size
        if len(models) == 2:
            m = models[1]
            n = animals * batch_size
            h, w = frame.shape[:2]
            cen = torch.tensor([[w / 2, h / 2]] * n, dtype=torch.float32)
            samples = torch.arange(n) % batch_size
            xc = m.preprocess(crop_centered(torch.from_numpy(batch), cen, samples, m.crop_size))
            chunk = max(16, 4 * batch_size)

            def run_crops():
                for s in range(0, n, chunk):
                    m(xc[s : s + chunk])

            per_frame += _time_calls(run_crops, seconds) / batch_size
    return 1.0 / per_frame


def run_worker(folders, video, frames: int, batch_size: int, device: str, animals: int, seconds):
    """Run `posekit predict` (library path) in a subprocess; returns its JSON report."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--video",
        str(video),
        "--frames",
        str(frames),
        "--batch-size",
        str(batch_size),
        "--device",
        device,
        "--max-instances",
        str(animals),
        "--seconds",
        str(seconds),
        "--models",
        *map(str, folders),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB.

    ``VmHWM`` (Linux), not ``ru_maxrss``: a subprocess forked from a big parent inherits
    the parent's resident size as its ``ru_maxrss`` at exec, which would hide the worker's
    own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> None:
    """Subprocess body: what `posekit predict` runs, timed, with the process's peak RSS.

    The steps of `posekit.inference.cli.run_predict` (load the models, predict, write the
    ``.slp`` atomically); imports and model loading are timed apart from the rest because
    they are a fixed start-up cost, not throughput.
    """
    t0 = time.perf_counter()
    import sleap_io as sio
    import torch  # noqa: F401

    from posekit.inference.cli import save_labels_atomic
    from posekit.inference.predictors import load_predictor

    t_import = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "out.predictions.slp"
        t0 = time.perf_counter()
        predictor = load_predictor(
            args.models,
            batch_size=args.batch_size,
            device=args.device,
            max_instances=args.max_instances,
            progress=False,
        )
        t_load = time.perf_counter() - t0
        models = [m for m in predictor._models() if m is not None]
        frame = sio.load_video(args.video)[0]
        # Network alone right before and right after the end-to-end run, in the same
        # process, so that both see the same machine load as far as possible.
        net = [network_fps(models, frame, args.max_instances, args.batch_size, args.seconds)]
        # Time spent in forward passes during the run itself (same moment, same load).
        forward_seconds = [0.0]
        forward = predictor._forward

        def timed_forward(model, x):
            t = time.perf_counter()
            out = forward(model, x)
            forward_seconds[0] += time.perf_counter() - t
            return out

        predictor._forward = timed_forward
        t0 = time.perf_counter()
        labels = predictor.predict(args.video, frames=f"0-{args.frames - 1}")
        save_labels_atomic(labels, output)
        seconds = time.perf_counter() - t0
        predictor._forward = forward
        net.append(network_fps(models, frame, args.max_instances, args.batch_size, args.seconds))
        n_frames = len(labels.labeled_frames)
        n_inst = sum(len(lf.instances) for lf in labels.labeled_frames)
        written = len(sio.load_slp(str(output)).labeled_frames)
    rss_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "frames": n_frames,
                "frames_written": written,
                "seconds": seconds,
                "fps": n_frames / seconds,
                "predict_loop_fps": predictor.stats.get("fps"),
                "network_fps": sum(net) / len(net),
                "network_fps_before_after": net,
                "forward_share": forward_seconds[0] / seconds,
                "outside_forward_ms_per_frame": (seconds - forward_seconds[0]) / n_frames * 1e3,
                "import_seconds": t_import,
                "load_seconds": t_load,
                "instances_per_frame": n_inst / max(n_frames, 1),
                "peak_rss_mb": rss_mb,
            }
        )
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=3.0, help="network timing per model")
    parser.add_argument("--repeat", type=int, default=1, help="run everything this many times")
    parser.add_argument("--workdir", default=None, help="keep videos and models here")
    parser.add_argument("--only", default="single,bottomup,topdown")
    parser.add_argument(
        "--animals", type=int, nargs="+", default=list(TOPDOWN_ANIMALS), help="top-down cases"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--max-instances", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.frames = args.frames[0]
        worker(args)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    only = set(args.only.split(","))
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        workdir = Path(tmp.name)
    n_max = max(args.frames)
    with console.status("rendering videos and building models"):
        cases = prepare(workdir, n_max, only, args.animals)
    results = []
    for rep in range(args.repeat):
        table = Table(
            title=f"posekit predict end to end, {IMAGE_SIZE}x{IMAGE_SIZE} H.264, batch "
            f"{args.batch_size}, {args.device}, {os.cpu_count()} CPUs (run {rep + 1})",
            caption="net fps: the forward pass(es) alone in the same process, mean of right "
            "before and right after the run. fwd share: fraction of the run's wall time "
            "spent in forward passes; outside: ms per frame outside them. Peak RSS: the "
            f"process's VmHWM. Videos: {video_info(next(iter(cases.values()))[1])}.",
        )
        cols = ["model", "frames", "net fps", "e2e fps", "e2e/net", "fwd share"]
        cols += ["outside ms/fr", "peak RSS MiB", "inst/frame"]
        for c in cols:
            table.add_column(c, justify="left" if c == "model" else "right")
        for label, (folders, video, animals) in cases.items():
            rec = {"case": label, "animals": animals, "run": rep + 1, "e2e": {}}
            for n in args.frames:
                r = run_worker(
                    folders, video, n, args.batch_size, args.device, animals, args.seconds
                )
                rec["e2e"][n] = r
                table.add_row(
                    label,
                    str(n),
                    f"{r['network_fps']:.2f}",
                    f"{r['fps']:.2f}",
                    f"{r['fps'] / r['network_fps']:.2f}",
                    f"{r['forward_share']:.2f}",
                    f"{r['outside_forward_ms_per_frame']:.1f}",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['instances_per_frame']:.2f}",
                )
            results.append(rec)
            console.print(f"  done: {label}", style="dim")
        console.print(table)
    td = [r for r in results if r["case"].startswith("top-down")]
    if td:
        n = max(args.frames)
        t = Table(
            title=f"top-down: seconds per frame vs animals ({n} frames); linear = constant "
            "increment per animal"
        )
        for c in ("run", "animals", "e2e s/frame", "net s/frame", "e2e increment", "net increment"):
            t.add_column(c, justify="right")
        for rep in range(args.repeat):
            prev = None
            for r in [x for x in td if x["run"] == rep + 1]:
                k = r["animals"]
                spf = 1.0 / r["e2e"][n]["fps"]
                nspf = 1.0 / r["e2e"][n]["network_fps"]
                inc = ninc = ""
                if prev is not None:
                    inc = f"{(spf - prev[1]) / (k - prev[0]):+.4f}/animal"
                    ninc = f"{(nspf - prev[2]) / (k - prev[0]):+.4f}/animal"
                t.add_row(str(rep + 1), str(k), f"{spf:.4f}", f"{nspf:.4f}", inc, ninc)
                prev = (k, spf, nspf)
        console.print(t)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
