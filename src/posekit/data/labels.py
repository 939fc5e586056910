"""Training labels through sleap-io: user instances, tracks, moved videos, splits, frames.

`load_labels` reads any file sleap-io reads (`.slp`, `.pkg.slp` with embedded frames,
DLC, COCO, NWB, ...) into `PoseLabels`: one entry per frame that has user-labelled
instances, with their points as a float array in the skeleton's node order and their
track (class) indices. Predicted instances are ignored, so where a frame has both the
user's instance is the one used. Instances without any visible point are dropped.

Skeletons of `.slp` files are read with SLEAP's edge order (`read_slp_skeletons`), which
fixes the PAF channel order; sleap-io's own order can differ.

Videos that moved are searched for by file name in `search_path_hints` and in the labels'
folder (also under the stored relative path); if one is still missing a single
`PosekitError` lists every place looked and how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from posekit.config.skeleton import SkeletonConfig, read_slp_skeletons
from posekit.errors import PosekitError


@dataclass
class FrameEntry:
    """One labelled frame: where to read it and its user instances.

    `points` is (n_instances, n_nodes, 2) float64 with NaN for missing points;
    `track_inds` is (n_instances,) with -1 where an instance has no (known) track;
    `masks` the frame's user segmentation masks (sleap-io objects, still run-length
    encoded; `posekit.data.masks.frame_masks` decodes them).
    """

    video_index: int
    frame_idx: int
    points: np.ndarray
    track_inds: np.ndarray
    masks: list = field(default_factory=list)
    #: per mask, the index of its instance in `points` (-1: not linked)
    mask_instance: list = field(default_factory=list)

    @property
    def n_instances(self) -> int:
        return int(self.points.shape[0])


@dataclass
class PoseLabels:
    """User-labelled frames of a `sleap_io.Labels`, ready for datasets.

    Attributes:
        labels: the sleap-io object (videos resolved).
        skeleton: node names, edges (SLEAP order) and symmetries.
        class_names: track names, the classes of identity models (index = class).
        entries: labelled frames with user instances (see `FrameEntry`).
        path: the file the labels came from (None when built in memory).
    """

    labels: Any
    skeleton: SkeletonConfig
    class_names: list[str]
    entries: list[FrameEntry]
    path: Path | None = None
    _cache: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    _pid: int = field(default_factory=os.getpid, repr=False)

    # ------------------------------------------------------------------ views

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def videos(self) -> list[Any]:
        return list(self.labels.videos)

    @property
    def node_names(self) -> list[str]:
        return list(self.skeleton.node_names)

    @property
    def edge_inds(self) -> list[tuple[int, int]]:
        return self.skeleton.edge_inds

    @property
    def symmetry_inds(self) -> list[tuple[int, int]]:
        return self.skeleton.symmetry_inds

    @property
    def n_instances(self) -> int:
        """Total number of user instances."""
        return sum(e.n_instances for e in self.entries)

    @property
    def max_instances(self) -> int:
        """Most user instances in one frame."""
        return max((e.n_instances for e in self.entries), default=0)

    def all_points(self) -> list[np.ndarray]:
        """Every instance's (n_nodes, 2) points (for crop-size detection)."""
        return [p for e in self.entries for p in e.points]

    def subset(self, indices: Sequence[int]) -> PoseLabels:
        """The same labels restricted to `entries[i]` for i in `indices` (cache shared)."""
        return PoseLabels(
            labels=self.labels,
            skeleton=self.skeleton,
            class_names=list(self.class_names),
            entries=[self.entries[int(i)] for i in indices],
            path=self.path,
            _cache=self._cache,
        )

    # ------------------------------------------------------------------ frames

    def frame_shape(self, video_index: int) -> tuple[int, int, int]:
        """(H, W, C) of a video's frames."""
        video = self.labels.videos[video_index]
        shape = getattr(video, "shape", None)
        if shape is None:
            img = self.read_frame(video_index, self.entries[0].frame_idx)
            return tuple(img.shape)  # type: ignore[return-value]
        return int(shape[1]), int(shape[2]), int(shape[3])

    def _reopen_after_fork(self) -> None:
        # DataLoader workers inherit open file handles (HDF5, ffmpeg pipes) that must not
        # be shared; reopen them once per process.
        if self._pid == os.getpid():
            return
        for video in self.labels.videos:
            try:
                video.close()
                video.open()
            except Exception:  # noqa: BLE001 - reopened lazily on next read otherwise
                pass
        self._pid = os.getpid()

    def read_frame(self, video_index: int, frame_idx: int) -> np.ndarray:
        """Decoded frame (H, W, C) uint8; cached when `preload` was called."""
        key = (int(video_index), int(frame_idx))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        self._reopen_after_fork()
        video = self.labels.videos[video_index]
        try:
            img = video[int(frame_idx)]
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported alike
            raise PosekitError(
                f"could not read frame {frame_idx} of video {video.filename!r} "
                f"({type(err).__name__}: {err}); check that the video file is complete and "
                f"readable (or remove that labelled frame)"
            ) from err
        if img is None:
            raise PosekitError(
                f"could not read frame {frame_idx} of video {video.filename!r}: the decoder "
                f"returned nothing; the video may be shorter than its labels"
            )
        return _as_hwc_uint8(np.asarray(img))

    def read_entry(self, i: int) -> np.ndarray:
        e = self.entries[i]
        return self.read_frame(e.video_index, e.frame_idx)

    def preload(self) -> PoseLabels:
        """Decode every labelled frame once and keep it in memory (uint8).

        Frames are decoded in order, one pass per video (`inference.video_reader`):
        random access through `sleap_io.Video[i]` restarts FFmpeg at every jump, about a
        second per 1024 px frame, i.e. minutes for a few hundred labelled frames that a
        sequential pass decodes in seconds. Subsets made with `subset` share the cache,
        so preloading the parent serves every split. A frame that cannot be decoded
        raises the same error as `read_frame`, naming the frame and the video.
        """
        from posekit.data.video import iter_frames

        by_video: dict[int, set[int]] = {}
        for e in self.entries:
            if (e.video_index, e.frame_idx) not in self._cache:
                by_video.setdefault(int(e.video_index), set()).add(int(e.frame_idx))
        self._reopen_after_fork()
        for video_index, inds in by_video.items():
            video = self.labels.videos[video_index]
            fallback = lambda i, v=video_index: self.read_frame(v, i)  # noqa: E731
            for frame_idx, image, error in iter_frames(video, sorted(inds), fallback=fallback):
                if error is not None or image is None:
                    # The random-access path raises the user-facing message.
                    image = self.read_frame(video_index, frame_idx)
                self._cache[(video_index, frame_idx)] = _as_hwc_uint8(np.asarray(image))
        return self


