"""Segmentation predictors on fake networks whose outputs are painted into the frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _inference_fakes import FakeModel

from posekit.inference.predictors.segmentation import (
    BottomUpSegmentationPredictor,
    SemanticSegmentationPredictor,
)


def _frame():
    """(1, 24, 32, 4) uint8: channel 0 foreground (two touching rectangles, values 255),
    channel 1 a centre blob in each, channels 2-3 zero offsets."""
    img = np.zeros((1, 24, 32, 4), dtype=np.uint8)
    img[0, 4:12, 2:14, 0] = 255  # left animal
    img[0, 6:20, 14:28, 0] = 255  # right animal, touching the left one
    img[0, 8, 8, 1] = 255
    img[0, 13, 21, 1] = 255
    return img


def _fake(model_type, heads):
    return FakeModel(model_type, [], heads)


def test_semantic_predictor_returns_the_foreground():
    model = _fake("semantic_segmentation", {"SegmentationHead": (0, 1, 1)})
    pred = SemanticSegmentationPredictor(model, device="cpu", progress=False)
    (frame,) = pred.predict_images(_frame())
    (mask,) = frame
    assert mask.mask.shape == (24, 32)
    assert (mask.mask == (_frame()[0, ..., 0] > 0)).all()
    assert mask.score == pytest.approx(1 / (1 + np.exp(-1.0)))  # sigmoid of a painted 1.0


def test_bottomup_predictor_splits_touching_animals_at_their_centres():
    heads = {
        "SegmentationHead": (0, 1, 1),
        "InstanceCenterHead": (1, 1, 1),
        "CenterOffsetHead": (2, 2, 1),
    }
    model = _fake("bottomup_segmentation", heads)
    pred = BottomUpSegmentationPredictor(model, device="cpu", progress=False, peak_threshold=0.5)
    (frame,) = pred.predict_images(_frame())
    assert len(frame) == 2
    fg = _frame()[0, ..., 0] > 0
    a, b = sorted(frame, key=lambda r: r.mask.nonzero()[1].mean())
    # zero offsets: every foreground pixel joins the nearer centre (x 8 or x 21 here)
    yy, xx = np.nonzero(fg)
    nearer_left = (xx - 8) ** 2 + (yy - 8) ** 2 < (xx - 21) ** 2 + (yy - 13) ** 2
    assert (a.mask[yy, xx] == nearer_left).all() and (b.mask[yy, xx] == ~nearer_left).all()
    assert not (a.mask & b.mask).any() and ((a.mask | b.mask) == fg).all()
    assert a.score == b.score == 1.0


def test_offsets_decide_the_animal_not_the_distance():
    """Offsets of -1000 px in x send every foreground pixel's vote far left, nearer the
    left centre than the right one: one mask holds the whole foreground."""
    img = _frame()
    heads = {"SegmentationHead": (0, 1, 1), "InstanceCenterHead": (1, 1, 1)}

    def far_left(x):
        return torch.full_like(x[:, 2:4], -1000.0) * torch.tensor([1.0, 0.0])[None, :, None, None]

    model = FakeModel(
        "bottomup_segmentation",
        [],
        heads,
        extra={"CenterOffsetHead": far_left},
    )
    pred = BottomUpSegmentationPredictor(model, device="cpu", progress=False, peak_threshold=0.5)
    (frame,) = pred.predict_images(img)
    assert len(frame) == 1
    assert (frame[0].mask == (img[0, ..., 0] > 0)).all()


def test_a_crop_map_goes_back_where_the_crop_came_from():
    from posekit.inference.predictors.topdown import paste_crop

    crop = torch.ones((4, 4))
    # crop pixel 0 sat at scaled-frame (4, 2) = centre - (4 - 1) / 2
    out = paste_crop(crop, torch.tensor([5.5, 3.5]), 1.0, (10, 12))
    expected = torch.zeros((10, 12))
    expected[2:6, 4:8] = 1.0
    assert torch.equal(out, expected)
    # at input scaling 0.5 frame pixel X is scaled-frame (X + 0.5) / 2 - 0.5: X 9..14, Y 5..10
    out = paste_crop(crop, torch.tensor([5.5, 3.5]), 0.5, (20, 24))
    assert out.nonzero().min(0).values.tolist() == [5, 9]
    assert out.nonzero().max(0).values.tolist() == [10, 14]
    # a crop that hangs over the frame's edge is cut there
    assert paste_crop(crop, torch.tensor([0.0, 0.0]), 1.0, (10, 12)).sum() == 4


def test_mask_predictions_keep_a_projects_poses_and_link_to_them():
    """Predicting masks onto a predictions file: the poses stay, each mask joins the
    predicted animal whose points lie inside it, and takes its track."""
    import sleap_io as sio

    from posekit.data.masks import to_sleap_mask
    from posekit.inference.workflow import merge_into_project

    skel = sio.Skeleton(["a", "b"])
    video = sio.Video(filename="v.mp4", open_backend=False)
    tracks = [sio.Track("left"), sio.Track("right")]
    poses = [
        sio.PredictedInstance.from_numpy(np.array([[3.0, 3.0], [6.0, 4.0]]), skel, track=tracks[0]),
        sio.PredictedInstance.from_numpy(
            np.array([[20.0, 12.0], [24.0, 14.0]]), skel, track=tracks[1]
        ),
    ]
    project = sio.Labels(
        labeled_frames=[sio.LabeledFrame(video, 0, instances=poses)],
        videos=[video],
        skeletons=[skel],
        tracks=tracks,
    )
    right = np.zeros((24, 32), dtype=bool)
    right[10:18, 18:28] = True
    left = np.zeros((24, 32), dtype=bool)
    left[0:8, 0:10] = True
    stray = np.zeros((24, 32), dtype=bool)
    stray[20:24, 0:4] = True
    masks = [to_sleap_mask(m, score=s) for m, s in ((right, 0.9), (left, 0.8), (stray, 0.7))]
    new = sio.Labels(labeled_frames=[sio.LabeledFrame(video, 0, masks=masks)], videos=[video])
    (lf,) = merge_into_project(project, new).labeled_frames
    assert lf.instances == poses
    assert [m.instance for m in lf.masks] == [poses[1], poses[0], None]
    assert [m.track for m in lf.masks] == [tracks[1], tracks[0], None]
