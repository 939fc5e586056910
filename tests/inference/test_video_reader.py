"""Streaming frame reader: exact frame indices and pixels, fallbacks, bounded memory."""

from __future__ import annotations

import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from posekit.data.video import (
    BackgroundIterator,
    SequentialDecoder,
    UnsupportedStream,
    VideoReader,
    can_stream,
    iter_frames,
    num_frames,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MINIMAL = SHARED / "data" / "minimal"

av = pytest.importorskip("av")


def shared_video(name: str) -> str:
    path = MINIMAL / name
    if not path.exists():
        pytest.skip(f"{path} not found (needs ../shared)")
    return str(path)


def level(i: int) -> int:
    """Grey level that identifies frame i (8 levels apart survive H.264 rounding)."""
    return 16 + 8 * (i % 28)


def write_mp4(path: Path, n: int, pts=None, gop: int = 5, size=(48, 64)) -> Path:
    """Grey H.264 mp4 whose frame i is uniformly `level(i)` (with a faint gradient).

    ``pts``: optional explicit timestamps in units of 1/30 s (a variable frame rate).
    A short GOP makes seeks land on keyframes well before the target.
    """
    h, w = size
    ramp = np.linspace(0, 4, w)[None, :].repeat(h, 0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"g": str(gop), "crf": "1"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, 30)
        for i in range(n):
            img = np.clip(level(i) + ramp, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(img[..., None], 3, -1), format="rgb24")
            if pts is not None:
                frame.pts = int(pts[i])
                frame.time_base = Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def identify(img: np.ndarray) -> int:
    """The frame index encoded by `write_mp4` (nearest level)."""
    levels = np.array([level(i) for i in range(28)])
    return int(np.argmin(np.abs(levels - float(np.median(img[..., 0]) - 2))))


def compare_with_sleap_io(path: str, inds: list[int], **kwargs) -> dict:
    """Stream `inds` and assert each frame equals sleap_io.Video[i] bit for bit."""
    stats: dict = {}
    streamed = list(iter_frames(sio.load_video(path), inds, stats=stats, **kwargs))
    assert [i for i, _, _ in streamed] == inds
    reference = sio.load_video(path)
    for idx, img, err in streamed:
        assert err is None, err
        ref = reference[idx]
        assert img.shape == ref.shape, idx
        assert np.array_equal(img, ref), f"frame {idx} differs from sleap_io.Video[{idx}]"
    return stats


# --------------------------------------------------------------------------- real videos


def test_centered_pair_frames_identical_to_sleap_io():
    path = shared_video("centered_pair_low_quality.mp4")
    # A contiguous run, a short gap (decoded through), a long gap (keyframe seek), the
    # last frame, then an index that goes backwards (a new pass).
    inds = [0, 1, 2, 3, 4, 40, 41, 500, 501, 1099, 7]
    stats = compare_with_sleap_io(path, inds)
    assert stats["mode"] == "stream"
    assert stats["seeks"] >= 2 and stats.get("restarts") == 1


def test_small_robot_rgb_frames_identical_to_sleap_io():
    path = shared_video("small_robot.mp4")
    stats = compare_with_sleap_io(path, [0, 1, 2, 60, 61, 150, 165])
    assert stats["mode"] == "stream"
    img = next(iter_frames(sio.load_video(path), [0]))[1]
    assert img.shape == (320, 560, 3)  # colour video: 3 channels, as sleap-io


def test_num_frames_matches_sleap_io_count():
    for name in ("small_robot.mp4", "centered_pair_low_quality.mp4"):
        path = shared_video(name)
        assert num_frames(sio.load_video(path)) == len(sio.load_video(path))


# --------------------------------------------------------------------------- synthetic videos


def test_indices_exact_through_seeks_and_restarts(tmp_path):
    path = write_mp4(tmp_path / "grey.mp4", 28)
    video = sio.load_video(str(path))
    assert can_stream(video)
    inds = [0, 1, 9, 10, 11, 20, 27, 3, 4, 26]
    stats: dict = {}
    out = list(iter_frames(video, inds, seek_gap=2, stats=stats))
    assert [identify(img) for _, img, _ in out] == inds
    assert stats["mode"] == "stream" and stats["seeks"] >= 3 and stats["restarts"] == 1
    compare_with_sleap_io(str(path), inds, seek_gap=2)


def test_decoder_rejects_backwards_and_reports_end(tmp_path):
    path = write_mp4(tmp_path / "grey.mp4", 6)
    with SequentialDecoder(str(path)) as dec:
        assert identify(dec.read(2)) == 2
        with pytest.raises(ValueError, match="increasing"):
            dec.read(2)
        with pytest.raises(IndexError, match="beyond the end"):
            dec.read(6)


def test_variable_frame_rate_falls_back_to_random_access(tmp_path):
    pts = [0, 1, 2, 3, 7, 8, 9, 10]  # a gap after frame 3
    path = write_mp4(tmp_path / "vfr.mp4", len(pts), pts=pts)
    with SequentialDecoder(str(path)) as dec:
        with pytest.raises(UnsupportedStream, match="variable frame rate"):
            for i in range(len(pts)):
                dec.read(i)
    video = sio.load_video(str(path))
    stats: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = list(iter_frames(video, [0, 1, 2, 3, 4, 5], stats=stats))
    assert stats["mode"] == "random access" and "variable" in stats["fallback_reason"]
    assert any("random access" in str(w.message) for w in caught)
    reference = sio.load_video(str(path))
    for idx, img, err in out:
        if err is None:
            assert np.array_equal(img, reference[idx])


def test_non_media_backend_uses_random_access_and_skips_bad_frames(tmp_path):
    import imageio.v3 as iio

    paths = []
    for i in range(4):
        p = tmp_path / f"f{i}.png"
        iio.imwrite(p, np.full((8, 10), level(i), np.uint8))
        paths.append(str(p))
    Path(paths[2]).write_bytes(b"not a png")
    video = sio.Video.from_filename(paths)
    assert not can_stream(video)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with VideoReader(video) as reader:
            got = [(i, int(img[0, 0, 0])) for i, img in reader]
    assert got == [(0, level(0)), (1, level(1)), (3, level(3))]
    assert reader.stats["skipped"] == 1 and reader.stats["mode"] == "random access"
    assert any("skipping frame 2" in str(w.message) for w in caught)


def test_verify_accepts_identical_frames(tmp_path):
    path = write_mp4(tmp_path / "grey.mp4", 6)
    stats: dict = {}
    out = list(iter_frames(sio.load_video(str(path)), range(6), verify=True, stats=stats))
    assert stats["verify"] == "identical" and stats["mode"] == "stream"
    assert [identify(img) for _, img, _ in out] == list(range(6))


# --------------------------------------------------------------------------- threading


def test_background_iterator_is_bounded_and_propagates_errors():
    produced = []

    def gen():
        for i in range(50):
            produced.append(i)
            yield i

    it = BackgroundIterator(gen(), maxsize=3)
    got = []
    for x in it:
        time.sleep(0.002)
        # The producer may hold one item besides the queued ones.
        assert len(produced) - len(got) <= 3 + 1 + 1
        got.append(x)
    assert got == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("decoder exploded")

    it = BackgroundIterator(failing(), maxsize=2)
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="decoder exploded"):
        next(it)


