"""Streaming frame reading for inference: sequential decoding in a background thread.

Why this exists: `sleap_io.Video[i]` is built for random access. With its default
FFMPEG plugin every read goes through a pipe from an ffmpeg subprocess and a jump
restarts it; reading a 1024 x 1024 H.264 video that way costs ~0.3 s per frame, 30-60x
more than decoding the same frames one after the other. Inference reads frames in
increasing order, so here media files (`MediaVideo` backends: mp4, avi, mov, mkv, ...)
are decoded sequentially with PyAV (`av`), jumping ahead with a keyframe seek only when
the gap to the next wanted frame is large (an index that goes backwards starts a new
pass). Everything else (HDF5 / `.pkg.slp` embedded frames, image folders, virtually
cropped videos, rotated or variable-rate streams, a missing `av`) keeps using
`sleap_io.Video[i]`, whose backends are fine at random access.

Exactness. A frame is identified by counting decoded frames from the start of the
stream (what a sequential ffmpeg read does); after a seek, by its timestamp
(``round((pts - pts_0) * time_base * rate)``, what ffmpeg's time-based seek in
sleap-io's FFMPEG plugin does). Pixels are converted with libswscale to ``rgb24`` and
the first channel is kept for grayscale videos, exactly as sleap-io does; on the shared
test videos the result is bit-identical to `sleap_io.Video[i]` (FFMPEG plugin). With
sleap-io's OpenCV plugin (used when ``cv2`` is installed) pixels may differ by a
rounding step, since OpenCV links its own FFmpeg build. Streams whose frames cannot be
matched to sleap-io's indices (variable frame rate, display rotation) fall back to random
access. ``verify=True`` also compares the first streamed frame with sleap-io's read of it
(a large difference, i.e. a wrong frame rather than a rounding step, means random access
with a warning); it is off by default because that one read through sleap-io's FFMPEG
plugin costs ~0.3-1 s.

Memory stays flat: frames flow through a bounded queue (`BackgroundIterator`), so at
most ``maxsize`` items are decoded ahead of the consumer whatever the video length.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from posekit.errors import PosekitError

# Jump with a keyframe seek when the next wanted frame is more than this many frames
# ahead; closer frames are reached by decoding through (no seek can be cheaper than
# decoding up to a GOP, and short gaps are common in labeled-frame selections).
DEFAULT_SEEK_GAP = 100

# Mean absolute pixel difference between a streamed frame and ``video[i]`` above which
# the streamed frame is considered a different frame (decoders differ by ~1 level).
VERIFY_MEAN_ABS_TOLERANCE = 2.0


# --------------------------------------------------------------------------- eligibility


def _media_backend(video) -> Any | None:
    """The video's `MediaVideo` backend (opened if needed), or None when not a media file."""
    try:
        from sleap_io.io.video_reading import MediaVideo
    except ImportError:  # pragma: no cover - sleap-io always has it
        return None
    try:
        if not video.is_open and getattr(video, "open_backend", True):
            video.open()
    except Exception:  # noqa: BLE001 - an unopenable video falls back (and fails there)
        return None
    backend = getattr(video, "backend", None)
    # Exact type: subclasses / wrappers (e.g. virtual crops) change what video[i] returns.
    if type(backend) is not MediaVideo:
        return None
    return backend


