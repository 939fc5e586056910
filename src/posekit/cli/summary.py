"""`posekit summary CONFIG`: layers, parameters, strides and FLOPs of a config's network."""

from __future__ import annotations

import argparse

from posekit.cli.common import parse_shape


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("summary", help="layers, parameters, strides and FLOPs of a config")
    p.add_argument("config", help="config file (posekit YAML/JSON or SLEAP training_config.json)")
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W,C",
        help="frame shape to summarise for (default: the config's crop size for top-down "
        "models, else 256,256, rounded up to the maximum stride)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON, not a table")
    return p


def run(args: argparse.Namespace) -> int:
    from posekit.model.summary import print_summary, summary

    info = summary(args.config, input_shape=args.input_shape)
    if args.json:
        import json

        print(json.dumps(info, indent=2))
    else:
        print_summary(info)
    return 0
