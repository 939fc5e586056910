"""Synthetic pose data that posekit renders itself: moving "animals" with known keypoints.

Each animal is a soft-edged ellipse body (its own grey level per track, so identity
models have something to learn) with a bright head blob, a dark tail blob and two side
blobs, on a textured noisy background. Keypoints come from the same geometry the pixels
are drawn from, so they are exact in SLEAP's convention (pixel centres on integers).

Parts, in order: ``head, tail, left, right`` then ``spine1, spine2, ...`` along the body
axis; ``n_parts`` takes the first n (>= 2). Edges join the head to every other part (a
tree); ``left``/``right`` are a symmetric pair (present from 4 parts on). "left" is the
animal's left when it faces its heading on screen.

Datasets are written as a `.pkg.slp` with the frames embedded losslessly (sleap-io
embeds frames it reads from an HDF5 video) or as an `.mp4` next to a `.slp` (lossy H.264;
keypoints are unaffected). Rendering 200 frames of 256 x 256 takes well under a second.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posekit.errors import PosekitError

PART_ORDER = ("head", "tail", "left", "right")


def part_names_for(n_parts: int) -> list[str]:
    """Node names of a synthetic skeleton with `n_parts` parts."""
    if n_parts < 2:
        raise PosekitError(f"n_parts={n_parts}: synthetic animals need at least 2 parts")
    names = list(PART_ORDER[: min(n_parts, 4)])
    names += [f"spine{i + 1}" for i in range(n_parts - 4)]
    return names


def synthetic_skeleton(n_parts: int):
    """`sleap_io.Skeleton` of the synthetic animals (edges from the head, L/R symmetry)."""
    import sleap_io as sio

    names = part_names_for(n_parts)
    edges = [[names[0], n] for n in names[1:]]
    symmetries = [["left", "right"]] if n_parts >= 4 else []
    return sio.Skeleton(nodes=names, edges=edges, symmetries=symmetries, name="synthetic")


@dataclass
class SyntheticFrames:
    """Rendered frames and their ground truth.

    Attributes:
        images: (n_frames, H, W, C) uint8.
        points: (n_frames, n_animals, n_parts, 2) float64 keypoints (x, y).
        part_names: node names.
        track_names: one per animal (animal i is always track i).
    """

    images: np.ndarray
    points: np.ndarray
    part_names: list[str]
    track_names: list[str]


def _keypoints(center, heading, length, width, n_parts) -> np.ndarray:
    u = np.array([np.cos(heading), np.sin(heading)])
    left = np.array([np.sin(heading), -np.cos(heading)])  # heading turned -90 deg (y down)
    pts = [center + 0.5 * length * u, center - 0.5 * length * u]
    if n_parts >= 3:
        pts.append(center + 0.5 * width * left)
    if n_parts >= 4:
        pts.append(center - 0.5 * width * left)
    n_spine = n_parts - 4
    for f in np.linspace(-0.3, 0.3, n_spine) if n_spine > 1 else ([0.0] if n_spine else []):
        pts.append(center + f * length * u)
    return np.array(pts[:n_parts])


def render_synthetic_frames(
    n_frames: int = 200,
    n_animals: int = 2,
    image_size: int | tuple[int, int] = 256,
    n_parts: int = 5,
    seed: int = 0,
    channels: int = 1,
    body_length: float | None = None,
    noise_std: float = 8.0,
) -> SyntheticFrames:
    """Render moving animals; returns frames and exact keypoints (no files written)."""
    if n_frames < 1 or n_animals < 1:
        raise PosekitError("n_frames and n_animals must be >= 1")
    if channels not in (1, 3):
        raise PosekitError(f"channels={channels}; use 1 (grayscale) or 3 (RGB)")
    h, w = (image_size, image_size) if isinstance(image_size, int) else map(int, image_size)
    names = part_names_for(n_parts)
    rng = np.random.default_rng(seed)
    length = float(body_length or 0.2 * min(h, w))
    width = 0.45 * length
    margin = 0.6 * length

    # Background: fixed low-frequency texture + fresh noise each frame.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    texture = (
        60.0
        + 12.0
        * np.sin(xx / (7.0 + rng.random() * 5) + rng.random() * 6)
        * np.cos(yy / (9.0 + rng.random() * 5) + rng.random() * 6)
    ).astype(np.float32)
    body_levels = np.linspace(170.0, 110.0, n_animals) if n_animals > 1 else np.array([150.0])
    tints = rng.uniform(0.75, 1.0, size=(n_animals, 3)) if channels == 3 else None

    pos = np.stack(
        [rng.uniform(margin, w - margin, n_animals), rng.uniform(margin, h - margin, n_animals)],
        axis=1,
    )
    heading = rng.uniform(-np.pi, np.pi, n_animals)
    speed = 0.02 * min(h, w)
    turn = np.zeros(n_animals)

    images = np.empty((n_frames, h, w, channels), dtype=np.uint8)
    points = np.empty((n_frames, n_animals, n_parts, 2))
    pad = int(np.ceil(0.75 * length)) + 2
    for t in range(n_frames):
        canvas = texture + rng.standard_normal((h, w), dtype=np.float32) * np.float32(noise_std)
        rgb = np.repeat(canvas[..., None], 3, axis=2) if channels == 3 else None
        for a in range(n_animals):
            kp = _keypoints(pos[a], heading[a], length, width, n_parts)
            points[t, a] = kp
            cx, cy = pos[a]
            x0, x1 = max(int(cx) - pad, 0), min(int(cx) + pad + 1, w)
            y0, y1 = max(int(cy) - pad, 0), min(int(cy) + pad + 1, h)
            if x0 >= x1 or y0 >= y1:
                continue
            sy, sx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            c, s = np.cos(heading[a]), np.sin(heading[a])
            along = (sx - cx) * c + (sy - cy) * s
            across = -(sx - cx) * s + (sy - cy) * c
            r = np.sqrt((along / (0.5 * length)) ** 2 + (across / (0.5 * width)) ** 2)
            body = 1.0 / (1.0 + np.exp((r - 1.0) * 12.0))
            stripes = 8.0 * np.sin(along * 0.8)
            layers = [(body, body_levels[a] + stripes)]
            blob_r = 0.13 * length
            levels = [235.0, 35.0, 205.0, 205.0]
            radii = [blob_r, blob_r, 0.7 * blob_r, 0.7 * blob_r]
            for (px, py), lv, rad in zip(kp[:4], levels, radii):
                d2 = (sx - px) ** 2 + (sy - py) ** 2
                layers.append((np.exp(-d2 / (2 * rad**2)), lv))
            sl = (slice(y0, y1), slice(x0, x1))
            for weight, value in layers:
                if channels == 1:
                    canvas[sl] = canvas[sl] * (1 - weight) + value * weight
                else:
                    for ch in range(3):
                        rgb[sl + (ch,)] = rgb[sl + (ch,)] * (1 - weight) + (
                            value * tints[a, ch] * weight
                        )
        out = canvas[..., None] if channels == 1 else rgb
        images[t] = np.clip(np.rint(out), 0, 255).astype(np.uint8)

        # Move: smooth turning, constant speed, bounce off the borders.
        turn = 0.8 * turn + rng.normal(0.0, 0.08, n_animals)
        heading = heading + turn
        pos = pos + speed * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        for a in range(n_animals):
            for d, size in ((0, w), (1, h)):
                if pos[a, d] < margin or pos[a, d] > size - margin:
                    pos[a, d] = np.clip(pos[a, d], margin, size - margin)
                    vec = np.array([np.cos(heading[a]), np.sin(heading[a])])
                    vec[d] = -vec[d]
                    heading[a] = np.arctan2(vec[1], vec[0])
    tracks = [f"animal{i}" for i in range(n_animals)]
    return SyntheticFrames(images=images, points=points, part_names=names, track_names=tracks)


def _labels_from_frames(frames: SyntheticFrames, video, n_parts: int):
    import sleap_io as sio

    skeleton = synthetic_skeleton(n_parts)
    tracks = [sio.Track(name) for name in frames.track_names]
    labeled = []
    for t in range(frames.images.shape[0]):
        instances = [
            sio.Instance.from_numpy(frames.points[t, a], skeleton=skeleton, track=tracks[a])
            for a in range(frames.points.shape[1])
        ]
        labeled.append(sio.LabeledFrame(video=video, frame_idx=t, instances=instances))
    return sio.Labels(labeled_frames=labeled, videos=[video], skeletons=[skeleton], tracks=tracks)


def _write_hdf5_video(images: np.ndarray, path: Path):
    import h5py
    import sleap_io as sio

    with h5py.File(path, "w") as f:
        f.create_dataset("video", data=images)
    return sio.Video.from_filename(str(path), dataset="video")


def make_synthetic_labels(
    n_frames: int = 200,
    n_animals: int = 2,
    image_size: int | tuple[int, int] = 256,
    n_parts: int = 5,
    seed: int = 0,
    channels: int = 1,
    body_length: float | None = None,
    noise_std: float = 8.0,
    video_path: str | Path | None = None,
):
    """A `sleap_io.Labels` of rendered animals: skeleton, tracks, user instances, frames.

    The frames are stored losslessly in an HDF5 video (dataset "video") at `video_path`
    (default: a new temporary file), which the returned labels reference; save them with
    `save_synthetic_dataset` (or `sleap_io.save_slp(labels, path, embed=True)`).
    """
    frames = render_synthetic_frames(
        n_frames, n_animals, image_size, n_parts, seed, channels, body_length, noise_std
    )
    if video_path is None:
        video_path = Path(tempfile.mkdtemp(prefix="posekit_synth_")) / "frames.h5"
    video = _write_hdf5_video(frames.images, Path(video_path))
    return _labels_from_frames(frames, video, n_parts)


def save_synthetic_dataset(
    folder: str | Path,
    n_frames: int = 200,
    n_animals: int = 2,
    image_size: int | tuple[int, int] = 256,
    n_parts: int = 5,
    seed: int = 0,
    video_format: str = "pkg.slp",
    name: str = "synthetic",
    channels: int = 1,
    body_length: float | None = None,
    noise_std: float = 8.0,
) -> Path:
    """Render a dataset into `folder` and return the labels file.

    Args:
        video_format: "pkg.slp" -> ``<name>.pkg.slp`` with embedded lossless frames;
            "mp4" -> ``<name>.mp4`` (H.264) + ``<name>.slp``.
        other arguments: as `render_synthetic_frames`.
    """
    import sleap_io as sio

    if video_format not in ("pkg.slp", "mp4"):
        raise PosekitError(f"video_format={video_format!r}; use 'pkg.slp' or 'mp4'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = render_synthetic_frames(
        n_frames, n_animals, image_size, n_parts, seed, channels, body_length, noise_std
    )
    if video_format == "pkg.slp":
        tmp = folder / f".{name}.frames.h5"
        video = _write_hdf5_video(frames.images, tmp)
        labels = _labels_from_frames(frames, video, n_parts)
        out = folder / f"{name}.pkg.slp"
        try:
            sio.save_slp(labels, str(out), embed=True, verbose=False)
        finally:
            video.close()
            tmp.unlink(missing_ok=True)
        return out
    mp4 = folder / f"{name}.mp4"
    data = frames.images[..., 0] if channels == 1 else frames.images
    sio.save_video(data, str(mp4), fps=30, crf=15)
    video = sio.Video.from_filename(str(mp4))
    labels = _labels_from_frames(frames, video, n_parts)
    out = folder / f"{name}.slp"
    sio.save_slp(labels, str(out), verbose=False)
    return out


__all__ = [
    "SyntheticFrames",
    "make_synthetic_labels",
    "part_names_for",
    "render_synthetic_frames",
    "save_synthetic_dataset",
    "synthetic_skeleton",
]
