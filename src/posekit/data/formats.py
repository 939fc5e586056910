"""Predictions out in the format the output's suffix names, through sleap-io, atomically.

| suffix | what | sleap-io writer |
|---|---|---|
| ``.slp`` | SLEAP labels: opens in SLEAP's GUI for proofreading | `save_slp` |
| ``.analysis.h5`` (any ``.h5``) | SLEAP's analysis HDF5 (``tracks``, ``track_occupancy``, ``point_scores``, ... in SLEAP's MATLAB-friendly axis order) | `save_analysis_h5` |
| ``.csv`` | SLEAP's analysis CSV: one row per instance (``track, frame_idx, instance.score, <node>.x, <node>.y, <node>.score``) | `save_csv` |
| ``.nwb`` | NWB with ndx-pose: one ``PoseEstimation`` per video and track | `save_nwb` (predictions) |

The analysis HDF5 and CSV show per frame its user instances where it has any (a
proofread frame of a project), else its predictions; NWB's predictions layout holds the
predictions. Untracked predictions export too: the analysis HDF5 gives each frame's
instances slots ``track_0...`` (as sleap-io and SLEAP do), the CSV has one row per
instance with an empty track, and NWB (one series per track) and a mix of tracked and
untracked instances get slot tracks named ``untracked_<k>`` (in the output only; the
labels are not modified). See `export_view`.

The analysis HDF5 and CSV layouts hold one video: when the labels span several videos
with predictions, one file per video is written, named as SLEAP's export names them
(``x.analysis.h5`` -> ``x.000_<video name>.analysis.h5``, ``x.001_...``). ``.slp`` and
``.nwb`` hold every video in one file.

Filtered trajectories (`posekit.tracking.trajectories`) record what they changed under
``labels.provenance["posekit.filter"]``; the analysis HDF5 then also holds
``filter_flags`` (one uint8 per frame: the OR of the frame's instances' flags) and
``filter_track_flags`` (laid out like ``instance_scores``), and the CSV a ``filter.flags``
column per instance, beside the point and instance scores both formats already carry, so
a user can drop what is doubtful. The bits are listed in the file (``filter_flag_bits``
attribute of the HDF5; ``FLAGS`` of the trajectories module).

Every file goes through `posekit.io.atomic`: a reader (or a crash) sees the old file or
the new one, never half.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from posekit.errors import PosekitError

__all__ = [
    "FILTER_PROVENANCE_KEY",
    "OUTPUT_FORMATS",
    "export_view",
    "output_format",
    "output_paths",
    "write_predictions",
]

#: suffix -> format name, longest suffix first (".analysis.h5" before ".h5").
OUTPUT_FORMATS = {
    ".slp": "slp",
    ".analysis.h5": "analysis.h5",  # before ".h5": the longer suffix decides
    ".h5": "analysis.h5",
    ".csv": "csv",
    ".nwb": "nwb",
}

#: Where `posekit.tracking.trajectories.filter_labels` records its settings, flags and the
#: original points (read here to write the flags beside the scores).
FILTER_PROVENANCE_KEY = "posekit.filter"


def output_format(path: str | os.PathLike) -> str:
    """The format an output path's suffix names; a clear error for any other suffix."""
    name = Path(path).name.lower()
    for suffix, fmt in OUTPUT_FORMATS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    raise PosekitError(
        f"cannot tell the output format of {path}: end it in .slp (SLEAP labels), "
        ".analysis.h5 (SLEAP analysis HDF5), .csv or .nwb"
    )


def _split_suffix(path: Path) -> tuple[str, str]:
    name = path.name
    for suffix in OUTPUT_FORMATS:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return path.stem, path.suffix


def _videos_with_frames(labels) -> list:
    seen = {id(lf.video) for lf in labels.labeled_frames if len(lf.instances) or lf.masks}
    return [v for v in labels.videos if id(v) in seen]


