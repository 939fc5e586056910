"""Batched, seedable data augmentation with the fields of SLEAP's `augmentation_config`.

SLEAP augments one frame at a time with imgaug on uint8 images. posekit draws one set of
parameters per sample and applies them to a whole batch on the batch's device: a single
`affine_grid` / `grid_sample` for all geometric transforms (flip, rotation, translation,
scale) and elementwise ops for intensity. The same 3 x 3 matrices move the points, so
images and keypoints stay consistent by construction.

What each field means (imgaug's semantics as SLEAP uses them):
- rotate: angle ~ U(rotation_min_angle, rotation_max_angle) degrees about the image centre;
  positive angles turn the image clockwise on screen (y points down), like imgaug;
- translate: integer shifts ~ U{translate_min..translate_max} pixels, x and y drawn apart;
- scale: one factor ~ U(scale_min, scale_max) about the image centre;
- uniform_noise: per pixel ~ U(min_val, max_val) added (0-255 units);
- gaussian_noise: per pixel ~ N(mean, stddev) added (0-255 units);
- contrast: gamma ~ U(min_gamma, max_gamma) per image: ``x -> x ** gamma`` on [0, 1],
  which is imgaug's ``255 * (x / 255) ** gamma``;
- brightness: one value ~ U(min_val, max_val) per image added (0-255 units);
- random_flip: with probability `flip_probability` (0.5), flip horizontally (``x -> W - 1 - x``) when
  flip_horizontal, else vertically, swapping the skeleton's symmetric node pairs.
Geometric steps run flip -> rotate -> translate -> scale, intensity steps in the order
above, each intensity step clipped to [0, 1] (imgaug clips uint8 at 0 and 255). Images
are expected as float [0, 1] (before ImageNet normalisation); 0-255 parameters are divided
by 255. Points that leave the image (outside ``[-0.5, size - 0.5]``) become NaN unless
``nan_outside=False``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from posekit.errors import PosekitError


def augmentation_config(config: Any = None):
    """An `AugmentationConfig` from itself, a dict of its fields, or None (all off).

    SLEAP fields posekit does not implement (`random_crop*`) are accepted and ignored.
    """
    from posekit.config.job import AugmentationConfig

    if config is None:
        return AugmentationConfig()
    if isinstance(config, AugmentationConfig):
        return config
    if isinstance(config, dict):
        return AugmentationConfig.model_validate(config)
    return AugmentationConfig.model_validate(config, from_attributes=True)


def symmetry_permutation(n_nodes: int, symmetric_inds: Any) -> torch.Tensor:
    """Node permutation that swaps every symmetric pair (identity elsewhere)."""
    perm = list(range(n_nodes))
    for a, b in symmetric_inds or []:
        perm[int(a)], perm[int(b)] = int(b), int(a)
    return torch.tensor(perm, dtype=torch.long)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device, dtype=torch.float64) * (hi - lo) + lo


def _centered(matrix: torch.Tensor, cx: float, cy: float) -> torch.Tensor:
    """Conjugate (N, 3, 3) linear maps so they act about (cx, cy) instead of the origin."""
    n = matrix.shape[0]
    to_c = torch.eye(3, dtype=matrix.dtype).repeat(n, 1, 1)
    from_c = to_c.clone()
    to_c[:, 0, 2], to_c[:, 1, 2] = cx, cy
    from_c[:, 0, 2], from_c[:, 1, 2] = -cx, -cy
    return to_c @ matrix @ from_c


class BatchAugmenter:
    """Applies an `AugmentationConfig` to (N, C, H, W) float batches and their points.

    Args:
        params: the augmentation settings: an `AugmentationConfig`, a dict of its fields,
            or None (all off).
        symmetric_inds: pairs of node indices swapped by flips (skeleton symmetries).
        seed: seed of the internal CPU generator (None: nondeterministic).
        generator: a `torch.Generator` to use instead (its device is where random
            numbers, including noise images, are drawn).
    """

    def __init__(
        self,
        params: Any = None,
        symmetric_inds: Any = (),
        seed: int | None = None,
        generator: torch.Generator | None = None,
        flip_probability: float = 0.5,
    ) -> None:
        self.params = augmentation_config(params)
        self.flip_probability = float(flip_probability)
        self.symmetric_inds = [tuple(int(i) for i in pair) for pair in (symmetric_inds or [])]
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        self.generator = generator
        self.last_matrices: torch.Tensor | None = None

    @classmethod
    def from_config(
        cls, config: Any, symmetric_inds: Any = (), seed: int | None = None
    ) -> BatchAugmenter:
        """From an `AugmentationConfig` (or dict) and the skeleton's symmetric pairs."""
        return cls(config, symmetric_inds, seed=seed)

    @property
    def enabled(self) -> bool:
        return self.params.enabled

    # ----------------------------------------------------------------- geometry

    def sample_matrices(
        self, n: int, image_hw: tuple[int, int], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw per-sample forward maps (N, 3, 3) in pixel coordinates and flip flags (N,).

        A point ``p`` (x, y, 1) of the input lands at ``A @ p`` in the output.
        """
        p = self.params
        gen = generator or self.generator
        h, w = image_hw
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        eye = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        a = eye.clone()
        flipped = torch.zeros(n, dtype=torch.bool)
        if p.random_flip:
            flipped = (
                torch.rand(n, generator=gen, device=gen.device) < self.flip_probability
            ).cpu()
            flip = eye.clone()
            axis = 0 if p.flip_horizontal else 1
            flip[flipped, axis, axis] = -1.0
            a = _centered(flip, cx, cy) @ a
        if p.rotate:
            theta = torch.deg2rad(
                _uniform(n, p.rotation_min_angle, p.rotation_max_angle, gen).cpu()
            )
            rot = eye.clone()
            rot[:, 0, 0], rot[:, 0, 1] = torch.cos(theta), -torch.sin(theta)
            rot[:, 1, 0], rot[:, 1, 1] = torch.sin(theta), torch.cos(theta)
            a = _centered(rot, cx, cy) @ a
        if p.translate:
            lo, hi = p.translate_min, p.translate_max
            if float(lo).is_integer() and float(hi).is_integer():
                t = torch.randint(
                    int(lo), int(hi) + 1, (n, 2), generator=gen, device=gen.device
                ).double()
            else:
                t = _uniform(2 * n, float(lo), float(hi), gen).view(n, 2)
            shift = eye.clone()
            shift[:, 0, 2], shift[:, 1, 2] = t[:, 0].cpu(), t[:, 1].cpu()
            a = shift @ a
        if p.scale:
            s = _uniform(n, p.scale_min, p.scale_max, gen).cpu()
            zoom = eye.clone()
            zoom[:, 0, 0], zoom[:, 1, 1] = s, s
            a = _centered(zoom, cx, cy) @ a
        return a, flipped

    @staticmethod
    def warp_images(
        images: torch.Tensor, matrices: torch.Tensor, output_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Resample images so that input pixel p moves to ``A @ p`` (bilinear, zeros).

        With `output_size` (H', W') the warped image is also resized to it in the same
        pass, sampling where `resize_images` (half-pixel centres) would sample the warped
        image: augmenting a 1024 px frame for a model that sees it at 256 px then costs
        the 256 px grid, not the 1024 px one.
        """
        n, c, h, w = images.shape
        ho, wo = output_size or (h, w)

        def norm(height: int, width: int) -> torch.Tensor:
            return torch.tensor(
                [
                    [2.0 / max(width - 1, 1), 0.0, -1.0],
                    [0.0, 2.0 / max(height - 1, 1), -1.0],
                    [0.0, 0.0, 1.0],
                ],
                dtype=torch.float64,
            )

        rx, ry = w / wo, h / ho  # output pixel i samples (i + 0.5) r - 0.5
        resize = torch.tensor(
            [[rx, 0.0, 0.5 * rx - 0.5], [0.0, ry, 0.5 * ry - 0.5], [0.0, 0.0, 1.0]],
            dtype=torch.float64,
        )
        inverse = torch.linalg.inv(matrices.double().cpu())
        theta = norm(h, w) @ inverse @ resize @ torch.linalg.inv(norm(ho, wo))
        theta = theta[:, :2].to(device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta, [n, c, ho, wo], align_corners=True)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )

    @staticmethod
    def transform_points(points: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """Apply (N, 3, 3) maps to points (N, ..., 2)."""
        m = matrices.to(device=points.device, dtype=torch.float64)
        flat = points.double().reshape(points.shape[0], -1, 2)
        out = flat @ m[:, :2, :2].transpose(1, 2) + m[:, None, :2, 2]
        return out.reshape(points.shape).to(points.dtype)

    # ----------------------------------------------------------------- intensity

    def _intensity(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p = self.params
        n, _, h, w = images.shape
        dev = images.device

        def draw(shape, lo, hi):
            u = torch.rand(shape, generator=gen, device=gen.device, dtype=images.dtype)
            return (u * (hi - lo) + lo).to(dev)

        if p.uniform_noise:
            noise = draw((n, 1, h, w), p.uniform_noise_min_val, p.uniform_noise_max_val)
            images = (images + noise / 255.0).clamp(0.0, 1.0)
        if p.gaussian_noise:
            z = torch.randn((n, 1, h, w), generator=gen, device=gen.device, dtype=images.dtype)
            noise = z.to(dev) * p.gaussian_noise_stddev + p.gaussian_noise_mean
            images = (images + noise / 255.0).clamp(0.0, 1.0)
        if p.contrast:
            gamma = draw((n, 1, 1, 1), p.contrast_min_gamma, p.contrast_max_gamma)
            images = images.clamp(0.0, 1.0) ** gamma
        if p.brightness:
            value = draw((n, 1, 1, 1), p.brightness_min_val, p.brightness_max_val)
            images = (images + value / 255.0).clamp(0.0, 1.0)
        return images

    # ----------------------------------------------------------------- call

    def __call__(
        self,
        images: torch.Tensor,
        points: torch.Tensor | None = None,
        nan_outside: bool = True,
        generator: torch.Generator | None = None,
        output_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment a batch.

        Args:
            images: (N, C, H, W) float in [0, 1].
            points: (N, ..., K, 2) keypoints (x, y) in image pixels, NaN = missing.
            nan_outside: set points that leave the image to NaN (full frames); top-down
                context crops pass False because the frame continues beyond them.
            generator: overrides the augmenter's generator for this call.
            output_size: (H', W') to resize the images to in the geometric warp (see
                `warp_images`); points stay in input pixels. Without geometric steps the
                images keep their size (the caller resizes).

        Returns:
            (images, points) augmented; the sampled forward matrices are kept in
            `last_matrices` (N, 3, 3).
        """
        if images.dim() != 4:
            raise PosekitError(f"images must be (N, C, H, W); got {tuple(images.shape)}")
        gen = generator or self.generator
        n, _, h, w = images.shape
        self.last_matrices = None
        if self.params.geometric:
            mats, flipped = self.sample_matrices(n, (h, w), gen)
            self.last_matrices = mats
            images = self.warp_images(images, mats, output_size)
            if points is not None:
                points = self.transform_points(points, mats)
                if self.symmetric_inds and bool(flipped.any()):
                    perm = symmetry_permutation(points.shape[-2], self.symmetric_inds)
                    swapped = points[..., perm.to(points.device), :]
                    sel = flipped.to(points.device).view(n, *([1] * (points.dim() - 1)))
                    points = torch.where(sel, swapped, points)
                if nan_outside:
                    x, y = points[..., 0], points[..., 1]
                    out = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
                    points = points.masked_fill(out[..., None], float("nan"))
        if self.params.intensity:
            images = self._intensity(images, gen)
        return images, points


__all__ = ["BatchAugmenter", "augmentation_config", "symmetry_permutation"]
