"""Accuracy of predicted poses against ground truth, SLEAP's way plus COCO's precision.

Everything starts from matching: in each frame, predictions are taken best score first
and each is paired with the unmatched labeled instance of highest object keypoint
similarity (OKS), as SLEAP's `sleap.nn.evals` does. OKS follows Ronchi & Perona:

    OKS = mean over labeled nodes of exp(-d^2 / ((2 sigma)^2 * 2 * (area + eps)))

with ``area`` the bounding-box area of the labeled instance and ``sigma`` per node
(SLEAP's default 0.025 for every node; pass a list for per-node values). A node the
prediction misses scores 0; a node missing from the label is ignored.

Metrics (keys of the dict `evaluate` returns):

- ``oks_voc.*``: COCO-style average precision and recall at OKS thresholds
  0.50:0.05:0.95, precision sampled at 101 recall levels. Unlike SLEAP, predictions that
  match no labeled instance count as false positives (``count_unmatched_predictions``;
  set it False to get SLEAP's numbers, which ignore them).
- ``dist.*``: localization error (pixels) of matched nodes: mean and percentiles
  50/75/90/95/99.
- ``pck.*``: fraction of labeled nodes within 1..10 px (configurable). Only nodes that
  are labeled count; a labeled node the prediction misses is a failure.
- ``vis.*``: node visibility precision/recall over matched pairs.
- ``nodes``: per-node table (count, mean/median/p90 error, PCK, missed).
- ``identity.*``: for tracked predictions, the fraction of matched pairs whose predicted
  track is the labeled track (by name, or by the best one-to-one mapping of track names
  when the names differ).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from posekit.data.labels import instance_points, read_labels_file
from posekit.errors import PosekitError

DEFAULT_OKS_STDDEV = 0.025
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
PCK_THRESHOLDS = tuple(float(t) for t in np.linspace(1, 10, 10))


# --------------------------------------------------------------------------- OKS


def instance_area(points: np.ndarray) -> np.ndarray:
    """Bounding-box area of the visible points of (n, n_nodes, 2) instances -> (n,)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    with np.errstate(all="ignore"):
        span = np.nanmax(points, axis=-2) - np.nanmin(points, axis=-2)
    return np.nan_to_num(np.prod(span, axis=-1))


