"""`posekit evaluate GROUND_TRUTH PREDICTIONS [--json]`."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="compare predictions with ground truth")
    p.add_argument("ground_truth", help="labels file with the true poses (.slp)")
    p.add_argument("predictions", help="predictions of the same video and frames (.slp)")
    p.add_argument("--json", action="store_true", help="print every metric as JSON, not the report")
    return p


def run(args: argparse.Namespace) -> int:
    """Print the report (or JSON); `evaluate` refuses files that share no frame."""
    import json

    from posekit.evaluation import evaluate, jsonable, print_report

    metrics = evaluate(args.ground_truth, args.predictions)
    if args.json:
        print(json.dumps(jsonable(metrics), indent=2))
    else:
        print_report(metrics)
    return 0
