"""Peak finders and refinement on synthetic maps with known peaks."""

from __future__ import annotations

import math

import pytest
import torch

from posekit.ops.coordinates import to_image_coordinates
from posekit.ops.peaks import (
    find_global_peaks,
    find_global_peaks_fixed,
    find_global_peaks_rough,
    find_local_peaks,
    find_local_peaks_fixed,
    find_local_peaks_rough,
    local_peak_mask,
    top_k_per_sample,
)
from posekit.ops.refinement import (
    integral_offsets,
    learned_offsets,
    refine_peaks,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gaussian(h, w, x0, y0, sigma=0.75, amp=1.0):
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return amp * torch.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("device", DEVICES)
def test_global_rough_exact_grid_peak_per_channel(device):
    cms = torch.zeros(2, 3, 16, 20, device=device)
    expected = {(0, 0): (3, 4), (0, 1): (19, 0), (0, 2): (7, 15), (1, 0): (0, 0), (1, 1): (11, 9)}
    for (n, c), (x, y) in expected.items():
        cms[n, c, y, x] = 0.9
    cms[1, 2, 5, 6] = 0.1  # below threshold: NaN point, value kept
    points, values = find_global_peaks_rough(cms, threshold=0.2)
    assert points.shape == (2, 3, 2) and values.shape == (2, 3)
    for (n, c), (x, y) in expected.items():
        assert points[n, c].tolist() == [x, y]
        assert values[n, c].item() == pytest.approx(0.9)
    assert torch.isnan(points[1, 2]).all()
    assert values[1, 2].item() == pytest.approx(0.1)


def test_global_threshold_is_inclusive_like_sleap():
    cms = torch.zeros(1, 1, 5, 5)
    cms[0, 0, 2, 2] = 0.2
    points, _ = find_global_peaks_rough(cms, threshold=0.2)
    assert points[0, 0].tolist() == [2.0, 2.0]
    points, _ = find_global_peaks_rough(cms, threshold=0.2001)
    assert torch.isnan(points[0, 0]).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("x0,y0", [(10.3, 7.6), (5.75, 20.45), (16.0, 16.0)])
def test_integral_refinement_subpixel_accuracy(device, x0, y0):
    cms = gaussian(32, 32, x0, y0)[None, None].to(device)
    points, values = find_global_peaks(cms, refinement="integral")
    err = (points[0, 0].cpu() - torch.tensor([x0, y0])).abs().max().item()
    assert err < 0.05
    # The rough peak alone is off by up to half a pixel.
    rough, _ = find_global_peaks(cms, refinement=None)
    assert rough[0, 0].tolist() == [round(x0), round(y0)]
    assert values[0, 0].item() == pytest.approx(cms.max().item())


def test_integral_offset_formula_by_hand():
    # Patch values only at (dx=+1, dy=0) with weight 1 and at centre with weight 3:
    # offset x = (1*1 + 0*3) / 4 = 0.25, y = 0.
    cms = torch.zeros(1, 1, 9, 9)
    cms[0, 0, 4, 4] = 3.0
    cms[0, 0, 4, 5] = 1.0
    pts = torch.tensor([[4.0, 4.0]])
    off = integral_offsets(cms, pts, torch.tensor([0]), torch.tensor([0]))
    assert off[0].tolist() == pytest.approx([0.25, 0.0])


def test_integral_patch_is_zero_outside_map():
    # Peak at the corner: the missing half of the patch counts as zero, so the
    # centre of mass moves inside the map (as TensorFlow's crop_and_resize does).
    cms = torch.zeros(1, 1, 6, 6)
    cms[0, 0, 0, 0] = 1.0
    cms[0, 0, 0, 1] = 1.0
    pts, _ = find_global_peaks(cms)
    assert pts[0, 0].tolist() == pytest.approx([0.5, 0.0])


@pytest.mark.parametrize("device", DEVICES)
def test_local_peaks_find_every_instance_with_refinement(device):
    true = [(5.2, 6.1), (20.7, 9.4), (12.0, 25.3)]
    cm = sum(gaussian(32, 32, x, y) for x, y in true)
    cms = torch.stack([cm, torch.zeros_like(cm)])[:, None].to(device)  # 2 samples, 1 channel
    points, values, samples, channels = find_local_peaks(cms, threshold=0.2)
    assert points.shape == (3, 2)
    assert samples.tolist() == [0, 0, 0] and channels.tolist() == [0, 0, 0]
    got = sorted(points.cpu().tolist())
    for (x, y), (gx, gy) in zip(sorted(true), got):
        assert abs(gx - x) < 0.05 and abs(gy - y) < 0.05
    # Values are the map at the grid-aligned peak, not at the refined location.
    for (x, y), v in zip(points.cpu().tolist(), values.cpu().tolist()):
        assert v == pytest.approx(cm[round(y), round(x)].item())


def test_local_peaks_strict_maximum_threshold_and_border():
    cms = torch.zeros(1, 2, 8, 8)
    cms[0, 0, 2, 2] = 0.5  # isolated peak
    cms[0, 0, 5, 5] = 0.6  # plateau of two equal pixels: not strict -> no peak
    cms[0, 0, 5, 6] = 0.6
    cms[0, 0, 0, 7] = 0.4  # border peak counts
    cms[0, 1, 3, 3] = 0.2  # equal to threshold: excluded (strict)
    cms[0, 1, 6, 1] = 0.21
    points, values, samples, channels = find_local_peaks_rough(cms, threshold=0.2)
    found = {(c, x, y) for c, (x, y) in zip(channels.tolist(), points.tolist())}
    assert found == {(0, 2.0, 2.0), (0, 7.0, 0.0), (1, 1.0, 6.0)}
    assert sorted(values.tolist()) == pytest.approx([0.21, 0.4, 0.5])


def test_learned_offsets_channel_layout():
    cms = torch.zeros(1, 2, 6, 6)
    cms[0, 0, 1, 2] = 1.0
    cms[0, 1, 4, 3] = 1.0
    offsets = torch.zeros(1, 4, 6, 6)
    offsets[0, 0, 1, 2] = 0.3  # part0 dx
    offsets[0, 1, 1, 2] = -0.2  # part0 dy
    offsets[0, 2, 4, 3] = -0.4  # part1 dx
    offsets[0, 3, 4, 3] = 0.1  # part1 dy
    points, _ = find_global_peaks(cms, offsets=offsets)
    assert points[0, 0].tolist() == pytest.approx([2.3, 0.8])
    assert points[0, 1].tolist() == pytest.approx([2.6, 4.1])
    pts, _, s, c = find_local_peaks(cms, offsets=offsets)
    got = sorted(pts.tolist())
    assert got[0] == pytest.approx([2.3, 0.8]) and got[1] == pytest.approx([2.6, 4.1])
    direct = learned_offsets(
        offsets, torch.tensor([[3.0, 4.0]]), torch.tensor([0]), torch.tensor([1])
    )
    assert direct[0].tolist() == pytest.approx([-0.4, 0.1])


def test_local_direction_refinement_and_bad_name():
    cms = torch.zeros(1, 1, 5, 5)
    cms[0, 0, 2, 2] = 1.0
    cms[0, 0, 2, 3] = 0.5  # right neighbour larger than left
    cms[0, 0, 1, 2] = 0.3  # top neighbour larger than bottom
    pts = refine_peaks(
        cms, torch.tensor([[2.0, 2.0]]), torch.tensor([0]), torch.tensor([0]), "local"
    )
    assert pts[0].tolist() == pytest.approx([2.25, 1.75])
    with pytest.raises(ValueError, match="refinement must be"):
        refine_peaks(cms, torch.tensor([[2.0, 2.0]]), torch.tensor([0]), torch.tensor([0]), "bogus")


def test_to_image_coordinates_stride_scale_and_crop():
    pts = torch.tensor([[[3.0, 4.0], [float("nan"), float("nan")]]])
    out = to_image_coordinates(pts, stride=4)
    assert out[0, 0].tolist() == [12.0, 16.0]
    assert torch.isnan(out[0, 1]).all()
    out = to_image_coordinates(pts, stride=4, input_scale=0.5)
    assert out[0, 0].tolist() == [24.5, 32.5]
    out = to_image_coordinates(pts, stride=2, crop_offsets=torch.tensor([[100.0, 50.0]]))
    assert out[0, 0].tolist() == [106.0, 58.0]


def test_top_k_per_sample_keeps_best():
    values = torch.tensor([0.5, 0.9, 0.7, 0.3, 0.8, 0.1])
    samples = torch.tensor([0, 0, 0, 1, 1, 1])
    keep = top_k_per_sample(values, samples, 2)
    assert keep.tolist() == [1, 2, 3, 4]
    assert top_k_per_sample(values, samples, None).tolist() == list(range(6))
    with pytest.raises(ValueError, match="max_instances"):
        top_k_per_sample(values, samples, 0)


def test_bad_rank_is_reported():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        find_global_peaks_rough(torch.zeros(4, 4))


def test_sigma_matches_gaussian_definition():
    # Sanity of the helper used above: value one sigma away is exp(-1/2).
    g = gaussian(9, 9, 4.0, 4.0, sigma=2.0)
    assert g[4, 6].item() == pytest.approx(math.exp(-0.5))


def _smooth_maps(seed: int, n: int = 2, c: int = 3, h: int = 19, w: int = 23) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(n, c, h, w, generator=gen), 3, 1, 1)