def compute_oks(points_gt, points_pr, scale=None, stddev=DEFAULT_OKS_STDDEV) -> np.ndarray:
    """OKS between every labeled and predicted instance.

    Args:
        points_gt: (n_gt, n_nodes, 2); NaN for unlabeled nodes.
        points_pr: (n_pr, n_nodes, 2); NaN for missed nodes.
        scale: area per labeled instance (scalar or (n_gt,)); default its bounding box.
        stddev: sigma, scalar or (n_nodes,).

    Returns:
        (n_gt, n_pr) similarities in [0, 1].
    """
    gt = np.asarray(points_gt, dtype=np.float64)
    pr = np.asarray(points_pr, dtype=np.float64)
    if gt.ndim != 3 or pr.ndim != 3 or gt.shape[1:] != pr.shape[1:]:
        raise ValueError(
            "points must be (n_instances, n_nodes, 2) with the same nodes; got "
            f"{gt.shape} and {pr.shape}"
        )
    n_gt, n_nodes, _ = gt.shape
    scale = instance_area(gt) if scale is None else np.broadcast_to(scale, (n_gt,))
    sigma = np.broadcast_to(np.asarray(stddev, dtype=np.float64), (n_nodes,))
    d2 = ((gt[:, None] - pr[None]) ** 2).sum(-1)  # (n_gt, n_pr, n_nodes)
    norm = (2 * sigma[None, None]) ** 2 * (2 * (np.asarray(scale)[:, None, None] + np.spacing(1)))
    missing_pr = np.isnan(pr).any(-1)  # (n_pr, n_nodes)
    d2 = np.where(missing_pr[None], np.inf, d2)
    ks = np.exp(-d2 / norm)
    missing_gt = np.isnan(gt).any(-1)  # (n_gt, n_nodes)
    ks = np.where(missing_gt[:, None], 0.0, ks)
    n_visible = (~missing_gt).sum(-1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ks.sum(-1) / n_visible


def match_instances(
    points_gt: list[np.ndarray] | np.ndarray,
    points_pr: list[np.ndarray] | np.ndarray,
    scores_pr,
    stddev=DEFAULT_OKS_STDDEV,
    scale=None,
    threshold: float = 0.0,
) -> tuple[list[tuple[int, int, float]], list[int], list[int]]:
    """Greedy OKS matching of one frame, highest-scoring prediction first.

    Returns:
        ``(pairs, unmatched_gt, unmatched_pr)`` with pairs ``(gt_index, pr_index, oks)``;
        a pair needs OKS above ``threshold``.
    """
    n_gt, n_pr = len(points_gt), len(points_pr)
    if n_gt == 0 or n_pr == 0:
        return [], list(range(n_gt)), list(range(n_pr))
    oks = compute_oks(np.stack(points_gt), np.stack(points_pr), scale=scale, stddev=stddev)
    order = np.argsort(-np.asarray(scores_pr, dtype=np.float64), kind="mergesort")
    available = list(range(n_gt))
    pairs, unmatched_pr = [], []
    for p in order:
        if not available:
            unmatched_pr.append(int(p))
            continue
        cand = oks[available, p]
        cand = np.where(np.isnan(cand) | (cand <= threshold), -np.inf, cand)
        best = int(np.argmax(cand))  # first among equals, as SLEAP's stable sort
        if not np.isfinite(cand[best]):
            unmatched_pr.append(int(p))
            continue
        g = available.pop(best)
        pairs.append((g, int(p), float(oks[g, p])))
    return pairs, available, sorted(unmatched_pr)


def voc_metrics(
    match_scores,
    detection_scores,
    n_gt: int,
    match_thresholds=OKS_THRESHOLDS,
    recall_thresholds=RECALL_THRESHOLDS,
) -> dict[str, Any]:
    """Generalised VOC/COCO average precision and recall.

    Args:
        match_scores: (n_det,) similarity of each detection with its match (0 for a
            detection that matched nothing).
        detection_scores: (n_det,) confidence used to rank detections.
        n_gt: number of labeled instances.
    """
    ms = np.asarray(match_scores, dtype=np.float64)
    ds = np.asarray(detection_scores, dtype=np.float64)
    order = np.argsort(-ds, kind="mergesort")
    ms = ms[order]
    precisions, recalls = [], []
    for t in match_thresholds:
        tp = np.cumsum(ms >= t)
        fp = np.cumsum(ms < t)
        rc = tp / n_gt if n_gt else np.full(tp.shape, np.nan)
        pr = tp / (tp + fp + np.spacing(1))
        recalls.append(float(rc[-1]) if len(rc) else (0.0 if n_gt else float("nan")))
        for i in range(len(pr) - 1, 0, -1):  # precision envelope (non-increasing)
            pr[i - 1] = max(pr[i - 1], pr[i])
        precision = np.zeros(len(recall_thresholds))
        if len(rc) and n_gt:
            idx = np.searchsorted(rc, recall_thresholds, side="left")
            ok = idx < len(pr)
            precision[ok] = pr[idx[ok]]
        precisions.append(precision)
    precisions = np.array(precisions)
    return {
        "match_thresholds": [float(t) for t in match_thresholds],
        "AP": precisions.mean(axis=1).tolist(),
        "AR": recalls,
        "mAP": float(precisions.mean()),
        "mAR": float(np.mean(recalls)) if n_gt else float("nan"),
    }


# --------------------------------------------------------------------------- frames


def _video_keys(video) -> set[str]:
    keys = set()
    for v in (video, getattr(video, "source_video", None)):
        if v is None:
            continue
        fn = getattr(v, "filename", None)
        if isinstance(fn, list):
            fn = fn[0] if fn else None
        if fn:
            keys.add(os.path.normpath(str(fn)))
            keys.add(os.path.basename(str(fn)))
    return keys


def _video_shape(video) -> tuple[int, ...] | None:
    """(frames, height, width, channels) of a video, opening it if it can be found."""
    try:
        shape = video.shape
        if shape is None:
            video.open()
            shape = video.shape
        return tuple(int(v) for v in shape) if shape is not None else None
    except Exception:  # missing or unreadable file: the shape is simply unknown
        return None


def _video_names(labels) -> str:
    names = sorted({os.path.basename(str(k)) for v in labels.videos for k in _video_keys(v)})
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "") if names else "no video"