def output_paths(labels, path: str | os.PathLike) -> list[tuple[Any, Path]]:
    """(video or None, file) pairs `write_predictions` writes for `labels` at `path`.

    One file for ``.slp``/``.nwb`` or a single video (video None for ``.slp``/``.nwb``);
    one per video with instances (or masks), SLEAP-named, for the analysis HDF5 and CSV.
    """
    path = Path(path)
    fmt = output_format(path)
    if fmt in ("slp", "nwb"):
        return [(None, path)]
    videos = _videos_with_frames(labels) or list(labels.videos[:1])
    if len(videos) <= 1:
        return [(videos[0] if videos else None, path)]
    stem, suffix = _split_suffix(path)
    out = []
    for video in videos:
        index = labels.videos.index(video)
        name = Path(str(getattr(video, "filename", f"video{index}"))).stem
        out.append((video, path.with_name(f"{stem}.{index:03d}_{name}{suffix}")))
    return out


def copy_with_track(inst, track):
    """A copy of a user or predicted instance on another track (scores kept)."""
    import sleap_io as sio

    if isinstance(inst, sio.PredictedInstance):
        return sio.PredictedInstance.from_numpy(
            points_data=inst.numpy(),
            skeleton=inst.skeleton,
            point_scores=inst.numpy(scores=True)[:, 2],
            score=float(inst.score),
            track=track,
            tracking_score=inst.tracking_score,
        )
    return sio.Instance.from_numpy(inst.numpy(), skeleton=inst.skeleton, track=track)


def export_view(labels, *, predictions_only: bool = False, slots: bool | None = None):
    """What the one-row-per-animal formats show of `labels` (a shallow copy; the input is
    not modified).

    Per frame: its user instances where it has any (a proofread frame), else its
    predictions; only predictions with `predictions_only` (NWB's predictions layout).
    ``slots``: give untracked instances slot tracks ``untracked_<k>`` (k: order in the
    frame); None does so only when tracked and untracked instances mix, since the
    analysis layout would otherwise drop the untracked ones.
    """
    import sleap_io as sio

    chosen = []
    for lf in labels.labeled_frames:
        if predictions_only:
            insts = list(lf.predicted_instances)
        else:
            insts = list(lf.user_instances) or list(lf.predicted_instances)
        chosen.append((lf, insts))
    flat = [i for _, insts in chosen for i in insts]
    if slots is None:
        slots = any(i.track is not None for i in flat) and any(i.track is None for i in flat)
    made: dict[int, Any] = {}
    frames = []
    for lf, insts in chosen:
        if slots:
            k, out = 0, []
            for inst in insts:
                if inst.track is None:
                    track = made.setdefault(k, sio.Track(name=f"untracked_{k}"))
                    inst = copy_with_track(inst, track)
                    k += 1
                out.append(inst)
            insts = out
        frames.append(sio.LabeledFrame(lf.video, lf.frame_idx, insts))
    used = {id(i.track) for _, insts in chosen for i in insts if i.track is not None}
    return sio.Labels(
        labeled_frames=frames,
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=[t for t in labels.tracks if id(t) in used] + list(made.values()),
        provenance=dict(labels.provenance),
    )