@pytest.mark.parametrize("refinement", ["integral", None, "offsets"])
def test_fixed_size_global_finder_equals_find_global_peaks(refinement):
    cms = _smooth_maps(0)
    offsets = torch.randn(2, 6, 19, 23) if refinement == "offsets" else None
    refinement = None if refinement == "offsets" else refinement
    threshold = float(cms.flatten(2).amax(-1).median())  # about half the peaks are NaN
    ref_points, ref_values = find_global_peaks(cms, threshold, refinement, offsets=offsets)
    points, values = find_global_peaks_fixed(cms, threshold, refinement, offsets=offsets)
    assert torch.equal(values, ref_values)
    assert torch.isnan(points).any() and not torch.isnan(points).all()
    torch.testing.assert_close(points, ref_points, equal_nan=True)


@pytest.mark.parametrize("refinement", ["integral", None, "offsets"])
def test_fixed_size_local_finder_keeps_the_k_strongest_peaks_per_map(refinement):
    cms = _smooth_maps(1)
    cms[1, 2] = 0.0
    cms[1, 2, 5, 7] = 1.0  # one peak on this map: K - 1 empty slots
    offsets = torch.randn(2, 6, 19, 23) if refinement == "offsets" else None
    refinement = None if refinement == "offsets" else refinement
    threshold, k = float(cms.quantile(0.5)), 4
    ref = find_local_peaks(cms, threshold, refinement, offsets=offsets)
    points, values = find_local_peaks_fixed(cms, k, threshold, refinement, offsets=offsets)
    assert points.shape == (2, 3, k, 2) and values.shape == (2, 3, k)
    some_full = some_short = False
    for s in range(2):
        for c in range(3):
            sel = (ref[2] == s) & (ref[3] == c)
            order = torch.argsort(ref[1][sel], descending=True, stable=True)[:k]
            m = len(order)
            some_full |= m == k
            some_short |= m < k
            assert torch.equal(values[s, c, :m], ref[1][sel][order])
            torch.testing.assert_close(points[s, c, :m], ref[0][sel][order])
            assert torch.isnan(points[s, c, m:]).all() and (values[s, c, m:] == 0).all()
    assert some_full and some_short


