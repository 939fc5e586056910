"""Helpers for the tracking tests: small synthetic videos and the real flies clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

sio = pytest.importorskip("sleap_io")

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
FLIES = SHARED / "data" / "flies" / "clip.slp"


def make_skeleton(n_nodes: int = 3):
    names = [f"n{i}" for i in range(n_nodes)]
    return sio.Skeleton(nodes=names, edges=[(names[i], names[i + 1]) for i in range(n_nodes - 1)])


def pose(center, size: float = 10.0, n_nodes: int = 3) -> np.ndarray:
    """A straight pose of `n_nodes` nodes centred on `center`, `size` px between nodes."""
    offsets = (np.arange(n_nodes) - (n_nodes - 1) / 2) * size
    return np.stack([center[0] + offsets, np.full(n_nodes, center[1])], axis=1)


def make_labels(trajectories, skeleton=None, scores=None, shuffle_seed=0, video=None, sizes=None):
    """Labels with one PredictedInstance per trajectory per frame, instance order shuffled.

    `trajectories`: (n_animals, n_frames, 2) centres. Returns (labels, truth) with truth
    a dict frame_idx -> list of animal indices in instance order.
    """
    skeleton = skeleton or make_skeleton()
    video = video or sio.Video(filename="synthetic.mp4")
    rng = np.random.default_rng(shuffle_seed)
    traj = np.asarray(trajectories, dtype=float)
    n_nodes = len(skeleton.nodes)
    frames, truth = [], {}
    for t in range(traj.shape[1]):
        order = rng.permutation(traj.shape[0])
        insts = []
        for a in order:
            size = 10.0 if sizes is None else sizes[a]
            insts.append(
                sio.PredictedInstance.from_numpy(
                    points_data=pose(traj[a, t], size, n_nodes),
                    skeleton=skeleton,
                    point_scores=np.ones(n_nodes),
                    score=1.0 if scores is None else float(scores[a]),
                )
            )
        frames.append(sio.LabeledFrame(video=video, frame_idx=t, instances=insts))
        truth[t] = [int(a) for a in order]
    return sio.Labels(frames, videos=[video], skeletons=[skeleton]), truth


def identity_map(result, truth, points_of=None):
    """{frame_idx: {animal: track name}} by matching output instances to the truth order."""
    out = {}
    for lf in result.labeled_frames:
        out[lf.frame_idx] = {
            truth[lf.frame_idx][i]: (inst.track.name if inst.track else None)
            for i, inst in enumerate(lf.instances)
        }
    return out


def n_switches(id_map) -> int:
    prev, n = None, 0
    for t in sorted(id_map):
        if prev is not None and id_map[t] != prev:
            n += 1
        prev = id_map[t]
    return n


def flies_predictions(labels, n_frames: int = 300, seed: int = 0):
    """The flies' labels as shuffled PredictedInstances without tracks (+ ground truth)."""
    rng = np.random.default_rng(seed)
    lfs = sorted(labels.labeled_frames, key=lambda f: f.frame_idx)[:n_frames]
    frames = []
    for lf in lfs:
        insts = [
            sio.PredictedInstance.from_numpy(
                points_data=i.numpy(),
                skeleton=i.skeleton,
                point_scores=np.ones(len(i.skeleton.nodes)),
                score=1.0,
            )
            for i in lf.instances
        ]
        order = rng.permutation(len(insts))
        frames.append(
            sio.LabeledFrame(
                video=lf.video, frame_idx=lf.frame_idx, instances=[insts[o] for o in order]
            )
        )
    pred = sio.Labels(frames, videos=list(labels.videos), skeletons=list(labels.skeletons))
    gt = sio.Labels(
        lfs,
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=list(labels.tracks),
    )
    return pred, gt
