"""Centroids, crop sizes and crops: SLEAP's placement, exact mapping back to the frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posekit.data.instance_cropping import (
    crop_instances,
    crop_origins,
    extract_crops,
    find_instance_crop_size,
    instance_centroids,
)

NAN = float("nan")


def test_centroid_is_anchor_or_bbox_midpoint():
    pts = torch.tensor(
        [[[2.0, 4.0], [10.0, 8.0], [6.0, 20.0]], [[NAN, NAN], [10.0, 8.0], [6.0, 20.0]]]
    )
    torch.testing.assert_close(instance_centroids(pts, 0)[0], torch.tensor([2.0, 4.0]))
    # anchor missing -> midpoint of the visible points' bounding box
    torch.testing.assert_close(instance_centroids(pts, 0)[1], torch.tensor([8.0, 14.0]))
    torch.testing.assert_close(instance_centroids(pts, None)[0], torch.tensor([6.0, 12.0]))
    empty = torch.full((1, 3, 2), NAN)
    assert torch.isnan(instance_centroids(empty, 1)).all()


def test_crop_size_from_largest_bbox_side_plus_padding_rounded_to_stride():
    a = np.array([[0.0, 0.0], [20.0, 30.0]])  # largest side 30
    b = np.array([[5.0, 5.0], [50.0, 10.0], [NAN, NAN]])  # largest side 45
    assert find_instance_crop_size([a, b], padding=16, maximum_stride=16) == 64  # 61 -> 64
    assert find_instance_crop_size([a, b], padding=16, maximum_stride=16, input_scaling=0.5) == 48
    assert find_instance_crop_size([a], padding=0, maximum_stride=8) == 32
    assert find_instance_crop_size([a], padding=0, maximum_stride=8, min_crop_size=100) == 104


def test_crop_origin_puts_centroid_at_half_size_minus_half():
    origin = crop_origins(torch.tensor([[10.0, 20.0]]), 8)
    torch.testing.assert_close(origin, torch.tensor([[6.5, 16.5]]))
    # the centroid lands at crop coordinate (S - 1) / 2
    torch.testing.assert_close(torch.tensor([[10.0, 20.0]]) - origin, torch.tensor([[3.5, 3.5]]))


def _coordinate_image(h: int, w: int) -> torch.Tensor:
    """Two channels holding each pixel's own x and y coordinate."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xx, yy])[None]


def test_crops_sample_origin_plus_index_and_points_map_back_exactly():
    img = _coordinate_image(40, 50)
    cents = torch.tensor([[20.3, 15.7], [30.0, 22.0]])
    crops, origins = crop_instances(img, cents, 9, sample_inds=torch.tensor([0, 0]))
    assert crops.shape == (2, 2, 9, 9)
    jj = torch.arange(9.0)
    for m in range(2):
        # pixel (i, j) of the crop shows frame coordinate (x0 + j, y0 + i) (bilinear of a ramp)
        torch.testing.assert_close(crops[m, 0], origins[m, 0] + jj.view(1, 9).expand(9, 9))
        torch.testing.assert_close(crops[m, 1], origins[m, 1] + jj.view(9, 1).expand(9, 9))
    pts = torch.tensor([[12.25, 9.5], [33.0, 25.75]])
    in_crop = pts - origins
    torch.testing.assert_close(in_crop + origins, pts)
    # reading the crop at the mapped point gives the frame coordinate of the point
    x, y = in_crop[1]
    j, i = int(x), int(y)
    fx, fy = x - j, y - i
    val = (
        crops[1, 0, i, j] * (1 - fx) * (1 - fy)
        + crops[1, 0, i, j + 1] * fx * (1 - fy)
        + crops[1, 0, i + 1, j] * (1 - fx) * fy
        + crops[1, 0, i + 1, j + 1] * fx * fy
    )
    assert val.item() == pytest.approx(33.0, abs=1e-4)


def test_integer_origin_crops_copy_pixels_and_outside_is_zero():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 20, 30, generator=g) + 1.0
    crop = extract_crops(img, torch.tensor([[4.0, 6.0]]), (5, 7))
    torch.testing.assert_close(crop[0], img[0, :, 6:11, 4:11])
    edge = extract_crops(img, torch.tensor([[-2.0, -3.0]]), 6)
    assert (
        torch.count_nonzero(edge[0, :, :3, :]) == 0 and torch.count_nonzero(edge[0, :, :, :2]) == 0
    )
    torch.testing.assert_close(edge[0, :, 3:, 2:], img[0, :, 0:3, 0:4])


def test_crops_read_the_image_named_by_sample_inds():
    img = torch.stack([torch.full((1, 10, 10), 1.0), torch.full((1, 10, 10), 2.0)])
    crops = extract_crops(
        img, torch.tensor([[2.0, 2.0], [3.5, 1.25], [1.0, 1.0]]), 4, torch.tensor([1, 0, 1])
    )
    assert crops[:, 0, 0, 0].tolist() == [2.0, 1.0, 2.0]


def test_even_crop_centres_on_subpixel_centroid():
    img = _coordinate_image(32, 32)
    crops, origins = crop_instances(img, torch.tensor([[15.5, 15.5]]), 16)
    assert origins[0].tolist() == [8.0, 8.0]
    mid = crops[0, 0, 7:9, 7:9].mean().item()
    assert math.isclose(mid, 15.5)
