"""`posekit render PREDICTIONS [-o OUT.png|OUT.mp4] [--frames ...]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from posekit.visualization import render


def run_render(args: argparse.Namespace) -> int:
    """`posekit render PREDICTIONS.slp [-o OUT.png|OUT.mp4] [--frames 0-99]`."""
    src = Path(args.predictions)
    output = args.output
    if output is None:
        base = src.name[: -len(".slp")] if src.name.endswith(".slp") else src.name
        output = src.with_name(base + ".png")
    out = render(src, output, frames=args.frames)
    print(f"Wrote {out}")
    return 0
