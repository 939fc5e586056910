"""`posekit evaluate GROUND_TRUTH PREDICTIONS [--json]`."""

from __future__ import annotations

import argparse
import json

from posekit.evaluation import _jsonable, evaluate, print_report


def run_evaluate(args: argparse.Namespace) -> int:
    """`posekit evaluate GT.slp PRED.slp [--json]`."""
    metrics = evaluate(args.ground_truth, args.predictions)
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(metrics), indent=2))
    else:
        print_report(metrics)
    return 0
