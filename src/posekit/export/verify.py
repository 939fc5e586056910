"""Checking an export: example inputs, PyTorch's outputs on them, and the comparison.

Every writer traces on one example and, for dynamic exports, checks the written file on a
second, differently shaped one too, so a size baked into the graph is caught before the
file is moved into place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from posekit.errors import PosekitError
from posekit.export.graph import network_size

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from posekit.export.graph import ExportModule


def parse_input_shape(input_shape) -> tuple[int, int] | None:
    """(height, width) from a tuple, a list or a string like ``"384,384"`` / ``"384x384"``."""
    if input_shape is None:
        return None
    if isinstance(input_shape, str):
        input_shape = [v for v in input_shape.replace("x", ",").split(",") if v.strip()]
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise PosekitError(
            f"input_shape={input_shape!r} must be (height, width) or (height, width, "
            f"channels) of one input image, e.g. (384, 384)"
        )
    return shape[0], shape[1]


def examples(module: ExportModule, input_shape, batch: int, dynamic: bool) -> list[torch.Tensor]:
    """The tracing input, plus a differently shaped one to verify dynamic exports."""
    import torch

    model = module.model
    gen = torch.Generator().manual_seed(0)
    if module.include_preprocessing:
        scale = module.input_scale
        if input_shape is not None:
            fh, fw = input_shape
        else:
            nh, nw = network_size(model, None)
            fh, fw = round(nh / scale), round(nw / scale)
        shapes = [(batch, fh, fw)]
        if dynamic:
            step = module.pad_stride
            shapes.append(
                (batch + 1, fh, fw)
                if module.fixed_size
                else (batch + 1, fh + step + 3, fw + 2 * step - 5)
            )
        return [
            torch.randint(0, 256, (*s, module.frame_channels), dtype=torch.uint8, generator=gen)
            for s in shapes
        ]
    h, w = network_size(model, input_shape)
    shapes = [(batch, h, w)]
    if dynamic:
        s = int(model.maximum_stride)
        shapes.append((batch + 1, h, w) if module.fixed_size else (batch + 1, h + s, w + 2 * s))
    return [torch.rand(n, int(model.in_channels), hh, ww, generator=gen) for n, hh, ww in shapes]


def reference_outputs(module: ExportModule, inputs: list[torch.Tensor]) -> list[tuple]:
    """PyTorch's outputs on the examples, or a clear error when the input does not fit."""
    import torch

    try:
        with torch.no_grad():
            return [module(x) for x in inputs]
    except (RuntimeError, ValueError) as err:
        shape = tuple(inputs[0].shape)
        hint = ""
        if module.fixed_size:
            hint = (
                f" The class-vectors head flattens its feature, so the network input must be "
                f"exactly {tuple(module.model.input_size or ())}; leave input_shape unset."
            )
        raise PosekitError(
            f"the model cannot run on an example {module.input_name} of shape {shape}: {err}.{hint}"
        ) from err


def as_numpy(outputs) -> list[np.ndarray]:
    return [o.detach().cpu().float().numpy() for o in outputs]


def _canonical(name: str, arrays: dict[str, np.ndarray], kind: str | None) -> np.ndarray:
    """Local peaks sorted by position within each (sample, channel): order-insensitive.

    Peaks of equal value may come out of top-k in either order, in PyTorch as in an
    exported runtime.
    """
    import numpy as np

    a = arrays[name]
    if kind != "local" or name not in ("peaks", "peak_values"):
        return a
    pts = arrays["peaks"]
    x = np.where(np.isnan(pts[..., 0]), np.inf, pts[..., 0])
    y = np.where(np.isnan(pts[..., 1]), np.inf, pts[..., 1])
    order = np.lexsort((y, x), axis=-1)
    if name == "peaks":
        return np.take_along_axis(a, order[..., None], axis=-2)
    return np.take_along_axis(a, order, axis=-1)


def compare(
    names: list[str], ref: list[np.ndarray], got: list[np.ndarray], atol: float, kind, what: str
) -> None:
    """Raise when an exported model's outputs differ from PyTorch's.

    NaNs must sit in the same places; values may differ by `atol`, relative to the
    output's magnitude when that exceeds 1. `kind` is the module's `peak_kind`.
    """
    import numpy as np

    if len(ref) != len(got):
        raise PosekitError(f"{what} returned {len(got)} outputs, PyTorch {len(ref)}")
    ref_d, got_d = dict(zip(names, ref)), dict(zip(names, got))
    for name in names:
        r = _canonical(name, ref_d, kind)
        g = _canonical(name, got_d, kind)
        if r.shape != g.shape:
            raise PosekitError(
                f"{what}: output {name} has shape {g.shape}, PyTorch gives {r.shape}"
            )
        nan_r, nan_g = np.isnan(r), np.isnan(g)
        if not np.array_equal(nan_r, nan_g):
            raise PosekitError(f"{what}: output {name} has NaNs where PyTorch has none")
        if r.size == 0 or nan_r.all():
            continue
        scale = max(1.0, float(np.nanmax(np.abs(r))))
        err = float(np.nanmax(np.abs(r - g)))
        if err > atol * scale:
            raise PosekitError(
                f"{what}: output {name} differs from PyTorch by up to {err:.3g} "
                f"(tolerance {atol * scale:.3g})"
            )


@dataclass
class Prepared:
    """What both writers start from: the export graph, example inputs, PyTorch's outputs
    on them, and the contract's description of inputs and outputs (+ dynamic axes)."""

    module: Any
    inputs: list
    refs: list
    inp: dict
    outputs: list
    axes: Any


def prepare(
    model, input_shape: Any, batch_size: int, dynamic: bool, **graph_options: Any
) -> Prepared:
    """Build the export graph for `model` and run it once on the example inputs.

    `graph_options` go to `build_export_module` (peaks, preprocessing, refinement...).
    """
    from posekit.export.contract import describe
    from posekit.export.graph import build_export_module

    if batch_size < 1:
        raise PosekitError(f"batch_size={batch_size} must be at least 1")
    module = build_export_module(model, **graph_options)
    dynamic = bool(dynamic)
    inputs = examples(module, parse_input_shape(input_shape), int(batch_size), dynamic)
    refs = reference_outputs(module, inputs)
    inp, outputs, axes = describe(module, dynamic, refs[0], inputs[0])
    return Prepared(module, inputs, refs, inp, outputs, axes)
