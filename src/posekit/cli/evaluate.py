"""`posekit evaluate GROUND_TRUTH PREDICTIONS [--json]`."""

from __future__ import annotations

import argparse
import os

from posekit.errors import PosekitError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="compare predictions with ground truth")
    p.add_argument("ground_truth", help="labels file with the true poses (.slp)")
    p.add_argument("predictions", help="predictions of the same video and frames (.slp)")
    p.add_argument("--json", action="store_true", help="print every metric as JSON, not the report")
    return p


def run(args: argparse.Namespace) -> int:
    """Check both files exist and share frames, then print the report (or JSON)."""
    import json

    from posekit.evaluation import _jsonable, evaluate, print_report

    for path in (args.ground_truth, args.predictions):
        if not os.path.exists(path):
            raise PosekitError(f"labels file not found: {path}")
    metrics = evaluate(args.ground_truth, args.predictions)
    if metrics["n_frames"] == 0:
        raise PosekitError(
            "no labeled frame of the ground truth has predictions: check that both files refer "
            "to the same video and frame indices"
        )
    if args.json:
        print(json.dumps(_jsonable(metrics), indent=2))
    else:
        print_report(metrics)
    return 0