def _as_hwc_uint8(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = img[..., None]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.max() <= 1.0:
            img = img * 255.0
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


# ---------------------------------------------------------------------- videos


def _file_name(path: str) -> str:
    return PureWindowsPath(path).name if "\\" in path else Path(path).name


def _is_readable(video: Any) -> bool:
    try:
        return bool(video.exists())
    except Exception:  # noqa: BLE001
        return False


def resolve_video_paths(
    labels: Any, labels_path: str | Path | None, search_path_hints: Sequence[str | Path] = ()
) -> None:
    """Point every missing video of `labels` at a file found by name; else raise.

    Looks, for each video that does not exist where stored, at: the stored path relative
    to the labels' folder, then ``<dir>/<file name>`` for every dir in
    `search_path_hints` (a hint that is a file with the same name is used as is) and the
    labels' folder.
    """
    base = Path(labels_path).resolve().parent if labels_path else None
    hints = [Path(h).expanduser() for h in (search_path_hints or [])]
    missing: list[tuple[str, list[str]]] = []
    for video in labels.videos:
        if _is_readable(video):
            continue
        stored = str(video.filename)
        if isinstance(video.filename, list):  # image sequences: not searched
            missing.append((stored, []))
            continue
        name = _file_name(stored)
        candidates: list[Path] = []
        if base is not None and not Path(stored).is_absolute() and "\\" not in stored:
            candidates.append(base / stored)
        for hint in hints:
            candidates.append(hint if hint.name == name and hint.is_file() else hint / name)
        if base is not None:
            candidates.append(base / name)
        found = next((c for c in candidates if c.is_file()), None)
        if found is not None:
            video.replace_filename(str(found), open=True)
            if _is_readable(video):
                continue
        missing.append((stored, [str(c) for c in dict.fromkeys(candidates)]))
    if missing:
        lines = []
        for stored, looked in missing:
            where = "; ".join(looked) if looked else "(no folder to search)"
            lines.append(f"  {stored!r} - looked in: {where}")
        raise PosekitError(
            f"{len(missing)} video(s) of {labels_path or 'the labels'} could not be found:\n"
            + "\n".join(lines)
            + "\nFix: add the folder that holds the video(s) to data.labels.search_path_hints "
            "(or pass search_path_hints=[...]), or move the video(s) next to the labels file."
        )


# ---------------------------------------------------------------------- loading


def _skeleton_of(labels: Any, path: Path | None) -> SkeletonConfig:
    if not labels.skeletons:
        raise PosekitError(f"labels {path or ''} have no skeleton; label some frames first")
    if path is not None and path.suffix == ".slp":
        try:
            skeletons = read_slp_skeletons(path)
            if skeletons:
                return skeletons[0]
        except Exception:  # noqa: BLE001 - fall back to sleap-io's view of the skeleton
            pass
    return SkeletonConfig.from_sleap_io(labels.skeletons[0])


def instance_points(instance: Any, node_names: list[str]) -> np.ndarray:
    """(len(node_names), 2) points of a sleap-io instance in the given node order.

    Invisible points and nodes the instance's skeleton lacks are NaN, so labels and
    predictions made with differently ordered skeletons compare node by node.
    """
    pts = np.asarray(instance.numpy(), dtype=np.float64).reshape(-1, 2).copy()
    visible = np.asarray(instance.points["visible"], dtype=bool)
    pts[~visible] = np.nan
    names = list(instance.skeleton.node_names)
    if names == node_names:
        return pts
    out = np.full((len(node_names), 2), np.nan)
    index = {n: i for i, n in enumerate(names)}
    for j, n in enumerate(node_names):
        if n in index:
            out[j] = pts[index[n]]
    return out


def check_part_names(labels_nodes: list[str], part_names: Sequence[str] | None, where: str) -> None:
    """Clear error when config part names are not nodes of the labels' skeleton."""
    if not part_names:
        return
    unknown = [p for p in part_names if p not in labels_nodes]
    if unknown:
        raise PosekitError(
            f"skeleton mismatch: {where} names part(s) {unknown} that the labels' skeleton "
            f"does not have; its nodes are {labels_nodes}. Fix the part names in the config "
            f"(or set them to null to use the skeleton's nodes)."
        )


def pose_labels_from_sleap_io(
    labels: Any,
    path: str | Path | None = None,
    part_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    require_track: bool = False,
) -> PoseLabels:
    """`PoseLabels` from an in-memory `sleap_io.Labels` (videos must be readable).

    Args:
        part_names: node order of the points (config part names); default: skeleton.
        class_names: class order (config classes); default: the labels' track names.
        require_track: drop instances without a track (identity models, as SLEAP does).
    """
    path = Path(path) if path is not None else None
    skeleton = _skeleton_of(labels, path)
    check_part_names(skeleton.node_names, part_names, "the config")
    if part_names and list(part_names) != skeleton.node_names:
        keep = set(part_names)
        skeleton = SkeletonConfig(
            name=skeleton.name,
            node_names=list(part_names),
            edges=[e for e in skeleton.edges if e[0] in keep and e[1] in keep],
            symmetries=[s for s in skeleton.symmetries if s[0] in keep and s[1] in keep],
        )
    nodes = skeleton.node_names
    classes = list(class_names) if class_names else [t.name for t in labels.tracks]
    class_index = {name: i for i, name in enumerate(classes)}
    video_index = {id(v): i for i, v in enumerate(labels.videos)}

    entries: list[FrameEntry] = []
    for lf in labels.labeled_frames:
        pts_list, tracks, kept = [], [], []
        for inst in lf.user_instances:
            pts = instance_points(inst, nodes)
            if np.isnan(pts).all():
                continue
            track = class_index.get(inst.track.name, -1) if inst.track is not None else -1
            if require_track and track < 0:
                continue
            pts_list.append(pts)
            tracks.append(track)
            kept.append(id(inst))
        # Frames with masks but no pose still train mask models.
        masks = [m for m in lf.masks if not m.is_predicted]
        if not pts_list and not masks:
            continue
        entries.append(
            FrameEntry(
                video_index=video_index[id(lf.video)],
                frame_idx=int(lf.frame_idx),
                points=np.stack(pts_list) if pts_list else np.zeros((0, len(nodes), 2)),
                track_inds=np.asarray(tracks, dtype=np.int64),
                masks=masks,
                mask_instance=[
                    kept.index(id(m.instance)) if id(m.instance) in kept else -1 for m in masks
                ],
            )
        )
    if not entries:
        what = "user-labelled instances" + (" with a track" if require_track else "")
        raise PosekitError(
            f"labels {path or ''} have no {what} (predicted instances are not used for "
            f"training); label some frames in SLEAP first"
        )
    return PoseLabels(
        labels=labels, skeleton=skeleton, class_names=classes, entries=entries, path=path
    )


def read_labels_file(path: str | os.PathLike, open_videos: bool = True) -> Any:
    """`sleap_io.Labels` from a labels file, with one clear error for every way it fails.

    A missing path, a folder, a truncated or non-HDF5 `.slp` and a video given where labels
    are expected each get a message naming the file and what to do, never a traceback from
    h5py.
    """
    import sleap_io as sio

    file = Path(path).expanduser()
    if not file.exists():
        raise PosekitError(f"labels file {str(file)!r} does not exist; check the path")
    if file.is_dir():
        raise PosekitError(f"{str(file)!r} is a folder, not a labels file")
    try:
        if file.suffix == ".slp":
            labels = sio.load_slp(str(file), open_videos=open_videos)
        else:
            labels = sio.load_file(str(file))
    except Exception as err:  # noqa: BLE001 - h5py/json errors are all "unreadable"
        raise PosekitError(
            f"could not read labels {str(file)!r} ({type(err).__name__}: {err}); the file is "
            "damaged or not a SLEAP/sleap-io labels file: re-export it from SLEAP, or restore it"
        ) from err
    if not isinstance(labels, sio.Labels):
        raise PosekitError(f"{str(file)!r} is a video, not a labels file")
    return labels


def save_labels(labels: Any, output: str | os.PathLike, embed: bool = False) -> Path:
    """Write `sleap_io.Labels` to `output` (.slp) atomically (`posekit.io.atomic`);
    `embed`: with the labelled frames' images inside (a self-contained .pkg.slp)."""
    import sleap_io as sio

    from posekit.io.atomic import atomic_path

    output = Path(output)
    if output.suffix != ".slp":
        raise PosekitError(f"labels are written as .slp; got output path {output}")
    with atomic_path(output) as tmp:
        sio.save_slp(labels, str(tmp), verbose=False, embed=embed)
    return output


def load_labels(
    path: str | Path | Any,
    search_path_hints: Sequence[str | Path] = (),
    part_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    require_track: bool = False,
    preload: bool = False,
) -> PoseLabels:
    """Load labels with sleap-io, resolve moved videos and keep user instances.

    Args:
        path: labels file (any format sleap-io reads), or a `sleap_io.Labels`.
        search_path_hints: folders to look for videos that moved.
        part_names, class_names, require_track: see `pose_labels_from_sleap_io`.
        preload: decode every labelled frame into memory now.
    """

    if isinstance(path, str | Path):
        file = Path(path).expanduser()
        labels = read_labels_file(file)
    else:
        labels, file = path, None
    resolve_video_paths(labels, file, search_path_hints)
    out = pose_labels_from_sleap_io(labels, file, part_names, class_names, require_track)
    return out.preload() if preload else out


# ---------------------------------------------------------------------- splits


def split_labels(
    labels: PoseLabels, validation_fraction: float = 0.1, seed: int = 0
) -> tuple[PoseLabels, PoseLabels]:
    """Deterministic random split of frames into (train, validation).

    At least one frame goes to validation; with a single labelled frame it is used for
    both (as SLEAP does), so training can still run.
    """
    if not 0 <= validation_fraction < 1:
        raise PosekitError(
            f"data.labels.validation_fraction={validation_fraction} must be in [0, 1)"
        )
    n = len(labels)
    if n == 1:
        return labels, labels.subset([0])
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(round(n * validation_fraction)), 1), n - 1)
    val = sorted(order[:n_val].tolist())
    train = sorted(order[n_val:].tolist())
    return labels.subset(train), labels.subset(val)


