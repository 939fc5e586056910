"""`posekit predict MODEL_DIR [MODEL_DIR] SOURCE... [-o OUT] ...`.

SOURCEs are videos, folders of videos, globs and SLEAP projects
(`posekit.inference.sources`); the run itself is `posekit.inference.workflow`: one output
per video (or project) beside it by default, or one merged ``-o`` file in the format its
suffix names (`posekit.data.formats`), written atomically from resumable chunks
(``--resume``), so an interrupted run never leaves a truncated file behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from posekit.cli.filter import add_trajectory_arguments, trajectory_filter
from posekit.cli.track import add_tracking_arguments, tracking_options, wants_tracking
from posekit.inference.runtime import PRECISIONS, RUNTIMES
from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="predict poses on a video or labels file")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="MODEL_DIR [MODEL_DIR] SOURCE...: one model folder (SLEAP or posekit), or two "
        "for top-down (centroid and centered instance), then one or more sources: a video, "
        "a folder of videos, a glob ('videos/*.mp4') or a SLEAP project (.slp: all its "
        "videos; see the project options)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="one file for all predictions; its suffix picks the format: .slp, "
        ".analysis.h5 (SLEAP analysis HDF5; one file per video when there are several), "
        ".csv (SLEAP analysis CSV, likewise) or .nwb (default: <VIDEO>.predictions.slp beside "
        "each video, <PROJECT>.predictions.slp beside each project)",
    )
    p.add_argument(
        "--format",
        default="slp",
        choices=("slp", "analysis.h5", "csv", "nwb"),
        help="format of the default outputs when -o is not given (<VIDEO>.predictions.<FORMAT>) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--frames",
        default=None,
        help="frames to predict in every video, e.g. 0-999 (inclusive) or 0-9,20; on a project "
        "also within the frames the project options select (default: all)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="frames per batch (default: the largest of 4, 2 or 1 that fits --max-memory "
        "for the frame size; an explicit batch is kept, with a warning when it may not fit)",
    )
    p.add_argument(
        "--max-memory",
        default=None,
        metavar="SIZE",
        help="memory budget that sizes the batch, e.g. 4G, 512M or 60%% (of the available "
        "memory) (default: 80%% of the free GPU memory on CUDA, 25%% of the available "
        "memory on CPU and Apple mps)",
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
        "differs (top-down crop offsets; peaks also looked for on the stride padding: README, "
        "Parity with SLEAP) (default: posekit's conventions)",
    )
    p.add_argument(
        "--tta",
        default="off",
        metavar="SPEC",
        help="test-time augmentation: confidence maps averaged over copies of each frame "
        "turned by +-degrees and/or mirrored (left/right parts swapped): off, on (rot:10), "
        "rot:DEG[,DEG], flip, rot:10+flip; each copy costs one more forward pass; measured "
        "gains are small and mixed (README, Prediction) (default: %(default)s)",
    )
    add_project_arguments(p)
    add_filter_arguments(p)
    add_resume_arguments(p)
    add_tracking_arguments(p)
    add_trajectory_arguments(p)
    return p


def add_project_arguments(p: argparse.ArgumentParser) -> None:
    """SLEAP's (sleap-track) and sleap-nn's frame selection on a project source."""
    g = p.add_argument_group("SLEAP project sources (.slp)")
    g.add_argument(
        "--video-index",
        "--video.index",
        dest="video_index",
        type=int,
        action="append",
        default=None,
        help="predict only this video of the project (0-based; repeat for several; "
        "sleap-track's --video.index) (default: every video)",
    )
    g.add_argument(
        "--only-labeled-frames",
        "--only_labeled_frames",
        action="store_true",
        help="predict only frames with user-labeled instances",
    )
    g.add_argument(
        "--only-suggested-frames",
        "--only_suggested_frames",
        action="store_true",
        help="predict only the project's suggested frames (with --only-labeled-frames: both)",
    )
    g.add_argument(
        "--exclude-user-labeled",
        "--exclude_user_labeled",
        action="store_true",
        help="skip frames that already have user-labeled instances",
    )


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """Instance filters (`posekit.inference.filters`), each off by default."""
    g = p.add_argument_group("instance filters (sleap-nn's --filter_* spellings accepted)")
    g.add_argument(
        "--min-instance-score",
        "--filter_min_instance_score",
        dest="min_instance_score",
        type=float,
        default=None,
        help="drop instances scoring below this (sleap-nn --filter_min_instance_score; "
        "SLEAP GUI: delete predictions with low score) (default: keep all)",
    )
    g.add_argument(
        "--min-visible-nodes",
        "--filter_min_visible_nodes",
        dest="min_visible_nodes",
        type=int,
        default=None,
        help="drop instances with fewer visible nodes (sleap-nn --filter_min_visible_nodes) "
        "(default: keep all)",
    )
    g.add_argument(
        "--filter-overlapping",
        "--filter_overlapping",
        dest="filter_overlapping",
        nargs="?",
        const="iou",
        default=None,
        choices=("iou", "oks"),
        help="drop duplicates: an instance more similar than --overlap-threshold to a better "
        "one, by bounding-box IoU (the default when given alone) or OKS (sleap-nn "
        "--filter_overlapping/--filter_overlapping_method; SLEAP "
        "--tracking.pre_cull_iou_threshold) (default: off)",
    )
    g.add_argument(
        "--overlap-threshold",
        "--filter_overlapping_threshold",
        dest="overlap_threshold",
        type=float,
        default=0.8,
        help="similarity above which --filter-overlapping drops an instance (default: %(default)s)",
    )


def add_resume_arguments(p: argparse.ArgumentParser) -> None:
    from posekit.inference.workflow import DEFAULT_CHUNK_SIZE

    g = p.add_argument_group("long runs")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (crash, Ctrl-C) from its last chunk; the same "
        "command line otherwise; the result equals an uninterrupted run",
    )
    g.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="predict only the K-th of N disjoint shares of the videos (and projects), one "
        "output each, so that N jobs (a cluster job array) cover a folder; read from "
        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a SLURM array job; 1/1: all "
        "(default: all, or the SLURM array task's share)",
    )
    g.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="frames per resumable chunk (rounded up to a multiple of --batch-size) "
        "(default: %(default)s)",
    )


#: Said when Ctrl-C stops the command (`posekit.cli.main`).
INTERRUPTED = "the chunks done so far are kept; run the same command with --resume to continue"


def default_output_path(source: str | os.PathLike) -> Path:
    """SLEAP's naming: ``<source>.predictions.slp`` (``x.slp`` -> ``x.predictions.slp``)."""
    from posekit.inference.workflow import default_output_path as library_default

    return library_default(source)


