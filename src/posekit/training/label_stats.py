"""What the labels say about the animals: sizes, frame sizes, headings, and problems.

The training recipe (`posekit.training.recommend`) sizes the network's input, its maps and
its rotation augmentation from these; `label_warnings` names what would make a model
fail quietly (one labelled frame, a node never labelled, frames of several sizes).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _instance_sizes(labels: Any) -> np.ndarray:
    sizes = []
    for pts in labels.all_points():
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        pts = pts[~np.isnan(pts).any(axis=1)]
        if len(pts):
            sizes.append(float((pts.max(axis=0) - pts.min(axis=0)).max()))
    return np.asarray(sizes if sizes else [1.0])


def _part_groups(labels: Any) -> list[list[int]]:
    """The skeleton's connected groups of two or more parts (edges as the labels give them)."""
    n = len(getattr(labels, "node_names", None) or [])
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in getattr(labels, "edge_inds", None) or []:
        if 0 <= a < n and 0 <= b < n:
            parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) >= 2]


def animal_sizes(labels: Any) -> np.ndarray:
    """Per instance, the size of the animal as a network must resolve it (px).

    The extent of the instance's largest connected group of parts: one animal seen twice
    (floor and mirror), or in several camera views of a mosaic, is labelled as one instance
    whose bounding box spans the frame, while each view (a connected group of the
    skeleton) is one animal-sized body. Sizing the input by the bounding box scaled such a
    set (406 x 396 frames, a 364 px box) to 0.15: 6.7 frame px per model pixel. Without
    edges (or one group) this is the bounding box's longer side, as `_instance_sizes`.
    """
    groups = _part_groups(labels)
    if len(groups) < 2:
        return _instance_sizes(labels)
    sizes = []
    for pts in labels.all_points():
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        extents = []
        for g in groups:
            gp = pts[[i for i in g if i < len(pts)]]
            gp = gp[~np.isnan(gp).any(axis=1)]
            if len(gp) >= 2:
                extents.append(float((gp.max(axis=0) - gp.min(axis=0)).max()))
        if extents:
            sizes.append(max(extents))
    return np.asarray(sizes) if sizes else _instance_sizes(labels)


def label_warnings(labels: Any) -> list[str]:
    """What a user should know about the labels before training (each one line).

    Nothing here stops training: one labelled frame (it also validates), a node never
    labelled (its map stays empty and it is never predicted), points outside their frame
    (animals cut by the frame edge: augmentation drops them, like SLEAP), frames of
    several sizes (smaller ones are padded to the largest).
    """
    out: list[str] = []
    n = len(labels)
    if n < 2:
        out.append(
            f"only {n} labelled frame: it is used for training and for validation; label "
            f"20 or more frames for a model that works on new frames"
        )
    points = [np.asarray(p, dtype=np.float64) for p in labels.all_points()]
    k = points[0].reshape(-1, 2).shape[0] if points else 0
    names = list(getattr(labels, "node_names", None) or [f"node {i}" for i in range(k)])
    pts = [p.reshape(-1, len(names), 2) for p in points]
    if pts:
        allp = np.concatenate(pts)
        seen = (~np.isnan(allp).any(axis=-1)).sum(axis=0)
        never = [names[i] for i in np.flatnonzero(seen == 0)]
        if never:
            out.append(
                f"node(s) {never} have no labelled point in the training frames: the model "
                f"cannot learn them and will not predict them; label them in some frames, "
                f"or train on the other nodes (`part_names` of the head)"
            )
    outside = 0
    shapes = set()
    for e in labels.entries:
        h, w = labels.frame_shape(getattr(e, "video_index", 0))[:2]
        shapes.add((int(h), int(w)))
        p = np.asarray(e.points, dtype=np.float64).reshape(-1, 2)
        p = p[~np.isnan(p).any(axis=1)]
        outside += int(
            ((p[:, 0] < 0) | (p[:, 1] < 0) | (p[:, 0] > w - 1) | (p[:, 1] > h - 1)).sum()
        )
    if outside:
        out.append(
            f"{outside} labelled point(s) lie outside their frame (animals cut by the edge); "
            f"training treats them as not visible once frames are augmented"
        )
    if len(shapes) > 1:
        big = max(h for h, _ in shapes), max(w for _, w in shapes)
        out.append(
            f"frames come in {len(shapes)} sizes {sorted(shapes)}; smaller frames are padded "
            f"to {big[0]} x {big[1]} (scaling is planned for the largest)"
        )
    return out


def pose_rotations(labels: Any, iterations: int = 3) -> np.ndarray:
    """Each labelled instance's in-plane rotation (degrees) relative to the mean pose.

    Generalised Procrustes on the visible nodes: every instance (centred) is rotated onto
    a reference pose by the least-squares angle, the reference becomes the mean of the
    aligned instances, three times. Instances with fewer than 2 visible nodes are NaN.
    """
    pts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in labels.all_points()]
    ok = [~np.isnan(p).any(axis=1) for p in pts]
    if not pts:
        return np.zeros(0)
    centred = [p - (p[o].mean(axis=0) if o.any() else 0.0) for p, o in zip(pts, ok)]
    ref = centred[int(np.argmax([o.sum() for o in ok]))].copy()
    angles = np.full(len(pts), np.nan)
    for _ in range(iterations):
        aligned = []
        for n, (c, o) in enumerate(zip(centred, ok)):
            m = o & ~np.isnan(ref).any(axis=1)
            if m.sum() < 2:
                aligned.append(np.full_like(c, np.nan))
                continue
            a = c[m] - c[m].mean(axis=0)
            b = ref[m] - ref[m].mean(axis=0)
            th = math.atan2(
                float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()), float((a * b).sum())
            )
            rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
            angles[n] = math.degrees(th)
            aligned.append(c @ rot.T)
        with np.errstate(all="ignore"):
            stack = np.stack(aligned)
            if np.isnan(stack).all():
                break
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ref = np.nanmean(stack, axis=0)
    return angles


def rotation_arc(labels: Any) -> float | None:
    """Degrees of the smallest arc holding every labelled instance's `pose_rotations`.

    None with fewer than 4 instances that have 2 or more visible nodes.
    """
    ang = pose_rotations(labels)
    ang = np.sort(ang[np.isfinite(ang)] % 360.0)
    n = len(ang)
    if n < 4:
        return None
    gaps = np.diff(np.concatenate([ang, ang[:1] + 360.0]))
    return float(360.0 - gaps.max())


def _frame_hw(labels: Any) -> tuple[int, int]:
    used = sorted({e.video_index for e in labels.entries})
    shapes = [labels.frame_shape(i) for i in used]
    return max(s[0] for s in shapes), max(s[1] for s in shapes)


def _frame_channels(labels: Any) -> int:
    used = sorted({e.video_index for e in labels.entries})
    shape = labels.frame_shape(used[0]) if used else (0, 0, 1)
    return int(shape[2]) if len(shape) > 2 else 1


__all__ = ["label_warnings", "pose_rotations", "rotation_arc"]
