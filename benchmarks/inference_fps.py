"""End-to-end prediction speed per model type, on real videos, side by side in one run.

For each trained SLEAP model in `shared/sleap_models` (imported on the fly) this runs
`posekit.load_predictor(...).predict(video)` over the first `--frames` frames of the video
the model was trained on: decoding, preprocessing, network, peaks, grouping and building
the labels, and prints frames/s next to the network-only frames/s of the same model on
the same input size (so the overhead outside the network is visible).

Usage:
    python benchmarks/inference_fps.py [--frames 100] [--batch-size 4] [--device cpu]
"""

from __future__ import annotations

import argparse
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


def network_fps(model, frame, batch_size: int, seconds: float = 2.0) -> float:
    """Frames/s of the network alone on a preprocessed batch of `frame`."""
    import numpy as np
    import torch

    x = model.preprocess(np.repeat(frame[None], batch_size, axis=0))
    with torch.inference_mode():
        model(x)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            n += batch_size
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import sleap_io as sio
    from rich.console import Console
    from rich.table import Table

    import posekit

    if not MODELS.exists():
        raise SystemExit(f"{MODELS} not found: this benchmark needs ../shared")
    table = Table(title=f"posekit predict, first {args.frames} frames, batch {args.batch_size}")
    for col in ("model type", "video", "frame size", "end-to-end fps", "network fps", "e2e / net"):
        table.add_column(col, justify="right" if "fps" in col or "/" in col else "left")
    for label, (names, video_rel) in CASES.items():
        video_path = DATA / video_rel
        predictor = posekit.load_predictor(
            [MODELS / n for n in names],
            batch_size=args.batch_size,
            device=args.device,
            progress=False,
        )
        video = sio.load_video(str(video_path))
        frames = list(range(min(args.frames, len(video))))
        start = time.perf_counter()
        predictor.predict(video, frames=frames)
        e2e = len(frames) / (time.perf_counter() - start)
        # Network-only: the full-frame model (first folder) on the same frames.
        model = posekit.load_model(MODELS / names[0], device=args.device)
        frame = video[0]
        net = network_fps(model, frame, args.batch_size)
        table.add_row(
            label,
            video_path.name,
            f"{frame.shape[1]}x{frame.shape[0]}",
            f"{e2e:.1f}",
            f"{net:.1f}",
            f"{e2e / net:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
