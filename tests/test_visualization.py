"""Rendering writes images whose pixels change where the keypoints are."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import sleap_io as sio

from posekit.cli.render import run as run_render
from posekit.errors import PosekitError
from posekit.visualization import (
    plot_predictions_vs_truth,
    plot_training_curve,
    render,
)

SKEL = sio.Skeleton(nodes=["a", "b"], edges=[("a", "b")])


def read_png(path):
    from matplotlib.image import imread

    img = imread(str(path))
    return (img[..., :3] * 255).round().astype(np.uint8) if img.dtype != np.uint8 else img[..., :3]


def labels_on_pngs(tmp_path, n_frames=1, h=60, w=80, tracks=("t0", "t1")):
    from matplotlib.image import imsave

    paths = []
    for i in range(n_frames):
        p = tmp_path / f"f{i}.png"
        imsave(p, np.full((h, w), 40 + i, np.uint8), cmap="gray", vmin=0, vmax=255)
        paths.append(str(p))
    video = sio.Video.from_filename(paths)
    track_objs = [sio.Track(name=t) for t in tracks]
    pts = [np.array([[15.0, 20.0], [40.0, 30.0]]), np.array([[60.0, 45.0], [70.0, 10.0]])]
    lfs = []
    for i in range(n_frames):
        insts = [
            sio.PredictedInstance.from_numpy(
                points_data=p + i, skeleton=SKEL, point_scores=np.ones(2), score=1.0, track=t
            )
            for p, t in zip(pts, track_objs)
        ]
        lfs.append(sio.LabeledFrame(video=video, frame_idx=i, instances=insts))
    return sio.Labels(labeled_frames=lfs, videos=[video], skeletons=[SKEL], tracks=track_objs), pts


def test_render_single_frame_marks_keypoints(tmp_path):
    labels, pts = labels_on_pngs(tmp_path)
    out = render(labels, tmp_path / "out.png")
    img = read_png(out)
    assert img.shape == (60, 80, 3)
    raw = np.full((60, 80, 3), 40, np.uint8)
    for inst in pts:
        for x, y in inst:
            assert np.abs(img[int(y), int(x)].astype(int) - raw[int(y), int(x)]).max() > 30
    # Far from any instance, the frame is unchanged.
    assert np.abs(img[2, 78].astype(int) - 40).max() <= 2
    # Two tracks -> two different colors at the first node of each instance.
    c0 = img[int(pts[0][0][1]), int(pts[0][0][0])]
    c1 = img[int(pts[1][0][1]), int(pts[1][0][0])]
    assert np.abs(c0.astype(int) - c1.astype(int)).max() > 30


def test_render_grid_and_video(tmp_path):
    labels, _ = labels_on_pngs(tmp_path, n_frames=3)
    grid = render(labels, tmp_path / "grid.png")
    img = read_png(grid)
    assert img.shape[0] > 100 and img.shape[1] > 100
    one = render(labels, tmp_path / "one.png", frames="2")
    assert read_png(one).shape == (60, 80, 3)
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v3 as iio

    mp4 = render(labels, tmp_path / "out.mp4")
    frames = iio.imread(mp4)
    assert frames.shape[0] == 3 and frames.shape[1:3] == (60, 80)


def test_render_errors_and_cli(tmp_path, capsys):
    labels, _ = labels_on_pngs(tmp_path)
    with pytest.raises(PosekitError, match="png or a video"):
        render(labels, tmp_path / "out.txt")
    with pytest.raises(PosekitError, match="no labeled frames"):
        render(labels, tmp_path / "x.png", frames="5")
    sio.save_slp(labels, str(tmp_path / "pred.slp"))
    assert (
        run_render(
            argparse.Namespace(predictions=str(tmp_path / "pred.slp"), output=None, frames=None)
        )
        == 0
    )
    assert (tmp_path / "pred.png").exists()
    assert "Wrote" in capsys.readouterr().out


def test_plot_training_curve(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "epoch,step,train_loss,val_loss\n0,10,1.0,\n0,10,,0.9\n1,20,0.5,\n1,20,,0.6\n2,30,0.25,\n"
    )
    png = plot_training_curve(csv, tmp_path / "curve.png")
    img = read_png(png)
    assert img.shape == (400, 640, 3)
    assert (img < 200).any()  # something was drawn
    with pytest.raises(PosekitError, match="no loss column"):
        (tmp_path / "bad.csv").write_text("epoch,acc\n0,1\n")
        plot_training_curve(tmp_path / "bad.csv", tmp_path / "x.png")


def test_plot_predictions_vs_truth(tmp_path):
    image = np.zeros((48, 48), np.uint8)
    truth = np.array([[10.0, 10.0], [30.0, 35.0]])
    pred = truth + np.array([[2.0, -1.0], [0.0, 3.0]])
    png = plot_predictions_vs_truth(
        image, pred, truth, tmp_path / "pvt.png", edges=[(0, 1)], title="x"
    )
    img = read_png(png)
    assert img.shape[0] == img.shape[1] >= 48
    scale = img.shape[0] / 48
    y, x = int(pred[0, 1] * scale + scale / 2), int(pred[0, 0] * scale + scale / 2)
    patch = img[y - 2 : y + 3, x - 2 : x + 3].astype(int)
    assert (patch[..., 0] - patch[..., 1] > 100).any()  # red cross near the prediction
