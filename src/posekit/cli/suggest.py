"""`posekit suggest MODEL_DIR [MODEL_DIR] SOURCE... -o NEW.slp --n N [--explain]`.

The frames to label next, ranked by the model's doubt (`posekit.tracking.suggest`),
written as SLEAP suggestions into a new project that keeps the user's labels.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "suggest", help="suggest the frames to label next: where the model is least sure"
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="MODEL_DIR [MODEL_DIR] SOURCE...: the model folder(s) as for predict, then "
        "videos, folders, globs and at most one SLEAP project (.slp; its labels are kept and "
        "its labelled frames skipped)",
    )
    p.add_argument("-o", "--output", required=True, help="the new project (.slp); never an input")
    p.add_argument("--n", type=int, default=20, help="frames to suggest (default: %(default)s)")
    p.add_argument(
        "--min-separation",
        type=int,
        default=10,
        metavar="FRAMES",
        help="fewest frames between two suggestions of one video (default: %(default)s)",
    )
    p.add_argument(
        "--frames",
        default=None,
        help="frames to rank in every video, e.g. 0-999 or 0-9,20 (default: all; each is "
        "predicted twice, once rotated)",
    )
    p.add_argument(
        "--rotation",
        type=float,
        default=10.0,
        metavar="DEGREES",
        help="rotation of the second prediction; 0 skips it (default: %(default)s)",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="print each frame's reasons and write them to <OUTPUT>.suggestions.csv",
    )
    p.add_argument(
        "--batch-size", type=int, default=4, help="frames per batch (default: %(default)s)"
    )
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    from posekit.inference.sources import split_models_and_sources
    from posekit.tracking.suggest import explain_path, suggest

    models, sources = split_models_and_sources(args.paths)
    picks = suggest(
        models,
        sources,
        args.output,
        n=args.n,
        min_separation=args.min_separation,
        frames=args.frames,
        rotation=args.rotation,
        explain=args.explain,
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.explain:
        print(f"{'rank':>4}  {'frame':>6}  {'doubt':>5}  video / reason")
        for k, d in enumerate(picks, 1):
            name = str(d.video.filename).rsplit("/", 1)[-1]
            print(f"{k:>4}  {d.frame_idx:>6}  {d.score:5.2f}  {name}: {d.reason}")
    print(f"Suggested {len(picks)} frames")
    print(f"Wrote {args.output}")
    if args.explain:
        print(f"Wrote {explain_path(args.output)}")
    return 0
