"""`posekit render PREDICTIONS [-o OUT.png|OUT.mp4] [--frames ...]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("render", help="draw predicted skeletons on frames")
    p.add_argument("predictions", help="labels or predictions file (.slp) to draw")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help=".png (one frame, or a grid of frames) or a video such as .mp4 "
        "(default: <PREDICTIONS>.png beside the file)",
    )
    p.add_argument(
        "--frames",
        default=None,
        help="frames to draw, e.g. 0-99 (inclusive) or 0-9,20 (default: all labeled frames)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Draw the selected frames and print where the picture or video went."""
    from posekit.visualization import render

    src = Path(args.predictions)
    output = args.output
    if output is None:
        base = src.name[: -len(".slp")] if src.name.endswith(".slp") else src.name
        output = src.with_name(base + ".png")
    out = render(src, output, frames=args.frames)
    print(f"Wrote {out}")
    return 0
