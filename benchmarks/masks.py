"""Masks made from poses: how good a mask model gets on the flies clip in a fixed budget.

The goal (issue 27): train on the block split's training frames for 5 CPU minutes and
reach mask AP >= 0.5 and median IoU >= 0.75 on its test frames.

- data: `shared/data/flies/clip.slp` (1024 x 1024, 2 flies, 13 nodes); every labelled
  fly gets a mask made from its pose (`posekit.data.masks.masks_from_poses`: convex hull
  of its visible points grown by ``--dilation`` px). The split is `time_to_accuracy`'s
  (blocks of 50 frames; every 5th frame of every third block is test, every 4th frame of
  the others trains, 10% of those validate).
- model (``--model-type``): posekit's default configs (what ``posekit train --masks``
  trains with no config) for ``topdown_segmentation`` (a centroid model, then the mask
  of the fly in a crop around each centroid; the budget split as for a pose pair),
  ``bottomup_segmentation`` (one mask per fly from foreground, centres and offsets;
  sleap-nn's head settings) or ``semantic_segmentation``, trained by
  `posekit.training.train` with ``max_time`` = the budget (``--auto``: planned for it as
  ``posekit train --auto`` plans); ``--input-scaling`` sets the whole-frame model's scale
  (not the crop model's); ``--override KEY=VALUE`` (repeatable) changes every config
  (overrides win over ``--auto``).
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
        default="topdown_segmentation",
        choices=["topdown_segmentation", "bottomup_segmentation", "semantic_segmentation"],
        help="segmentation model type (default: %(default)s)",
    )
    p.add_argument("--dilation", type=float, default=4.0, help="hull growth px (default: 4)")
    p.add_argument(
        "--input-scaling",
        type=float,
        default=None,
        help="frame scale of the whole-frame model (default: the config's, or --auto's)",
    )
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
    from posekit.model import registry
    from posekit.training.model_type import budget_share, default_configs
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

    configs = default_configs(args.model_type)
    pair = len(configs) > 1
    budget = args.minutes * 60.0
    t0 = time.perf_counter()
    model_dirs = []
    for config in configs:
        head = config.model.heads.which_oneof_attrib_name()
        crops = registry.model_type(head).crops
        overrides = list(args.override)
        if args.input_scaling is not None and not crops:
            overrides.insert(0, f"data.preprocessing.input_scaling={args.input_scaling}")
        run = train(
            config,
            labels=train_pl,
            val_labels=val_pl,
            run_name=head,
            runs_folder=out / "runs" / args.model_type,
            device=args.device,
            overrides=overrides,
            max_time=budget * budget_share(head, pair),
            auto=args.auto,
            seed=args.seed,
            progress=False,
        )
        best = run / "best_model"
        model_dirs.append(str(best if best.exists() else run / "latest_model"))
    train_s = time.perf_counter() - t0
    models = model_dirs if pair else model_dirs[0]
    predictor = load_predictor(models, device=args.device, max_instances=2, progress=False)
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
        "models": model_dirs,
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
