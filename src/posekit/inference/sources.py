"""What `posekit predict` runs on: SOURCE arguments expanded into per-video jobs.

A SOURCE is a video file, a folder of videos, a glob (``"videos/*.mp4"``, quoted so that
posekit expands it, or expanded by the shell) or a SLEAP project (``.slp``/``.pkg.slp``).
Each becomes one `PredictionJob` per video: the video, the frames to predict and, for a
project, the project it came from (so that predictions can be merged back into it, as
``sleap-track`` does, keeping user labels, suggestions and tracks).

The frame flags are SLEAP's (``sleap-track``) and sleap-nn's:

- on a project, every frame of every video by default; ``video_index`` picks videos;
- ``only_labeled_frames``: frames with user-labeled instances; ``only_suggested_frames``:
  the project's suggestions (both: either);
- ``exclude_user_labeled``: leave out frames that already have user instances;
- ``frames`` (``"0-999"``, inclusive): applies to every video, also within the above.

Model folders are told from sources by their contents: a folder (or its weights file)
holding ``training_config.json`` (or ``initial_config.json``) and ``best_model.h5``
(SLEAP) or ``model.safetensors`` (posekit) is a model.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posekit.data.video_probe import probe_video
from posekit.errors import PosekitError
from posekit.inference.checks import check_project_video, open_source, select_frames

__all__ = [
    "PROJECT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "PredictionJob",
    "expand_sources",
    "is_model_path",
    "split_models_and_sources",
]

#: Files a folder or glob source picks up as videos (what sleap-io's media backends read).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".mj2")
PROJECT_SUFFIXES = (".slp",)  # .pkg.slp ends in .slp too
_CONFIG_FILES = ("training_config.json", "initial_config.json", "training_config.yaml")
_WEIGHT_FILES = ("best_model.h5", "model.safetensors", "best.ckpt")  # SLEAP, posekit, sleap-nn
_GLOB_CHARS = set("*?[")


@dataclass
class PredictionJob:
    """One video to predict on.

    Attributes:
        video: the `sleap_io.Video` (for a project, the project's own object).
        frames: the frame indices to predict, sorted; None for every frame.
        project: the project labels the video belongs to, else None.
        source: the SOURCE argument it came from.
        video_index: the video's index in `project` (None for plain videos).
    """

    video: Any
    frames: list[int] | None
    project: Any = None
    source: Path = field(default_factory=Path)
    video_index: int | None = None

    def frame_list(self) -> list[int]:
        """The frames as an explicit list (every frame of the video when None)."""
        if self.frames is not None:
            return list(self.frames)
        from posekit.data.video import num_frames

        return list(range(num_frames(self.video)))

    @property
    def name(self) -> str:
        return str(getattr(self.video, "filename", self.video))


def is_model_path(path: str | os.PathLike) -> bool:
    """A model folder (config + weights) or the weights file inside one."""
    p = Path(path)
    if p.is_file() and p.name in _WEIGHT_FILES:
        p = p.parent
    if not p.is_dir():
        return False
    has_config = any((p / name).is_file() for name in _CONFIG_FILES)
    return has_config and any((p / name).is_file() for name in _WEIGHT_FILES)


def model_folders(path: str | os.PathLike) -> list[str]:
    """The model folders a path stands for: a model folder itself, a training run folder
    (its ``best_model``, else ``latest_model``), or a folder of runs that `posekit train`
    made for one model type (a top-down pair: centroid first); [] when none of these.

    So the folder `posekit train` printed goes straight into `posekit predict`.
    """
    p = Path(path)
    if is_model_path(p):
        return [str(p)]
    if not p.is_dir():
        return []
    run = _run_model(p)
    if run is not None:
        return [run]
    runs = [m for m in (_run_model(sub) for sub in sorted(p.iterdir()) if sub.is_dir()) if m]
    # the centroid model finds the animals: list it first (readable; the predictor sorts)
    return sorted(runs, key=lambda m: "centroid" not in Path(m).parent.name)


def _run_model(folder: Path) -> str | None:
    """A training run folder's model (``best_model``, else ``latest_model``), or None."""
    for name in ("best_model", "latest_model"):
        if is_model_path(folder / name):
            return str(folder / name)
    return None


def split_models_and_sources(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """``MODEL... SOURCE...`` -> (model paths, sources): leading model folders, then sources.

    A model folder after a source, a missing model folder (a leading path that is neither
    a model nor an existing source) and a missing half are refused with a message.
    """
    paths = [str(p) for p in paths]
    models: list[str] = []
    i = 0
    while i < len(paths) and model_folders(paths[i]):
        models.extend(model_folders(paths[i]))
        i += 1
    sources = paths[i:]
    if not models:
        first = paths[0] if paths else ""
        hint = ""
        if first and Path(first).is_dir():
            hint = (
                f"; {first} is a folder without training_config.json and best_model.h5 "
                "(SLEAP) or model.safetensors (posekit)"
            )
        elif first and not _exists_or_matches(first):
            hint = f"; {first} does not exist"
        raise PosekitError(
            "predict needs a model folder first: posekit predict MODEL_DIR [MODEL_DIR] "
            f"SOURCE...{hint}"
        )
    if not sources:
        raise PosekitError(
            "predict needs a source after the model folder(s): a video, a folder of videos, "
            "a glob or a SLEAP project (.slp)"
        )
    late = [s for s in sources if is_model_path(s)]
    if late:
        raise PosekitError(
            f"model folder {late[0]} comes after a source; give the model folders first: "
            "posekit predict MODEL_DIR [MODEL_DIR] SOURCE..."
        )
    return models, sources


def _exists_or_matches(path: str) -> bool:
    return Path(path).exists() or (bool(_GLOB_CHARS & set(path)) and bool(glob.glob(path)))


def _is_project(path: Path) -> bool:
    return path.name.endswith(PROJECT_SUFFIXES)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _expand_paths(source: str) -> list[Path]:
    """A SOURCE argument -> the files it names (videos and projects), in sorted order."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and _is_video(p))
        if found:
            return found
        # A folder of images is one video (sleap-io reads image sequences); an empty
        # folder or one without images is refused by the video check with its reason.
        return [path]
    if path.exists():
        return [path]
    if _GLOB_CHARS & set(source):
        matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
        found = [m for m in matches if m.is_file() and (_is_video(m) or _is_project(m))]
        if not found:
            raise PosekitError(f"no video or .slp file matches {source}")
        return found
    raise PosekitError(
        f"source not found: {source} (a video, a folder of videos, a glob or a .slp project)"
    )


def _project_frames(
    labels, video, *, only_labeled: bool, only_suggested: bool, exclude_user_labeled: bool
) -> list[int] | None:
    """A project video's frames under the flags (None: every frame)."""
    user = {
        int(lf.frame_idx)
        for lf in labels.labeled_frames
        if lf.video is video and len(lf.user_instances) > 0
    }
    chosen: set[int] | None = None
    if only_labeled or only_suggested:
        chosen = set()
        if only_labeled:
            chosen |= user
        if only_suggested:
            chosen |= {int(s.frame_idx) for s in labels.suggestions if s.video is video}
    embedded = getattr(getattr(video, "backend", None), "frame_map", None)
    if embedded:  # a .pkg.slp video holds only its embedded frames
        inside = {int(i) for i in embedded}
        chosen = inside if chosen is None else chosen & inside
    if exclude_user_labeled:
        if chosen is None:
            from posekit.data.video import num_frames

            chosen = set(range(num_frames(video)))
        chosen -= user
    return None if chosen is None else sorted(chosen)


def _no_selection(frames) -> bool:
    return frames is None or (isinstance(frames, str) and not frames.strip())


def _select(base: list[int] | None, frames, video) -> list[int] | None:
    """`base` (None: all) restricted to the ``--frames`` selection."""
    from posekit.data.video import num_frames, parse_frames

    if _no_selection(frames):
        return base
    wanted = parse_frames(frames, num_frames(video))
    if base is None:
        return wanted
    keep = set(wanted or [])
    return [i for i in base if i in keep]


def load_project(path: Path):
    """A SLEAP project with its videos found (moved videos are looked up next to it)."""
    from posekit.data.labels import read_labels_file, resolve_video_paths

    labels = read_labels_file(path)
    try:
        resolve_video_paths(labels, path)
    except PosekitError:
        pass  # a video still missing is refused when it is selected (check_project_video)
    return labels


def expand_sources(
    sources: Sequence[str | os.PathLike],
    *,
    frames=None,
    video_index: int | Sequence[int] | None = None,
    only_labeled_frames: bool = False,
    only_suggested_frames: bool = False,
    exclude_user_labeled: bool = False,
) -> list[PredictionJob]:
    """SOURCE arguments -> one `PredictionJob` per video, in argument order.

    `video_index` and the project flags apply to projects only (a plain video given with
    them is refused, since the flags would silently mean nothing). Videos whose selection
    is empty are left out; no job at all is an error naming the flags.
    """

    project_flags = only_labeled_frames or only_suggested_frames or exclude_user_labeled
    if isinstance(video_index, int):
        video_index = [video_index]
    jobs: list[PredictionJob] = []
    files = [p for s in sources for p in _expand_paths(str(s))]
    if not any(_is_project(p) for p in files) and (project_flags or video_index is not None):
        raise PosekitError(
            "--video-index, --only-labeled-frames, --only-suggested-frames and "
            "--exclude-user-labeled select frames of a SLEAP project (.slp); no source is one"
        )
    for path in files:
        if _is_project(path):
            labels = load_project(path)
            indices = range(len(labels.videos))
            if video_index is not None:
                bad = [i for i in video_index if not 0 <= i < len(labels.videos)]
                if bad:
                    raise PosekitError(
                        f"--video-index {bad[0]} is out of range: {path} has "
                        f"{len(labels.videos)} video(s), numbered from 0"
                    )
                indices = list(video_index)
            for i in indices:
                video = labels.videos[i]
                base = _project_frames(
                    labels,
                    video,
                    only_labeled=only_labeled_frames,
                    only_suggested=only_suggested_frames,
                    exclude_user_labeled=exclude_user_labeled,
                )
                chosen = _select(base, frames, video)
                if chosen is not None and not chosen:
                    continue
                check_project_video(labels, video, path, chosen)
                jobs.append(PredictionJob(video, chosen, labels, path, i))
        else:
            # Checked before any model loads: a file that is no readable video, and a
            # --frames selection that names no frame of it, are refused with the reason.
            video = open_source(path)
            n = probe_video(video)
            chosen = None if _no_selection(frames) else select_frames(frames, n, f"video {path}")
            jobs.append(PredictionJob(video, chosen, None, path, None))
    if not jobs:
        chosen_by = f"--frames {frames}" if not _no_selection(frames) else "the frame flags"
        raise PosekitError(
            f"no frames to predict: {chosen_by} select(s) no frame of "
            f"{', '.join(str(f) for f in files)} (--frames, --only-labeled-frames, "
            "--only-suggested-frames and --exclude-user-labeled together choose the frames)"
        )
    return jobs


def labeled_frames_only(jobs: Sequence[PredictionJob]) -> list[PredictionJob]:
    """The jobs restricted to frames with user-labeled instances, for a predictor that
    takes part of its answer from them (a centered-instance model without its centroid
    model). Plain videos have no such frames and are refused."""
    out = []
    for job in jobs:
        if job.project is None:
            raise PosekitError(
                f"without a centroid model the crop centres come from labeled instances, so "
                f"predict on a SLEAP project (.slp), not the video {job.source}; or pass the "
                "centroid model as well"
            )
        labeled = sorted(
            lf.frame_idx
            for lf in job.project.labeled_frames
            if lf.video is job.video and lf.user_instances
        )
        keep = labeled if job.frames is None else sorted(set(labeled) & set(job.frames))
        if keep:
            out.append(PredictionJob(job.video, keep, job.project, job.source, job.video_index))
    if not out:
        raise PosekitError(
            "without a centroid model the crop centres come from labeled instances, and the "
            "selected frames have none; predict on labeled frames or pass the centroid model"
        )
    return out
