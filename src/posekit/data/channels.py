"""Frames of videos with different channels (an RGB camera and a grayscale one) in one
project, or a video whose channels differ from the model's.

A model has one input: its channels are decided once, from the training frames (a mix of
gray and color trains on color, so no color is lost), and every frame of another kind is
converted to them, as SLEAP's ``ensure_rgb`` / ``ensure_grayscale`` do (a gray channel
repeated; TensorFlow's luma weights for gray). One warning names the videos converted,
since a model sees a converted camera differently from the one it learned from.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from posekit.model.preprocessing import GRAYSCALE_WEIGHTS

__all__ = ["convert_frame", "frame_channels", "video_channels", "warn_converted_videos"]


def frame_channels(labels: Any) -> int:
    """The channels a model of these `PoseLabels` takes from its frames: their videos'
    channels, 3 when gray and color videos mix."""
    channels = {c for _, c in video_channels(labels)}
    return channels.pop() if len(channels) == 1 else 3


def video_channels(labels: Any) -> list[tuple[str, int]]:
    """``(video file name, channels)`` of each video these `PoseLabels` use."""
    from pathlib import Path

    used = sorted({e.video_index for e in labels.entries})
    return [
        (Path(str(labels.labels.videos[i].filename)).name, labels.frame_shape(i)[2]) for i in used
    ]


def convert_frame(img: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) uint8 -> (H, W, `channels`): gray repeated, or color to luma."""
    if img.shape[2] == channels:
        return img
    if channels == 3:
        return np.repeat(img, 3, axis=2)
    gray = img[..., :3].astype(np.float32) @ np.asarray(GRAYSCALE_WEIGHTS, np.float32)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None]


def _kind(channels: int) -> str:
    return "RGB" if channels == 3 else "grayscale"


def warn_converted_videos(videos: Iterable[tuple[str, int]], channels: int, what: str) -> None:
    """One warning naming the ``(video name, channels)`` whose channels are not `channels`."""
    other = {}
    for name, c in videos:
        if c != channels:
            other.setdefault(str(name), int(c))
    if not other:
        return
    names = ", ".join(f"{name} ({_kind(c)})" for name, c in other.items())
    warnings.warn(
        f"frames of {len(other)} video(s) are converted to {what}'s {_kind(channels)} "
        f"input ({channels} channel(s)): {names}",
        UserWarning,
        stacklevel=3,
    )
