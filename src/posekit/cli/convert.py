"""`posekit convert SLEAP_MODEL_DIR OUT_DIR`: a trained SLEAP model as a posekit folder."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("convert", help="convert a trained SLEAP model folder to posekit")
    p.add_argument(
        "sleap_model_dir",
        help="trained SLEAP model folder (training_config.json + best_model.h5) or sleap-nn "
        "model folder (training_config.yaml + best.ckpt)",
    )
    p.add_argument("out_dir", help="posekit model folder to write")
    return p


def run(args: argparse.Namespace) -> int:
    from posekit.model.folder import convert

    out = convert(args.sleap_model_dir, args.out_dir)
    print(f"Wrote posekit model folder {out}")
    return 0