def can_stream(video) -> bool:
    """Whether `video` can be decoded sequentially here (a local media file and PyAV)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    backend = _media_backend(video)
    if backend is None:
        return False
    filename = getattr(backend, "filename", None)
    if not isinstance(filename, str) or "://" in filename:
        return False
    import os

    return os.path.isfile(filename)


# --------------------------------------------------------------------------- decoding


class SequentialDecoder:
    """PyAV decoder of one media file for increasing frame indices.

    `read(i)` returns frame ``i`` as (H, W, 3) uint8 RGB. Indices must increase from call
    to call; frames in between are decoded but not converted to RGB (cheap), and gaps
    larger than `seek_gap` are crossed with a keyframe seek.

    Frame ``i`` is the ``i``-th frame decoded from the start. After a seek the index
    comes from the timestamp, ``round((pts - pts_0) * time_base * rate)`` with ``pts_0``
    the first frame's; the two agree on constant-rate streams, and that is checked on
    every frame decoded from the start. A stream whose timestamps disagree with the count
    (variable frame rate), or that carries a display rotation (which ffmpeg, and so
    sleap-io, would apply), raises `UnsupportedStream` so that the caller can use
    random access instead.
    """

    def __init__(self, filename: str, seek_gap: int = DEFAULT_SEEK_GAP, threads: bool = True):
        import av

        self.filename = filename
        self.seek_gap = int(seek_gap)
        self.container = av.open(filename)
        if not self.container.streams.video:
            self.container.close()
            raise ValueError(f"{filename} has no video stream")
        self.stream = self.container.streams.video[0]
        if threads:
            # Frame threading: most camera H.264 streams cannot use slice threads.
            self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.rate = Fraction(rate) if rate else None
        self.time_base = Fraction(self.stream.time_base) if self.stream.time_base else None
        fmt = self.container.format.name or ""
        # MP4/MOV sample tables give the exact count; other containers may not.
        self.n_frames = int(self.stream.frames or 0) if ("mp4" in fmt or "mov" in fmt) else 0
        self.pos = -1  # index of the last frame pulled from the decoder
        self.seeks = 0
        self._frames: Iterator | None = None
        self._origin = None  # pts of the first frame of the stream
        self._counting = True  # index by count from the start (False after a seek)
        self._seek_target: int | None = None

    def close(self) -> None:
        self._frames = None
        self.container.close()

    def __enter__(self) -> SequentialDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pts_index(self, pts) -> int | None:
        if pts is None or self._origin is None or self.rate is None or not self.time_base:
            return None
        return int(round((pts - self._origin) * self.time_base * self.rate))

    def _can_seek(self, frame_idx: int) -> bool:
        return (
            frame_idx - self.pos > self.seek_gap
            and self._origin is not None
            and self.rate is not None
            and bool(self.time_base)
            and self._seek_target != frame_idx  # one seek per target (GOPs > seek_gap)
        )

    def _seek(self, frame_idx: int) -> None:
        """Jump to the keyframe at or before `frame_idx` (by timestamp)."""
        target = self._origin + int(frame_idx / (self.rate * self.time_base))
        self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        self._frames = self.container.decode(self.stream)
        self._counting = False
        self._seek_target = frame_idx
        self.seeks += 1

    def read(self, frame_idx: int) -> np.ndarray:
        if frame_idx <= self.pos:
            raise ValueError(
                f"SequentialDecoder reads increasing frame indices; asked for {frame_idx} "
                f"after {self.pos}"
            )
        if self._frames is None:
            self._frames = self.container.decode(self.stream)
        if self._can_seek(frame_idx):
            self._seek(frame_idx)
        while True:
            try:
                frame = next(self._frames)
            except StopIteration:
                raise IndexError(f"frame {frame_idx} is beyond the end of the stream") from None
            if frame.rotation:
                raise UnsupportedStream(f"the stream has a display rotation ({frame.rotation})")
            if self._counting:
                self.pos += 1
                if self._origin is None:
                    self._origin = frame.pts
                by_pts = self._pts_index(frame.pts)
                if by_pts is not None and by_pts != self.pos:
                    raise UnsupportedStream(
                        f"frame {self.pos} has the timestamp of frame {by_pts} (variable "
                        "frame rate?)"
                    )
            else:
                by_pts = self._pts_index(frame.pts)
                if by_pts is None:
                    raise UnsupportedStream("a frame without a timestamp after a seek")
                self.pos = by_pts
            if self.pos == frame_idx:
                return frame.to_ndarray(format="rgb24")
            if self.pos > frame_idx:
                raise IndexError(f"frame {frame_idx} not found (the decoder went to {self.pos})")
            if self._can_seek(frame_idx):
                self._seek(frame_idx)


class UnsupportedStream(Exception):
    """The stream decodes, but its frames cannot be matched to sleap-io's indices."""


# --------------------------------------------------------------------------- frame iteration


def _to_sleap_channels(img: np.ndarray, backend) -> np.ndarray:
    """sleap-io's channel rule: detect grayscale on the first frame, then keep channel 0."""
    if backend.grayscale is None:
        backend.detect_grayscale(img)
    if backend.grayscale:
        # A view (sleap-io copies with ``[..., [0]]``): same pixels, and the batch
        # buffer copy that follows gathers them anyway.
        img = img[..., :1]
    return img


