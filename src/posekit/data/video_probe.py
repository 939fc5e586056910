"""Is this video readable at all? One cheap look before hours of prediction.

`probe_video` opens a video, reads its frame count and decodes one frame through the same
path prediction uses (`posekit.data.video.iter_frames`: PyAV streaming, else sleap-io's
random access), in milliseconds. A file that cannot be read at all (empty, cut before its
index, not a video, a folder without images, missing) raises a `PosekitError` that names
the file, says why, and what to do. A file that decodes partly passes: prediction skips
(and counts) the frames that fail.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from posekit.errors import PosekitError

__all__ = ["probe_video", "video_name"]

#: Files sleap-io reads without FFmpeg (frames stored in HDF5).
_NOT_MEDIA = (".slp", ".h5", ".hdf5")

_FIX = (
    "copy the file again (an interrupted copy or recording leaves it cut short), or "
    "re-encode it with ffmpeg (ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4)"
)


def video_name(video: Any) -> str:
    """The file (or first image) a `sleap_io.Video` reads, for messages."""
    name = getattr(video, "filename", video)
    if isinstance(name, list | tuple):
        return f"{name[0]} (+{len(name) - 1} more images)" if name else "(no images)"
    return str(name)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C libraries (OpenCV's FFmpeg prints "moov atom not found" itself) while
    sleap-io looks at a file PyAV already found unreadable; the message says why."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no file descriptor 2
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _pyav_failure(path: Path) -> str | None:
    """Why PyAV cannot open `path` as a video, or None when it can."""
    try:
        import av
        import av.logging
    except ImportError:  # pragma: no cover - av is a dependency
        return None
    try:
        with av.logging.Capture(), av.open(str(path)) as container:
            if not container.streams.video:
                return "it holds no video stream"
    except Exception as err:  # noqa: BLE001 - PyAV's reason is the message
        reason = getattr(err, "strerror", None) or str(err)
        return f"it is not a readable video ({reason}): it is damaged, cut short or not a video"
    return None


def probe_video(video: Any, frame_idx: int | None = None, fallback=None) -> int:
    """Check that `video` (a path or `sleap_io.Video`) can be read; return its frame count.

    Decodes frame `frame_idx` (default the first) with ``fallback`` (as `iter_frames`).
    Raises `PosekitError` naming the file when it is missing, empty, has no frames, or that
    frame cannot be decoded.
    """
    import sleap_io as sio

    from posekit.data.video import iter_frames, num_frames

    path = None
    if isinstance(video, str | os.PathLike):
        path = Path(video)
        name = str(path)
    else:
        name = video_name(video)
        filename = getattr(video, "filename", None)
        path = Path(filename) if isinstance(filename, str) else None
    if path is not None and not path.exists():
        raise PosekitError(f"video {name!r} does not exist; check the path")
    if path is not None and path.is_file() and path.stat().st_size == 0:
        raise PosekitError(f"cannot read video {name!r}: it is empty (0 bytes); {_FIX}")
    if path is not None and path.is_dir() and not any(path.iterdir()):
        raise PosekitError(
            f"cannot read video {name!r}: it is an empty folder, not a video file or a folder "
            "of images; check the path"
        )
    media = path is not None and path.is_file() and not path.name.endswith(_NOT_MEDIA)
    reason = _pyav_failure(path) if media else None
    with _quiet_stderr() if reason else contextlib.nullcontext():
        if isinstance(video, str | os.PathLike):
            try:
                video = sio.load_video(str(path))
            except Exception as err:  # noqa: BLE001 - any backend failure is "unreadable"
                raise PosekitError(
                    f"cannot open video {name!r} ({reason or f'{type(err).__name__}: {err}'}); "
                    f"{_FIX}"
                ) from err
        try:
            n = num_frames(video)
        except Exception as err:  # noqa: BLE001
            n, reason = 0, reason or f"it has no readable frames ({type(err).__name__}: {err})"
        if n <= 0:
            folder = path is not None and path.is_dir()
            why = reason or (
                "it is a folder with no images in it" if folder else "it has no frames"
            )
            raise PosekitError(f"cannot read video {name!r}: {why}; {_FIX}")
        idx = 0 if frame_idx is None else int(frame_idx)
        frames = iter_frames(video, [idx], fallback=fallback, threads=False)
        try:
            _, image, err = next(frames)
        finally:
            frames.close()
    if err is not None or image is None:
        raise PosekitError(
            f"cannot decode frame {idx} of video {name!r} ({type(err).__name__}: {err}); the "
            f"file is damaged or not a video posekit can read: {_FIX}"
        )
    return n
