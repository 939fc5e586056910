"""`posekit predict MODEL_DIR [MODEL_DIR] SOURCE [-o OUT.slp] ...`.

Turns the arguments into a predictor run and writes the predictions atomically
(`posekit.io.atomic`), so an interrupted run never leaves a truncated ``.slp`` behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from posekit.cli.track import add_tracking_arguments, tracking_options, wants_tracking
from posekit.errors import PosekitError
from posekit.inference.runtime import PRECISIONS, RUNTIMES
from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="predict poses on a video or labels file")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="MODEL_DIR [MODEL_DIR] SOURCE: one model folder (SLEAP or posekit), or two for "
        "top-down (centroid and centered instance), then the video or labels file (.slp) "
        "to predict on",
    )
    p.add_argument(
        "-o",
        "--output",
        help="predictions file, .slp (default: <SOURCE>.predictions.slp beside the source)",
    )
    p.add_argument(
        "--frames",
        default=None,
        help="frames to predict, e.g. 0-999 (inclusive) or 0-9,20 (default: all)",
    )
    p.add_argument(
        "--batch-size", type=int, default=4, help="frames per batch (default: %(default)s)"
    )
    p.add_argument(
        "--peak-threshold",
        type=float,
        default=DEFAULT_PEAK_THRESHOLD,
        help="confidence-map peaks below this are not kept as points (default: %(default)s)",
    )
    p.add_argument(
        "--max-instances",
        type=int,
        default=None,
        help="keep at most this many instances per frame, best first (default: all found)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (a CUDA GPU, else Apple mps, else the CPU), cpu, cuda, cuda:N or mps "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="bf16: CPUs with AVX512-BF16/AMX and GPUs; fp16: GPUs; int8: CPUs (see README) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--runtime",
        default="torch",
        choices=RUNTIMES,
        help="torch: eager PyTorch; compile: torch.compile, often faster after a 15-60 s "
        "compile, for long videos; onnx: onnxruntime (the export extra) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--sleap-compatible",
        action="store_true",
        help="reproduce SLEAP 1.4.1's predicted points exactly where posekit deliberately "
        "differs (top-down crop offsets: README, Parity with SLEAP) (default: posekit's "
        "conventions)",
    )
    add_tracking_arguments(p)
    return p


#: What `posekit predict` writes (`posekit.data.labels.save_labels`).
OUTPUT_SUFFIXES = (".slp",)

#: Said when Ctrl-C stops the command (`posekit.cli.main`).
INTERRUPTED = "nothing was written (predictions are saved only once every frame is done)"


def default_output_path(source: str | os.PathLike) -> Path:
    """SLEAP's naming: ``<source>.predictions.slp`` (``x.slp`` -> ``x.predictions.slp``)."""
    source = Path(source)
    name = source.name
    for suffix in (".pkg.slp", ".slp"):
        if name.endswith(suffix):
            return source.with_name(name[: -len(suffix)] + ".predictions.slp")
    return source.with_name(name + ".predictions.slp")


def run(args: argparse.Namespace) -> int:
    """Check the inputs, predict, write the .slp, print frames and speed."""
    from posekit.data.labels import save_labels
    from posekit.inference.checks import check_prediction_options
    from posekit.inference.predictors import load_predictor
    from posekit.inference.predictors.pipeline import source_items
    from posekit.inference.runtime import check_runtime_options
    from posekit.io.outputs import check_output_path
    from posekit.model.device import resolve_device

    paths = list(args.paths)
    if len(paths) < 2:
        raise PosekitError(
            "predict needs at least one model folder and a source: "
            "posekit predict MODEL_DIR [MODEL_DIR] SOURCE"
        )
    *model_dirs, source = paths
    check_prediction_options(
        peak_threshold=args.peak_threshold,
        batch_size=args.batch_size,
        max_instances=args.max_instances,
    )
    check_runtime_options(args.runtime, args.precision, resolve_device(args.device))
    if not Path(source).exists():
        raise PosekitError(f"source not found: {source} (the last argument is the video or .slp)")
    for d in model_dirs:
        if not Path(d).exists():
            raise PosekitError(f"model folder not found: {d}")
    output = Path(args.output) if args.output else default_output_path(source)
    # Everything that can fail cheaply fails before the models load and the first frame.
    check_output_path(output, OUTPUT_SUFFIXES, inputs=paths, what="predictions")
    items, _, labels_source, _ = source_items(source, args.frames)
    source = labels_source if labels_source is not None else items[0][0]

    predictor = load_predictor(
        model_dirs,
        peak_threshold=args.peak_threshold,
        max_instances=args.max_instances,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        runtime=args.runtime,
        sleap_compatible=args.sleap_compatible,
    )
    labels = predictor.predict(source, frames=args.frames)
    options = tracking_options(args)
    if wants_tracking(options):
        from posekit.tracking import track

        labels = track(labels, **options)
    save_labels(labels, output)
    stats = predictor.stats
    n_inst = sum(len(lf.instances) for lf in labels.labeled_frames)
    msg = (
        f"Predicted {stats.get('frames', 0)} frames ({n_inst} instances) in "
        f"{stats.get('seconds', 0.0):.1f} s ({stats.get('fps', 0.0):.1f} frames/s)"
    )
    if stats.get("skipped"):
        msg += f"; skipped {stats['skipped']} undecodable frame(s)"
    print(msg)
    if not n_inst:
        print(
            "posekit: warning: no instance was found in any frame; check that the model was "
            "trained on videos like this one, or lower --peak-threshold",
            file=sys.stderr,
        )
    print(f"Wrote {output}")
    return 0