def _instance_filter(args):
    from posekit.inference.filters import InstanceFilter

    return InstanceFilter(
        min_instance_score=args.min_instance_score,
        min_visible_nodes=args.min_visible_nodes,
        overlap_method=args.filter_overlapping,
        overlap_threshold=args.overlap_threshold,
    )


def _fingerprint(args, model_dirs) -> dict:
    """What must match for --resume: the models and every option that changes results."""
    return {
        "models": [str(Path(d).resolve()) for d in model_dirs],
        "peak_threshold": args.peak_threshold,
        "max_instances": args.max_instances,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "runtime": args.runtime,
    }


def run(args: argparse.Namespace) -> int:
    """Check the inputs, expand the sources, predict each output, print frames and speed.

    Everything that can fail cheaply (options, sources, frame selections, output paths)
    fails before the models load and the first frame is predicted.
    """
    from posekit.data.formats import OUTPUT_FORMATS
    from posekit.inference.checks import check_prediction_options
    from posekit.inference.chunks import chunk_folder
    from posekit.inference.memory import parse_memory
    from posekit.inference.predictors import load_predictor
    from posekit.inference.runtime import check_runtime_options
    from posekit.inference.sources import (
        expand_sources,
        labeled_frames_only,
        split_models_and_sources,
        unreadable_sources_error,
    )
    from posekit.inference.workflow import output_groups, run_prediction
    from posekit.io.outputs import check_output_path
    from posekit.model.device import resolve_device

    check_prediction_options(
        peak_threshold=args.peak_threshold,
        batch_size=args.batch_size,
        max_instances=args.max_instances,
    )
    check_runtime_options(args.runtime, args.precision, resolve_device(args.device))
    if args.max_memory is not None:
        parse_memory(args.max_memory, resolve_device(args.device))
    model_dirs, sources = split_models_and_sources(args.paths)
    instance_filter = _instance_filter(args)
    unreadable: list = []  # damaged sources: the others are predicted, then an error
    shard = _shard(args)
    jobs = expand_sources(
        sources,
        frames=args.frames,
        video_index=args.video_index,
        only_labeled_frames=args.only_labeled_frames,
        only_suggested_frames=args.only_suggested_frames,
        exclude_user_labeled=args.exclude_user_labeled,
        unreadable=unreadable,
        shard=shard,
    )
    if not jobs:  # only a shard can be empty: more jobs than files
        print(f"Shard {shard[0]}/{shard[1]}: no video of the sources falls in this share")
        return 0
    groups = output_groups(jobs, args.output, "." + args.format)
    # the files read, not the folders named: a folder's earlier outputs are no inputs
    inputs = [*model_dirs, *{str(j.source) for j in jobs}, *{str(j.name) for j in jobs}]
    for output, _ in groups:
        check_output_path(output, tuple(OUTPUT_FORMATS), inputs=inputs, what="predictions")

    from posekit.inference.test_time_augmentation import TestTimeAugmentation

    tta = TestTimeAugmentation.parse(args.tta)  # a bad spelling fails before any model loads
    predictor = load_predictor(
        model_dirs,
        peak_threshold=args.peak_threshold,
        max_instances=args.max_instances,
        batch_size=args.batch_size,
        max_memory=args.max_memory,
        device=args.device,
        precision=args.precision,
        runtime=args.runtime,
        sleap_compatible=args.sleap_compatible,
        tta=tta,
    )
    if predictor.needs_labels:
        jobs = labeled_frames_only(jobs)
        groups = output_groups(jobs, args.output, "." + args.format)
    options = tracking_options(args)
    trajectories = trajectory_filter(args)
    postprocess = None
    if wants_tracking(options) or trajectories.active:
        from posekit.tracking import track
        from posekit.tracking.trajectories import filter_labels

        def postprocess(labels):
            if wants_tracking(options):
                labels = track(labels, **options)
            if trajectories.active:  # after tracking: filters follow one animal's track
                labels = filter_labels(labels, trajectories)
            return labels

    if shard is not None:
        print(f"Shard {shard[0]}/{shard[1]}: {len(groups)} output(s)")
    for output, group in groups:
        if args.resume and Path(output).exists() and not chunk_folder(output).exists():
            print(f"Kept {output}: finished by an earlier run (--resume)")
            continue
        try:
            result = run_prediction(
                predictor,
                group,
                output,
                instance_filter=instance_filter if instance_filter.active else None,
                chunk_size=args.chunk_size,
                resume=args.resume,
                fingerprint=_fingerprint(args, model_dirs),
                postprocess=postprocess,
            )
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"the chunks done so far are kept; run the same command with --resume to "
                f"continue {output}"
            ) from None
        found = f"{result.instances} instances" + (
            f", {result.masks} masks" if result.masks else ""
        )
        msg = (
            f"Predicted {result.frames} frames ({found}) in "
            f"{result.seconds:.1f} s ({result.fps:.1f} frames/s)"
        )
        if result.resumed_frames:
            msg += f"; {result.resumed_frames} frames resumed from the interrupted run"
        if result.skipped:
            msg += f"; skipped {result.skipped} undecodable frame(s)"
        print(msg)
        if not result.instances and not result.masks:
            print(
                "posekit: warning: no instance was found in any frame; check that the model "
                "was trained on videos like this one, or lower --peak-threshold",
                file=sys.stderr,
            )
        for f in result.files:
            print(f"Wrote {f}")
    print(_memory_line(predictor))
    if unreadable:
        raise unreadable_sources_error(unreadable, others_done=True)
    return 0


def _shard(args) -> tuple[int, int] | None:
    """--shard K/N, else a SLURM array task's share; refused with one merged -o file."""
    from posekit.errors import PosekitError
    from posekit.inference.sources import parse_shard, shard_from_environment

    shard = parse_shard(args.shard) if args.shard is not None else shard_from_environment()
    if shard is not None and shard[1] > 1 and args.output is not None:
        given = f"--shard {args.shard}" if args.shard else "a SLURM array task's share"
        raise PosekitError(
            f"{given} writes one output per video (each job its own); leave out -o "
            "(--format picks the format), or pass --shard 1/1 to predict everything into -o"
        )
    return None if shard == (1, 1) else shard


def _memory_line(predictor) -> str:
    """The batch chosen per frame size and the peak memory, for choosing --max-memory."""
    from posekit.inference.memory import format_bytes, peak_memory

    peak, what = peak_memory(predictor.device)
    plans = [plan.describe() for plan in predictor.batch_plans.values()]
    batches = "; ".join(plans) if plans else f"batch {predictor.batch_size}"
    return f"Memory: {batches}; peak {what} {format_bytes(peak)}"
