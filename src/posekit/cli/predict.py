"""`posekit predict MODEL_DIR [MODEL_DIR ...] SOURCE [-o OUT.slp] ...`.

The arguments are parsed in `posekit.cli`; this module turns them into a predictor run
and writes the predictions atomically (to a temporary file beside the output, then
renamed), so an interrupted run never leaves a truncated ``.slp`` behind.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from posekit.errors import PosekitError


def default_output_path(source: str | os.PathLike) -> Path:
    """SLEAP's naming: ``<source>.predictions.slp`` (``x.slp`` -> ``x.predictions.slp``)."""
    source = Path(source)
    name = source.name
    for suffix in (".pkg.slp", ".slp"):
        if name.endswith(suffix):
            return source.with_name(name[: -len(suffix)] + ".predictions.slp")
    return source.with_name(name + ".predictions.slp")


def save_labels_atomic(labels, output: str | os.PathLike) -> Path:
    """Write ``labels`` to ``output`` (.slp) via a temporary sibling and a rename."""
    import sleap_io as sio

    output = Path(output)
    if output.suffix != ".slp":
        raise PosekitError(f"predictions are written as .slp; got output path {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".slp", dir=output.parent)
    os.close(fd)
    try:
        sio.save_slp(labels, tmp, verbose=False)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return output


def run_predict(args: argparse.Namespace) -> int:
    """Run `posekit predict` from parsed arguments; returns the exit code."""
    from posekit.inference.predictors import load_predictor
    from posekit.inference.runtime import check_runtime_options
    from posekit.model.device import resolve_device

    paths = list(args.paths)
    if len(paths) < 2:
        raise PosekitError(
            "predict needs at least one model folder and a source: "
            "posekit predict MODEL_DIR [MODEL_DIR] SOURCE"
        )
    *model_dirs, source = paths
    check_runtime_options(
        getattr(args, "runtime", "torch"),
        getattr(args, "precision", "fp32"),
        resolve_device(getattr(args, "device", "auto")),
    )
    if not Path(source).exists():
        raise PosekitError(f"source not found: {source} (the last argument is the video or .slp)")
    for d in model_dirs:
        if not Path(d).exists():
            raise PosekitError(f"model folder not found: {d}")
    output = Path(args.output) if getattr(args, "output", None) else default_output_path(source)

    predictor = load_predictor(
        model_dirs,
        peak_threshold=getattr(args, "peak_threshold", 0.2),
        max_instances=getattr(args, "max_instances", None),
        batch_size=getattr(args, "batch_size", 4),
        device=getattr(args, "device", "auto"),
        precision=getattr(args, "precision", "fp32"),
        runtime=getattr(args, "runtime", "torch"),
    )
    labels = predictor.predict(source, frames=getattr(args, "frames", None))
    save_labels_atomic(labels, output)
    stats = predictor.stats
    n_inst = sum(len(lf.instances) for lf in labels.labeled_frames)
    msg = (
        f"Predicted {stats.get('frames', 0)} frames ({n_inst} instances) in "
        f"{stats.get('seconds', 0.0):.1f} s ({stats.get('fps', 0.0):.1f} frames/s)"
    )
    if stats.get("skipped"):
        msg += f"; skipped {stats['skipped']} undecodable frame(s)"
    print(msg)
    print(f"Wrote {output}")
    return 0
