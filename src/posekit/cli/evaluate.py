"""`posekit evaluate GROUND_TRUTH PREDICTIONS [--json]`."""

from __future__ import annotations

import argparse
import json
import os

from posekit.errors import PosekitError
from posekit.evaluation import _jsonable, evaluate, print_report


def run_evaluate(args: argparse.Namespace) -> int:
    """`posekit evaluate GT.slp PRED.slp [--json]`."""
    for path in (args.ground_truth, args.predictions):
        if not os.path.exists(path):
            raise PosekitError(f"labels file not found: {path}")
    metrics = evaluate(args.ground_truth, args.predictions)
    if metrics["n_frames"] == 0:
        raise PosekitError(
            "no labeled frame of the ground truth has predictions: check that both files refer "
            "to the same video and frame indices"
        )
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(metrics), indent=2))
    else:
        print_report(metrics)
    return 0