def _same_video_by_content(video_gt, video_pr):
    """`video_pr` when two differently named videos are the same recording, else None.

    One video on each side with different names happens when a file was moved or renamed
    after prediction; pairing them blindly scores fly predictions against robot labels
    (mAP 0, no error). They are paired only when both open and agree in frame count and
    frame size.
    """
    a, b = _video_shape(video_gt), _video_shape(video_pr)
    if a is not None and a == b:
        return video_pr
    return None


def find_frame_pairs(labels_gt, labels_pr, require_instances: bool = True) -> list[tuple[Any, Any]]:
    """Pairs (labeled frame, predicted frame) on the same video and frame index.

    Videos are paired by identity, then by file path or name (also through an embedded
    video's source); one video on each side under different names is paired only when
    both open with the same frame count and size. Only labeled frames with user instances
    count (any labeled frame with `require_instances=False`), and only where predictions
    exist.
    """
    video_map = {}
    for vg in labels_gt.videos:
        match = next((vp for vp in labels_pr.videos if vp is vg), None)
        if match is None:
            keys = _video_keys(vg)
            match = next((vp for vp in labels_pr.videos if keys & _video_keys(vp)), None)
        if match is None and len(labels_gt.videos) == 1 and len(labels_pr.videos) == 1:
            match = _same_video_by_content(vg, labels_pr.videos[0])
        if match is not None:
            video_map[id(vg)] = match
    pr_index: dict[tuple[int, int], Any] = {}
    for lf in labels_pr.labeled_frames:
        key = (id(lf.video), int(lf.frame_idx))
        if key in pr_index:
            raise PosekitError(
                f"the predictions hold frame {lf.frame_idx} of {lf.video.filename} twice; "
                "merge them into one labeled frame first"
            )
        pr_index[key] = lf
    pairs = []
    for lf in labels_gt.labeled_frames:
        vp = video_map.get(id(lf.video))
        if vp is None or (require_instances and not list(lf.user_instances)):
            continue
        lf_pr = pr_index.get((id(vp), int(lf.frame_idx)))
        if lf_pr is not None:
            pairs.append((lf, lf_pr))
    return pairs


# --------------------------------------------------------------------------- evaluate


