"""Tracking accuracy against ground truth: switches, IDF1, MOTA (motmetrics), HOTA (TrackEval's).

The definitions are the standard ones (CLEAR-MOT for MOTA and switches, Ristani et al.
2016 for IDF1) as implemented by the maintained `motmetrics` package; posekit only
turns poses into what it needs. Per frame, every labeled instance with a track is a
ground-truth object (id = its track name) and every predicted instance with a track a
hypothesis; their distance is the mean distance of the nodes both have, and pairs
further apart than `max_distance` pixels cannot match (default: 20% of the median
labeled-instance bounding-box diagonal, about a body part's length).

HOTA, DetA, AssA and TrackEval's CLEAR-MOT (`hota`) need a similarity in [0, 1] per
pair: ``1 - d / (2 * max_distance)`` (0 beyond), so a pair within `max_distance` (the
motmetrics gate) is exactly a pair with similarity >= 0.5, TrackEval's CLEAR threshold,
and HOTA's thresholds 0.05..0.95 sweep from 1.9 down to 0.1 times `max_distance`.

The result is a plain dict of numbers (JSON-ready, so ``posekit evaluate --json`` can
include it) with ``switch_frames``: the frames where a ground-truth animal changed
predicted track, each with the animal and both tracks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posekit.errors import PosekitError
from posekit.tracking.hota import clear, hota

_METRICS = {
    "idf1": "idf1",
    "idp": "idp",
    "idr": "idr",
    "mota": "mota",
    "motp": "motp",
    "num_switches": "identity_switches",
    "num_fragmentations": "fragmentations",
    "num_false_positives": "false_positives",
    "num_misses": "misses",
    "num_objects": "gt_instances",
    "num_predictions": "predicted_instances",
    "num_unique_objects": "gt_tracks",
    "mostly_tracked": "mostly_tracked",
    "mostly_lost": "mostly_lost",
}


def _import_motmetrics():
    try:
        import motmetrics
    except ImportError:  # pragma: no cover - depends on the environment
        raise PosekitError(
            "tracking metrics need motmetrics: pip install 'posekit[tracking]'"
        ) from None
    return motmetrics


def _frames_by_key(labels) -> dict:
    out = {}
    for lf in labels.labeled_frames:
        key = (_video_key(lf.video), int(lf.frame_idx))
        out.setdefault(key, []).extend(inst for inst in lf.instances if inst.track is not None)
    return out


def _video_key(video) -> str:
    return str(getattr(video, "filename", id(video)))


def _check_skeletons(gt, pr) -> None:
    def names(labels):
        return {tuple(s.node_names) for s in labels.skeletons if len(s.node_names)}

    a, b = names(gt), names(pr)
    if a and b and not (a & b):
        raise PosekitError(
            "ground truth and predictions use different skeletons "
            f"({len(next(iter(a)))} vs {len(next(iter(b)))} nodes: "
            f"{', '.join(next(iter(a))[:3])}... vs {', '.join(next(iter(b))[:3])}...); "
            "tracking metrics compare node by node, so predict with a model trained on "
            "the ground truth's skeleton"
        )


def tracking_metrics(ground_truth, predicted, max_distance: float | None = None) -> dict[str, Any]:
    """Identity switches, IDF1, MOTA and friends of `predicted` against `ground_truth`.

    Args:
        ground_truth: `sleap_io.Labels` whose instances carry true tracks.
        predicted: `sleap_io.Labels` with tracked predictions (untracked instances are
            ignored); frames are matched by video filename and frame index.
        max_distance: pixels beyond which a prediction cannot be an animal (mean node
            distance); default 20% of the median labeled bounding-box diagonal.

    Returns:
        dict with ``identity_switches``, ``idf1``, ``idp``, ``idr``, ``mota``, ``motp``
        (mean matched distance, px), ``fragmentations``, ``false_positives``, ``misses``,
        ``gt_instances``, ``predicted_instances``, ``gt_tracks``, ``predicted_tracks``,
        ``mostly_tracked``, ``mostly_lost``, ``frames``, ``max_distance``,
        ``switch_frames`` (list of {frame_idx, video, gt_track, from_track, to_track}),
        ``hota``, ``deta``, ``assa`` and ``trackeval``: every HOTA and CLEAR number under
        TrackEval's names (``HOTA``, ``DetA``, ``AssA``, ``LocA``, ``MOTA``, ``MOTP``,
        ``IDSW``, ``CLR_FP``, ``CLR_FN``...).
    """
    mm = _import_motmetrics()
    _check_skeletons(ground_truth, predicted)
    gt = _frames_by_key(ground_truth)
    pr = _frames_by_key(predicted)
    if not any(gt.values()):
        raise PosekitError(
            "the ground truth has no tracked instances; tracking metrics need labels "
            "whose instances carry their true tracks"
        )
    if max_distance is None:
        diag = []
        for insts in gt.values():
            for inst in insts:
                p = inst.numpy()
                if np.isfinite(p).all(axis=1).sum() >= 2:
                    span = np.nanmax(p, axis=0) - np.nanmin(p, axis=0)
                    diag.append(float(np.hypot(*span)))
        max_distance = 0.2 * float(np.median(diag)) if diag else 10.0
    if not max_distance > 0:
        raise PosekitError(f"max_distance={max_distance!r}: must be > 0 pixels")

    # motmetrics keeps ids in float columns with recent pandas: give it integers.
    gt_names: dict[str, int] = {}
    pr_names: dict[str, int] = {}
    acc = mm.MOTAccumulator(auto_id=False)
    keys = sorted(set(gt) | set(pr))
    frame_ids = {}
    te_gt, te_pr, te_sim = [], [], []
    for fid, key in enumerate(keys):
        frame_ids[fid] = key
        g = gt.get(key, [])
        p = pr.get(key, [])
        dist = np.full((len(g), len(p)), np.nan)
        sim = np.zeros((len(g), len(p)))
        for i, gi in enumerate(g):
            a = gi.numpy()
            for j, pj in enumerate(p):
                d = np.linalg.norm(a - pj.numpy(), axis=1)
                if np.isfinite(d).any():
                    m = float(np.nanmean(d))
                    sim[i, j] = max(0.0, 1.0 - m / (2.0 * max_distance))
                    if m <= max_distance:
                        dist[i, j] = m
        g_ids = [gt_names.setdefault(i.track.name, len(gt_names)) for i in g]
        p_ids = [pr_names.setdefault(i.track.name, len(pr_names)) for i in p]
        acc.update(g_ids, p_ids, dist, frameid=fid)
        te_gt.append(np.asarray(g_ids, dtype=np.int64))
        te_pr.append(np.asarray(p_ids, dtype=np.int64))
        te_sim.append(sim)

    mh = mm.metrics.create()
    names = [m for m in _METRICS if m in mh.names]
    summary = mh.compute(acc, metrics=names, name="all")
    out: dict[str, Any] = {}
    for m in names:
        v = summary.loc["all", m]
        v = float(v) if v is not None else float("nan")
        out[_METRICS[m]] = int(v) if m.startswith("num_") or m.startswith("mostly") else v
    out["predicted_tracks"] = len({i.track.name for insts in pr.values() for i in insts})
    out["frames"] = len(keys)
    out["max_distance"] = float(max_distance)

    gt_of = {v: k for k, v in gt_names.items()}
    pr_of = {v: k for k, v in pr_names.items()}
    events = acc.mot_events
    switches = []
    last_hyp: dict = {}
    for (fid, _), row in events.iterrows():
        if row["Type"] in ("MATCH", "SWITCH"):
            oid, hid = gt_of.get(int(row["OId"])), pr_of.get(int(row["HId"]))
            if row["Type"] == "SWITCH":
                video, frame_idx = frame_ids[fid]
                switches.append(
                    {
                        "frame_idx": int(frame_idx),
                        "video": video,
                        "gt_track": oid,
                        "from_track": last_hyp.get(oid),
                        "to_track": hid,
                    }
                )
            last_hyp[oid] = hid
    out["switch_frames"] = switches
    te = hota(te_gt, te_pr, te_sim, len(gt_names), len(pr_names))
    te.update(clear(te_gt, te_pr, te_sim, len(gt_names)))
    out["hota"], out["deta"], out["assa"] = te["HOTA"], te["DetA"], te["AssA"]
    out["trackeval"] = te
    return out