def _cfg(config: Any, name: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


def load_training_labels(
    labels_config: Any,
    training_labels: str | Path | Any | None = None,
    part_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    require_track: bool = False,
    seed: int = 0,
    preload: bool = False,
) -> dict[str, PoseLabels | None]:
    """Train / validation / test labels from a `LabelsConfig` (or dict of its fields).

    `training_labels` overrides the config's path (e.g. given on the command line).
    Validation comes from `validation_labels` when set, else a seeded
    `validation_fraction` split of the training frames. Returns
    ``{"train": ..., "val": ..., "test": ... or None}``.
    """
    hints = list(_cfg(labels_config, "search_path_hints", []) or [])
    source = (
        training_labels if training_labels is not None else _cfg(labels_config, "training_labels")
    )
    if source is None:
        raise PosekitError(
            "no training labels: set data.labels.training_labels to a .slp/.pkg.slp file "
            "(or pass the labels path)"
        )
    kw = dict(part_names=part_names, class_names=class_names, require_track=require_track)
    train = load_labels(source, hints, preload=preload, **kw)
    if not class_names:
        kw["class_names"] = train.class_names
    val_source = _cfg(labels_config, "validation_labels")
    if val_source is not None:
        val = load_labels(val_source, hints, preload=preload, **kw)
        _check_same_skeleton(train, val, "data.labels.validation_labels")
    else:
        fraction = float(_cfg(labels_config, "validation_fraction", 0.1) or 0.0)
        train, val = split_labels(train, fraction if fraction > 0 else 0.1, seed)
    test_source = _cfg(labels_config, "test_labels")
    test = None
    if test_source is not None:
        test = load_labels(test_source, hints, preload=False, **kw)
        _check_same_skeleton(train, test, "data.labels.test_labels")
    return {"train": train, "val": val, "test": test}


def _check_same_skeleton(a: PoseLabels, b: PoseLabels, what: str) -> None:
    if a.node_names != b.node_names:
        raise PosekitError(
            f"skeleton mismatch: {what} has nodes {b.node_names} but the training labels "
            f"have {a.node_names}; use labels with the same skeleton"
        )


__all__ = [
    "FrameEntry",
    "PoseLabels",
    "check_part_names",
    "load_labels",
    "load_training_labels",
    "pose_labels_from_sleap_io",
    "resolve_video_paths",
    "split_labels",
]