def iter_frames(
    video,
    frame_inds: Sequence[int] | None = None,
    *,
    fallback: Callable[[int], Any] | None = None,
    seek_gap: int = DEFAULT_SEEK_GAP,
    verify: bool = False,
    threads: bool = True,
    stats: dict | None = None,
) -> Iterator[tuple[int, np.ndarray | None, Exception | None]]:
    """Yield ``(frame_idx, image, error)`` for `frame_inds` of `video`, in order.

    ``image`` is (H, W, C) uint8 as `sleap_io.Video[i]` returns it, or None with the
    ``error`` that prevented reading it (the caller decides to skip or raise). Media
    files are decoded sequentially (an index that goes backwards starts a new pass);
    anything else is read with ``fallback(i)`` (default ``video[i]``), as are the
    remaining frames of a stream that fails or turns out unsupported midway. ``verify``:
    see the module docstring. ``threads``: let FFmpeg decode with frame threads (faster
    when cores are idle, e.g. while a GPU runs the network; on a CPU-bound run it only
    adds contention and 2-3x the decoding CPU time, so CPU inference turns it off).

    ``stats`` (optional dict) receives ``mode`` ("stream" / "random access"), ``seeks``,
    ``restarts`` and ``fallback_reason`` when streaming was not used or stopped.
    """
    if frame_inds is None:
        frame_inds = range(num_frames(video))
    read = fallback if fallback is not None else video.__getitem__
    stats = stats if stats is not None else {}
    stats.setdefault("mode", "random access")
    stats.setdefault("seeks", 0)

    decoder = None
    backend = None
    if can_stream(video):
        backend = video.backend
        try:
            decoder = SequentialDecoder(backend.filename, seek_gap=seek_gap, threads=threads)
            stats["mode"] = "stream"
            if decoder.n_frames:
                stats["num_frames"] = decoder.n_frames
        except Exception as err:  # noqa: BLE001 - unreadable by PyAV: random access
            stats["fallback_reason"] = f"PyAV cannot open it ({err})"
    else:
        stats["fallback_reason"] = "not a local media file readable by PyAV"

    def stop_streaming(reason: str) -> None:
        nonlocal decoder
        if decoder is not None:
            stats["seeks"] += decoder.seeks
            decoder.close()
        decoder = None
        stats["mode"] = "random access"
        stats["fallback_reason"] = reason

    verified = not verify
    verify_attempts = 0
    try:
        for idx in frame_inds:
            idx = int(idx)
            if decoder is not None and idx <= decoder.pos:
                # Indices went backwards: start a new pass over the file (a reopen and at
                # most one seek, still far cheaper than random access frame by frame).
                stats["seeks"] += decoder.seeks
                decoder.close()
                try:
                    decoder = SequentialDecoder(
                        backend.filename, seek_gap=seek_gap, threads=threads
                    )
                    stats["restarts"] = stats.get("restarts", 0) + 1
                except Exception as err:  # noqa: BLE001
                    decoder = None
                    stop_streaming(f"PyAV cannot reopen it ({err})")
            if decoder is None:
                try:
                    img = read(idx)
                    if img is None:
                        raise ValueError("no image returned")
                    yield idx, np.asarray(img), None
                except Exception as err:  # noqa: BLE001 - reported to the caller
                    yield idx, None, err
                continue
            try:
                img = _to_sleap_channels(decoder.read(idx), backend)
            except UnsupportedStream as err:
                stop_streaming(str(err))
                warnings.warn(
                    f"{backend.filename}: {err}; reading frames by random access instead",
                    stacklevel=2,
                )
                try:
                    img = np.asarray(read(idx))
                    yield idx, img, None
                except Exception as err2:  # noqa: BLE001
                    yield idx, None, err2
                continue
            except Exception as err:  # noqa: BLE001 - a bad stream: random access from here
                stop_streaming(f"sequential decoding failed at frame {idx} ({err})")
                try:
                    img = read(idx)
                    if img is None:
                        raise ValueError("no image returned") from err
                    yield idx, np.asarray(img), None
                except Exception as err2:  # noqa: BLE001
                    yield idx, None, err2
                continue
            if not verified and verify_attempts < 3:
                verify_attempts += 1
                ok, detail = _matches_random_access(img, idx, _reference_reader(backend, read))
                if ok is None:
                    pass  # the reference could not be read; try the next frame
                elif ok:
                    verified = True
                    stats["verify"] = detail
                else:
                    stop_streaming(f"streamed frame {idx} differs from video[{idx}] ({detail})")
                    warnings.warn(
                        f"{backend.filename}: sequentially decoded frame {idx} does not match "
                        f"sleap-io's ({detail}); reading frames by random access instead",
                        stacklevel=2,
                    )
                    try:
                        img = np.asarray(read(idx))
                    except Exception as err:  # noqa: BLE001
                        yield idx, None, err
                        continue
            yield idx, img, None
    finally:
        if decoder is not None:
            stats["seeks"] += decoder.seeks
            decoder.close()