def evaluate(
    ground_truth,
    predictions,
    oks_stddev=DEFAULT_OKS_STDDEV,
    oks_scale=None,
    match_threshold: float = 0.0,
    pck_thresholds=PCK_THRESHOLDS,
    count_unmatched_predictions: bool = True,
) -> dict[str, Any]:
    """Compare predictions with labels; returns a JSON-ready dict (see module doc).

    Args:
        ground_truth, predictions: `sleap_io.Labels` or paths to ``.slp`` files.
        oks_stddev: per-node sigma for OKS (scalar or one value per ground-truth node).
        oks_scale: area used by OKS (default: each labeled instance's bounding box).
        match_threshold: minimum OKS for a prediction to match a labeled instance.
        pck_thresholds: distances (px) for PCK.
        count_unmatched_predictions: count unmatched predictions as false positives in
            the precision (COCO); False reproduces SLEAP's numbers.
    """
    if isinstance(ground_truth, str | os.PathLike):
        ground_truth = read_labels_file(ground_truth, open_videos=False)
    if isinstance(predictions, str | os.PathLike):
        predictions = read_labels_file(predictions, open_videos=False)
    if not ground_truth.skeletons:
        raise PosekitError("the ground-truth labels have no skeleton")
    names = list(ground_truth.skeletons[0].node_names)
    if predictions.skeletons and not set(names) & set(predictions.skeletons[0].node_names):
        raise PosekitError(
            f"the predictions' nodes {predictions.skeletons[0].node_names} share no names with "
            f"the ground truth's {names}; evaluate predictions of a model trained on this skeleton"
        )
    sigma = np.asarray(oks_stddev, dtype=np.float64)
    if sigma.ndim and sigma.shape != (len(names),):
        raise PosekitError(
            f"oks_stddev has {sigma.size} values but the skeleton has {len(names)} nodes ({names})"
        )

    frame_pairs = find_frame_pairs(ground_truth, predictions)
    if not frame_pairs:
        raise PosekitError(
            "no labeled frame of the ground truth has predictions: the ground truth holds "
            f"{_video_names(ground_truth)} and the predictions {_video_names(predictions)}. "
            "Evaluate predictions made on the same video and frames"
        )
    # Predicting a labels file keeps its user instances beside the predictions (as SLEAP
    # does); scoring those copies would report a perfect model. A file with predicted
    # instances is scored on them alone; one without (a second annotator's labels) on all.
    only_predicted = any(lf.predicted_instances for lf in predictions.labeled_frames)
    pairs = []  # (gt points, pr points, oks, pr score, gt track, pr track)
    n_gt = n_pr = n_fn = 0
    fp_scores: list[float] = []
    for lf_gt, lf_pr in frame_pairs:
        gts = list(lf_gt.user_instances)
        prs = list(lf_pr.predicted_instances if only_predicted else lf_pr.instances)
        pts_gt = [instance_points(i, names) for i in gts]
        pts_pr = [instance_points(i, names) for i in prs]
        scores = [float(getattr(i, "score", 1.0)) for i in prs]
        n_gt += len(gts)
        n_pr += len(prs)
        matched, unmatched_gt, unmatched_pr = match_instances(
            pts_gt, pts_pr, scores, stddev=sigma, scale=oks_scale, threshold=match_threshold
        )
        n_fn += len(unmatched_gt)
        fp_scores.extend(scores[p] for p in unmatched_pr)
        for g, p, o in matched:
            pairs.append(
                (pts_gt[g], pts_pr[p], o, scores[p], _track_name(gts[g]), _track_name(prs[p]))
            )

    metrics: dict[str, Any] = {
        "n_frames": len(frame_pairs),
        "n_gt_instances": n_gt,
        "n_pred_instances": n_pr,
        "n_matched": len(pairs),
        "n_false_negatives": n_fn,
        "n_unmatched_predictions": len(fp_scores),
        "node_names": names,
    }
    oks = np.array([p[2] for p in pairs])
    det = np.array([p[3] for p in pairs])
    if count_unmatched_predictions and fp_scores:
        oks_all = np.concatenate([oks, np.zeros(len(fp_scores))])
        det_all = np.concatenate([det, np.asarray(fp_scores)])
    else:
        oks_all, det_all = oks, det
    voc = voc_metrics(oks_all, det_all, n_gt)
    metrics.update({f"oks_voc.{k}": v for k, v in voc.items()})
    metrics["oks.mOKS"] = float(oks.mean()) if len(oks) else float("nan")

    gt_arr = np.array([p[0] for p in pairs]).reshape(-1, len(names), 2)
    pr_arr = np.array([p[1] for p in pairs]).reshape(-1, len(names), 2)
    dists = np.linalg.norm(pr_arr - gt_arr, axis=-1)  # (n_pairs, n_nodes), NaN if either missing
    metrics.update(_distance_metrics(dists))
    metrics.update(_pck_metrics(dists, gt_arr, pr_arr, pck_thresholds))
    metrics.update(_visibility_metrics(gt_arr, pr_arr))
    metrics["nodes"] = _node_table(names, dists, gt_arr, pr_arr, pck_thresholds)
    metrics.update(_identity_metrics([(p[4], p[5]) for p in pairs]))
    metrics["tracking"] = _tracking(ground_truth, predictions)
    return metrics


