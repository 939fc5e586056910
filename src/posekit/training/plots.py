"""Per-epoch pictures of predicted vs. true points on a validation example.

`posekit.visualization` owns plotting: the loss curve is its `plot_training_curve`, and
points that pair up (one per part) are drawn by its `plot_predictions_vs_truth`. What
training needs beyond it lives here: reading points off confidence maps (`map_peaks`)
and drawing two *unpaired* sets of peaks (multi-instance and centroid maps, where the
i-th predicted peak is not the i-th true one). matplotlib runs with the non-interactive
Agg backend (training machines have no display).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def map_peaks(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global peak (x, y) in grid units and its value for each channel of (C, h, w) maps."""
    c, h, w = maps.shape
    flat = maps.reshape(c, -1)
    idx = flat.argmax(axis=1)
    vals = flat[np.arange(c), idx]
    return np.stack([idx % w, idx // w], axis=1).astype(np.float64), vals


def plot_peaks_vs_truth(
    image: np.ndarray,
    true_points: np.ndarray,
    pred_points: np.ndarray,
    png: str | os.PathLike,
    title: str = "",
    paired: bool = True,
) -> Path:
    """Draw an image with true (green circles) and predicted (red crosses) points.

    `image` is (C, H, W) or (H, W) float; points are (K, 2) (x, y) in image pixels, NaN
    where absent. With `paired`, point i of both sets is the same part and a line joins
    them (`posekit.visualization.plot_predictions_vs_truth`); otherwise the sets are
    drawn independently (multi-instance peaks).
    """
    if paired:
        from posekit.visualization import plot_predictions_vs_truth

        return Path(
            plot_predictions_vs_truth(image, pred_points, true_points, png, title=title or None)
        )
    return _plot_unpaired(image, true_points, pred_points, Path(png), title)


def _plot_unpaired(
    image: np.ndarray, true_points: np.ndarray, pred_points: np.ndarray, png: Path, title: str
) -> Path:
    """Both point sets on the min-max normalised image, written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from posekit.io.atomic import atomic_path

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    h, w = img.shape[:2]
    scale = max(1.0, 384 / max(h, w))
    fig, ax = plt.subplots(figsize=(w * scale / 96 + 0.2, h * scale / 96 + 0.4), dpi=96)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    true_points = np.asarray(true_points, dtype=np.float64).reshape(-1, 2)
    pred_points = np.asarray(pred_points, dtype=np.float64).reshape(-1, 2)
    ax.plot(true_points[:, 0], true_points[:, 1], "o", mfc="none", mec="lime", ms=7, label="true")
    ax.plot(pred_points[:, 0], pred_points[:, 1], "x", color="red", ms=6, label="predicted")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    ax.legend(loc="lower right", fontsize=7, framealpha=0.6)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=96)
    plt.close(fig)
    return png


__all__ = ["map_peaks", "plot_peaks_vs_truth"]
