"""Masks made from poses: how good a mask model gets on the flies clip in a fixed budget.

The goal (issue 27): train on the block split's training frames for 5 CPU minutes and
reach mask AP >= 0.5 and median IoU >= 0.75 on its test frames.

- data: `shared/data/flies/clip.slp` (1024 x 1024, 2 flies, 13 nodes); every labelled
  fly gets a mask made from its pose (`posekit.data.masks.masks_from_poses`: convex hull
  of its visible points grown by ``--dilation`` px). The split is `time_to_accuracy`'s
  (blocks of 50 frames; every 5th frame of every third block is test, every 4th frame of
  the others trains, 10% of those validate).
- model (``--model-type``): posekit's default config for ``bottomup_segmentation`` (one
  mask per fly; sleap-nn's head settings) or ``semantic_segmentation``, at
  ``--input-scaling`` (0.5: the 1024 px frames are seen at 512 px), trained by
  `posekit.training.train` with ``max_time`` = the budget (``--auto``: planned for it as
  ``posekit train --auto`` plans); ``--override KEY=VALUE`` (repeatable) changes the
  config (overrides win over ``--auto``).
- scoring: the best model predicts the test frames (at most 2 masks per frame) and
  `posekit.mask_evaluation.evaluate_masks` scores them against the masks made from the
  test poses: COCO mask AP, median IoU per labelled fly (0 when missed), boundary IoU.
- output (``--out``): the table, ``results.json`` and the run folder.

Masks from poses cover the hull of a fly's points: legs and wings spread the hull over
background, so the model learns that shape, not the fly's pixels (README "Segmentation
masks").

Run (the lead, on an idle machine): ``python benchmarks/masks.py --minutes 5``; a quick
check that it works: ``python benchmarks/masks.py --minutes 0.2 --max-train-frames 24
--max-test-frames 4 --out /tmp/masks-smoke``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the OpenMP runtime

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_accuracy import (  # noqa: E402
    DEFAULT_SLP,
    set_threads,
    split_labels_by_frame,
    training_splits,
)

GOAL_AP, GOAL_IOU = 0.5, 0.75


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slp", default=str(DEFAULT_SLP), help="labels (default: the flies clip)")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget (default: 5)")
    p.add_argument(
        "--model-type",
        default="bottomup_segmentation",
        choices=["bottomup_segmentation", "semantic_segmentation"],
        help="segmentation model type (default: %(default)s)",
    )
    p.add_argument("--dilation", type=float, default=4.0, help="hull growth px (default: 4)")
    p.add_argument("--input-scaling", type=float, default=0.5, help="(default: 0.5)")
    p.add_argument("--override", action="append", default=[], help="config KEY=VALUE")
    p.add_argument(
        "--auto",
        action="store_true",
        help="plan the run for the budget as `posekit train --auto` does (default: the config)",
    )
    p.add_argument("--max-train-frames", type=int, default=None, help="(default: all)")
    p.add_argument("--max-test-frames", type=int, default=None, help="(default: all)")
    p.add_argument("--threads", type=int, default=None, help="(default: the machine's cores)")
    p.add_argument("--device", default="cpu", help="(default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--out", default="/tmp/posekit-masks", help="(default: %(default)s)")
    args = p.parse_args(argv)
    slp = Path(args.slp)
    if not slp.exists():
        p.error(f"labels not found: {slp} (the flies clip lives in shared/data/flies/)")

    import sleap_io as sio

    from posekit.data.masks import masks_from_poses
    from posekit.inference.predictors import load_predictor
    from posekit.mask_evaluation import evaluate_masks
    from posekit.training.model_type import default_config
    from posekit.training.run import train

    _, threads = set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    labels = sio.load_slp(str(slp))
    made = masks_from_poses(labels, dilation=args.dilation)
    train_sio, test = split_labels_by_frame(labels)
    if args.max_train_frames:
        train_sio.labeled_frames = train_sio.labeled_frames[: args.max_train_frames]
    if args.max_test_frames:
        test.labeled_frames = test.labeled_frames[: args.max_test_frames]
    print(f"{made} masks made from poses")
    train_pl, val_pl = training_splits(train_sio, args.seed)

    config = default_config(args.model_type)
    overrides = [f"data.preprocessing.input_scaling={args.input_scaling}", *args.override]
    budget = args.minutes * 60.0
    t0 = time.perf_counter()
    run = train(
        config,
        labels=train_pl,
        val_labels=val_pl,
        run_name=args.model_type,
        runs_folder=out / "runs",
        device=args.device,
        overrides=overrides,
        max_time=budget,
        auto=args.auto,
        seed=args.seed,
        progress=False,
    )
    train_s = time.perf_counter() - t0
    best = run / "best_model"
    model_dir = best if best.exists() else run / "latest_model"
    predictor = load_predictor(str(model_dir), device=args.device, max_instances=2, progress=False)
    t0 = time.perf_counter()
    pred = predictor.predict(test)
    predict_s = time.perf_counter() - t0
    metrics = evaluate_masks(test, pred)

    ap, iou = metrics["mask_voc.mAP"], metrics["mask_iou.median"]
    lines = [
        f"{args.model_type}, {args.minutes:g} min budget ({train_s:.0f} s with set-up), "
        f"{len(train_pl)} train / {len(val_pl)} val / {metrics['n_frames']} test frames",
        f"mask AP {ap:.3f} (goal >= {GOAL_AP}), AP50 {metrics['mask_voc.AP'][0]:.3f}, "
        f"median IoU {iou:.3f} (goal >= {GOAL_IOU}), boundary IoU "
        f"{metrics['boundary_iou.mean']:.3f}, foreground IoU {metrics['foreground_iou.mean']:.3f}",
        f"predicted {metrics['n_pred_masks']} masks for {metrics['n_gt_masks']} flies in "
        f"{predict_s:.1f} s ({metrics['n_frames'] / max(predict_s, 1e-9):.1f} frames/s)",
        "goal " + ("met" if ap >= GOAL_AP and iou >= GOAL_IOU else "not met"),
    ]
    print("\n".join(lines))
    results = {
        "args": vars(args),
        "run": str(run),
        "train_s": train_s,
        "predict_s": predict_s,
        "threads": threads,
        "load": os.getloadavg(),
        "metrics": metrics,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
