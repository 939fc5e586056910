"""`posekit export MODEL_DIR --format onnx|torchscript ...`: a model as one file plus its
JSON contract, for other runtimes; `--format sleap-nn`: a sleap-nn 0.3.5 model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from posekit.cli.common import LOOSE_TOKENS, parse_shape
from posekit.export import DEFAULT_MAX_PEAKS, DEFAULT_OPSET
from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD

#: The file written into the model folder when no `-o` is given, per format.
DEFAULT_FILE_NAMES = {
    "onnx": "model.onnx",
    "torchscript": "model.torchscript.pt",
    "sleap-nn": "sleap_nn",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a model to ONNX, TorchScript or a sleap-nn model folder"
    )
    p.add_argument("model_dir", help="model folder (posekit, SLEAP or sleap-nn) to export")
    p.add_argument("out", nargs="*", default=[], help="file or folder to write (the same as -o)")
    p.set_defaults(**{LOOSE_TOKENS: "out"})  # OUT may also come after the options
    p.add_argument(
        "--format",
        default="onnx",
        choices=list(DEFAULT_FILE_NAMES),
        help="file format to write (default: %(default)s)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="file to write (default: model.onnx, model.torchscript.pt or, for sleap-nn, the "
        "folder sleap_nn in MODEL_DIR)",
    )
    p.add_argument(
        "--with-peaks",
        action="store_true",
        help="include preprocessing and peak finding: the graph takes uint8 frames and "
        "returns points (default: raw head outputs)",
    )
    p.add_argument(
        "--static",
        action="store_true",
        help="fixed input size and batch (default: dynamic batch, height and width)",
    )
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W",
        help="size of the example input, the fixed size with --static (default: the "
        "model's input size, the crop size for top-down models)",
    )
    p.add_argument(
        "--max-peaks",
        type=int,
        default=DEFAULT_MAX_PEAKS,
        help="peak slots per frame for centroid and multi-instance models with "
        "--with-peaks (default: %(default)s)",
    )
    p.add_argument(
        "--peak-threshold",
        type=float,
        default=DEFAULT_PEAK_THRESHOLD,
        help="with --with-peaks, peaks below this are dropped (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="batch of the example input, the fixed batch with --static (default: %(default)s)",
    )
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset, >= 17 (default: %(default)s)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Export, then print the file, its contract and the inputs and outputs it declares."""
    from posekit.errors import PosekitError
    from posekit.export.contract import load_contract, sidecar_path
    from posekit.export.onnx import export_onnx
    from posekit.export.torchscript import export_torchscript
    from posekit.model.folder import load_model

    if len(args.out) + bool(args.output) > 1:
        raise PosekitError("give one output, either as OUT or with -o")
    args.out = args.out[0] if args.out else None
    folder = Path(args.model_dir)
    model = load_model(folder)
    base = folder if folder.is_dir() else folder.parent
    out = Path(args.out or args.output or base / DEFAULT_FILE_NAMES[args.format])
    if args.format == "sleap-nn":
        from posekit.model.sleap_nn_folder import save_sleap_nn_folder

        path = save_sleap_nn_folder(model, out)
        print(
            f"wrote {path} ({model.model_type}, sleap-nn model folder: best.ckpt, "
            "training_config.yaml)"
        )
        return 0
    kwargs = dict(
        input_shape=args.input_shape,
        dynamic=not args.static,
        include_postprocessing=args.with_peaks,
        include_preprocessing=args.with_peaks,
        batch_size=args.batch_size,
        max_peaks=args.max_peaks,
        peak_threshold=args.peak_threshold,
    )
    if args.format == "onnx":
        path = export_onnx(model, out, opset=args.opset, **kwargs)
    else:
        path = export_torchscript(model, out, **kwargs)
    contract = load_contract(path)
    print(f"wrote {path} ({model.model_type}, {args.format})")
    print(f"contract: {sidecar_path(path)}")
    for spec in contract["inputs"]:
        print(f"  input  {spec['name']}: {spec['dtype']} {spec['shape']}")
    for spec in contract["outputs"]:
        print(f"  output {spec['name']}: {spec['dtype']} {spec['shape']}")
    return 0