def _reference_reader(backend, read: Callable[[int], Any]) -> Callable[[int], Any]:
    """What ``video[i]`` returns, without its bounds check.

    ``video[i]`` first checks ``i < len(video)``, and the first ``len`` of a media file
    makes sleap-io count frames by decoding the whole file (seconds per thousand frames),
    which a check of one frame should not cost. The backend's own frame read plus the
    grayscale rule is the same image.
    """
    read_frame = getattr(backend, "_read_frame", None)
    if read_frame is None:
        return read
    return lambda i: _to_sleap_channels(read_frame(int(i)), backend)


def num_frames(video) -> int:
    """Number of frames of `video`, cheaply for MP4/MOV files.

    ``len(video)`` on an unopened media file makes sleap-io count frames by decoding the
    whole file (5 s for 1500 frames of 1024 x 1024); the MP4/MOV sample table stores the
    same count, which PyAV reads instantly. Other formats (or a cached length) use
    ``len(video)``.
    """
    backend = _media_backend(video) if can_stream(video) else None
    if backend is None or getattr(backend, "_cached_shape", None) is not None:
        return len(video)
    try:
        import av

        with av.open(backend.filename) as container:
            fmt = container.format.name or ""
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
    except Exception:  # noqa: BLE001 - let sleap-io decide
        return len(video)
    if n > 0 and ("mp4" in fmt or "mov" in fmt):
        return n
    return len(video)


