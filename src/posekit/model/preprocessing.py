"""Image preprocessing with SLEAP's `PreprocessingConfig` semantics, batched (N, C, H, W).

The same functions serve training (on batches, after augmentation) and inference, so a
model sees identical inputs in both. SLEAP's order is kept: to float in [0, 1] ->
RGB / grayscale -> ImageNet normalisation -> resize by `input_scaling` -> zero-pad the
bottom/right to a multiple of the stride.

Facts reproduced from SLEAP 1.4.1 (`sleap/nn/data/normalization.py`, `resizing.py`):
- grayscale uses TensorFlow's `rgb_to_grayscale` weights (0.2989, 0.5870, 0.1140);
- `imagenet_mode` follows `tf.keras.applications`: "tf" -> [-1, 1]; "caffe" -> BGR, 0..255
  minus the mean (103.939, 116.779, 123.68); "torch" -> ([0, 1] - mean) / std with mean
  (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225). Each first makes the image RGB;
- resizing is bilinear without antialiasing and with half-pixel centres (TF2's
  `tf.image.resize`, i.e. torch's ``align_corners=False``) to ``int(size * scale)``
  (truncated), while points are simply multiplied by the scale;
- padding adds zeros at the bottom/right only, so point coordinates do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posekit.errors import PosekitError

GRAYSCALE_WEIGHTS = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale
IMAGENET_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_TORCH_MEAN = (0.485, 0.456, 0.406)
IMAGENET_TORCH_STD = (0.229, 0.224, 0.225)
IMAGENET_MODES = (None, "tf", "caffe", "torch")


def to_float_image(images: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) -> float32 in [0, 1]; floating images are returned as float32."""
    if images.dtype == torch.uint8:
        # one float buffer, divided in place: bit-identical to `.float() / 255`, ~25% less
        # CPU time (a mixed-dtype division is slower still)
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        return images.float()
    raise PosekitError(f"images must be uint8 or float, got {images.dtype}")


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) with TensorFlow's luma weights; 1 channel unchanged."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise PosekitError(f"grayscale conversion needs 1 or 3 channels, got {images.shape[1]}")
    w = torch.tensor(GRAYSCALE_WEIGHTS, dtype=images.dtype, device=images.device)
    return (images * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def grayscale_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 3, H, W) by repeating the channel; 3 channels unchanged."""
    if images.shape[1] == 3:
        return images
    if images.shape[1] != 1:
        raise PosekitError(f"RGB conversion needs 1 or 3 channels, got {images.shape[1]}")
    return images.expand(-1, 3, -1, -1).contiguous()


def convert_channels(
    images: torch.Tensor, ensure_rgb: bool = False, ensure_grayscale: bool = False
) -> torch.Tensor:
    """Apply `ensure_rgb` then `ensure_grayscale` (SLEAP's order: grayscale wins)."""
    if ensure_rgb:
        images = grayscale_to_rgb(images)
    if ensure_grayscale:
        images = rgb_to_grayscale(images)
    return images


def normalize_imagenet(images: torch.Tensor, mode: str | None) -> torch.Tensor:
    """ImageNet input normalisation of a float [0, 1] batch, as Keras applications do."""
    if mode is None:
        return images
    if mode not in IMAGENET_MODES:
        raise PosekitError(
            f"imagenet_mode={mode!r} is not known; use one of None, 'tf', 'caffe', 'torch'"
        )
    images = grayscale_to_rgb(images)
    dev, dt = images.device, images.dtype
    if mode == "tf":
        return images * 2.0 - 1.0
    if mode == "caffe":
        mean = torch.tensor(IMAGENET_CAFFE_MEAN_BGR, device=dev, dtype=dt).view(1, 3, 1, 1)
        return images.flip(1) * 255.0 - mean
    mean = torch.tensor(IMAGENET_TORCH_MEAN, device=dev, dtype=dt).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_TORCH_STD, device=dev, dtype=dt).view(1, 3, 1, 1)
    return (images - mean) / std


