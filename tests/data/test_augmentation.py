"""Augmentation: images and points move together; flips swap symmetric nodes; intensity."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from posekit.data.augmentation import BatchAugmenter, augmentation_config

NAN = float("nan")


def _dot_image(n: int, h: int, w: int, points: torch.Tensor) -> torch.Tensor:
    """Images with one bright pixel at each sample's integer point."""
    img = torch.zeros(n, 1, h, w)
    for i in range(n):
        x, y = int(points[i, 0, 0, 0]), int(points[i, 0, 0, 1])
        img[i, 0, y, x] = 1.0
    return img


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotation_moves_bright_pixel_to_rotated_point(seed):
    aug = BatchAugmenter(
        {"rotate": True, "rotation_min_angle": -180, "rotation_max_angle": 180}, seed=seed
    )
    pts = torch.tensor([[[[40.0, 20.0]]], [[[10.0, 50.0]]], [[[33.0, 31.0]]]])
    img = _dot_image(3, 64, 64, pts)
    out, moved = aug(img, pts)
    for i in range(3):
        flat = out[i, 0].argmax().item()
        by, bx = divmod(flat, 64)
        px, py = moved[i, 0, 0].tolist()
        assert math.hypot(bx - px, by - py) <= 1.0, (i, (bx, by), (px, py))


def test_positive_angle_turns_clockwise_on_screen():
    aug = BatchAugmenter(
        {"rotate": True, "rotation_min_angle": 90, "rotation_max_angle": 90}, seed=0
    )
    c = 15.5  # centre of a 32 x 32 image
    pts = torch.tensor([[[[c + 10, c]]]])
    _, moved = aug(torch.zeros(1, 1, 32, 32), pts)
    torch.testing.assert_close(moved[0, 0, 0], torch.tensor([c, c + 10]), atol=1e-4, rtol=0)


def test_translate_and_scale_exact():
    aug = BatchAugmenter({"translate": True, "translate_min": 3, "translate_max": 3}, seed=0)
    img = torch.rand(1, 1, 20, 20)
    out, moved = aug(img, torch.tensor([[[[5.0, 6.0]]]]))
    torch.testing.assert_close(moved[0, 0, 0], torch.tensor([8.0, 9.0]))
    torch.testing.assert_close(out[0, 0, 3:, 3:], img[0, 0, :-3, :-3], atol=1e-5, rtol=0)
    zoom = BatchAugmenter({"scale": True, "scale_min": 2.0, "scale_max": 2.0}, seed=0)
    c = 9.5
    _, moved = zoom(torch.zeros(1, 1, 20, 20), torch.tensor([[[[c + 2, c - 1]]]]))
    torch.testing.assert_close(moved[0, 0, 0], torch.tensor([c + 4, c - 2]))


def test_horizontal_flip_mirrors_and_swaps_symmetric_nodes():
    params = {"random_flip": True, "flip_horizontal": True}
    aug = BatchAugmenter(params, symmetric_inds=[(1, 2)], seed=0, flip_probability=1.0)
    img = torch.rand(2, 1, 8, 10)
    pts = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [7.0, 5.0]]]).expand(2, 1, 3, 2).clone()
    out, moved = aug(img, pts)
    torch.testing.assert_close(out, img.flip(-1), atol=1e-5, rtol=0)
    # x -> W - 1 - x; node 1 and node 2 trade places
    expected = torch.tensor([[9 - 1.0, 2.0], [9 - 7.0, 5.0], [9 - 3.0, 4.0]])
    torch.testing.assert_close(moved[0, 0], expected)
    torch.testing.assert_close(moved[1, 0], expected)


def test_vertical_flip_and_flip_probability_zero():
    aug = BatchAugmenter(
        {"random_flip": True, "flip_horizontal": False}, [(0, 1)], seed=0, flip_probability=1.0
    )
    img = torch.rand(1, 1, 6, 5)
    out, moved = aug(img, torch.tensor([[[[1.0, 1.0], [2.0, 4.0]]]]))
    torch.testing.assert_close(out, img.flip(-2), atol=1e-5, rtol=0)
    torch.testing.assert_close(moved[0, 0], torch.tensor([[2.0, 1.0], [1.0, 4.0]]))
    never = BatchAugmenter({"random_flip": True}, [(0, 1)], seed=0, flip_probability=0.0)
    pts = torch.tensor([[[[1.0, 1.0], [2.0, 4.0]]]])
    torch.testing.assert_close(never(img, pts)[1], pts)


