"""End-to-end prediction speed per model type, on real videos, side by side in one run.

For each trained SLEAP model in `shared/sleap_models` (imported on the fly) this runs
`posekit.load_predictor(...).predict(video)` over the first `--frames` frames of the video
the model was trained on: decoding, preprocessing, network, peaks, grouping and building
the labels, and prints frames/s next to the network-only frames/s of the same model on
the same input size (so the overhead outside the network is visible); for top-down the
network figure includes the centered-instance model on one crop per instance found.
The model runs on whole frames in both figures, so e2e / net near 1 means decoding,
preprocessing, peaks, grouping and building the labels cost little. `--variants` runs
each model with several runtimes and precisions side by side; each predictor first
predicts one batch untimed (BatchNorm folding, ONNX export, int8 calibration happen once,
at start-up). On a shared machine
run it twice: timings of concurrent runs vary by 2x.

Usage:
    python benchmarks/inference_fps.py [--frames 100] [--batch-size 4] [--device cpu]
        [--variants torch:fp32,torch:bf16,onnx:fp32,onnx:int8]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
MODELS = SHARED / "sleap_models"
DATA = SHARED / "data"

# label -> (model folders, video)
CASES = {
    "single instance": (["minimal_robot.UNet.single_instance"], "minimal/small_robot.mp4"),
    "top-down": (
        ["minimal_instance.UNet.centroid", "minimal_instance.UNet.centered_instance"],
        "minimal/centered_pair_low_quality.mp4",
    ),
    "bottom-up": (["minimal_instance.UNet.bottomup"], "minimal/centered_pair_low_quality.mp4"),
    "multi-class bottom-up": (["min_tracks_2node.UNet.bottomup_multiclass"], "flies/clip.mp4"),
}


def _seconds_per_call(fn, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def network_fps(predictor, frame, batch_size: int, crops_per_frame: float = 0.0, seconds=2.0):
    """Frames/s of the predictor's network(s) alone on a preprocessed batch of `frame`.

    The networks run as the predictor runs them (its `_forward`: runtime and precision).

    For top-down (two models) the centered-instance network also runs on
    ``crops_per_frame`` crops per frame (the instances the predictor found), so the
    figure is the whole network cost of a frame, not only the centroid model's.
    """
    import numpy as np
    import torch

    from posekit.inference.predictors import crop_centered

    models = [m for m in predictor._models() if m is not None]
    forward = predictor._forward
    batch = np.repeat(frame[None], batch_size, axis=0)
    with torch.inference_mode():
        x = models[0].preprocess(batch)
        per_frame = _seconds_per_call(lambda: forward(models[0], x), seconds) / batch_size
        n_crops = int(round(crops_per_frame * batch_size))
        if len(models) > 1 and n_crops > 0:
            m = models[1]
            size = m.crop_size
            if m.input_scale != 1.0:
                size = int(round(size / m.input_scale))
            h, w = frame.shape[:2]
            cen = torch.tensor([[w / 2, h / 2]] * n_crops, dtype=torch.float32)
            samples = torch.arange(n_crops) % batch_size
            crops = crop_centered(torch.from_numpy(batch), cen, samples, size)
            xc = m.preprocess(crops)
            per_frame += _seconds_per_call(lambda: forward(m, xc), seconds) / batch_size
    return 1.0 / per_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--variants",
        default="torch:fp32",
        help="comma list of runtime:precision, e.g. torch:fp32,torch:bf16,onnx:fp32",
    )
    args = parser.parse_args()
    variants = [tuple(v.split(":")) for v in args.variants.split(",") if v]
    if args.device == "cpu" and any(p == "bf16" for _, p in variants):
        from posekit.optimize import bf16_support

        support = bf16_support()
        if not support.runs:  # the predictor would run float32 under a bf16 label
            print(f"skipping bf16 variants: {support.reason}")
            variants = [v for v in variants if v[1] != "bf16"]

    import sleap_io as sio
    from rich.console import Console
    from rich.table import Table

    import posekit
    from posekit.data.video import num_frames

    if not MODELS.exists():
        raise SystemExit(f"{MODELS} not found: this benchmark needs ../shared")
    table = Table(title=f"posekit predict, first {args.frames} frames, batch {args.batch_size}")
    cols = ("model type", "video", "frame size", "runtime", "end-to-end fps", "network fps")
    for col in (*cols, "e2e / net"):
        table.add_column(col, justify="right" if "fps" in col or "/" in col else "left")
    for (label, (names, video_rel)), (runtime, precision) in itertools.product(
        CASES.items(), variants
    ):
        video_path = DATA / video_rel
        predictor = posekit.load_predictor(
            [MODELS / n for n in names],
            batch_size=args.batch_size,
            device=args.device,
            runtime=runtime,
            precision=precision,
            progress=False,
        )
        video = sio.load_video(str(video_path))
        frames = list(range(min(args.frames, num_frames(video))))
        # Warm-up on the first batch: one-time costs (BatchNorm folding, the ONNX export
        # and session, int8 calibration) are start-up, not throughput.
        predictor.predict(video, frames=frames[: args.batch_size])
        start = time.perf_counter()
        labels = predictor.predict(video, frames=frames)
        e2e = len(frames) / (time.perf_counter() - start)
        per_frame = sum(len(lf.instances) for lf in labels.labeled_frames) / len(frames)
        # Network-only: the same networks on the same frame size (top-down: plus one
        # crop per instance found).
        frame = video[0]
        net = network_fps(predictor, frame, args.batch_size, crops_per_frame=per_frame)
        table.add_row(
            label,
            video_path.name,
            f"{frame.shape[1]}x{frame.shape[0]}",
            f"{runtime} {precision}",
            f"{e2e:.1f}",
            f"{net:.1f}",
            f"{e2e / net:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
