"""End-of-training evaluation: how good is the model the user just trained?

`evaluate_run(run_dir, val_labels, test_labels=None)` predicts the validation split
(and the test labels, when given) with the run's `best_model/` (or the model folders
passed, e.g. a centroid + centered-instance pair), scores the predictions with
`posekit.evaluation.evaluate` (the schema of `posekit evaluate --json`) and writes into
the run folder, each file atomically:

    metrics.val.json       the evaluation of the validation split
    metrics.test.json      the same for the test labels (when given)
    viz/worst_val.png      the validation frames with the largest errors: labels (green
                           circles), predictions (red crosses), a line between them

It returns one line for the console, e.g. ``val: 23/23 animals, OKS mAP 0.81, median
2.1 px, p90 5.3 px``. Nothing here may end a run that trained: failures become the
summary line (``val: not evaluated (...)``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

WORST_FRAMES = 4


def _sio_labels(labels: Any) -> Any:
    """A `sleap_io.Labels` holding exactly the frames of `labels` (PoseLabels, sio, path)."""
    import sleap_io as sio

    from posekit.data.labels import PoseLabels

    if isinstance(labels, str | os.PathLike):
        return sio.load_slp(str(labels))
    if not isinstance(labels, PoseLabels):
        return labels
    src = labels.labels
    wanted = {(e.video_index, int(e.frame_idx)) for e in labels.entries}
    index = {id(v): i for i, v in enumerate(src.videos)}
    frames = [
        lf
        for lf in src.labeled_frames
        if (index.get(id(lf.video)), int(lf.frame_idx)) in wanted
        and (lf.user_instances or lf.masks)
    ]
    return sio.Labels(
        labeled_frames=frames,
        videos=list(src.videos),
        skeletons=list(src.skeletons),
        tracks=list(src.tracks),
    )


def _atomic_json(path: Path, data: dict) -> None:
    from posekit.evaluation import jsonable
    from posekit.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(jsonable(data), indent=2) + "\n")


def summary_line(name: str, metrics: dict[str, Any], found_only: bool = False) -> str:
    """``"val: 23/23 animals, OKS mAP 0.81, median 2.1 px, p90 5.3 px"``.

    `found_only`: the predictions are labelled instances matched to what the model found
    (a centroid model alone, SLEAP's ground-truth mode), so only the count means anything.
    """

    def num(key: str, fmt: str) -> str:
        v = metrics.get(key)
        return "n/a" if v is None or not math.isfinite(float(v)) else format(float(v), fmt)

    if "mask_voc.mAP" in metrics:
        return (
            f"{name}: {metrics.get('n_pred_masks', 0)} masks for {metrics.get('n_gt_masks', 0)} "
            f"labelled, mask AP {num('mask_voc.mAP', '.2f')}, median IoU "
            f"{num('mask_iou.median', '.2f')}, boundary IoU {num('boundary_iou.mean', '.2f')}"
        )
    if "reid.accuracy" in metrics:
        return (
            f"{name}: re-ID accuracy {num('reid.accuracy', '.3f')} over "
            f"{metrics.get('reid.n_instances', 0)} instances (nearest identity mean)"
        )
    if found_only:
        return (
            f"{name}: {metrics.get('n_matched', 0)}/{metrics.get('n_gt_instances', 0)} animals "
            f"found (centroid model; poses come from its centered-instance model)"
        )
    return (
        f"{name}: {metrics.get('n_matched', 0)}/{metrics.get('n_gt_instances', 0)} animals, "
        f"OKS mAP {num('oks_voc.mAP', '.2f')}, median {num('dist.p50', '.1f')} px, "
        f"p90 {num('dist.p90', '.1f')} px"
    )


def frame_errors(gt: Any, pred: Any) -> list[tuple[float, Any, Any]]:
    """(mean node error px, gt frame, predicted frame) per labelled frame, worst first.

    A frame whose labelled animal has no prediction, or no predicted node, counts as
    infinitely bad.
    """
    from posekit.data.labels import instance_points
    from posekit.evaluation import find_frame_pairs, match_instances

    names = list(gt.skeletons[0].node_names)
    paired = {id(g): p for g, p in find_frame_pairs(gt, pred)}
    out = []
    for lf in gt.labeled_frames:
        gts = [instance_points(i, names) for i in lf.user_instances]
        if not gts:
            continue
        lf_pr = paired.get(id(lf))
        prs = [instance_points(i, names) for i in lf_pr.instances] if lf_pr is not None else []
        scores = [float(getattr(i, "score", 1.0) or 1.0) for i in lf_pr.instances] if prs else []
        pairs, missed, _ = match_instances(gts, prs, scores)
        errs = [np.linalg.norm(gts[g] - prs[p], axis=-1) for g, p, _ in pairs]
        flat = np.concatenate(errs) if errs else np.array([np.nan])
        err = float(np.nanmean(flat)) if np.isfinite(flat).any() else math.inf
        out.append((math.inf if missed else err, lf, lf_pr))
    out.sort(key=lambda t: -t[0] if math.isfinite(t[0]) else -math.inf)
    return out


def plot_worst_frames(gt: Any, pred: Any, png: Path, k: int = WORST_FRAMES) -> Path | None:
    """A row of the `k` validation frames with the largest mean error."""
    from posekit.data.labels import instance_points
    from posekit.visualization import _figure, _show_image

    ranked = frame_errors(gt, pred)[:k]
    if not ranked:
        return None
    names = list(gt.skeletons[0].node_names)
    images = []
    for err, lf, lf_pr in ranked:
        img = np.asarray(lf.image)
        true = np.array([instance_points(i, names) for i in lf.user_instances])
        prd = (
            np.array([instance_points(i, names) for i in lf_pr.instances])
            if lf_pr is not None and lf_pr.instances
            else np.zeros((0, len(names), 2))
        )
        images.append((img, true, prd, err, lf.frame_idx))
    h = max(im[0].shape[0] for im in images)
    w = max(im[0].shape[1] for im in images)
    scale = min(1.0, 360.0 / h)
    fig = _figure(int(w * scale * len(images)), int(h * scale))
    for i, (img, true, prd, err, idx) in enumerate(images):
        ax = fig.add_axes([i / len(images), 0, 1 / len(images), 1])
        _show_image(ax, img)
        for t in true:
            vis = ~np.isnan(t).any(-1)
            ax.plot(t[vis, 0], t[vis, 1], "o", color="lime", ms=5, mfc="none", mew=1.2)
        for p in prd:
            vis = ~np.isnan(p).any(-1)
            ax.plot(p[vis, 0], p[vis, 1], "x", color="red", ms=6, mew=1.5)
            for t in true:
                for a, b in zip(t, p):
                    if not (np.isnan(a).any() or np.isnan(b).any()):
                        ax.plot([a[0], b[0]], [a[1], b[1]], "-", color="yellow", lw=0.8)
        label = "missed" if not math.isfinite(err) else f"mean error {err:.1f} px"
        ax.text(
            2,
            2,
            f"frame {idx}: {label}",
            color="white",
            fontsize=8,
            va="top",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 2},
        )
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.stem}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, png)
    return png


def evaluate_split(
    models: list[Any], labels: Any, device: str = "cpu", batch_size: int = 4
) -> tuple[dict[str, Any], Any, Any]:
    """(metrics, ground truth, predictions) of `models` on `labels`.

    ``metrics["found_only"]`` is True when the predictions are labelled instances matched
    to what a centroid model alone found (see `summary_line`).
    """
    from posekit.evaluation import evaluate
    from posekit.inference.predictors import load_predictor
    from posekit.model import registry

    gt = _sio_labels(labels)
    predictor = load_predictor(models, device=device, batch_size=batch_size, progress=False)
    if hasattr(predictor, "reid_metrics"):  # an embedding model finds no animals
        return predictor.reid_metrics(gt), gt, gt
    pred = predictor.predict(gt)
    loaded = [m for m in predictor._models() if m is not None]  # a pair may lack one
    if any(registry.model_type(m.model_type).masks for m in loaded):
        from posekit.mask_evaluation import evaluate_masks

        return evaluate_masks(gt, pred), gt, pred
    metrics = evaluate(gt, pred)
    # a top-down predictor without its crop model returns the labelled instances it found
    metrics["found_only"] = getattr(predictor, "confmap_model", True) is None
    return metrics, gt, pred


def evaluate_run(
    run_dir: str | os.PathLike,
    val_labels: Any,
    test_labels: Any = None,
    models: list[Any] | None = None,
    device: str = "cpu",
    worst_png: bool = True,
) -> str:
    """Evaluate a finished run; writes metrics.val.json (and .test) and viz/worst_val.png.

    Args:
        run_dir: the run folder (`train()`'s return value).
        val_labels: the validation split (`PoseLabels`, `sleap_io.Labels` or a path).
        test_labels: optional held-out labels (path or labels), written as
            ``metrics.test.json``.
        models: model folders (or loaded models) that predict together, e.g. a centroid
            and a centered-instance folder; default ``run_dir/best_model`` (else
            ``latest_model``). A centered-instance model alone is evaluated on the
            labelled centroids.
        device: where to predict.

    Returns the summary line(s), one per split, joined by "; ".
    """
    run_dir = Path(run_dir)
    if models is None:
        best = run_dir / "best_model"
        models = [best if best.exists() else run_dir / "latest_model"]
    lines = []
    for name, labels in (("val", val_labels), ("test", test_labels)):
        if labels is None:
            continue
        try:
            metrics, gt, pred = evaluate_split(list(models), labels, device=device)
            found_only = bool(metrics.pop("found_only", False))
            _atomic_json(run_dir / f"metrics.{name}.json", metrics)
            lines.append(summary_line(name, metrics, found_only=found_only))
        except Exception as err:  # noqa: BLE001 - evaluation must not fail a trained run
            lines.append(f"{name}: not evaluated ({type(err).__name__}: {err})")
            continue
        pictured = "mask_voc.mAP" not in metrics and "reid.accuracy" not in metrics
        if worst_png and name == "val" and pictured:
            try:
                plot_worst_frames(gt, pred, run_dir / "viz" / "worst_val.png")
            except Exception as err:  # noqa: BLE001
                lines.append(f"(no worst-frames picture: {type(err).__name__}: {err})")
    return "; ".join(lines)


__all__ = ["evaluate_run", "evaluate_split", "frame_errors", "plot_worst_frames", "summary_line"]