def _write_nwb(labels, tmp: Path) -> None:
    from sleap_io.io import nwb_predictions

    labels = export_view(labels, predictions_only=True, slots=True)
    # sleap-io numbers rows 0..n-1 unless given the video's timestamps; give one per frame
    # up to the last predicted frame so that sparse frame selections keep their places.
    last = max((int(lf.frame_idx) for lf in labels.labeled_frames), default=0)
    fps = [getattr(v, "fps", None) for v in labels.videos]
    rate = fps[0] if fps and all(f == fps[0] for f in fps) and fps[0] else 1.0
    stamps = np.arange(last + 1, dtype=np.float64) / float(rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb and ndx-pose remarks and deprecations
        nwb_predictions.write_nwb(
            labels, str(tmp), pose_estimation_metadata={"video_timestamps": stamps}
        )


def video_key(video) -> str:
    """How filter records name a video: its file name (indices change when predictions
    are merged into a project)."""
    return str(getattr(video, "filename", ""))


def _filter_flags(labels, video) -> dict[tuple[int, str | None], int] | None:
    """(frame, track name) -> flag of `video`'s filtered instances, or None when the
    labels were not filtered."""
    record = labels.provenance.get(FILTER_PROVENANCE_KEY)
    if not record:
        return None
    if video is None:
        video = labels.videos[0] if labels.videos else None
    key = video_key(video)
    return {(int(f), name): int(flag) for v, f, name, flag in record["flags"] if v == key}


def _add_h5_flags(tmp: Path, flags: dict, bits: dict) -> None:
    import json

    import h5py

    with h5py.File(tmp, "a") as f:
        n_frames = f["track_occupancy"].shape[0]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["track_names"][:]]
        per_frame = np.zeros(n_frames, dtype=np.uint8)
        per_track = np.zeros((len(names), n_frames), dtype=np.uint8)
        for (frame, name), flag in flags.items():
            if 0 <= frame < n_frames:
                per_frame[frame] |= flag
                k = names.index(name) if name in names else 0  # untracked: the one slot
                if per_track.size:
                    per_track[k, frame] |= flag
        f.create_dataset("filter_flags", data=per_frame, compression="gzip")
        f.create_dataset("filter_track_flags", data=per_track, compression="gzip")
        f.attrs["filter_flag_bits"] = json.dumps(bits)


def _add_csv_flags(tmp: Path, flags: dict) -> None:
    import csv

    with open(tmp, newline="") as fh:
        rows = list(csv.reader(fh))
    head = rows[0]
    t, fi = head.index("track"), head.index("frame_idx")
    out = [[*head, "filter.flags"]]
    for row in rows[1:]:
        name = row[t] or None
        out.append([*row, str(flags.get((int(float(row[fi])), name), 0))])
    with open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(out)


def write_predictions(
    labels, path: str | os.PathLike, *, labels_path: str | None = None
) -> list[Path]:
    """Write `labels` to `path` in the format its suffix names; returns the files written.

    ``labels_path``: the project the predictions came from, recorded in the analysis
    HDF5's ``labels_path`` as SLEAP does.
    """
    import sleap_io as sio

    from posekit.data.masks import add_mask_analysis
    from posekit.io.atomic import atomic_path

    path = Path(path)
    fmt = output_format(path)
    has_masks = any(lf.masks for lf in labels.labeled_frames)
    poses = any(len(lf.instances) for lf in labels.labeled_frames)
    if not poses and fmt != "slp" and not (has_masks and fmt == "analysis.h5"):
        raise PosekitError(
            f"nothing to write to {path}: no instance was predicted (a lower "
            "--peak-threshold, or the .slp format, which also keeps empty frames)"
        )
    full = labels
    if fmt in ("analysis.h5", "csv"):
        labels = export_view(labels)
    written = []
    for video, target in output_paths(full, path):
        with atomic_path(target) as tmp:
            if fmt == "slp":
                sio.save_slp(labels, str(tmp), verbose=False)
            elif fmt == "analysis.h5":
                if poses:
                    sio.save_analysis_h5(labels, str(tmp), video=video, labels_path=labels_path)
                    flags = _filter_flags(labels, video)
                    if flags is not None:
                        bits = labels.provenance[FILTER_PROVENANCE_KEY].get("flag_bits", {})
                        _add_h5_flags(tmp, flags, bits)
                add_mask_analysis(tmp, full, video)
            elif fmt == "csv":
                sio.save_csv(labels, str(tmp), format="sleap", video=video)
                flags = _filter_flags(labels, video)
                if flags is not None:
                    _add_csv_flags(tmp, flags)
            else:
                _write_nwb(labels, tmp)
        written.append(target)
    return written
