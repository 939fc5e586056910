"""Masks beside poses: sleap-io round trip, masks made from poses, mask-head targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posekit.data.masks import (
    center_target,
    fit_masks,
    foreground_target,
    hull_mask,
    mask_array,
    mask_centroids,
    masks_from_poses,
    offset_target,
    to_sleap_mask,
)


def test_hull_mask_of_a_triangle_and_its_dilation():
    pts = np.array([[2.0, 2.0], [12.0, 2.0], [2.0, 12.0], [np.nan, np.nan]])
    m = hull_mask(pts, (16, 16), dilation=0)
    # integer points with x, y >= 2 and x + y <= 14: sum_{k=0..10} (k + 1) = 66
    assert m.sum() == 66
    assert m[2, 2] and m[2, 12] and m[12, 2] and not m[8, 8]
    grown = hull_mask(pts, (16, 16), dilation=1.0)
    assert grown[m].all() and grown[1, 2] and grown[2, 1] and not grown[0, 0]
    # one point dilated: a disc of radius 2 (13 pixels), cut at the border
    assert hull_mask(np.array([[5.0, 5.0]]), (16, 16), 2.0).sum() == 13
    assert hull_mask(np.array([[0.0, 0.0]]), (16, 16), 2.0).sum() == 6


def test_sleap_io_round_trip_with_scale():
    a = np.zeros((6, 8), dtype=bool)
    a[1:4, 2:7] = True
    m = to_sleap_mask(a, score=0.7)
    assert m.is_predicted and m.score == pytest.approx(0.7) and m.area == 15
    assert (mask_array(m) == a).all()
    # a half-resolution mask lands on the full image grid as 2x2 blocks
    half = to_sleap_mask(np.array([[1, 0], [0, 1]], dtype=bool))
    half.scale = (0.5, 0.5)
    full = mask_array(half, (4, 4))
    assert (full == np.kron(np.eye(2, dtype=bool), np.ones((2, 2), dtype=bool))).all()


def test_masks_from_poses_links_instances_and_survives_saving(tmp_path):
    import sleap_io as sio

    from posekit.data.synthetic import make_synthetic_labels

    labels = make_synthetic_labels(
        n_frames=3,
        n_animals=2,
        image_size=48,
        n_parts=4,
        seed=0,
        body_length=16,
        video_path=tmp_path / "v.h5",
    )
    assert masks_from_poses(labels, dilation=2) == 6
    assert masks_from_poses(labels, dilation=2) == 0  # instances with a mask keep theirs
    lf = labels.labeled_frames[0]
    for inst, m in zip(lf.user_instances, lf.masks):
        assert m.instance is inst and m.track is inst.track
        pts = inst.numpy()
        # every visible point lies inside its mask
        ys, xs = np.round(pts[:, 1]).astype(int), np.round(pts[:, 0]).astype(int)
        assert m.data[ys, xs].all()
    sio.save_slp(labels, tmp_path / "m.slp")
    back = sio.load_slp(tmp_path / "m.slp")
    lf2 = back.labeled_frames[0]
    assert [int(m.area) for m in lf2.masks] == [int(m.area) for m in lf.masks]
    assert lf2.masks[0].instance is lf2.user_instances[0]


def test_targets_of_two_squares():
    masks = torch.zeros((1, 2, 8, 8), dtype=torch.bool)
    masks[0, 0, 0:4, 0:4] = True  # centre (1.5, 1.5)
    masks[0, 1, 4:8, 2:8] = True  # centre (4.5, 5.5)
    assert mask_centroids(masks)[0].tolist() == [[1.5, 1.5], [4.5, 5.5]]
    fg = foreground_target(masks, 2)
    assert fg.shape == (1, 1, 4, 4) and fg.sum() == 4 + 6
    off = offset_target(masks, 2)
    # the stride-2 cell (0, 0) sits at input (0.5, 0.5): 1 px from its centre each way
    assert off[0, :, 0, 0].tolist() == [1.0, 1.0]
    assert off[0, :, 3, 3].tolist() == [4.5 - 6.5, 5.5 - 6.5]
    assert torch.isnan(off[0, :, 0, 3]).all()  # background
    cen = center_target(masks, 2, sigma=2.0)
    # cell (0, 0) at 0.5 px from x = y = 1.5: exp(-(1 + 1) / 8)
    assert cen[0, 0, 0, 0].item() == pytest.approx(np.exp(-2 / 8))
    assert cen.max() <= 1.0


def test_fit_masks_follows_the_augmentation_warp():
    masks = torch.zeros((1, 1, 16, 16), dtype=torch.uint8)
    masks[0, 0, 2:6, 3:9] = 1
    shift = torch.eye(3, dtype=torch.float64)[None].clone()
    shift[0, 0, 2], shift[0, 1, 2] = 4.0, 2.0  # move right 4, down 2
    out = fit_masks(masks, shift, (16, 16), (20, 24))
    assert out.shape == (1, 1, 20, 24)
    expected = torch.zeros((20, 24), dtype=torch.bool)
    expected[4:8, 7:13] = True
    assert torch.equal(out[0, 0], expected)
    # without a warp: a bilinear resize to half size; a half-covered edge cell is out
    half = fit_masks(masks, None, (8, 8), (8, 8))
    assert half[0, 0].nonzero().tolist() == [[1, 2], [1, 3], [2, 2], [2, 3]]