def _has_tracks(labels) -> bool:
    return any(inst.track is not None for lf in labels.labeled_frames for inst in lf.instances)


def _tracking(ground_truth, predictions) -> dict[str, Any] | None:
    """Identity switches, IDF1 and MOTA when both sides carry tracks (else None).

    Needs the `tracking` extra (motmetrics); without it the pose metrics still come and
    this says why the tracking ones do not.
    """
    if not (_has_tracks(ground_truth) and _has_tracks(predictions)):
        return None
    try:
        from posekit.tracking.metrics import tracking_metrics

        return tracking_metrics(ground_truth, predictions)
    except PosekitError as err:
        return {"unavailable": str(err)}


def _track_name(inst) -> str | None:
    track = getattr(inst, "track", None)
    return None if track is None else str(track.name)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return {k: float("nan") for k in ("avg", "p50", "p75", "p90", "p95", "p99")}
    out = {"avg": float(v.mean())}
    for q in (50, 75, 90, 95, 99):
        out[f"p{q}"] = float(np.percentile(v, q))
    return out


def _distance_metrics(dists: np.ndarray) -> dict[str, float]:
    return {f"dist.{k}": v for k, v in _percentiles(dists.ravel()).items()}


def _pck_metrics(dists, gt_arr, pr_arr, thresholds) -> dict[str, Any]:
    thresholds = np.asarray(thresholds, dtype=np.float64)
    labeled = ~np.isnan(gt_arr).any(-1)  # (n_pairs, n_nodes)
    d = np.where(np.isnan(dists), np.inf, dists)
    hits = d[..., None] < thresholds  # (n_pairs, n_nodes, n_thr)
    n_labeled = labeled.sum()
    if n_labeled:
        at = (hits & labeled[..., None]).sum(axis=(0, 1)) / n_labeled
        per_node_n = labeled.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            parts = ((hits & labeled[..., None]).sum(0) / per_node_n[:, None]).mean(-1)
        mpck = float(at.mean())
    else:
        at = np.full(len(thresholds), np.nan)
        parts = np.full(gt_arr.shape[1], np.nan)
        mpck = float("nan")
    return {
        "pck.thresholds": thresholds.tolist(),
        "pck.at": [float(x) for x in at],
        "pck.mPCK_parts": [float(x) for x in parts],
        "pck.mPCK": mpck,
    }


