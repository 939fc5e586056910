"""End-to-end `posekit predict` speed versus the network alone, on 1024 x 1024 video.

Three measurements, each in fresh subprocesses:

1. **Throughput** per model type (single instance, bottom-up, top-down): rounds that
   alternate the network alone (the forward pass(es) on a preprocessed batch, batch
   ``--batch-size``, `torch.inference_mode`; top-down: the centroid network on the frames
   plus the centered-instance network on one crop per animal) with what `posekit predict`
   runs on the first ``--frames`` frames (`predict` + atomic ``.slp`` write: decode,
   preprocess, networks, peaks, grouping, labels, writing). Alternating makes both see
   the same load on a shared machine; medians over ``--rounds`` are reported, with the
   share of the end-to-end wall time spent in forward passes (measured during the run).
   Imports and model loading are a fixed start-up cost, not throughput, and are left out.
2. **Memory**: `posekit predict` on the first 100 and the first 300 frames, each in its
   own process; equal peak RSS (VmHWM) means memory does not grow with video length.
3. **Top-down scaling**: 1, 2 and 4 animals (``max_instances`` = animals, one crop each),
   interleaved round by round in one process; the cost per frame should grow by a
   constant amount per animal (linear, no faster).

The videos are rendered with `posekit.data.synthetic.save_synthetic_dataset` (H.264 mp4,
1024 x 1024, 1/2/4 animals, no pixel noise: ~1-3 Mbit/s like lab footage) and the models
are small UNets built from configs with random weights (speed does not depend on the
weights), saved with `posekit.model.folder.save_model`: UNet (filters 16, rate 2, max
stride 16, output stride 2); the full-frame models take the frames at input scaling 0.25
(256 x 256), the centered-instance model 96 x 96 full-resolution crops. Random weights
would make every pixel of noise a peak; so that peak finding and grouping see realistic
work, each confidence-map head's bias is shifted once (on the first frames) so that a
few peaks per part clear the 0.2 threshold, and the PAF head outputs a uniform field (so
that grouping has connections to score and assemble). Instances per frame are reported.

On a shared machine timings vary by 2-4x from minute to minute: run it twice
(``--repeat 2``) and compare. Usage:

    python benchmarks/end_to_end.py [--frames 150] [--rounds 3] [--memory-frames 100 300]
        [--batch-size 4] [--device cpu] [--repeat 1] [--workdir DIR]
        [--only single,bottomup,topdown] [--sections throughput,memory,scaling]
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
    from posekit.model.folder import save_model
    from posekit.model.network import Model

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


class Network:
    """The predictor's network(s) alone on a preprocessed batch of one frame.

    The networks run exactly as the predictor runs them (its `_forward`: the runner of
    `posekit.inference.runtime`, BatchNorm folded, channels-last). For top-down the centroid network runs on the frames and the centered-instance
    network on ``animals`` crops per frame, in the predictor's chunks of
    ``max(16, 4 * batch_size)`` crops.
    """

    def __init__(self, predictor, models, frame, animals: int, batch_size: int):
        import numpy as np
        import torch

        from posekit.inference.predictors import crop_centered

        self.models = models
        self.forward = predictor._forward
        self.batch_size = batch_size
        batch = np.repeat(frame[None], batch_size, axis=0)
        with torch.inference_mode():
            self.x = models[0].preprocess(batch)
            self.crops = []
            if len(models) == 2:
                m = models[1]
                n = animals * batch_size
                h, w = frame.shape[:2]
                cen = torch.tensor([[w / 2, h / 2]] * n, dtype=torch.float32)
                samples = torch.arange(n) % batch_size
                xc = m.preprocess(crop_centered(torch.from_numpy(batch), cen, samples, m.crop_size))
                chunk = max(16, 4 * batch_size)
                self.crops = [xc[s : s + chunk] for s in range(0, n, chunk)]
        self.batch()  # warm-up

    def batch(self) -> None:
        import torch

        with torch.inference_mode():
            self.forward(self.models[0], self.x)
            for xc in self.crops:
                self.forward(self.models[1], xc)

    def seconds_per_frame(self, n_frames: int) -> float:
        """Wall seconds per frame over ``n_frames`` frames' worth of batches."""
        calls = max(1, -(-n_frames // self.batch_size))
        t = time.perf_counter()
        for _ in range(calls):
            self.batch()
        return (time.perf_counter() - t) / (calls * self.batch_size)


class TimedForward:
    """Wraps a predictor's `_forward` to add up the time spent in forward passes."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.inner = predictor._forward
        self.seconds = 0.0
        predictor._forward = self

    def __call__(self, model, x):
        t = time.perf_counter()
        out = self.inner(model, x)
        self.seconds += time.perf_counter() - t
        return out


def predict_and_save(predictor, video: str, n_frames: int, out_dir: str) -> dict:
    """One `posekit predict` pass (predict + atomic .slp write) over frames 0..n-1."""
    from posekit.data.labels import save_labels

    timer = TimedForward(predictor)
    t = time.perf_counter()
    labels = predictor.predict(video, frames=f"0-{n_frames - 1}")
    save_labels(labels, Path(out_dir) / "out.predictions.slp")
    seconds = time.perf_counter() - t
    predictor._forward = timer.inner
    n = len(labels.labeled_frames)
    return {
        "frames": n,
        "seconds_per_frame": seconds / n,
        "forward_share": timer.seconds / seconds,
        "outside_ms_per_frame": (seconds - timer.seconds) / n * 1e3,
        "instances_per_frame": sum(len(lf.instances) for lf in labels.labeled_frames) / n,
    }


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


def _load(folders, args, animals):
    from posekit.inference.predictors import load_predictor

    predictor = load_predictor(
        folders,
        batch_size=args.batch_size,
        device=args.device,
        max_instances=animals,
        progress=False,
    )
    return predictor


def worker(args) -> dict:
    """Subprocess body (one of three measurements, see the module docstring)."""
    import statistics

    import sleap_io as sio
    import torch  # noqa: F401

    spec = json.loads(args.worker)
    with tempfile.TemporaryDirectory() as tmp:
        if spec["kind"] == "throughput":
            # Alternate network-only and end-to-end in rounds, so that both see the same
            # (shared-machine) load; the medians of the rounds are reported.
            predictor = _load(spec["models"], args, spec["animals"])
            models = [m for m in predictor._models() if m is not None]
            frame = sio.load_video(spec["video"])[0]
            net = Network(predictor, models, frame, spec["animals"], args.batch_size)
            predict_and_save(predictor, spec["video"], args.batch_size, tmp)  # warm-up
            rounds = []
            for _ in range(args.rounds):
                net_spf = net.seconds_per_frame(spec["frames"])
                r = predict_and_save(predictor, spec["video"], spec["frames"], tmp)
                r["net_seconds_per_frame"] = net_spf
                r["ratio"] = net_spf / r["seconds_per_frame"]
                rounds.append(r)
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            return {"rounds": rounds, "median": med}
        if spec["kind"] == "memory":
            predictor = _load(spec["models"], args, spec["animals"])
            r = predict_and_save(predictor, spec["video"], spec["frames"], tmp)
            r["peak_rss_mb"] = peak_rss_mb()
            return r
        if spec["kind"] == "scaling":
            # Top-down with 1, 2, 4 animals, interleaved round by round.
            cases = []
            for case in spec["cases"]:
                predictor = _load(case["models"], args, case["animals"])
                models = [m for m in predictor._models() if m is not None]
                frame = sio.load_video(case["video"])[0]
                net = Network(predictor, models, frame, case["animals"], args.batch_size)
                predict_and_save(predictor, case["video"], args.batch_size, tmp)  # warm-up
                cases.append((case, predictor, net))
            out = {c["animals"]: {"e2e": [], "net": []} for c, _, _ in cases}
            for _ in range(args.rounds):
                for case, predictor, net in cases:
                    k = case["animals"]
                    out[k]["net"].append(net.seconds_per_frame(spec["frames"]))
                    r = predict_and_save(predictor, case["video"], spec["frames"], tmp)
                    out[k]["e2e"].append(r["seconds_per_frame"])
            return {k: {key: statistics.median(v) for key, v in d.items()} for k, d in out.items()}
    raise ValueError(spec["kind"])


def run_worker(spec: dict, args) -> dict:
    """Run one measurement in a fresh subprocess; returns its JSON report."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        json.dumps(spec, default=str),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--rounds",
        str(args.rounds),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--memory-frames", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="run everything this many times")
    parser.add_argument("--workdir", default=None, help="keep videos and models here")
    parser.add_argument("--only", default="single,bottomup,topdown")
    parser.add_argument("--sections", default="throughput,memory,scaling")
    parser.add_argument(
        "--animals", type=int, nargs="+", default=list(TOPDOWN_ANIMALS), help="top-down cases"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    only = set(args.only.split(","))
    sections = set(args.sections.split(","))
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        workdir = Path(tmp.name)
    n_max = max([args.frames, *args.memory_frames])
    with console.status("rendering videos and building models"):
        cases = prepare(workdir, n_max, only, args.animals)
    head = (
        f"{IMAGE_SIZE}x{IMAGE_SIZE} H.264 ({video_info(next(iter(cases.values()))[1])}), "
        f"batch {args.batch_size}, {args.device}, {os.cpu_count()} CPUs"
    )
    results: list[dict] = []
    for rep in range(1, args.repeat + 1):
        if "throughput" in sections:
            t = Table(
                title=f"end to end vs network alone, {head} (run {rep})",
                caption=f"medians of {args.rounds} rounds of {args.frames} frames, each "
                "round timing the network alone, then `posekit predict` (decode .. write "
                ".slp). fwd share: fraction of the e2e wall time in forward passes; "
                "outside: ms per frame outside them.",
            )
            for c in ("model", "net fps", "e2e fps", "e2e/net", "fwd share", "outside ms/fr"):
                t.add_column(c, justify="left" if c == "model" else "right")
            t.add_column("inst/frame", justify="right")
            for label, (folders, video, animals) in cases.items():
                spec = {
                    "kind": "throughput",
                    "models": folders,
                    "video": video,
                    "animals": animals,
                    "frames": args.frames,
                }
                r = run_worker(spec, args)
                m = r["median"]
                t.add_row(
                    label,
                    f"{1 / m['net_seconds_per_frame']:.2f}",
                    f"{1 / m['seconds_per_frame']:.2f}",
                    f"{m['ratio']:.2f}",
                    f"{m['forward_share']:.2f}",
                    f"{m['outside_ms_per_frame']:.1f}",
                    f"{m['instances_per_frame']:.2f}",
                )
                results.append({"section": "throughput", "run": rep, "case": label, **r})
            console.print(t)
        if "memory" in sections:
            t = Table(
                title=f"memory vs video length, {head} (run {rep})",
                caption="each row: a fresh process running `posekit predict` on the first N "
                "frames; peak RSS = the process's VmHWM (includes ~700 MiB of torch).",
            )
            for c in ("model", "frames", "e2e fps", "peak RSS MiB"):
                t.add_column(c, justify="left" if c == "model" else "right")
            for label, (folders, video, animals) in cases.items():
                if label.startswith("top-down") and animals != max(args.animals):
                    continue
                for n in args.memory_frames:
                    spec = {
                        "kind": "memory",
                        "models": folders,
                        "video": video,
                        "animals": animals,
                        "frames": n,
                    }
                    r = run_worker(spec, args)
                    t.add_row(
                        label,
                        str(n),
                        f"{1 / r['seconds_per_frame']:.2f}",
                        f"{r['peak_rss_mb']:.0f}",
                    )
                    results.append({"section": "memory", "run": rep, "case": label, **r})
            console.print(t)
        td = [(k, v) for k, v in cases.items() if k.startswith("top-down")]
        if "scaling" in sections and len(td) > 1:
            spec = {
                "kind": "scaling",
                "frames": args.frames,
                "cases": [{"models": f, "video": v, "animals": a} for _, (f, v, a) in td],
            }
            r = run_worker(spec, args)
            results.append({"section": "scaling", "run": rep, **r})
            t = Table(
                title=f"top-down cost vs animals, {head} (run {rep})",
                caption=f"medians of {args.rounds} interleaved rounds of {args.frames} frames; "
                "linear scaling = a constant increment per animal.",
            )
            for c in ("animals", "e2e ms/frame", "net ms/frame", "e2e - net", "e2e +/animal"):
                t.add_column(c, justify="right")
            t.add_column("net +/animal", justify="right")
            prev = None
            for k in sorted(r, key=int):
                e, n = r[k]["e2e"] * 1e3, r[k]["net"] * 1e3
                inc = ninc = ""
                if prev is not None:
                    dk = int(k) - prev[0]
                    inc, ninc = f"{(e - prev[1]) / dk:+.1f}", f"{(n - prev[2]) / dk:+.1f}"
                t.add_row(k, f"{e:.1f}", f"{n:.1f}", f"{e - n:.1f}", inc, ninc)
                prev = (int(k), e, n)
            console.print(t)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
