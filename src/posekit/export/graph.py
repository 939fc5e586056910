"""The module that gets exported: a trained network, optionally with the per-frame pipeline.

A real-time rig should not need posekit (or even Python) to run a trained network, so an
export can carry the whole per-frame pipeline:

    uint8 frames --[preprocessing]--> network --[peak finding]--> peaks in frame pixels

Each part is optional; the network alone is the default. What goes in and comes out is
the contract (`posekit.export.contract`).

Peak finding and the grid -> frame mapping are posekit's own (`posekit.ops.peaks`'
fixed-size finders, `posekit.ops.coordinates.to_image_coordinates`), so an exported graph
finds the peaks the predictors find. Which finder a model gets (one peak per part, or up
to ``max_peaks``) is its model type's, from `posekit.model.registry`.

`ExportModule.forward` is written so that tracing records shape arithmetic as graph
operations (no Python branches on sizes, no tensors created on the tracing device), which
keeps the exported graph valid for every input size and on every device.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posekit.errors import PosekitError
from posekit.export import DEFAULT_MAX_PEAKS
from posekit.heads import ClassVectorsHead, OffsetRefinementHead
from posekit.model.preprocessing import grayscale_to_rgb, normalize_imagenet, rgb_to_grayscale
from posekit.model.registry import model_type
from posekit.ops.coordinates import to_image_coordinates
from posekit.ops.peaks import (
    DEFAULT_PEAK_THRESHOLD,
    find_global_peaks_fixed,
    find_local_peaks_fixed,
)


@contextlib.contextmanager
def quiet_tracing():
    """Silence the warnings tracing always produces for this module (see the module doc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*requires_grad.*")
        warnings.filterwarnings("ignore", message="Constant folding")
        # Advanced indexing (the refinement's patch gather) is exported as Gather ops that
        # would misread negative indices; the indices here never are.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        yield


def network_size(model, input_shape) -> tuple[int, int]:
    """Network input (H, W) for an example: given, the model's own size, or 4 x stride.

    Rounded up to a multiple of the model's maximum stride.
    """
    stride = int(model.maximum_stride)
    if input_shape is not None:
        h, w = int(input_shape[0]), int(input_shape[1])
    elif getattr(model, "input_size", None):
        h, w = (int(v) for v in model.input_size)
    else:
        h = w = 4 * stride
    return -(-h // stride) * stride, -(-w // stride) * stride


def _preprocessing_settings(model) -> dict[str, Any]:
    """What `Model.preprocess` does for this model, as plain values."""
    pre = model.config.data.preprocessing if getattr(model, "config", None) is not None else None
    stride = int(model.maximum_stride)
    if pre is not None and pre.pad_to_stride:
        stride = max(stride, int(pre.pad_to_stride))
    return {
        "in_channels": int(getattr(model, "in_channels", 1)),
        "input_scale": float(model.input_scale),
        "pad_to_stride": stride,
        "imagenet_mode": getattr(pre, "imagenet_mode", None),
    }


class ExportModule(nn.Module):
    """`model` with optional in-graph preprocessing and peak finding (see the module doc).

    `forward` takes the input named by `input_name` and returns a tuple in
    `output_names` order. Build it with `build_export_module`.
    """

    def __init__(
        self,
        model,
        include_preprocessing: bool,
        include_postprocessing: bool,
        frame_channels: int | None,
        peak_threshold: float,
        max_peaks: int,
        refinement: str | None,
        integral_patch_size: int,
        use_offsets: bool,
    ) -> None:
        super().__init__()
        self.model = model
        self.head_names = [h.name for h in model.heads]
        self.include_preprocessing = bool(include_preprocessing)
        self.include_postprocessing = bool(include_postprocessing)
        self.peak_threshold = float(peak_threshold)
        self.max_peaks = int(max_peaks)
        self.patch = int(integral_patch_size)
        self._set_preprocessing(frame_channels)
        self._set_postprocessing(refinement, use_offsets)

    def _set_preprocessing(self, frame_channels: int | None) -> None:
        pre = _preprocessing_settings(self.model)
        self.in_channels = pre["in_channels"]
        self.frame_channels = int(frame_channels or self.in_channels)
        if self.frame_channels not in (1, 3) and self.frame_channels != self.in_channels:
            raise PosekitError(
                f"frame_channels={self.frame_channels}: frames must have 1 or 3 channels, "
                f"or as many as the model takes ({self.in_channels})"
            )
        self.input_scale = pre["input_scale"]
        self.pad_stride = pre["pad_to_stride"]
        self.imagenet_mode = pre["imagenet_mode"]

    def _set_postprocessing(self, refinement: str | None, use_offsets: bool) -> None:
        """Which head the peaks come from, and how they are refined.

        The confidence maps are the primary head, first in every model type (SLEAP's
        order, `posekit.model.registry`); the offset-refinement head, when the model has
        one and `use_offsets` allows, replaces integral refinement and is consumed.
        """
        self.peak_kind: str | None = None
        self.cms_name: str | None = None
        self.offset_name: str | None = None
        self.cms_stride = 1
        self.refinement: str | None = None
        self.passthrough = list(self.head_names)
        if not self.include_postprocessing:
            return
        if model_type(self.model.model_type).masks:
            raise PosekitError(
                f"peaks are found in confidence maps and a {self.model.model_type} model "
                "outputs masks: export it without --with-peaks (its maps are the outputs)"
            )
        cms_head = self.model.heads[0]
        self.peak_kind = model_type(self.model.model_type).peaks
        self.cms_name = cms_head.name
        self.cms_stride = int(cms_head.output_stride)
        offsets = [h for h in self.model.heads if isinstance(h, OffsetRefinementHead)]
        if offsets and use_offsets:
            if int(offsets[0].output_stride) != self.cms_stride:
                raise PosekitError(  # pragma: no cover - heads share the stride
                    "the offset-refinement head must have the confidence maps' stride"
                )
            self.offset_name = offsets[0].name
        self.refinement = "offsets" if self.offset_name else refinement
        consumed = {self.cms_name, *(h.name for h in offsets)}
        self.passthrough = [n for n in self.head_names if n not in consumed]

    # ---- names and sizes

    @property
    def input_name(self) -> str:
        return "frames" if self.include_preprocessing else "image"

    @property
    def output_names(self) -> list[str]:
        if not self.include_postprocessing:
            return list(self.head_names)
        return ["peaks", "peak_values", *self.passthrough]

    @property
    def fixed_size(self) -> bool:
        """A class-vectors head without global pooling flattens its feature: the dense
        layer fixes the network input size (only the batch can be dynamic)."""
        return any(isinstance(h, ClassVectorsHead) and not h.global_pool for h in self.model.heads)

    # ---- the pipeline

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC frames -> network input, exactly as `Model.preprocess` does."""
        return self.pad(self.scale_frames(frames))

    def scale_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC frames -> the float NCHW frames at the model's scale, unpadded."""
        x = frames.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        if self.in_channels == 3 and self.frame_channels == 1:
            x = grayscale_to_rgb(x)
        elif self.in_channels == 1 and self.frame_channels == 3:
            x = rgb_to_grayscale(x)
        x = normalize_imagenet(x, self.imagenet_mode)
        if self.input_scale != 1.0:
            # Output size floor(size * scale), coordinates mapped with the size ratio:
            # what `resize_images` does with an explicit size, but traceable.
            x = F.interpolate(
                x,
                scale_factor=self.input_scale,
                mode="bilinear",
                align_corners=False,
                recompute_scale_factor=True,
                antialias=False,
            )
        return x

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad the bottom/right of scaled frames to a multiple of the stride."""
        s = self.pad_stride
        if s > 1:
            h, w = x.shape[-2], x.shape[-1]
            x = F.pad(x, (0, (s - w % s) % s, 0, (s - h % s) % s))
        return x

    def frame_map_hw(self, scaled: torch.Tensor):
        """Map rows and columns on the frame for scaled, unpadded frames: the
        predictors' `posekit.ops.peaks.frame_map_size`, as traced shape arithmetic."""
        s = self.cms_stride
        return (scaled.shape[-2] + s - 1) // s, (scaled.shape[-1] + s - 1) // s

    def find_peaks(
        self, cms: torch.Tensor, offsets: torch.Tensor | None, frame_map_hw=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Peaks in frame pixels and their values (shapes in the contract); with
        `frame_map_hw`, on the frame only (not on the stride padding)."""
        refinement = None if offsets is not None else self.refinement
        if self.peak_kind == "global":
            points, values = find_global_peaks_fixed(
                cms, self.peak_threshold, refinement, self.patch, offsets, frame_map_hw
            )
        else:
            points, values = find_local_peaks_fixed(
                cms,
                self.max_peaks,
                self.peak_threshold,
                refinement,
                self.patch,
                offsets,
                frame_map_hw,
            )
        return to_image_coordinates(points, self.cms_stride, self.input_scale), values

    def forward(self, x: torch.Tensor):
        frame_map_hw = None
        if self.include_preprocessing:
            x = self.scale_frames(x)
            # Frames in, so the graph knows which map pixels are padding (an image input
            # is already padded: its peaks are looked for on the whole map).
            frame_map_hw = self.frame_map_hw(x)
            x = self.pad(x)
        out = self.model(x)
        if not self.include_postprocessing:
            return tuple(out[name] for name in self.head_names)
        offsets = out[self.offset_name] if self.offset_name else None
        points, values = self.find_peaks(out[self.cms_name], offsets, frame_map_hw)
        return (points, values, *(out[name] for name in self.passthrough))


def build_export_module(
    model,
    include_postprocessing: bool = False,
    include_preprocessing: bool | None = None,
    *,
    frame_channels: int | None = None,
    peak_threshold: float | None = None,
    max_peaks: int = DEFAULT_MAX_PEAKS,
    refinement: str | None = "integral",
    integral_patch_size: int = 5,
    use_offsets: bool = True,
    fold_batchnorm: bool = True,
) -> ExportModule:
    """The module that gets exported: `model` (a copy, eval, on the CPU) plus options.

    Its `forward` takes the input named by `.input_name` and returns a tuple in
    `.output_names` order. Useful to run exactly what an export contains in PyTorch.
    Arguments are those of `posekit.export.onnx.export_onnx`.
    """
    if include_preprocessing is None:
        include_preprocessing = include_postprocessing
    if refinement not in ("integral", None):
        raise PosekitError(f"refinement={refinement!r} cannot be exported; use 'integral' or None")
    if integral_patch_size < 1 or integral_patch_size % 2 == 0:
        raise PosekitError(
            f"integral_patch_size={integral_patch_size} must be a positive odd number"
        )
    if int(max_peaks) < 1:
        raise PosekitError(f"max_peaks={max_peaks} must be at least 1")
    if include_preprocessing and getattr(model, "config", None) is None:
        raise PosekitError(
            "including preprocessing needs the model's job config (input scaling, "
            "padding); load the model with posekit.load_model or set model.config"
        )
    net = copy.deepcopy(model).cpu().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if fold_batchnorm:
        from posekit.optimize import fold_batchnorms

        h, w = network_size(net, None)
        example = torch.rand(
            1, int(net.in_channels), h, w, generator=torch.Generator().manual_seed(0)
        )
        fold_batchnorms(net, example)
    return ExportModule(
        net,
        include_preprocessing=bool(include_preprocessing),
        include_postprocessing=bool(include_postprocessing),
        frame_channels=frame_channels,
        peak_threshold=DEFAULT_PEAK_THRESHOLD if peak_threshold is None else peak_threshold,
        max_peaks=int(max_peaks),
        refinement=refinement,
        integral_patch_size=int(integral_patch_size),
        use_offsets=use_offsets,
    ).eval()