def test_local_peak_mask_is_the_rough_finders_rule():
    cms = _smooth_maps(2)
    cms[0, 0, 4, 4:6] = 2.0  # a plateau: no peak
    _, _, samples, channels = find_local_peaks_rough(cms, 0.3)
    points = find_local_peaks_rough(cms, 0.3)[0].long()
    mask = local_peak_mask(cms, 0.3)
    expected = torch.zeros_like(mask)
    expected[samples, channels, points[:, 1], points[:, 0]] = True
    assert torch.equal(mask, expected) and not mask[0, 0, 4, 4:6].any()


# -- the frame, not the stride padding


def test_frame_map_size_counts_the_map_pixels_on_the_scaled_frame():
    from posekit.ops.peaks import frame_map_size

    # 747 x 832 at 0.25 -> 186 x 208 input pixels; stride 2 -> rows 0..92 sit on 0..184
    assert frame_map_size((747, 832), 0.25, 2) == (93, 104)
    assert frame_map_size((470, 640), 0.25, 4) == (30, 40)  # 117 x 160: row 29 at 116
    assert frame_map_size((64, 64), 1.0, 1) == (64, 64)


def _padded_maps():
    """Maps of a 10 x 12 frame padded to 16 x 16: part 0's maximum (0.9) in the padded
    strip, a weaker in-frame peak (0.6); part 1 nothing in the frame above 0.2."""
    cms = torch.zeros(1, 2, 16, 16)
    cms[0, 0] += gaussian(16, 16, 14, 13, amp=0.9)  # x=14, y=13: outside
    cms[0, 0] += gaussian(16, 16, 3, 4, amp=0.6)
    cms[0, 1] += gaussian(16, 16, 5, 12, amp=0.8)  # y=12 > 9: outside
    return cms