def parse_frames(spec: Any, n_frames: int | None = None) -> list[int] | None:
    """Frame selection -> sorted unique indices (None: every frame).

    Accepts None, an int, an iterable of ints, or a string such as ``"0-999"`` (inclusive,
    as SLEAP's ``--frames``, so command lines written for SLEAP select the same frames) or
    ``"0-9,20,30-39"``. Indices at or beyond ``n_frames`` are dropped with a warning
    rather than failing, so one selection can be reused across videos of different lengths.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, int | np.integer):
        inds = [int(spec)]
    elif isinstance(spec, str):
        inds = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise ValueError
                    inds.extend(range(lo, hi + 1))
                else:
                    inds.append(int(part))
            except ValueError as err:
                raise PosekitError(
                    f"cannot read frame selection {spec!r}: use e.g. '0-999' (inclusive) or "
                    "'0,5,10-20'"
                ) from err
    else:
        inds = [int(i) for i in spec]
    if any(i < 0 for i in inds):
        raise PosekitError(f"frame indices must be >= 0; got {spec!r}")
    inds = sorted(set(inds))
    if n_frames is not None:
        beyond = [i for i in inds if i >= n_frames]
        if beyond:
            warnings.warn(
                f"{len(beyond)} requested frame(s) are beyond the video's {n_frames} frames "
                f"(first: {beyond[0]}); they are skipped",
                stacklevel=2,
            )
            inds = [i for i in inds if i < n_frames]
    return inds


def remember_media_metadata(
    video, frame_shape: tuple[int, ...], n_frames: int | None = None
) -> None:
    """Record a streamed video's shape, grayscale flag and fps in ``video.backend_metadata``.

    Saving labels (`sleap_io.save_slp`) serialises each video's shape; without recorded
    metadata sleap-io asks the backend, which for a media file means counting frames by
    decoding the whole file and decoding a test frame (5-10 s for 1500 frames of 1024 x
    1024, more than predicting a short clip). After streaming, the same values are known:
    the frame count (`num_frames`), the frame shape as sleap-io returns frames, and fps
    (sleap-io's own value, a container probe). Keys already present are kept.
    ``n_frames``: the count if already known (else `num_frames`).
    """
    meta = getattr(video, "backend_metadata", None)
    if meta is None or "shape" in meta:
        return
    h, w = int(frame_shape[0]), int(frame_shape[1])
    c = int(frame_shape[2]) if len(frame_shape) > 2 else 1
    try:
        n = int(n_frames) if n_frames else num_frames(video)
        fps = video.fps
    except Exception:  # noqa: BLE001 - metadata is an optimisation only
        return
    meta["shape"] = (int(n), h, w, c)
    meta.setdefault("grayscale", c == 1)
    if fps is not None:
        meta.setdefault("fps", fps)


def _matches_random_access(img: np.ndarray, idx: int, read) -> tuple[bool | None, str]:
    try:
        ref = np.asarray(read(idx))
    except Exception:  # noqa: BLE001
        return None, "reference unreadable"
    if ref.shape != img.shape:
        return False, f"shape {img.shape} vs {ref.shape}"
    diff = np.abs(ref.astype(np.int16) - img.astype(np.int16))
    if not diff.any():
        return True, "identical"
    mean = float(diff.mean())
    detail = f"max abs difference {int(diff.max())}, mean {mean:.3f}"
    return mean <= VERIFY_MEAN_ABS_TOLERANCE, detail


# --------------------------------------------------------------------------- threading


class _End:
    pass


class _Failure:
    def __init__(self, err: BaseException):
        self.err = err


class BackgroundIterator:
    """Run an iterable in a daemon thread and hand its items over a bounded queue.

    The producer blocks once ``maxsize`` items wait, which bounds memory; an exception
    in the producer is re-raised in the consumer; `close()` (or leaving a ``with``
    block) stops the producer promptly and closes a generator so that its ``finally``
    clauses (closing files) run in the producing thread.
    """

    def __init__(self, iterable: Iterable, maxsize: int = 4, name: str = "posekit-reader"):
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1; got {maxsize}")
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._iterable = iterable
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        it = iter(self._iterable)
        try:
            for item in it:
                if not self._put(item):
                    break
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._put(_Failure(err))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - best effort while stopping
                    pass
            self._put(_End())

    def __iter__(self) -> BackgroundIterator:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.err
        return item

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=timeout)
        self._done = True

    def __enter__(self) -> BackgroundIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoReader:
    """Frames of one video in order, decoded ahead in a background thread.

    Iterating yields ``(frame_idx, image)`` with ``image`` as `sleap_io.Video[i]` returns
    it. A frame that cannot be decoded is skipped with a warning and counted in
    ``stats["skipped"]``. At most ``prefetch`` frames are held in memory.

    Example::

        with VideoReader(sio.load_video("clip.mp4"), range(100, 200)) as reader:
            for idx, frame in reader:
                ...
    """

    def __init__(
        self,
        video,
        frame_inds: Sequence[int] | None = None,
        prefetch: int = 8,
        seek_gap: int = DEFAULT_SEEK_GAP,
        verify: bool = False,
        threads: bool = True,
    ):
        self.video = video
        self.stats: dict[str, Any] = {"skipped": 0}
        frames = iter_frames(
            video, frame_inds, seek_gap=seek_gap, verify=verify, threads=threads, stats=self.stats
        )
        self._frames = BackgroundIterator(frames, maxsize=prefetch)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for idx, img, err in self._frames:
            if err is not None:
                self.stats["skipped"] += 1
                warnings.warn(
                    f"skipping frame {idx} of {getattr(self.video, 'filename', self.video)}: "
                    f"it could not be decoded ({err})",
                    stacklevel=2,
                )
                continue
            yield idx, img

    def close(self) -> None:
        self._frames.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "DEFAULT_SEEK_GAP",
    "BackgroundIterator",
    "SequentialDecoder",
    "UnsupportedStream",
    "VideoReader",
    "can_stream",
    "iter_frames",
    "num_frames",
    "parse_frames",
    "remember_media_metadata",
]
