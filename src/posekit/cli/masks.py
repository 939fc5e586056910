"""`posekit masks LABELS -o OUT`: segmentation masks made from the poses of a project."""

from __future__ import annotations

import argparse

from posekit.data.masks import DEFAULT_DILATION


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "masks",
        help="give every labelled animal without a mask one made from its pose",
        description="Masks from poses: the convex hull of each user instance's visible "
        "points, grown by --dilation pixels, linked to the instance. Instances that have a "
        "mask keep it. Train a mask model on the result with `posekit train --labels OUT "
        "--masks`.",
    )
    p.add_argument("labels", help="labels file (.slp or .pkg.slp) with user instances")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="labels file to write (.slp; .pkg.slp embeds the labelled frames)",
    )
    p.add_argument(
        "--dilation",
        type=float,
        default=DEFAULT_DILATION,
        metavar="PX",
        help="pixels added around each hull (default: %(default)s)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from posekit.data.labels import load_labels, save_labels
    from posekit.data.masks import masks_from_poses
    from posekit.io.outputs import check_output_path

    out = check_output_path(args.output, (".slp",), inputs=[args.labels], what="labels")
    labels = load_labels(args.labels).labels
    added = masks_from_poses(labels, dilation=args.dilation)
    save_labels(labels, out, embed=out.name.endswith(".pkg.slp"))
    total = sum(len(lf.masks) for lf in labels.labeled_frames)
    print(f"posekit: {added} masks made from poses ({total} in all) -> {out}")
    return 0
