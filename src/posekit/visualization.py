"""Pictures of poses: skeleton overlays, training curves, predictions vs. labels.

`render` draws the instances of a labels file on their frames, one color per track
(untracked instances get one color each), and writes a PNG (one frame, or a grid of
frames) or a video (``.mp4``/``.avi``/``.gif``, through imageio). Single frames are drawn
at the frame's own pixel size so that a keypoint at ``(x, y)`` lands on pixel
``(round(x), round(y))`` of the output.

Matplotlib runs on the non-interactive Agg canvas so this works on headless machines.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from posekit.errors import PosekitError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".gif")
MAX_GRID_FRAMES = 16


def _figure(width_px: int, height_px: int, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if n <= 10 else colormaps["hsv"]
    return [cmap(i % 10 if n <= 10 else i / max(n, 1)) for i in range(max(n, 1))]


def _show_image(ax, image: np.ndarray) -> None:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    h, w = image.shape[:2]
    kwargs = {"cmap": "gray", "vmin": 0, "vmax": 255} if image.ndim == 2 else {}
    if image.dtype != np.uint8 and image.ndim == 2:
        kwargs = {"cmap": "gray"}
    ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()


def draw_instance(ax, points: np.ndarray, edges, color, marker_size: float = 5.0, lw: float = 1.5):
    """Draw one instance (n_nodes, 2) with its skeleton edges (pairs of node indices)."""
    pts = np.asarray(points, dtype=np.float64)
    for a, b in edges:
        if not (np.isnan(pts[a]).any() or np.isnan(pts[b]).any()):
            ax.plot([pts[a, 0], pts[b, 0]], [pts[a, 1], pts[b, 1]], "-", color=color, lw=lw)
    vis = ~np.isnan(pts).any(-1)
    ax.plot(pts[vis, 0], pts[vis, 1], "o", color=color, ms=marker_size, mec="white", mew=0.5)


def draw_mask(ax, mask, image_hw, color, alpha: float = 0.35) -> None:
    """Draw a sleap-io mask as a translucent fill of `color` with its outline."""
    from matplotlib.colors import to_rgba

    from posekit.data.masks import mask_array

    m = mask_array(mask, tuple(image_hw))
    if not m.any():
        return
    rgba = np.zeros((*m.shape, 4), dtype=np.float32)
    rgba[m] = to_rgba(color, alpha)
    ax.imshow(rgba, interpolation="nearest")
    ax.contour(m.astype(np.float32), levels=[0.5], colors=[color], linewidths=1.0)


def _edges_of(skeleton) -> list[tuple[int, int]]:
    names = list(skeleton.node_names)
    return [(names.index(a), names.index(b)) for a, b in skeleton.edge_names]


def _draw_frame(ax, lf, labels, track_colors, instance_colors) -> None:
    image = lf.image
    if image is None:
        raise PosekitError(
            f"cannot read frame {lf.frame_idx} of {lf.video.filename}: fix the video path "
            "(e.g. labels.replace_filenames) or render a file whose video is reachable"
        )
    _show_image(ax, image)
    colors = {}
    for i, inst in enumerate(lf.instances):
        if inst.track is not None and inst.track in track_colors:
            color = track_colors[inst.track]
        else:
            color = instance_colors[i % len(instance_colors)]
        colors[id(inst)] = color
    # predicted masks where the frame has any (else its labelled ones), under the poses
    masks = [m for m in lf.masks if m.is_predicted] or list(lf.masks)
    for k, m in enumerate(masks):
        color = colors.get(id(m.instance))
        if color is None and m.track is not None and m.track in track_colors:
            color = track_colors[m.track]
        draw_mask(ax, m, image.shape[:2], color or instance_colors[-1 - k % len(instance_colors)])
    for inst in lf.instances:
        draw_instance(ax, inst.numpy(), _edges_of(inst.skeleton), colors[id(inst)])


def _select_frames(labels, frames) -> list:
    from posekit.data.video import parse_frames

    wanted = parse_frames(frames)
    lfs = [lf for lf in labels.labeled_frames if wanted is None or lf.frame_idx in wanted]
    if not lfs:
        raise PosekitError(
            f"no labeled frames to render (frames={frames!r}); the file has frames "
            f"{[lf.frame_idx for lf in labels.labeled_frames][:10]}..."
        )
    return lfs


def _render_rgb(lf, labels, track_colors, instance_colors) -> np.ndarray:
    image = np.asarray(lf.image)
    h, w = image.shape[:2]
    fig = _figure(w, h)
    ax = fig.add_axes([0, 0, 1, 1])
    _draw_frame(ax, lf, labels, track_colors, instance_colors)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return rgba[..., :3].copy()


def render(
    labels_or_path,
    output: str | os.PathLike,
    frames=None,
    fps: float = 15.0,
    max_grid_frames: int = MAX_GRID_FRAMES,
) -> Path:
    """Draw skeletons on frames and save them.

    Args:
        labels_or_path: `sleap_io.Labels` or a path to a ``.slp`` file.
        output: ``.png`` (one frame at full size, or a grid of up to ``max_grid_frames``
            frames) or a video file (``.mp4``, ``.avi``, ``.gif``, ... via imageio).
        frames: frame indices to draw (``"0-99"``, a list, ...); default all labeled frames.
        fps: frame rate of a video output.

    Returns:
        The written path.
    """
    import sleap_io as sio

    labels = labels_or_path
    if isinstance(labels, str | os.PathLike):
        if not os.path.exists(labels):
            raise PosekitError(f"labels file not found: {labels}")
        labels = sio.load_slp(str(labels))
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".png", *VIDEO_SUFFIXES):
        raise PosekitError(
            f"render writes .png or a video ({', '.join(VIDEO_SUFFIXES)}); got {output.name}"
        )
    lfs = _select_frames(labels, frames)
    tracks = list(labels.tracks)
    colors = _colors(max(len(tracks), 10))
    track_colors = {t: colors[i % len(colors)] for i, t in enumerate(tracks)}
    instance_colors = colors
    output.parent.mkdir(parents=True, exist_ok=True)

    if suffix in VIDEO_SUFFIXES:
        try:
            import imageio.v3 as iio
        except ImportError as err:
            raise PosekitError(
                "writing a video needs imageio (pip install 'posekit[video]'); or render to .png"
            ) from err
        images = [_render_rgb(lf, labels, track_colors, instance_colors) for lf in lfs]
        h = min(im.shape[0] for im in images) // 2 * 2
        w = min(im.shape[1] for im in images) // 2 * 2
        stack = np.stack([im[:h, :w] for im in images])
        if suffix == ".gif":
            iio.imwrite(output, stack, duration=1000 / fps, loop=0)
            return output
        try:
            import imageio

            # macro_block_size=1 keeps the frame size (ffmpeg would pad to 16).
            with imageio.get_writer(output, fps=fps, macro_block_size=1) as writer:
                for im in stack:
                    writer.append_data(im)
        except (ImportError, TypeError, ValueError, RuntimeError):
            iio.imwrite(output, stack, fps=fps)
        return output

    if len(lfs) == 1:
        from matplotlib.image import imsave

        imsave(output, _render_rgb(lfs[0], labels, track_colors, instance_colors))
        return output

    lfs = lfs[:max_grid_frames]
    n = len(lfs)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = np.asarray(lfs[0].image).shape[:2]
    tile = 4.0
    fig = _figure(int(cols * tile * 100), int(rows * tile * 100 * h / w))
    for k, lf in enumerate(lfs):
        ax = fig.add_subplot(rows, cols, k + 1)
        _draw_frame(ax, lf, labels, track_colors, instance_colors)
        ax.set_title(f"frame {lf.frame_idx}", fontsize=8)
    fig.tight_layout()
    fig.savefig(output)
    return output


def plot_training_curve(metrics_csv: str | os.PathLike, png: str | os.PathLike) -> Path:
    """Plot every loss column of a training metrics CSV (e.g. Lightning's CSVLogger)
    against the epoch, averaging rows of the same epoch (train and validation rows are
    logged separately)."""
    import csv

    path = Path(metrics_csv)
    if not path.exists():
        raise PosekitError(f"metrics file not found: {path}")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise PosekitError(f"{path} has no rows")
    columns = [c for c in rows[0] if "loss" in c.lower()]
    if not columns:
        raise PosekitError(f"{path} has no loss column (columns: {list(rows[0])})")
    xkey = "epoch" if "epoch" in rows[0] else ("step" if "step" in rows[0] else None)
    series: dict[str, dict[float, list[float]]] = {c: {} for c in columns}
    for i, row in enumerate(rows):
        x = _float(row.get(xkey)) if xkey else float(i)
        if x is None:
            continue
        for c in columns:
            v = _float(row.get(c))
            if v is not None:
                series[c].setdefault(x, []).append(v)
    fig = _figure(640, 400)
    ax = fig.add_subplot(1, 1, 1)
    positive = True
    for c, pts in series.items():
        if not pts:
            continue
        xs = sorted(pts)
        ys = [float(np.mean(pts[x])) for x in xs]
        positive &= all(y > 0 for y in ys)
        ax.plot(xs, ys, "-o", ms=2, label=c)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel(xkey or "row")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    return png


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def plot_predictions_vs_truth(
    image,
    pred_points,
    true_points,
    png: str | os.PathLike,
    edges=None,
    title: str | None = None,
) -> Path:
    """Overlay predicted (red crosses) and labeled (green circles) points on an image,
    with a line from each label to its prediction.

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3) array (uint8 or float in [0, 1]); a torch
            tensor in CHW layout is accepted too.
        pred_points, true_points: (n_nodes, 2) or (n_instances, n_nodes, 2), NaN = missing.
        png: output path.
        edges: optional skeleton edges (node index pairs) drawn for the labels.
    """
    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    pred = np.asarray(pred_points, dtype=np.float64).reshape(-1, np.shape(pred_points)[-2], 2)
    true = np.asarray(true_points, dtype=np.float64).reshape(-1, np.shape(true_points)[-2], 2)
    h, w = img.shape[:2]
    scale = max(1.0, 480 / max(h, w))
    fig = _figure(int(w * scale), int(h * scale))
    ax = fig.add_axes([0, 0, 1, 1])
    if img.dtype != np.uint8 and img.max() <= 1.0:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    _show_image(ax, img.astype(np.uint8) if img.dtype != np.uint8 else img)
    for t in true:
        if edges:
            for a, b in edges:
                if not (np.isnan(t[a]).any() or np.isnan(t[b]).any()):
                    ax.plot([t[a, 0], t[b, 0]], [t[a, 1], t[b, 1]], "-", color="lime", lw=1)
        vis = ~np.isnan(t).any(-1)
        ax.plot(t[vis, 0], t[vis, 1], "o", color="lime", ms=5, mfc="none", mew=1.2)
    for p in pred:
        vis = ~np.isnan(p).any(-1)
        ax.plot(p[vis, 0], p[vis, 1], "x", color="red", ms=6, mew=1.5)
    if pred.shape == true.shape:
        for p, t in zip(pred.reshape(-1, 2), true.reshape(-1, 2)):
            if not (np.isnan(p).any() or np.isnan(t).any()):
                ax.plot([t[0], p[0]], [t[1], p[1]], "-", color="yellow", lw=0.8)
    if title:
        ax.text(
            2,
            2,
            title,
            color="white",
            fontsize=8,
            va="top",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 2},
        )
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    return png
