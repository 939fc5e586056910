"""Which frames to label next: the ones the model doubts, spread over videos and time.

Labelling is the expensive step of a lab's loop (label, train, predict, find the errors,
label those), so the next frames to label should be the ones the model gets wrong. The
model cannot say where it is wrong, but it says where it is unsure, in five ways, each
scored 0 (sure) to 1 per frame (`DOUBTS`):

- ``low_score``: 1 - the mean point score (a node not found counts as score 0);
- ``augmentation``: the share of points that move by more than ``max(5% of the animal's
  size, 3 px)`` when the frame is predicted again rotated by ``rotation`` degrees and
  the points are rotated back (a model that learned the animal answers the same; one
  that guesses does not); an instance found only once counts as all its points;
- ``jump``: the share of points further than 10% of the animal's size from where the
  same node is in both the previous and the next predicted frame (a spike);
- ``count_change``: 1 when the number of instances differs from a neighbouring
  predicted frame's (an animal lost, or a ghost found);
- ``identity``: 1 - the margin of the frame's weakest identity decision when the frame
  is tracked with the simple tracker (`posekit.tracking.suggestions`), over the video's
  median margin (margins are in the similarity's units), for frames with several
  animals: 1 for a coin flip, 0 for a typical decision or a clearer one.

A frame's doubt is their sum. `pick_frames` takes the most doubtful frames, never two of
one video within ``min_separation`` frames (neighbouring frames teach the same thing) or
within half the even spacing of the video's picks (doubtful frames come in runs),
taking turns between videos so that every video gets its share. `suggest` writes them as
SLEAP suggestions into a new project that keeps the user's labels, videos, tracks and
older suggestions (the input is never overwritten), with each frame's doubts under
``provenance["posekit.suggest"]`` (SLEAP's file keeps only a suggestion's group).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posekit.errors import PosekitError

__all__ = ["DOUBTS", "FrameDoubt", "frame_doubts", "pick_frames", "spread_separation", "suggest"]

DOUBTS = ("low_score", "augmentation", "jump", "count_change", "identity")
PROVENANCE_KEY = "posekit.suggest"
#: A doubt above this is named as a reason.
REASON_THRESHOLD = 0.1


@dataclass
class FrameDoubt:
    """How unsure the model is about one frame; `parts` maps each of `DOUBTS` to 0..1."""

    video: Any
    frame_idx: int
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return float(sum(self.parts.values()))

    @property
    def reason(self) -> str:
        named = sorted(
            (item for item in self.parts.items() if item[1] > REASON_THRESHOLD),
            key=lambda item: -item[1],
        )
        return ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in named) or "-"


def _size(points: np.ndarray) -> float:
    vis = points[np.isfinite(points).all(axis=1)]
    if len(vis) < 2:
        return 0.0
    return float(np.linalg.norm(vis.max(axis=0) - vis.min(axis=0)))


def _match(a: list[np.ndarray], b: list[np.ndarray]) -> list[tuple[int, int]]:
    """Pairs of instances of two frames by mean node distance (Hungarian)."""
    if not a or not b:
        return []
    from scipy.optimize import linear_sum_assignment

    cost = np.full((len(a), len(b)), 1e9)
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            d = np.linalg.norm(p - q, axis=1)
            if np.isfinite(d).any():
                cost[i, j] = float(np.nanmean(d))
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < 1e9]


def _disagreement(a: list[np.ndarray], b: list[np.ndarray], fraction: float, floor: float):
    """Share of points of two predictions of one frame that disagree (moved by more than
    `fraction` of the animal's size (at least `floor` px), seen in one only, or on an
    instance the other lacks)."""
    total = sum(len(p) for p in a) + sum(len(q) for q in b)
    if total == 0:
        return 0.0
    pairs = _match(a, b)
    agree = 0
    for i, j in pairs:
        p, q = a[i], b[j]
        limit = max(fraction * max(_size(p), _size(q)), floor)
        d = np.linalg.norm(p - q, axis=1)
        both_missing = ~np.isfinite(p).all(axis=1) & ~np.isfinite(q).all(axis=1)
        agree += 2 * int(((d <= limit) | both_missing).sum())
    return 1.0 - agree / total


def _rotation(angle: float, shape) -> tuple[np.ndarray, np.ndarray]:
    """(R, centre) of torchvision's `rotate` by `angle` degrees: a pixel p goes to
    centre + R (p - centre) (y down, so a counter-clockwise turn on screen)."""
    t = np.deg2rad(angle)
    centre = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])
    return np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]), centre


def _rotated(images: np.ndarray, angle: float) -> np.ndarray:
    import torch
    from torchvision.transforms.functional import InterpolationMode, rotate

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _predict(predictor, video, frames: list[int], rotation: float, batch: int):
    """Per frame: (points, point scores) of each instance, as predicted and as predicted
    on the frame rotated by `rotation` and turned back (None without rotation)."""
    plain, turned = {}, {}
    for k in range(0, len(frames), batch):
        idx = frames[k : k + batch]
        images = np.stack([np.asarray(video[i]) for i in idx])
        if images.ndim == 3:
            images = images[..., None]
        for f, raws in zip(idx, predictor.predict_images(images)):
            plain[f] = [
                (np.asarray(r.points, float), np.asarray(r.point_scores, float)) for r in raws
            ]
        if not rotation:
            continue
        R, c = _rotation(rotation, images.shape[1:3])
        for f, raws in zip(idx, predictor.predict_images(_rotated(images, rotation))):
            turned[f] = [(np.asarray(r.points, float) - c) @ R + c for r in raws]  # R^T
    return plain, (turned if rotation else None)


def _identity_margins(video, frames: dict, skeleton) -> dict[int, float]:
    """Frame -> margin of the weakest identity decision, from the simple tracker."""
    import sleap_io as sio

    from posekit.tracking.api import track

    lfs = [
        sio.LabeledFrame(
            video,
            f,
            [
                sio.PredictedInstance.from_numpy(
                    points_data=p, skeleton=skeleton, point_scores=s, score=float(np.nanmean(s))
                )
                for p, s in insts
            ],
        )
        for f, insts in frames.items()
        if insts
    ]
    labels = sio.Labels(labeled_frames=lfs, videos=[video], skeletons=[skeleton])
    tracked = track(labels, "simple", n_suggestions=len(lfs), suggestion_min_separation=1)
    return {
        int(s.frame_idx): float(s.metadata["margin"])
        for s in tracked.suggestions
        if "margin" in (s.metadata or {})
    }


def frame_doubts(
    predictor, video, frames: Sequence[int], *, rotation: float = 10.0, batch_size: int = 4
) -> list[FrameDoubt]:
    """The `FrameDoubt` of each of `frames` of `video` (a `sleap_io.Video`)."""
    frames = sorted(int(f) for f in frames)
    plain, turned = _predict(predictor, video, frames, rotation, max(int(batch_size), 1))
    several = any(len(v) > 1 for v in plain.values())
    margins = _identity_margins(video, plain, predictor.skeleton) if several else {}
    # margins are in the similarity's units: compare each to the video's typical one
    positive = [m for m in margins.values() if m > 0]
    typical = float(np.median(positive)) if positive else np.inf
    out = []
    for k, f in enumerate(frames):
        pts = [p for p, _ in plain[f]]
        parts = dict.fromkeys(DOUBTS, 0.0)
        scores = [np.where(np.isfinite(p).all(axis=1), np.nan_to_num(s), 0.0) for p, s in plain[f]]
        if scores:
            parts["low_score"] = float(np.clip(1 - np.mean(np.concatenate(scores)), 0, 1))
        else:
            parts["low_score"] = 1.0  # nothing found at all
        if turned is not None:
            parts["augmentation"] = _disagreement(pts, turned[f], 0.05, 3.0)
        prev = plain[frames[k - 1]] if k > 0 else None
        nxt = plain[frames[k + 1]] if k + 1 < len(frames) else None
        if prev is not None and nxt is not None and pts:
            parts["jump"] = _jump(pts, [p for p, _ in prev], [p for p, _ in nxt])
        if any(n is not None and len(n) != len(pts) for n in (prev, nxt)):
            parts["count_change"] = 1.0
        if f in margins:
            parts["identity"] = float(np.clip(1 - margins[f] / typical, 0, 1))
        out.append(FrameDoubt(video, f, parts))
    return out


def _jump(pts, prev, nxt) -> float:
    """Share of points far (10% of the animal) from their node in both neighbours."""
    far_total, n = 0, 0
    for p in pts:
        limit = max(0.1 * _size(p), 3.0)
        far = np.isfinite(p).all(axis=1)
        for other in (prev, nxt):
            pairs = _match([p], other)
            if not pairs:
                far &= False
                continue
            far &= np.linalg.norm(p - other[pairs[0][1]], axis=1) > limit
        far_total += int(far.sum())
        n += len(p)
    return far_total / n if n else 0.0


def pick_frames(doubts: Sequence[FrameDoubt], n: int, min_separation: int = 10):
    """Up to `n` frames, most doubtful first, videos taking turns, none within
    `min_separation` frames of another pick of its video, nor within half the even spacing
    of its share of the picks over its candidate frames' span (`spread_separation`)."""
    by_video: dict[int, list[FrameDoubt]] = {}
    for d in sorted(doubts, key=lambda d: (-d.score, d.frame_idx)):
        by_video.setdefault(id(d.video), []).append(d)
    queues = sorted(by_video.values(), key=lambda q: -q[0].score)
    share = -(-n // max(len(queues), 1))
    gap = {
        id(q[0].video): max(min_separation, spread_separation([d.frame_idx for d in q], share))
        for q in queues
    }
    taken: dict[int, list[int]] = {}
    picked: list[FrameDoubt] = []
    while len(picked) < n and any(queues):
        for q in queues:
            while q:
                d = q.pop(0)
                near = taken.setdefault(id(d.video), [])
                if all(abs(d.frame_idx - t) >= gap[id(d.video)] for t in near):
                    near.append(d.frame_idx)
                    picked.append(d)
                    break
            if len(picked) == n:
                break
    return picked


def spread_separation(frames: Sequence[int], n: int) -> int:
    """Half the even spacing of `n` picks over the span of `frames`.

    The most doubtful frames come in runs (a hard stretch of behaviour is hard for many
    frames), and 20 picks from one run teach little more than a few of them would; picks
    at least this far apart cover at least half the span while still following the doubt.
    """
    if n < 2 or not frames:
        return 0
    return int((max(frames) - min(frames)) / (2 * n))


def explain_path(output: str | os.PathLike) -> Path:
    """Where `suggest(..., explain=True)` writes its table: ``<output>.suggestions.csv``."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".slp") + ".suggestions.csv")


def _write_explanation(picks: list[FrameDoubt], path: Path) -> None:
    import csv

    from posekit.io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "video", "frame_idx", "doubt", *DOUBTS, "reason"])
        for k, d in enumerate(picks, 1):
            parts = [f"{d.parts.get(name, 0.0):.3f}" for name in DOUBTS]
            w.writerow([k, str(d.video.filename), d.frame_idx, f"{d.score:.3f}", *parts, d.reason])


def suggest(
    models,
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    n: int = 20,
    min_separation: int = 10,
    frames=None,
    rotation: float = 10.0,
    explain: bool = False,
    **predictor_options,
) -> list[FrameDoubt]:
    """Rank frames of `sources` by the model's doubt; write the top `n` as suggestions.

    Args:
        models: model folder(s) as `posekit predict` takes them, or a loaded `Predictor`.
        sources: videos, folders, globs and at most one SLEAP project (``.slp``): its
            labels, videos, tracks and suggestions are kept, its labelled frames skipped.
        output: the new project (``.slp``); never one of the inputs.
        n, min_separation: how many frames, and the fewest frames between two of a video.
        frames: frame selection in every video (`posekit.data.video.parse_frames`), e.g.
            ``"0-999"`` (default: every frame; each is predicted twice).
        rotation: degrees of the augmented prediction (0: no augmentation doubt).
        explain: also write each pick's doubts to `explain_path` (a CSV).
        **predictor_options: for `load_predictor` (device, batch_size, peak_threshold...).

    Returns:
        The picked `FrameDoubt`s, most doubtful first.
    """
    import sleap_io as sio

    from posekit.data.labels import save_labels
    from posekit.inference.predictors import load_predictor
    from posekit.inference.predictors.base import Predictor
    from posekit.inference.sources import expand_sources
    from posekit.io.outputs import check_output_path

    if n < 1 or min_separation < 0:
        raise PosekitError(f"--n must be >= 1 and --min-separation >= 0; got {n}, {min_separation}")
    model_inputs = (
        []
        if isinstance(models, Predictor)
        else [models]
        if isinstance(models, (str, os.PathLike))
        else list(models)
    )
    output = check_output_path(
        output, (".slp",), inputs=[*map(str, sources), *map(str, model_inputs)], what="project"
    )
    jobs = expand_sources(sources, frames=frames)
    projects = {id(j.project): j.project for j in jobs if j.project is not None}
    if len(projects) > 1:
        raise PosekitError("suggest takes at most one SLEAP project (.slp) among its sources")
    predictor = (
        models
        if isinstance(models, Predictor)
        else load_predictor(model_inputs, **predictor_options)
    )
    if predictor.needs_labels:
        raise PosekitError(
            "this model needs labelled animals to predict (a centered-instance model alone): "
            "give its centroid model too, so it finds the animals in new frames"
        )
    doubts = []
    for job in jobs:
        todo = job.frame_list()
        if job.project is not None:
            labelled = {
                int(lf.frame_idx)
                for lf in job.project.labeled_frames
                if lf.video is job.video and lf.user_instances
            }
            todo = [f for f in todo if f not in labelled]
        if todo:
            doubts += frame_doubts(
                predictor,
                job.video,
                todo,
                rotation=rotation,
                batch_size=getattr(predictor, "batch_size", 4),
            )
    picks = pick_frames(doubts, n, min_separation)

    base = next(iter(projects.values()), None)
    videos = list(base.videos) if base is not None else []
    for job in jobs:
        if not any(v is job.video for v in videos):
            videos.append(job.video)
    suggestions = list(base.suggestions) if base is not None else []
    have = {(id(s.video), int(s.frame_idx)) for s in suggestions}
    suggestions += [
        sio.SuggestionFrame(video=d.video, frame_idx=d.frame_idx, metadata={"group": 0})
        for d in picks
        if (id(d.video), d.frame_idx) not in have
    ]
    provenance = dict(base.provenance) if base is not None else {}
    provenance[PROVENANCE_KEY] = {
        "models": [str(m) for m in model_inputs],
        "rotation": rotation,
        "min_separation": min_separation,
        "frames": [
            {
                "video": str(d.video.filename),
                "frame_idx": d.frame_idx,
                "doubt": round(d.score, 4),
                **{k: round(v, 4) for k, v in d.parts.items()},
            }
            for d in picks
        ],
    }
    project = sio.Labels(
        labeled_frames=list(base.labeled_frames) if base is not None else [],
        videos=videos,
        skeletons=list(base.skeletons) if base is not None else [predictor.skeleton],
        tracks=list(base.tracks) if base is not None else [],
        suggestions=suggestions,
        provenance=provenance,
    )
    save_labels(project, output)
    if explain:
        _write_explanation(picks, explain_path(output))
    return picks