def test_points_leaving_the_image_become_nan_unless_disabled():
    aug = BatchAugmenter({"translate": True, "translate_min": 10, "translate_max": 10}, seed=0)
    pts = torch.tensor([[[[2.0, 2.0], [15.0, 3.0]]]])
    _, moved = aug(torch.zeros(1, 1, 20, 20), pts)
    assert moved[0, 0, 0].tolist() == [12.0, 12.0]
    assert torch.isnan(moved[0, 0, 1]).all()
    _, kept = aug(torch.zeros(1, 1, 20, 20), pts, nan_outside=False)
    assert kept[0, 0, 1].tolist() == [25.0, 13.0]


def test_intensity_in_sleap_0_255_units():
    img = torch.full((2, 1, 4, 4), 0.5)
    bright = BatchAugmenter(
        {"brightness": True, "brightness_min_val": 10, "brightness_max_val": 10}
    )
    torch.testing.assert_close(bright(img)[0], img + 10 / 255)
    gamma = BatchAugmenter({"contrast": True, "contrast_min_gamma": 2, "contrast_max_gamma": 2})
    torch.testing.assert_close(gamma(img)[0], img**2)
    uni = BatchAugmenter(
        {"uniform_noise": True, "uniform_noise_min_val": 0, "uniform_noise_max_val": 10}, seed=1
    )
    d = uni(torch.full((4, 1, 16, 16), 0.5))[0] - 0.5
    assert d.min() >= 0 and d.max() <= 10 / 255 + 1e-6 and d.std() > 0
    gauss = BatchAugmenter(
        {"gaussian_noise": True, "gaussian_noise_mean": 5, "gaussian_noise_stddev": 1}, seed=1
    )
    d = gauss(torch.full((4, 1, 32, 32), 0.5))[0] - 0.5
    assert d.mean().item() == pytest.approx(5 / 255, abs=0.2 / 255)
    assert d.std().item() == pytest.approx(1 / 255, rel=0.1)
    clipped = bright(torch.ones(1, 1, 2, 2))[0]
    assert clipped.max().item() == 1.0


def test_seeded_augmenters_repeat_and_differ_by_seed():
    cfg = {
        "rotate": True,
        "scale": True,
        "translate": True,
        "random_flip": True,
        "uniform_noise": True,
    }
    img = torch.rand(3, 1, 16, 16)
    pts = torch.rand(3, 2, 4, 2) * 15
    a1 = BatchAugmenter(cfg, [(0, 1)], seed=5)(img, pts)
    a2 = BatchAugmenter(cfg, [(0, 1)], seed=5)(img, pts)
    b = BatchAugmenter(cfg, [(0, 1)], seed=6)(img, pts)
    torch.testing.assert_close(a1[0], a2[0])
    torch.testing.assert_close(a1[1], a2[1], equal_nan=True)
    assert not torch.allclose(a1[0], b[0])


def test_params_from_config_accept_sleap_fields_and_check_ranges():
    p = augmentation_config({"rotate": True, "random_crop": True, "rotation_max_angle": 15})
    assert p.rotate and p.rotation_max_angle == 15 and p.rotation_min_angle == -180
    assert not augmentation_config(None).enabled
    assert p.geometric and not p.intensity
    with pytest.raises(ValidationError, match="scale_min"):
        augmentation_config({"scale": True, "scale_min": 1.2, "scale_max": 1.1})
    with pytest.raises(ValidationError, match="contrast_min_gamma"):
        augmentation_config({"contrast": True, "contrast_min_gamma": 0.0})


def test_warp_into_the_model_size_equals_warp_then_resize():
    """One pass at the scaled size samples where augmenting then resizing would."""
    from posekit.model.preprocessing import resize_images, scaled_size

    gen = torch.Generator().manual_seed(0)
    # a smooth image, so one bilinear pass and two agree closely away from the border
    ys, xs = torch.meshgrid(torch.arange(96.0), torch.arange(128.0), indexing="ij")
    img = (torch.sin(xs / 9.0) * torch.cos(ys / 7.0))[None, None].repeat(2, 1, 1, 1)
    identity = BatchAugmenter({"rotate": True, "rotation_min_angle": 0, "rotation_max_angle": 0})
    size = scaled_size((96, 128), 0.25)
    once, _ = identity(img, None, output_size=size)
    assert once.shape[-2:] == size
    torch.testing.assert_close(once[..., 1:-1, 1:-1], resize_images(img, 0.25)[..., 1:-1, 1:-1])

    turn = BatchAugmenter({"rotate": True, "rotation_min_angle": 30, "rotation_max_angle": 30})
    pts = torch.tensor([[[[60.0, 40.0]]], [[[30.0, 70.0]]]])
    once, moved_once = turn(img, pts, generator=gen, output_size=size)
    twice, moved_twice = turn(img, pts, generator=gen)
    twice = resize_images(twice, 0.25)
    torch.testing.assert_close(moved_once, moved_twice)  # points stay in input pixels
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    assert float((once[inner] - twice[inner]).abs().max()) < 0.02
