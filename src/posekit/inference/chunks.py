"""Resumable predictions: results go to disk in chunks, so a crash costs one chunk at most.

A long prediction writes every ``chunk_size`` frames of a video as one small ``.npz``
(points, point scores, instance scores, tracks) in a hidden folder beside the output,
``.<output name>.posekit-chunks/``, each through `posekit.io.atomic` (a chunk is complete
or absent, never half). The folder's ``manifest.json`` records what the run is (models,
videos, frames, options: the *fingerprint*); ``--resume`` continues a run only when the
fingerprint matches, so chunks of a different run are never mixed in. The final output
is assembled from the chunks, whether the run was interrupted or not, so a resumed run
writes exactly the file an uninterrupted one writes; the folder is removed once the
output is written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from posekit.errors import PosekitError
from posekit.io.atomic import atomic_path, write_text_atomic

__all__ = ["ChunkStore", "chunk_folder"]

_VERSION = 1


def chunk_folder(output: str | os.PathLike) -> Path:
    """Where the chunks of `output` are kept."""
    output = Path(output)
    return output.with_name(f".{output.name}.posekit-chunks")


class ChunkStore:
    """The chunks of one run writing `output`.

    Args:
        output: the final output file.
        fingerprint: JSON-able description of the run; `resume` requires it to match.
        resume: continue from chunks already written (else they are discarded).
    """

    def __init__(self, output: str | os.PathLike, fingerprint: dict, resume: bool = False):
        self.folder = chunk_folder(output)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.resumed_chunks = 0
        manifest = self.folder / "manifest.json"
        if resume and manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("fingerprint") != self.fingerprint:
                diff = sorted(
                    k
                    for k in set(old.get("fingerprint", {})) | set(self.fingerprint)
                    if old.get("fingerprint", {}).get(k) != self.fingerprint.get(k)
                )
                raise PosekitError(
                    f"cannot resume: the interrupted run's chunks ({self.folder}) were made "
                    f"with different {', '.join(diff)}; run with the same arguments, or "
                    "without --resume to start over"
                )
            self.resumed_chunks = len(list(self.folder.glob("chunk-*.npz")))
            return
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        write_text_atomic(
            manifest, json.dumps({"version": _VERSION, "fingerprint": self.fingerprint})
        )

    def _path(self, job: int, chunk: int) -> Path:
        return self.folder / f"chunk-{job:04d}-{chunk:06d}.npz"

    def done(self, job: int, chunk: int) -> bool:
        return self._path(job, chunk).exists()

    def write(self, job: int, chunk: int, frames: list[tuple]) -> None:
        """Store one chunk: (frame index, predicted instances or None if undecodable[,
        predicted masks]); a mask keeps its run-length code and the index of its
        instance in the frame's list."""
        frames = sorted(frames, key=lambda f: f[0])
        masks = _mask_arrays(frames)
        frames = [f[:2] for f in frames]
        frame_idx, counts, skipped = [], [], []
        pts, pscores, scores, tracks, tscores = [], [], [], [], []
        names: list[str] = []
        nodes: list[str] = []
        for idx, insts in frames:
            if insts is None:
                skipped.append(idx)
                continue
            frame_idx.append(idx)
            counts.append(len(insts))
            for inst in insts:
                nodes = nodes or list(inst.skeleton.node_names)
                data = inst.numpy(scores=True)
                pts.append(data[:, :2])
                pscores.append(data[:, 2])
                scores.append(float(inst.score))
                name = inst.track.name if inst.track is not None else None
                if name is not None and name not in names:
                    names.append(name)
                tracks.append(names.index(name) if name is not None else -1)
                ts = inst.tracking_score
                tscores.append(np.nan if ts is None else float(ts))
        n_nodes = pts[0].shape[0] if pts else 0
        arrays = {
            "frame_idx": np.asarray(frame_idx, np.int64),
            "counts": np.asarray(counts, np.int64),
            "skipped": np.asarray(skipped, np.int64),
            # A chunk can hold no instance at all (no animal in view, or only undecodable
            # frames): shapes then come from the counts, not from -1.
            "points": np.asarray(pts, np.float64).reshape(len(pts), n_nodes, 2),
            "point_scores": np.asarray(pscores, np.float64).reshape(len(pts), n_nodes),
            "scores": np.asarray(scores, np.float64),
            "tracks": np.asarray(tracks, np.int64),
            "tracking_scores": np.asarray(tscores, np.float64),
            "track_names": np.asarray(json.dumps(names)),
            "node_names": np.asarray(json.dumps(nodes)),
            **masks,
        }
        with atomic_path(self._path(job, chunk)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())

    def frames(self, job: int, chunk: int, video, skeleton, tracks: dict[str, Any]):
        """The chunk's `sleap_io.LabeledFrame`s on `video` with `skeleton` (points in its
        node order); track names resolve through `tracks` (name -> Track, extended)."""
        import sleap_io as sio

        with np.load(self._path(job, chunk)) as z:
            data = {k: z[k] for k in z.files}
        names = json.loads(str(data["track_names"]))
        stored = json.loads(str(data["node_names"])) or list(skeleton.node_names)
        order = [stored.index(n) for n in skeleton.node_names]
        out = []
        at = 0
        for idx, count in zip(data["frame_idx"].tolist(), data["counts"].tolist()):
            insts = []
            for i in range(at, at + count):
                t = int(data["tracks"][i])
                track = None
                if t >= 0:
                    track = tracks.setdefault(names[t], sio.Track(name=names[t]))
                ts = float(data["tracking_scores"][i])
                insts.append(
                    sio.PredictedInstance.from_numpy(
                        points_data=data["points"][i][order],
                        skeleton=skeleton,
                        point_scores=data["point_scores"][i][order],
                        score=float(data["scores"][i]),
                        track=track,
                        tracking_score=None if np.isnan(ts) else ts,
                    )
                )
            at += count
            out.append(sio.LabeledFrame(video=video, frame_idx=int(idx), instances=insts))
        _attach_masks(data, out)
        return out, data["skipped"].tolist()

    def finish(self) -> None:
        """Remove the chunks (after the output is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _mask_arrays(frames: list[tuple]) -> dict[str, np.ndarray]:
    """The predicted masks of a chunk's decoded frames as flat arrays (RLE concatenated)."""
    frame_of, hw, lengths, rle, scores, inst_of = [], [], [], [], [], []
    for idx, insts, *rest in frames:
        if insts is None:
            continue
        for m in rest[0] if rest else []:
            frame_of.append(idx)
            hw.append((m.height, m.width))
            lengths.append(len(m.rle_counts))
            rle.append(np.asarray(m.rle_counts, np.uint32))
            scores.append(float(getattr(m, "score", 1.0)))
            inst_of.append(next((k for k, i in enumerate(insts) if i is m.instance), -1))
    return {
        "mask_frame_idx": np.asarray(frame_of, np.int64),
        "mask_hw": np.asarray(hw, np.int64).reshape(-1, 2),
        "mask_rle_lengths": np.asarray(lengths, np.int64),
        "mask_rle": np.concatenate(rle) if rle else np.zeros(0, np.uint32),
        "mask_scores": np.asarray(scores, np.float64),
        "mask_instance": np.asarray(inst_of, np.int64),
    }


def _attach_masks(data: dict, frames: list) -> None:
    """Rebuild the stored masks onto their `LabeledFrame`s (and instances)."""
    import sleap_io as sio

    if "mask_frame_idx" not in data:
        return
    by_idx = {int(lf.frame_idx): lf for lf in frames}
    ends = np.cumsum(data["mask_rle_lengths"])
    for k, idx in enumerate(data["mask_frame_idx"].tolist()):
        lf = by_idx[int(idx)]
        start = int(ends[k] - data["mask_rle_lengths"][k])
        i = int(data["mask_instance"][k])
        inst = lf.instances[i] if i >= 0 else None
        h, w = (int(v) for v in data["mask_hw"][k])
        lf.masks.append(
            sio.PredictedSegmentationMask(
                rle_counts=data["mask_rle"][start : int(ends[k])].copy(),
                height=h,
                width=w,
                score=float(data["mask_scores"][k]),
                instance=inst,
                track=inst.track if inst is not None else None,
            )
        )
