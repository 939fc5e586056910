"""`posekit evaluate GROUND_TRUTH PREDICTIONS [--json]`."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="compare predictions with ground truth")
    p.add_argument(
        "ground_truth", help="labels file with the true poses (and masks: also scored) (.slp)"
    )
    p.add_argument("predictions", help="predictions of the same video and frames (.slp)")
    p.add_argument("--json", action="store_true", help="print every metric as JSON, not the report")
    return p


def run(args: argparse.Namespace) -> int:
    """Print the report (or JSON); `evaluate` refuses files that share no frame."""
    import json

    from posekit.data.labels import read_labels_file
    from posekit.data.masks import labels_have_masks
    from posekit.evaluation import evaluate, jsonable, print_report
    from posekit.mask_evaluation import evaluate_masks, print_mask_report

    gt = read_labels_file(args.ground_truth, open_videos=False)
    pr = read_labels_file(args.predictions, open_videos=False)
    # Masks are scored when both sides have them; poses unless the predictions are masks
    # alone (a mask model's output keeps the project's user instances beside it).
    masks = labels_have_masks(gt) and any(lf.masks for lf in pr.labeled_frames)
    poses = not masks or any(lf.predicted_instances for lf in pr.labeled_frames)
    metrics = evaluate(gt, pr) if poses else {}
    if masks:
        metrics["masks"] = evaluate_masks(gt, pr)
    if args.json:
        print(json.dumps(jsonable(metrics), indent=2))
        return 0
    if poses:
        print_report(metrics)
    if masks:
        print_mask_report(metrics["masks"])
    return 0