def scaled_size(image_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """Size after `input_scaling`: ``int(H * scale), int(W * scale)`` (SLEAP truncates)."""
    return int(image_hw[0] * float(scale)), int(image_hw[1] * float(scale))


def resize_images(
    images: torch.Tensor, scale: float, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Bilinear resize by `scale` (half-pixel centres, no antialiasing); 1.0 is a no-op.

    `size` overrides the output size (``scaled_size`` of the input by default).
    """
    if float(scale) == 1.0:
        return images
    if not float(scale) > 0:
        raise PosekitError(f"input_scaling={scale} must be > 0")
    size = size or scaled_size(tuple(images.shape[-2:]), scale)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=False)


def _support(n_in: int, n_out: int) -> tuple[int, int, int] | None:
    """Which input rows a bilinear downscale by an integer factor reads, or None.

    With ``n_in = f * n_out`` (f >= 3) output ``i`` samples input ``f*i + (f-1)/2``: rows
    ``f*i + f/2 - 1`` and ``f*i + f/2`` with weights 1/2 (f even), or row ``f*i + (f-1)/2``
    alone (f odd): ``(f, lo, hi)`` with the rows ``f*i + lo .. f*i + hi - 1``. Keeping
    only those rows, interpolation from the kept ones to ``n_out`` samples the same rows
    with the same weights, so the result is bit-identical, and everything before the
    resize (uint8 -> float, colour, normalisation) touches 2/f (f even) or 1/f of them.
    """
    if n_out <= 0 or n_in % n_out or n_in // n_out < 3:
        return None
    f = n_in // n_out
    lo = f // 2 - 1 if f % 2 == 0 else (f - 1) // 2
    return f, lo, f // 2 + 1 if f % 2 == 0 else lo + 1


def keep_resize_support(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The rows and columns of (N, C, H, W) `images` that resizing to `size` reads.

    Only for integer downscaling factors of 3 or more (see `_support`); other sizes are
    returned unchanged. Resizing the result to `size` equals resizing `images` bit for
    bit. One strided copy of the kept pixels, in the input's dtype (uint8 frames: a
    sixteenth of a float copy of the whole frame at factor 4).
    """
    rows = _support(images.shape[-2], size[0])
    cols = _support(images.shape[-1], size[1])
    if rows is None and cols is None:
        return images
    x = images
    if rows is not None:
        f, lo, hi = rows
        x = x.unflatten(2, (size[0], f))[:, :, :, lo:hi]  # (N, C, out_h, kept, W)
    if cols is not None:
        f, lo, hi = cols
        x = x.unflatten(-1, (size[1], f))[..., lo:hi]  # (..., out_w, kept)
    x = x.contiguous()
    if rows is not None:
        x = x.flatten(2, 3)
    if cols is not None:
        x = x.flatten(-2, -1)
    return x


def scale_points(points: torch.Tensor, scale: float) -> torch.Tensor:
    """Points in the resized image: multiplied by the scale (SLEAP's convention)."""
    return points * float(scale)


def padding_for_stride(image_hw: tuple[int, int], stride: int | None) -> tuple[int, int]:
    """(pad_bottom, pad_right) that make both sides multiples of `stride`."""
    if not stride or stride <= 1:
        return 0, 0
    return (-image_hw[0]) % stride, (-image_hw[1]) % stride


def pad_to_stride(images: torch.Tensor, stride: int | None) -> torch.Tensor:
    """Zero-pad the bottom/right so H and W are multiples of `stride`."""
    pad_b, pad_r = padding_for_stride(tuple(images.shape[-2:]), stride)
    if pad_b == 0 and pad_r == 0:
        return images
    return F.pad(images, (0, pad_r, 0, pad_b), value=0.0)


def frames_to_tensor(
    frames: Any, layout: str = "NHWC", device: torch.device | str | None = None
) -> torch.Tensor:
    """uint8/float frames (numpy or torch) -> a (N, C, H, W) tensor on `device`.

    `layout` names the input axes: "NHWC" (sleap-io / numpy frames; a single HWC or HW
    frame is accepted too) or "NCHW" (already torch order).
    """
    t = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.asarray(frames))
    t = t.to(device) if device is not None else t
    if layout == "NCHW":
        if t.dim() == 3:
            t = t[None]
        return t
    if layout != "NHWC":
        raise PosekitError(f"layout={layout!r}; use 'NHWC' or 'NCHW'")
    if t.dim() == 2:
        t = t[None, :, :, None]
    elif t.dim() == 3:
        t = t[None] if t.shape[-1] in (1, 3) else t[..., None]
    if t.dim() != 4:
        raise PosekitError(f"frames must be (N, H, W, C); got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2)


def preprocess_frames(
    frames: Any,
    in_channels: int | None = None,
    input_scaling: float = 1.0,
    pad_to_stride: int | None = None,
    imagenet_mode: str | None = None,
    device: torch.device | str | None = None,
    ensure_rgb: bool = False,
    ensure_grayscale: bool = False,
    layout: str = "NHWC",
) -> torch.Tensor:
    """Frames -> the float (N, C, H, W) model input (inference and validation).

    Args:
        frames: uint8 (0..255) or float ([0, 1]) frames, numpy or torch, `layout` order.
        in_channels: channels the model takes (1 -> grayscale, 3 -> RGB); None keeps the
            frames' channels unless `ensure_rgb` / `ensure_grayscale` say otherwise.
        input_scaling: resize factor (points predicted on the result are divided by it).
        pad_to_stride: pad bottom/right to a multiple of this (the model's max stride).
        imagenet_mode: None, "tf", "caffe" or "torch".
    """
    images = frames_to_tensor(frames, layout=layout, device=device)
    size = scaled_size(tuple(images.shape[-2:]), input_scaling)
    if float(input_scaling) != 1.0:
        # per-pixel steps below commute with dropping rows/columns the resize never reads
        images = keep_resize_support(images, size)
    images = to_float_image(images)
    images = convert_channels(images, ensure_rgb=ensure_rgb, ensure_grayscale=ensure_grayscale)
    if in_channels == 3:
        images = grayscale_to_rgb(images)
    elif in_channels == 1:
        images = rgb_to_grayscale(images)
    images = normalize_imagenet(images, imagenet_mode)
    images = resize_images(images, input_scaling, size=size)
    return _pad(images, pad_to_stride)


_pad = pad_to_stride  # the argument of preprocess_frames shadows the function name


def _field(config: Any, name: str, default: Any) -> Any:
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


@dataclass
class Preprocessor:
    """SLEAP's `PreprocessingConfig` as one callable on (N, C, H, W) batches (+ points).

    Fields carry SLEAP's names. `__call__` takes float [0, 1] (or uint8) images and
    optional points (..., 2) in image pixels and returns both in model-input space.
    """

    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    imagenet_mode: str | None = None
    input_scaling: float = 1.0
    pad_to_stride: int | None = None

    def __post_init__(self) -> None:
        if self.imagenet_mode not in IMAGENET_MODES:
            raise PosekitError(
                f"data.preprocessing.imagenet_mode={self.imagenet_mode!r} is not known; use "
                f"null, 'tf', 'caffe' or 'torch'"
            )
        if not float(self.input_scaling) > 0:
            raise PosekitError(
                f"data.preprocessing.input_scaling={self.input_scaling} must be > 0 "
                f"(1.0 = no scaling)"
            )

    @classmethod
    def from_config(cls, config: Any, pad_to_stride: int | None = None) -> Preprocessor:
        """From a `PreprocessingConfig`, a dict with its fields, or None (defaults).

        `pad_to_stride` is used when the config leaves it null (SLEAP then pads to the
        model's maximum stride); a larger config value wins.
        """
        pad = _field(config, "pad_to_stride", None)
        if pad_to_stride is not None:
            pad = max(int(pad or 1), int(pad_to_stride))
        return cls(
            ensure_rgb=bool(_field(config, "ensure_rgb", False)),
            ensure_grayscale=bool(_field(config, "ensure_grayscale", False)),
            imagenet_mode=_field(config, "imagenet_mode", None),
            input_scaling=float(_field(config, "input_scaling", 1.0)),
            pad_to_stride=pad,
        )

    def output_channels(self, in_channels: int) -> int:
        """Channels of the model input for frames with `in_channels` channels."""
        if self.ensure_grayscale:
            return 1
        if self.ensure_rgb or self.imagenet_mode is not None:
            return 3
        return in_channels

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float conversion, channel conversion and ImageNet normalisation (no resize)."""
        images = to_float_image(images)
        images = convert_channels(images, self.ensure_rgb, self.ensure_grayscale)
        return normalize_imagenet(images, self.imagenet_mode)

    def __call__(
        self, images: torch.Tensor, points: torch.Tensor | None = None, pad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = resize_images(self.normalize(images), self.input_scaling)
        if pad:
            images = pad_to_stride(images, self.pad_to_stride)
        if points is not None:
            points = scale_points(points, self.input_scaling)
        return images, points


__all__ = [
    "GRAYSCALE_WEIGHTS",
    "IMAGENET_MODES",
    "Preprocessor",
    "convert_channels",
    "frames_to_tensor",
    "grayscale_to_rgb",
    "normalize_imagenet",
    "pad_to_stride",
    "padding_for_stride",
    "preprocess_frames",
    "keep_resize_support",
    "resize_images",
    "rgb_to_grayscale",
    "scale_points",
    "scaled_size",
    "to_float_image",
]
