"""Checks that run before prediction starts, so that a bad input fails in seconds.

Prediction runs for hours on long videos; every input it can check cheaply is checked
before the first frame (and, from the command line, before the models are loaded): the
option values, the source (a labels file that reads, with labeled frames, whose videos
exist and decode; a video that opens and decodes), the frame selection, and whether
the labels carry the nodes a model takes from them. Each failure is one `PosekitError`
that names the file or value, why it is refused and what to do.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError

__all__ = [
    "check_labels_nodes",
    "check_prediction_options",
    "open_source",
    "select_frames",
    "select_labeled_frames",
    "select_video_frames",
]


def check_prediction_options(
    *,
    peak_threshold: float | None = None,
    batch_size: int | None = None,
    max_instances: int | None = None,
) -> None:
    """Refuse option values prediction cannot use (None: not given, not checked)."""
    if peak_threshold is not None and not 0.0 < float(peak_threshold) < 1.0:
        raise PosekitError(
            f"peak threshold {peak_threshold} is outside (0, 1): confidence maps hold values "
            "between 0 and 1, so a threshold <= 0 keeps every speck of noise as a point and "
            "one >= 1 keeps nothing; use e.g. 0.2 (the default)"
        )
    if batch_size is not None and int(batch_size) < 1:
        raise PosekitError(f"batch size must be at least 1; got {batch_size}")
    if max_instances is not None and int(max_instances) < 1:
        raise PosekitError(
            f"max instances must be at least 1; got {max_instances} (leave it out to keep "
            "every instance found)"
        )


def open_source(source: Any) -> Any:
    """A video or labels path -> `sleap_io.Video` / `sleap_io.Labels` (objects pass through).

    A labels file that does not read (missing, truncated, not HDF5) and a video that does
    not open raise a `PosekitError` naming the file.
    """
    import sleap_io as sio

    from posekit.data.labels import read_labels_file
    from posekit.data.video_probe import probe_video

    if not isinstance(source, str | os.PathLike):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise PosekitError(
            f"source {str(path)!r} does not exist (the last argument is the video or .slp)"
        )
    if path.name.endswith(".slp"):
        labels = read_labels_file(path)
        labels.provenance.setdefault("filename", str(path))
        return labels
    if path.is_dir() or path.stat().st_size == 0:
        probe_video(path)  # names an empty file or folder; a folder of images passes
    try:
        return sio.load_video(str(path))
    except Exception as err:  # noqa: BLE001 - report any backend failure
        raise PosekitError(
            f"cannot open video {str(path)!r} ({type(err).__name__}: {err}); the file is "
            "damaged or not a video: copy it again or re-encode it with ffmpeg"
        ) from err


def _frames_text(frames: Any) -> str:
    return frames if isinstance(frames, str) else repr(frames)


def select_frames(frames: Any, n: int, what: str) -> list[int]:
    """The indices `frames` selects among `n` frames of `what` (all when None); refuses a
    selection that names none of them (a few beyond the end are dropped with a warning)."""
    from posekit.data.video import parse_frames

    wanted = parse_frames(frames)
    if wanted is None:
        return list(range(n))
    if not any(i < n for i in wanted):
        last = f" (0-{n - 1})" if n else ""
        raise PosekitError(
            f"none of the requested frames ({_frames_text(frames)}) exist: {what} has {n} "
            f"frames{last}; choose frames in that range"
        )
    return parse_frames(frames, n)


def select_video_frames(video: Any, frames: Any) -> list[int]:
    """Probe `video` and return the frame indices `frames` selects (all when None).

    Refuses a video that cannot be read (see `posekit.data.video_probe`) and a selection
    that names no frame of the video.
    """
    from posekit.data.video import num_frames, parse_frames
    from posekit.data.video_probe import probe_video, video_name

    what = f"video {video_name(video)!r}"
    embedded = getattr(getattr(video, "backend", None), "frame_map", None)
    wanted = parse_frames(frames)
    if embedded and wanted:  # a .pkg.slp video: its stored frames keep their indices
        inds = [i for i in wanted if i in embedded]
        if not inds:
            raise PosekitError(
                f"none of the requested frames ({_frames_text(frames)}) is stored in {what}; "
                f"it holds frames {sorted(embedded)[:10]}"
            )
        probe_video(video, inds[0])
        return inds
    if wanted:
        # Probe the first frame asked for, not frame 0: a .pkg.slp video holds only its
        # labelled frames, and frame 0 need not be one of them.
        try:
            n = num_frames(video)
        except Exception:  # noqa: BLE001 - unreadable: probe_video says why below
            n = None
        if n:
            inds = select_frames(frames, n, what)
            probe_video(video, inds[0])
            return inds
    n = probe_video(video)
    return select_frames(frames, n, what)


def _video_key(video: Any) -> int:
    return id(video)


def _exists(video: Any) -> bool:
    try:
        return bool(video.exists())
    except Exception:  # noqa: BLE001
        return False


def select_labeled_frames(labels: Any, frames: Any, labels_path: Any = None) -> list:
    """The labeled frames of `labels` that `frames` selects, after checking their videos.

    Refuses labels without labeled frames, a selection that matches none of them, and a
    video of the selected frames that cannot be found (looked for next to the labels file,
    as training does) or whose first selected frame cannot be decoded.
    """
    from posekit.data.labels import resolve_video_paths
    from posekit.data.video import parse_frames
    from posekit.data.video_probe import probe_video, video_name

    labels_path = labels_path or labels.provenance.get("filename")
    where = f"labels {str(labels_path)!r}" if labels_path else "the labels"
    if not labels.labeled_frames:
        raise PosekitError(
            f"{where} have no labeled frames, so there is nothing to predict on; predict "
            "on the video itself (posekit predict MODEL VIDEO) or label some frames first"
        )
    wanted = parse_frames(frames)
    lfs = [lf for lf in labels.labeled_frames if wanted is None or lf.frame_idx in wanted]
    if not lfs:
        idx = sorted({lf.frame_idx for lf in labels.labeled_frames})
        shown = ", ".join(map(str, idx[:10])) + (", ..." if len(idx) > 10 else "")
        raise PosekitError(
            f"none of the {len(idx)} labeled frame(s) of {where} is among the requested "
            f"frames ({_frames_text(frames)}); labeled frames: {shown}"
        )
    first: dict[int, Any] = {}
    for lf in lfs:
        first.setdefault(_video_key(lf.video), lf)
    used = [lf.video for lf in first.values()]
    # Videos that moved are found by name next to the labels file, as training does.
    try:
        resolve_video_paths(types.SimpleNamespace(videos=used), labels_path)
    except PosekitError as err:
        missing = [video_name(v) for v in used if not _exists(v)]
        raise PosekitError(
            f"{len(missing)} video(s) of {where} cannot be found: {_names(missing)} (looked "
            "where they were stored and next to the labels file); move the video(s) next to "
            "the labels file, or point the labels at them in SLEAP (File > Replace Videos)"
        ) from err
    for lf in first.values():
        probe_video(lf.video, lf.frame_idx, fallback=lambda i, lf=lf: lf.image)
    return lfs


def check_labels_nodes(labels: Any, needed: Sequence[str], model: str, why: str, fix: str) -> None:
    """Refuse labels whose skeletons lack any of the `needed` nodes of `model`.

    `why`: what the model takes from the labels; `fix`: what the user can do instead.
    """
    have: list[str] = []
    for skel in labels.skeletons:
        have.extend(n for n in skel.node_names if n not in have)
    missing = [n for n in needed if n not in have]
    if missing:
        name = labels.provenance.get("filename") if hasattr(labels, "provenance") else None
        where = f"labels {str(name)!r}" if name else "the labels"
        raise PosekitError(
            f"the {model} {why}, so it needs the node(s) {_names(needed)}; the skeleton of "
            f"{where} has {_names(have) or 'no nodes'} and lacks {_names(missing)}; {fix}"
        )


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def check_project_video(labels: Any, video: Any, labels_path: Any, frames: Any) -> None:
    """Refuse a project video that cannot be found or whose first wanted frame does not
    decode, before any model loads (moved videos were already looked for next to the
    project by `posekit.data.labels.resolve_video_paths`)."""
    from posekit.data.video_probe import probe_video, video_name

    where = f"labels {str(labels_path)!r}"
    if not _exists(video):
        raise PosekitError(
            f"1 video(s) of {where} cannot be found: {_names([video_name(video)])} (looked "
            "where it was stored and next to the labels file); move the video next to the "
            "labels file, or point the labels at it in SLEAP (File > Replace Videos)"
        )
    first = frames[0] if frames else None
    lf = next((f for f in labels.labeled_frames if f.video is video and f.frame_idx == first), None)
    probe_video(video, first, fallback=(lambda i, lf=lf: lf.image) if lf is not None else None)