def test_global_peaks_ignore_a_maximum_in_the_padded_strip():
    cms = _padded_maps()
    pts, vals = find_global_peaks(cms, 0.2, refinement=None)
    assert pts[0, 0].tolist() == [14.0, 13.0]  # without the frame: the padding wins
    pts, vals = find_global_peaks(cms, 0.2, refinement="integral", frame_map_hw=(10, 12))
    assert torch.allclose(pts[0, 0], torch.tensor([3.0, 4.0]), atol=1e-3)
    assert vals[0, 0].item() == pytest.approx(0.6, abs=1e-3)
    # nothing on the frame above the threshold: NaN, scored by the best in-frame value
    assert torch.isnan(pts[0, 1]).all()
    assert vals[0, 1].item() < 0.2
    fixed_pts, fixed_vals = find_global_peaks_fixed(cms, 0.2, "integral", frame_map_hw=(10, 12))
    assert torch.allclose(fixed_pts[0, 0], pts[0, 0], atol=1e-5)
    assert torch.isnan(fixed_pts[0, 1]).all()
    assert torch.equal(fixed_vals, vals)


def test_local_peaks_ignore_peaks_in_the_padded_strip():
    cms = _padded_maps()
    pts, vals, samples, channels = find_local_peaks(cms, 0.2, refinement=None)
    assert len(vals) == 3
    pts, vals, samples, channels = find_local_peaks(
        cms, 0.2, refinement=None, frame_map_hw=(10, 12)
    )
    assert pts.tolist() == [[3.0, 4.0]] and channels.tolist() == [0]
    fixed_pts, fixed_vals = find_local_peaks_fixed(cms, 2, 0.2, None, frame_map_hw=(10, 12))
    assert fixed_pts[0, 0, 0].tolist() == [3.0, 4.0]
    assert torch.isnan(fixed_pts[0, 0, 1]).all() and torch.isnan(fixed_pts[0, 1]).all()
    assert fixed_vals[0, 1].tolist() == [0.0, 0.0]


def test_an_in_frame_peak_at_the_frame_edge_is_kept():
    cms = torch.zeros(1, 1, 8, 8)
    cms[0, 0] = gaussian(8, 8, 5, 5, amp=0.7)  # last in-frame row and column
    cms[0, 0, 6:, :] = 0.95  # brighter padding right next to it
    pts, vals = find_global_peaks(cms, 0.2, refinement=None, frame_map_hw=(6, 6))
    assert pts[0, 0].tolist() == [5.0, 5.0] and vals[0, 0].item() == pytest.approx(0.7)
    pts, _, _, _ = find_local_peaks(cms, 0.2, refinement=None, frame_map_hw=(6, 6))
    assert pts.tolist() == [[5.0, 5.0]]  # the padding counts as outside the map
