"""The `posekit` command: parses arguments, calls the library, prints.

Each subcommand imports what it needs only when it runs, so `posekit --help` is fast.
Library functions raise `PosekitError` for user mistakes; those are printed as one line
with no traceback.
"""

from __future__ import annotations

import argparse
import sys

from posekit.errors import PosekitError


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected H,W,C integers, got {text!r}") from err


def _cmd_summary(args: argparse.Namespace) -> int:
    from posekit.model.summary import print_summary, summary

    info = summary(args.config, input_shape=args.input_shape)
    if args.json:
        import json

        print(json.dumps(info, indent=2))
    else:
        print_summary(info)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from posekit.model.folder import convert

    out = convert(args.sleap_model_dir, args.out_dir)
    print(f"Wrote posekit model folder {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from posekit.cli.train import run_train

    return run_train(args)


def _cmd_predict(args: argparse.Namespace) -> int:
    from posekit.cli.predict import run_predict

    return run_predict(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from posekit.cli.evaluate import run_evaluate

    return run_evaluate(args)


def _cmd_render(args: argparse.Namespace) -> int:
    from posekit.cli.render import run_render

    return run_render(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from posekit.cli.export import run_export

    return run_export(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from posekit.cli.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posekit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="layers, parameters, strides and FLOPs of a config")
    p.add_argument("config", help="config file (posekit YAML/JSON or SLEAP training_config.json)")
    p.add_argument("--input-shape", type=_parse_shape, default=None, help="H,W,C")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("convert", help="convert a trained SLEAP model folder to posekit")
    p.add_argument("sleap_model_dir")
    p.add_argument("out_dir")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("train", help="train a model from a config and labels")
    p.add_argument("config", nargs="?", default=None)
    p.add_argument("overrides", nargs="*", help="key.path=value config overrides")
    p.add_argument("--labels")
    p.add_argument("--val-labels")
    p.add_argument("--run-name")
    p.add_argument("--runs-folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--devices", type=int, default=None)
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default=None)
    p.add_argument("--resume", default=None, help="run folder to resume")
    p.add_argument("--auto", action="store_true", help="recommended config for these labels")
    p.add_argument(
        "--max-time",
        default=None,
        help="wall-clock training budget: seconds, or DD:HH:MM:SS; with --auto the "
        "recommended settings are planned for it",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=["32-true", "bf16-mixed", "16-mixed"],
        help="Lightning precision (default 32-true; --auto picks bf16-mixed on CPUs and "
        "GPUs with native bfloat16)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="predict poses on a video or labels file")
    p.add_argument("paths", nargs="+", help="MODEL_DIR [MODEL_DIR] SOURCE")
    p.add_argument("-o", "--output")
    p.add_argument("--frames", default=None, help="e.g. 0-999")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--peak-threshold", type=float, default=0.2)
    p.add_argument("--max-instances", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16", "int8"],
        help="bf16: CPUs with AVX512-BF16/AMX and GPUs; fp16: GPUs; int8: CPUs (see README)",
    )
    p.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "compile", "onnx"],
        help="torch (default); compile: torch.compile, often faster after a 15-60 s "
        "compile, for long videos; onnx: onnxruntime (the export extra)",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("evaluate", help="compare predictions with ground truth")
    p.add_argument("ground_truth")
    p.add_argument("predictions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("render", help="draw predicted skeletons on frames")
    p.add_argument("predictions")
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--frames", default=None)
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("export", help="export a model to ONNX or TorchScript")
    p.add_argument("model_dir")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--with-peaks", action="store_true", help="include preprocessing + peaks")
    p.add_argument("--static", action="store_true", help="fixed input size (no dynamic axes)")
    p.add_argument("--input-shape", type=_parse_shape, default=None, help="H,W[,C]")
    p.add_argument("--max-peaks", type=int, default=32)
    p.add_argument("--peak-threshold", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("demo", help="synthetic data -> train -> predict -> evaluate -> picture")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PosekitError as err:
        print(f"posekit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
