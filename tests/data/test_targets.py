"""Targets against values computed by hand from SLEAP's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from posekit.data.targets import (
    centroid_confidence_maps,
    class_maps,
    class_vectors,
    confidence_maps,
    head_sigma,
    offset_maps,
    output_size,
    part_affinity_fields,
)

NAN = float("nan")


def test_output_size_is_ceil_of_input_over_stride():
    assert output_size((33, 41), 4) == (9, 11)
    assert output_size((32, 40), 4) == (8, 10)
    assert output_size((5, 5), 1) == (5, 5)


def test_head_sigma_scales_with_output_stride_as_sleap():
    assert head_sigma(2.5, 4) == 10.0
    assert head_sigma(5.0, 1) == 5.0


def test_confmap_values_on_strided_grid():
    pts = torch.tensor([[[10.3, 7.6]]])  # (N=1, K=1, 2)
    cm = confidence_maps(pts, (32, 40), stride=2, sigma=3.0, drop_outside_instances=False)
    assert cm.shape == (1, 1, 16, 20)
    # map pixel (row 4, col 5) sits at input (x=10, y=8)
    expected = math.exp(-((10 - 10.3) ** 2 + (8 - 7.6) ** 2) / (2 * 9.0))
    assert cm[0, 0, 4, 5].item() == pytest.approx(expected, rel=1e-6)
    # (row 0, col 0) sits at input (0, 0)
    far = math.exp(-(10.3**2 + 7.6**2) / 18.0)
    assert cm[0, 0, 0, 0].item() == pytest.approx(far, rel=1e-5)
    assert cm.flatten().argmax().item() == 4 * 20 + 5


def test_confmap_point_on_grid_peaks_at_one_and_nan_gives_zero_channel():
    pts = torch.tensor([[[6.0, 4.0], [NAN, NAN]]])
    cm = confidence_maps(pts, (16, 16), stride=2, sigma=1.0)
    assert cm[0, 0, 2, 3].item() == pytest.approx(1.0)
    assert torch.count_nonzero(cm[0, 1]) == 0


def test_multi_instance_confmaps_are_max_over_instances():
    a = torch.tensor([[[5.0, 5.0]]])
    b = torch.tensor([[[8.0, 6.0]]])
    both = torch.stack([a[0], b[0]])[None]  # (1, 2, 1, 2)
    cm = confidence_maps(both, (16, 16), 1, 2.0)
    ref = torch.maximum(confidence_maps(a, (16, 16), 1, 2.0), confidence_maps(b, (16, 16), 1, 2.0))
    torch.testing.assert_close(cm, ref)


def test_instances_entirely_outside_are_dropped_like_sleap():
    pts = torch.tensor([[[[-3.0, 5.0]]]])  # (1, 1, 1, 2), just left of the image
    kept = confidence_maps(pts, (16, 16), 1, 3.0, drop_outside_instances=False)
    dropped = confidence_maps(pts, (16, 16), 1, 3.0, drop_outside_instances=True)
    assert kept[0, 0, 5, 0].item() == pytest.approx(math.exp(-9 / 18))
    assert torch.count_nonzero(dropped) == 0


def test_centroid_maps_have_one_channel_with_a_peak_per_instance():
    cents = torch.tensor([[[4.0, 4.0], [12.0, 8.0], [NAN, NAN]]])
    cm = centroid_confidence_maps(cents, (16, 16), 2, 1.0)
    assert cm.shape == (1, 1, 8, 8)
    assert cm[0, 0, 2, 2].item() == pytest.approx(1.0)
    assert cm[0, 0, 4, 6].item() == pytest.approx(1.0)


def test_paf_on_and_near_a_horizontal_segment():
    pts = torch.tensor([[[4.0, 10.0], [20.0, 10.0]]])
    sigma = 5.0
    paf = part_affinity_fields(pts, [(0, 1)], (20, 24), 1, sigma)
    assert paf.shape == (1, 2, 20, 24)
    # on the segment: weight 1 times the unit vector (1, 0)
    assert paf[0, 0, 10, 12].item() == pytest.approx(1.0)
    assert paf[0, 1, 10, 12].item() == pytest.approx(0.0)
    # 2 px off the segment: SLEAP's gaussian of the squared distance: exp(-(d^2)^2/(2s^2))
    assert paf[0, 0, 12, 12].item() == pytest.approx(math.exp(-(4.0**2) / (2 * sigma**2)))
    # beyond the end: distance to the end point (3 px)
    assert paf[0, 0, 10, 23].item() == pytest.approx(math.exp(-(9.0**2) / (2 * sigma**2)))


def test_paf_diagonal_unit_vector_and_channel_order():
    pts = torch.tensor([[[2.0, 2.0], [8.0, 10.0], [2.0, 10.0]]])
    paf = part_affinity_fields(pts, [(0, 1), (2, 1)], (12, 12), 1, 3.0)
    assert paf.shape == (1, 4, 12, 12)
    # (5, 6) lies on edge 0 (midpoint): unit vector (0.6, 0.8)
    assert paf[0, 0, 6, 5].item() == pytest.approx(0.6, abs=1e-6)
    assert paf[0, 1, 6, 5].item() == pytest.approx(0.8, abs=1e-6)
    # (5, 10) lies on edge 1 (from (2,10) to (8,10)): unit vector (1, 0)
    assert paf[0, 2, 10, 5].item() == pytest.approx(1.0)
    assert paf[0, 3, 10, 5].item() == pytest.approx(0.0)


def test_paf_nan_endpoint_gives_zeros_and_instances_sum():
    one = torch.tensor([[[4.0, 6.0], [12.0, 6.0]]])
    nan_edge = torch.tensor([[[4.0, 6.0], [NAN, NAN]]])
    assert torch.count_nonzero(part_affinity_fields(nan_edge, [(0, 1)], (12, 16), 1, 4.0)) == 0
    two = torch.stack([one[0], one[0]])[None]  # the same edge twice
    single = part_affinity_fields(one, [(0, 1)], (12, 16), 1, 4.0)
    double = part_affinity_fields(two, [(0, 1)], (12, 16), 1, 4.0)
    torch.testing.assert_close(double, 2 * single)


def test_paf_strided_grid():
    pts = torch.tensor([[[1.0, 4.0], [15.0, 4.0]]])
    paf = part_affinity_fields(pts, [(0, 1)], (16, 18), 4, 2.0)
    assert paf.shape == (1, 2, 4, 5)
    assert paf[0, 0, 1, 2].item() == pytest.approx(1.0)  # input (8, 4) is on the edge
    assert paf[0, 0, 2, 2].item() == pytest.approx(math.exp(-(16.0**2) / 8.0), abs=1e-12)
    # SLEAP drops instances with no point strictly inside (0, last grid coordinate)
    edge = torch.tensor([[[0.0, 4.0], [16.0, 4.0]]])
    assert torch.count_nonzero(part_affinity_fields(edge, [(0, 1)], (16, 18), 4, 2.0)) == 0


def test_offsets_in_grid_units_and_masked_by_threshold():
    pts = torch.tensor([[[10.3, 7.6], [NAN, NAN]]])
    sigma = 2.0
    off = offset_maps(pts, (32, 40), 2, sigma)
    assert off.shape == (1, 4, 16, 20)
    # pixel (row 4, col 5) sits at (10, 8): offsets (0.3, -0.4) / stride
    assert off[0, 0, 4, 5].item() == pytest.approx(0.15, abs=1e-6)
    assert off[0, 1, 4, 5].item() == pytest.approx(-0.2, abs=1e-6)
    # the mask follows cm > 0.2 exactly
    cm = confidence_maps(pts, (32, 40), 2, sigma, drop_outside_instances=False)
    mask = cm[0, 0] > 0.2
    assert torch.all(off[0, 0][~mask] == 0) and torch.all(off[0, 1][~mask] == 0)
    assert mask.sum() > 1 and torch.count_nonzero(off[0, 1][mask]) > 0
    assert torch.count_nonzero(off[0, 2:]) == 0  # NaN part


def test_multi_instance_offsets_come_from_the_largest_map():
    pts = torch.tensor([[[[4.0, 4.0]], [[7.0, 4.0]]]])  # two instances, one part
    off = offset_maps(pts, (10, 12), 1, 2.0)
    # pixel x=5 is nearer instance 0 -> offset -1; x=6 nearer instance 1 -> +1
    assert off[0, 0, 4, 5].item() == pytest.approx(-1.0)
    assert off[0, 0, 4, 6].item() == pytest.approx(1.0)


def test_class_maps_match_sleap_weights():
    pts = torch.tensor([[[[4.0, 4.0], [6.0, 4.0]], [[20.0, 12.0], [NAN, NAN]]]])
    cls = torch.tensor([[1, 0]])
    maps = class_maps(pts, cls, 3, (16, 24), 1, 1.5)
    assert maps.shape == (1, 3, 16, 24)
    assert maps[0, 1, 4, 4].item() == pytest.approx(1.0)  # alone: weight cm/cm = 1
    assert maps[0, 0, 12, 20].item() == pytest.approx(1.0)
    assert maps[0, 0, 4, 4].item() == 0.0 and maps[0, 1, 12, 20].item() == 0.0
    assert torch.count_nonzero(maps[0, 2]) == 0
    # below the 0.2 threshold: zero (3 px away: exp(-9/4.5) = 0.135)
    assert maps[0, 0, 12, 23].item() == 0.0
    # binary disc, not a Gaussian: 1 px away is still 1
    assert maps[0, 0, 12, 21].item() == pytest.approx(1.0)


def test_class_maps_split_weight_where_instances_overlap():
    pts = torch.tensor([[[[8.0, 8.0]], [[8.0, 8.0]]]])
    maps = class_maps(pts, torch.tensor([[0, 1]]), 2, (16, 16), 1, 2.0)
    assert maps[0, 0, 8, 8].item() == pytest.approx(0.5)
    assert maps[0, 1, 8, 8].item() == pytest.approx(0.5)


def test_class_vectors_one_hot_and_minus_one_is_zero():
    v = class_vectors(torch.tensor([-1, 2, 0]), 3)
    torch.testing.assert_close(v, torch.tensor([[0.0, 0, 0], [0, 0, 1], [1, 0, 0]]))


def test_batched_targets_match_per_sample_targets():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3, 2, 4, 2, generator=g) * 30
    pts[1, 1] = NAN
    batch = confidence_maps(pts, (32, 32), 2, 2.0)
    for i in range(3):
        torch.testing.assert_close(
            batch[i : i + 1], confidence_maps(pts[i : i + 1], (32, 32), 2, 2.0)
        )
    pafs = part_affinity_fields(pts, [(0, 1), (1, 2), (2, 3)], (32, 32), 4, 10.0)
    for i in range(3):
        torch.testing.assert_close(
            pafs[i : i + 1],
            part_affinity_fields(pts[i : i + 1], [(0, 1), (1, 2), (2, 3)], (32, 32), 4, 10.0),
        )
