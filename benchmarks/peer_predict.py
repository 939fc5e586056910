"""posekit vs sleap-nn end to end on sleap-nn's own model folders, in ONE process (issue 23).

`compare_peers.py` and `hierarchical_ab.py` time the networks alone. A lab runs the
predictor: video decoding, preprocessing, the network, peak finding and the labels out.
This script loads each sleap-nn model folder with both tools, sleap-nn's
`Predictor.from_model_paths` (its defaults, ``batch_size`` as given) and
`posekit.load_predictor` (`posekit predict`'s defaults), and in every round times each
predicting the same frames of the same video into `sleap_io.Labels` (model loading and
one warm-up call are outside the clock), alternating the two so both see the same
minute of a shared machine. Printed per folder: frames/s median [min-max] of the rounds,
the ratio of medians, and the largest distance between the two tools' points on those
frames (a speed figure for different answers would mean nothing).

``--processes separate`` (default) runs each tool in its own worker process, as a lab
runs `sleap-nn track` and `posekit predict`: each with its own process settings (posekit's
predictor makes malloc keep freed memory, `posekit.optimize.allocator`; sleap-nn leaves
glibc's default). ``--processes one`` runs both in this process, where that setting, once
posekit has made it, serves sleap-nn too: the difference between the two is what the
allocator setting buys each tool.

It runs in sleap-nn's interpreter, importing posekit from ``src/`` (posekit needs only
what sleap-nn's environment already has). Without ``--video`` a grayscale or RGB video
of synthetic animals is rendered at the models' input size.

Usage (from the repository root):
    PYTHONPATH=src /path/to/sleap-nn-venv/bin/python benchmarks/peer_predict.py \
        --models SLEAP_NN_FOLDER [...] [--video V.mp4] [--frames 48] [--rounds 3] \
        [--batch-size 4] [--threads N] [--processes separate|one] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path


def _points(labels, frames: list[int]) -> dict[int, list]:
    import numpy as np

    out = {}
    for lf in labels.labeled_frames:
        if lf.frame_idx in frames:
            out[int(lf.frame_idx)] = [np.asarray(i.numpy(), float) for i in lf.instances]
    return out


def _max_distance(a: dict, b: dict) -> float:
    """Largest distance between matched points (instances paired in order of their
    first visible point's x; unmatched counts) over the frames both predicted."""
    import numpy as np

    worst = 0.0
    for f in set(a) | set(b):
        pa, pb = a.get(f, []), b.get(f, [])
        if len(pa) != len(pb):
            return float("inf")
        for x, y in zip(sorted(pa, key=lambda p: np.nanmean(p[:, 0])),
                        sorted(pb, key=lambda p: np.nanmean(p[:, 0]))):  # fmt: skip
            d = np.linalg.norm(x - y, axis=1)
            both = ~np.isnan(d)
            if (np.isnan(x[:, 0]) != np.isnan(y[:, 0])).any():
                return float("inf")
            if both.any():
                worst = max(worst, float(np.nanmax(d)))
    return worst


def _render_video(folder: Path, side: int, channels: int, frames: int) -> Path:
    from posekit.data.synthetic import save_synthetic_dataset

    labels = save_synthetic_dataset(
        folder, n_frames=frames, n_animals=1, image_size=side, seed=0,
        video_format="mp4", channels=channels,
    )  # fmt: skip
    return labels.with_suffix(".mp4")


def _input_size(model_dir: Path) -> tuple[int, int]:
    """(side, channels) from the folder's sleap-nn config (max size, else 256)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(model_dir / "training_config.yaml")
    pre = cfg.data_config.preprocessing
    side = int(pre.get("max_width") or pre.get("max_height") or 256)
    backbone = cfg.model_config.backbone_config
    kind = next(k for k in backbone if backbone[k] is not None)
    return side, int(backbone[kind].get("in_channels", 1))


def cell(v: list[float]) -> str:
    return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"


def _make_run(tool: str, model: str, video_path: str, frames: list[int], batch_size: int):
    """A no-argument call that predicts `frames` with `tool` and returns the labels."""
    import sleap_io as sio

    video = sio.load_video(video_path)
    if tool == "sleap-nn":
        from sleap_nn.inference.predictor import Predictor as SleapNNPredictor

        snn = SleapNNPredictor.from_model_paths([model], device="cpu", batch_size=batch_size)
        return partial(snn.predict, video, frames=frames)
    import posekit

    pk = posekit.load_predictor(model, device="cpu", batch_size=batch_size, progress=False)
    return partial(pk.predict, video, frames=frames)


def _timed(run, frames: list[int]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    labels = run()
    return len(frames) / (time.perf_counter() - t0), _points(labels, frames)


def _worker(conn, tool, model, video_path, frames, batch_size, threads) -> None:
    """One tool in its own process: build, warm up, then time a prediction per request."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    run = _make_run(tool, model, video_path, frames, batch_size)
    run()  # warm-up: first-call allocations, thread pools
    conn.send("ready")
    while conn.recv() is not None:
        conn.send(_timed(run, frames))
    conn.close()


class _Tools:
    """Both tools, each either in a worker process or in this one, behind one `time` call."""

    def __init__(self, separate: bool, model, video_path, frames, batch_size, threads):
        self.frames, self.workers, self.local = frames, {}, {}
        args = (str(model), str(video_path), frames, batch_size, threads)
        import multiprocessing

        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter per tool
        for tool in ("sleap-nn", "posekit"):
            if separate:
                parent, child = spawn.Pipe()
                proc = spawn.Process(target=_worker, args=(child, tool, *args), daemon=True)
                proc.start()
                if parent.recv() != "ready":
                    raise RuntimeError(f"{tool} worker failed to start")
                self.workers[tool] = (proc, parent)
            else:
                self.local[tool] = _make_run(tool, *args[:4])
                self.local[tool]()  # warm-up

    def time(self, tool: str) -> tuple[float, dict]:
        if tool in self.workers:
            conn = self.workers[tool][1]
            conn.send("run")
            return conn.recv()
        return _timed(self.local[tool], self.frames)

    def close(self) -> None:
        for proc, conn in self.workers.values():
            conn.send(None)
            proc.join(timeout=60)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="sleap-nn model folders")
    p.add_argument("--video", default=None)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--processes",
        choices=("separate", "one"),
        default="separate",
        help="each tool in its own worker process (as users run them), or both in this one",
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import sleap_io as sio
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            model = Path(model)
            side, channels = _input_size(model)
            video_path = Path(args.video) if args.video else _render_video(
                Path(tmp) / model.name, side, channels, args.frames
            )  # fmt: skip
            frames = list(range(min(args.frames, len(sio.load_video(str(video_path))))))
            tools = _Tools(
                args.processes == "separate", model, video_path, frames, args.batch_size,
                args.threads,
            )  # fmt: skip
            fps: dict[str, list[float]] = {"sleap-nn": [], "posekit": []}
            answers = {}
            try:
                for _ in range(args.rounds):
                    for name in fps:
                        rate, answers[name] = tools.time(name)
                        fps[name].append(rate)
            finally:
                tools.close()
            med = {k: statistics.median(v) for k, v in fps.items()}
            row = {
                "model": model.name,
                "input": f"{side} px, {channels} ch",
                "frames": len(frames),
                "processes": args.processes,
                "sleap_nn_fps": fps["sleap-nn"],
                "posekit_fps": fps["posekit"],
                "ratio": med["posekit"] / med["sleap-nn"],
                "max_point_distance_px": _max_distance(answers["posekit"], answers["sleap-nn"]),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(f"threads {args.threads or torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.rounds} rounds, processes: {args.processes}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(
        "| sleap-nn folder | input | sleap-nn fps | posekit fps | posekit / sleap-nn | max point distance px |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {cell(r['sleap_nn_fps'])} | "
              f"{cell(r['posekit_fps'])} | {r['ratio']:.2f}x | {r['max_point_distance_px']:.3g} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
