"""Preprocessing: SLEAP's grayscale weights, ImageNet modes, scaling and padding."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from posekit.errors import PosekitError
from posekit.model.preprocessing import (
    Preprocessor,
    convert_channels,
    normalize_imagenet,
    pad_to_stride,
    padding_for_stride,
    preprocess_frames,
    resize_images,
    rgb_to_grayscale,
    scaled_size,
)


def test_grayscale_uses_tensorflow_weights():
    img = torch.zeros(1, 3, 2, 2)
    img[0, 0] = 1.0
    assert rgb_to_grayscale(img)[0, 0, 0, 0].item() == pytest.approx(0.2989)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 4, 5, generator=g)
    ref = 0.2989 * img[:, 0] + 0.5870 * img[:, 1] + 0.1140 * img[:, 2]
    torch.testing.assert_close(rgb_to_grayscale(img)[:, 0], ref)


def test_ensure_rgb_repeats_and_grayscale_wins_when_both_set():
    img = torch.rand(1, 1, 3, 3)
    rgb = convert_channels(img, ensure_rgb=True)
    assert rgb.shape == (1, 3, 3, 3) and torch.equal(rgb[:, 2], img[:, 0])
    both = convert_channels(torch.rand(1, 3, 3, 3), ensure_rgb=True, ensure_grayscale=True)
    assert both.shape[1] == 1


def test_imagenet_modes_follow_keras_applications():
    white = torch.ones(1, 1, 1, 1)
    black = torch.zeros(1, 1, 1, 1)
    assert normalize_imagenet(white, "tf").flatten().tolist() == [1.0, 1.0, 1.0]
    assert normalize_imagenet(black, "tf").flatten().tolist() == [-1.0, -1.0, -1.0]
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    caffe = normalize_imagenet(red, "caffe").flatten()
    # BGR order: B = 0 - 103.939, G = 0 - 116.779, R = 255 - 123.68
    torch.testing.assert_close(caffe, torch.tensor([-103.939, -116.779, 255.0 - 123.68]))
    torchmode = normalize_imagenet(red, "torch").flatten()
    expected = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    torch.testing.assert_close(torchmode, expected)
    with pytest.raises(PosekitError, match="imagenet_mode"):
        normalize_imagenet(red, "keras")


def test_resize_truncates_size_and_uses_half_pixel_centres():
    assert scaled_size((10, 15), 0.3) == (3, 4)
    img = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 2, 8).contiguous()
    out = resize_images(img, 0.5)
    assert out.shape == (1, 1, 1, 4)
    # TF2 bilinear, no antialias: output j samples input 2j + 0.5 -> mean of 2j and 2j+1
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.5, 2.5, 4.5, 6.5]))
    assert resize_images(img, 1.0) is img


def test_scaling_moves_points_by_the_same_factor():
    pre = Preprocessor(input_scaling=0.5)
    pts = torch.tensor([[[10.0, 4.0], [3.0, 7.5]]])
    img, out = pre(torch.zeros(1, 1, 20, 30), pts)
    assert img.shape == (1, 1, 10, 15)
    torch.testing.assert_close(out, pts * 0.5)


def test_pad_to_stride_pads_bottom_right_with_zeros():
    img = torch.rand(2, 1, 30, 45) + 1.0
    out = pad_to_stride(img, 16)
    assert out.shape == (2, 1, 32, 48)
    torch.testing.assert_close(out[..., :30, :45], img)
    assert torch.count_nonzero(out[..., 30:, :]) == 0 and torch.count_nonzero(out[..., 45:]) == 0
    assert padding_for_stride((32, 48), 16) == (0, 0)
    assert padding_for_stride((33, 47), 8) == (7, 1)
    assert pad_to_stride(img, None) is img


def test_preprocess_frames_numpy_nhwc_to_model_input():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 30, 45, 3), dtype=np.uint8)
    out = preprocess_frames(frames, in_channels=1, pad_to_stride=16)
    assert out.shape == (2, 1, 32, 48) and out.dtype == torch.float32
    f = frames.astype(np.float32) / 255.0
    gray = 0.2989 * f[..., 0] + 0.5870 * f[..., 1] + 0.1140 * f[..., 2]
    np.testing.assert_allclose(out[:, 0, :30, :45].numpy(), gray, rtol=1e-5, atol=1e-6)
    single = preprocess_frames(frames[0, :, :, :1], input_scaling=0.5)
    assert single.shape == (1, 1, 15, 22)


def test_preprocessor_from_config_object_or_dict():
    cfg = SimpleNamespace(
        ensure_rgb=True,
        ensure_grayscale=False,
        imagenet_mode="tf",
        input_scaling=0.5,
        pad_to_stride=None,
    )
    pre = Preprocessor.from_config(cfg, pad_to_stride=16)
    assert (pre.ensure_rgb, pre.imagenet_mode, pre.input_scaling, pre.pad_to_stride) == (
        True,
        "tf",
        0.5,
        16,
    )
    assert Preprocessor.from_config({"pad_to_stride": 32}, pad_to_stride=16).pad_to_stride == 32
    assert Preprocessor.from_config(None).input_scaling == 1.0
    assert pre.output_channels(1) == 3
    with pytest.raises(PosekitError, match="data.preprocessing.imagenet_mode"):
        Preprocessor.from_config({"imagenet_mode": "bgr"})
    with pytest.raises(PosekitError, match="data.preprocessing.input_scaling"):
        Preprocessor(input_scaling=0.0)


@pytest.mark.parametrize(
    "hw,scale",
    [((1024, 1024), 0.25), ((96, 64), 0.5), ((99, 60), 1 / 3), ((160, 96), 0.125),
     ((100, 100), 0.3), ((120, 90), 1 / 6)],
)  # fmt: skip
def test_downscaling_reads_only_the_rows_it_needs_and_is_bit_identical(hw, scale):
    import torch.nn.functional as F

    from posekit.model.preprocessing import keep_resize_support, preprocess_frames, scaled_size

    frames = np.random.default_rng(0).integers(0, 256, (2, *hw, 3), dtype=np.uint8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    size = scaled_size(hw, scale)
    full = F.interpolate(x.float() / 255, size=size, mode="bilinear", align_corners=False)
    kept = keep_resize_support(x, size)
    factor = hw[0] // size[0] if hw[0] % size[0] == 0 else 0
    if factor >= 3:  # 2 of every f rows (f even) or 1 (f odd)
        assert kept.shape[-2] == size[0] * (2 if factor % 2 == 0 else 1)
    else:
        assert kept.shape[-2] == hw[0]
    out = preprocess_frames(frames, in_channels=3, input_scaling=scale)
    assert out.shape[-2:] == size and torch.equal(out, full)