def _visibility_metrics(gt_arr, pr_arr) -> dict[str, Any]:
    miss_gt = np.isnan(gt_arr).any(-1)
    miss_pr = np.isnan(pr_arr).any(-1)
    tp = int((~miss_gt & ~miss_pr).sum())
    fp = int((miss_gt & ~miss_pr).sum())
    fn = int((~miss_gt & miss_pr).sum())
    tn = int((miss_gt & miss_pr).sum())
    return {
        "vis.tp": tp,
        "vis.fp": fp,
        "vis.fn": fn,
        "vis.tn": tn,
        "vis.precision": tp / (tp + fp) if tp + fp else float("nan"),
        "vis.recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


def _node_table(names, dists, gt_arr, pr_arr, thresholds) -> list[dict[str, Any]]:
    rows = []
    labeled = ~np.isnan(gt_arr).any(-1)
    missed = labeled & np.isnan(pr_arr).any(-1)
    thr = np.asarray(thresholds, dtype=np.float64)
    for j, name in enumerate(names):
        d = dists[:, j]
        stats = _percentiles(d)
        n = int(labeled[:, j].sum())
        if n:
            dd = np.where(np.isnan(d[labeled[:, j]]), np.inf, d[labeled[:, j]])
            pck = float((dd[:, None] < thr).mean())
        else:
            pck = float("nan")
        rows.append(
            {
                "node": name,
                "n": n,
                "mean": stats["avg"],
                "p50": stats["p50"],
                "p90": stats["p90"],
                "pck": pck,
                "missed": int(missed[:, j].sum()),
            }
        )
    return rows


def _identity_metrics(track_pairs: list[tuple[str | None, str | None]]) -> dict[str, Any]:
    both = [(g, p) for g, p in track_pairs if g is not None and p is not None]
    if not both:
        return {"identity.n": 0, "identity.accuracy": float("nan"), "identity.mapping": {}}
    gt_names = sorted({g for g, _ in both})
    pr_names = sorted({p for _, p in both})
    if set(pr_names) <= set(gt_names):
        mapping = {p: p for p in pr_names}
    else:
        # Names differ (e.g. "track_0" vs "female"): use the one-to-one mapping that
        # agrees with the most matched pairs.
        from scipy.optimize import linear_sum_assignment

        counts = np.zeros((len(pr_names), len(gt_names)))
        for g, p in both:
            counts[pr_names.index(p), gt_names.index(g)] += 1
        rows, cols = linear_sum_assignment(-counts)
        mapping = {pr_names[r]: gt_names[c] for r, c in zip(rows, cols)}
    correct = sum(mapping.get(p) == g for g, p in both)
    return {
        "identity.n": len(both),
        "identity.accuracy": correct / len(both),
        "identity.mapping": mapping,
    }


# --------------------------------------------------------------------------- CLI


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def print_report(metrics: dict[str, Any]) -> None:
    """Print the main metrics and the per-node table with rich."""
    from rich.console import Console
    from rich.table import Table

    def f(v, fmt="{:.3f}"):
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)

    console = Console()
    summary = Table(title="Pose evaluation", show_header=False)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    rows = [
        ("frames", str(metrics["n_frames"])),
        (
            "labeled / predicted instances",
            f"{metrics['n_gt_instances']} / {metrics['n_pred_instances']}",
        ),
        (
            "matched / missed / unmatched predictions",
            f"{metrics['n_matched']} / {metrics['n_false_negatives']} / {metrics['n_unmatched_predictions']}",
        ),
        ("OKS mAP (0.50:0.95)", f(metrics["oks_voc.mAP"])),
        ("OKS mAR (0.50:0.95)", f(metrics["oks_voc.mAR"])),
        ("mean OKS of matches", f(metrics["oks.mOKS"])),
        ("mPCK (1-10 px)", f(metrics["pck.mPCK"])),
        (
            "error mean / p50 / p90 / p95 / p99 (px)",
            " / ".join(
                f(metrics[f"dist.{k}"], "{:.2f}") for k in ("avg", "p50", "p90", "p95", "p99")
            ),
        ),
        (
            "visibility precision / recall",
            f"{f(metrics['vis.precision'])} / {f(metrics['vis.recall'])}",
        ),
    ]
    if metrics.get("identity.n"):
        rows.append(
            ("identity accuracy", f"{f(metrics['identity.accuracy'])} (n={metrics['identity.n']})")
        )
    tracking = metrics.get("tracking")
    if tracking and "unavailable" not in tracking:
        rows.append(
            (
                "tracking: identity switches / IDF1 / MOTA",
                f"{tracking['identity_switches']} / {f(tracking['idf1'])} / {f(tracking['mota'])}",
            )
        )
        rows.append(
            (
                "tracking: HOTA / DetA / AssA",
                f"{f(tracking['hota'])} / {f(tracking['deta'])} / {f(tracking['assa'])}",
            )
        )
    elif tracking:
        rows.append(("tracking", tracking["unavailable"]))
    for r in rows:
        summary.add_row(*r)
    console.print(summary)
    nodes = Table(title="Per node")
    for col in ("node", "n", "mean px", "p50 px", "p90 px", "PCK", "missed"):
        nodes.add_column(col, justify="left" if col == "node" else "right")
    for row in metrics["nodes"]:
        nodes.add_row(
            row["node"],
            str(row["n"]),
            f(row["mean"], "{:.2f}"),
            f(row["p50"], "{:.2f}"),
            f(row["p90"], "{:.2f}"),
            f(row["pck"]),
            str(row["missed"]),
        )
    console.print(nodes)