def test_background_iterator_close_stops_producer_and_runs_finally():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = BackgroundIterator(endless(), maxsize=2)
    assert next(it) == 0
    it.close()
    assert closed.wait(2.0)
    assert not it._thread.is_alive()


# --------------------------------------------------------------------------- predictor


def test_predict_streams_exact_frames_and_records_video_metadata(tmp_path):
    import torch  # noqa: F401
    from _inference_fakes import FakeModel

    from posekit.inference.predictors import SingleInstancePredictor

    path = write_mp4(tmp_path / "grey.mp4", 20, gop=4)
    model = FakeModel("single_instance", ["a"], {"SingleInstanceConfmapsHead": (0, 1, 1)})
    # threshold 0: every frame yields its (flat-ish) global peak and score.
    pred = SingleInstancePredictor(model, progress=False, batch_size=3, peak_threshold=0.0)
    labels = pred.predict(str(path), frames="2-6,15-19")
    idx = [lf.frame_idx for lf in labels.labeled_frames]
    assert idx == [2, 3, 4, 5, 6, 15, 16, 17, 18, 19]
    reference = sio.load_video(str(path))
    expected = pred.predict_images(np.stack([reference[i] for i in idx]))
    for lf, raws in zip(labels.labeled_frames, expected):
        got = lf.instances[0].numpy(scores=True)
        np.testing.assert_array_equal(got[:, :2], raws[0].points)
        np.testing.assert_array_equal(got[:, 2], raws[0].point_scores)
    # Saving must not make sleap-io count frames by decoding: the shape is recorded.
    meta = labels.video.backend_metadata
    assert tuple(meta["shape"]) == (20, 48, 64, 1) and meta["grayscale"] is True
    assert meta["fps"] == pytest.approx(30.0)
