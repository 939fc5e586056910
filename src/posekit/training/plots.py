"""Pictures a training run writes: the loss curve and predicted-vs-true points.

`posekit.visualization` owns plotting; these functions call its helpers when they are
there (`plot_training_curve(metrics_csv, png)`, `plot_predictions_vs_truth(...)`) and
otherwise draw a plain version themselves, so a training run never fails for want of a picture. matplotlib runs with the
non-interactive Agg backend (training machines have no display).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png: Path) -> None:
    """Save via a temporary file and rename, so a reader never sees half a PNG."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    from posekit.io.atomic import atomic_path

    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=96)


def plot_training_curve(metrics_csv: str | os.PathLike, png: str | os.PathLike) -> Path:
    """Train/validation loss (log scale) and learning rate per epoch from `metrics.csv`."""
    try:
        from posekit.visualization import plot_training_curve as shared
    except ImportError:
        shared = None
    if shared is not None:
        shared(metrics_csv, png)
        return Path(png)

    rows = list(csv.DictReader(open(metrics_csv, newline="")))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [int(r["epoch"]) for r in rows]

    def col(name):
        return [float(r[name]) if r.get(name) not in (None, "") else math.nan for r in rows]

    for name, style in (("train_loss", "-"), ("val_loss", "--")):
        if rows and name in rows[0]:
            ax.plot(epochs, col(name), style, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    values = [v for n in ("train_loss", "val_loss") if rows and n in rows[0] for v in col(n)]
    if values and all(v > 0 for v in values if math.isfinite(v)):
        ax.set_yscale("log")
    ax.legend(loc="upper left")
    if rows and "lr" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(epochs, col("lr"), ":", color="gray", label="learning rate")
        ax2.set_ylabel("learning rate", color="gray")
        ax2.set_yscale("log")
    ax.set_title("training curve")
    fig.tight_layout()
    _save(fig, Path(png))
    plt.close(fig)
    return Path(png)


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
    them; otherwise the sets are drawn independently (multi-instance peaks).
    """
    if paired:
        try:
            from posekit.visualization import plot_predictions_vs_truth as shared
        except ImportError:
            shared = None
        if shared is not None:
            return Path(shared(image, pred_points, true_points, png, title=title or None))
    plt = _pyplot()
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    h, w = img.shape[:2]
    scale = max(1.0, 384 / max(h, w))
    fig, ax = plt.subplots(figsize=(w * scale / 96 + 0.2, h * scale / 96 + 0.4), dpi=96)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    for (tx, ty), (px, py) in zip(true_points, pred_points) if paired else ():
        if np.isfinite([tx, ty, px, py]).all():
            ax.plot([tx, px], [ty, py], "-", color="yellow", lw=0.8)
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
    _save(fig, Path(png))
    plt.close(fig)
    return Path(png)


__all__ = ["map_peaks", "plot_peaks_vs_truth", "plot_training_curve"]
