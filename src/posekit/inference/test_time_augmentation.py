"""Test-time augmentation: confidence maps averaged over turned and mirrored copies.

A network trained on few labels answers slightly differently for the same animal turned
by a few degrees; each answer is noisy, and their mean is less so. Every augmented copy
of the batch is run through the network and its confidence maps are turned (or mirrored)
back onto the plain batch's map grid, exactly, in SLEAP's map convention (map pixel ``u``
sits at input pixel ``u * stride``), then averaged with the plain pass. Peaks are found
on the mean maps as usual. Averaging happens in map space, not point space, so a copy
that misses a part only lowers that part's peak instead of dragging a mean point.

- Turns are about the centre of the network's input (a small turn keeps the animal in
  view); the pixels a turned copy did not see count as missing, not as zero (each map
  pixel is the mean over the copies that saw it).
- A mirrored copy swaps the channels of left/right parts: the skeleton's symmetries, or,
  when it declares none, pairs found from the part names
  (`posekit.data.symmetry`). Mirroring is for animals whose mirror image
  is still one of them (seen from above); it is off unless asked for.
- Only confidence maps are averaged (every head whose name ends in ``ConfmapsHead``);
  part-affinity fields, class maps and embeddings come from the plain pass, and a learned
  offset-refinement output is dropped (its vectors belong to the plain pass's peaks), so
  the peaks are refined on the mean maps (integral or local refinement).

Cost: one forward pass per copy (the default, turns of -10 and +10 degrees, is 3x).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from posekit.data.symmetry import flip_permutation, symmetry_pairs
from posekit.errors import PosekitError

#: The output dropped under augmentation (its vectors belong to the plain pass's peaks).
OFFSETS_HEAD = "OffsetRefinementHead"


@dataclass(frozen=True)
class TestTimeAugmentation:
    """Which copies of each batch are predicted besides the plain one.

    Args:
        rotations: angles in degrees (counter-clockwise in the image); the default turns
            by 10 degrees each way, inside the +-15 that `--auto` trains with at least.
        flip: also predict the left-right mirror image (parts swapped by symmetry).
    """

    __test__ = False  # not a pytest class despite its name

    rotations: tuple[float, ...] = (-10.0, 10.0)
    flip: bool = False

    def __post_init__(self):
        object.__setattr__(self, "rotations", tuple(float(a) for a in self.rotations))
        if any(not math.isfinite(a) or abs(a) >= 180 for a in self.rotations):
            raise PosekitError(
                f"test-time rotations must be finite angles between -180 and 180 degrees; "
                f"got {list(self.rotations)}"
            )
        if 0.0 in self.rotations:
            raise PosekitError("test-time rotations: 0 is the plain pass, always run; drop it")

    @property
    def copies(self) -> int:
        """Forward passes per batch, the plain one included."""
        return 1 + len(self.rotations) + int(self.flip)

    @classmethod
    def parse(cls, spec: str | None) -> TestTimeAugmentation | None:
        """``--tta`` on the command line: ``off``, ``on`` (turns of +-10 degrees),
        ``rot:A[,B...]`` (turns of +-A, +-B degrees), ``flip``, or ``rot:A+flip``."""
        if spec is None:
            return None
        text = str(spec).strip().lower()
        if text in ("", "off", "none", "no", "false"):
            return None
        if text in ("on", "yes", "true"):
            return cls()
        rotations: list[float] = []
        flip = False
        for part in text.split("+"):
            part = part.strip()
            if part == "flip":
                flip = True
            elif part.startswith("rot:"):
                try:
                    angles = [float(a) for a in part[4:].split(",") if a.strip()]
                except ValueError:
                    angles = []
                if not angles:
                    raise PosekitError(f"--tta {spec!r}: give the angles as rot:10 or rot:5,10")
                for a in angles:
                    rotations += [-abs(a), abs(a)]
            else:
                raise PosekitError(
                    f"--tta {spec!r}: use off, on, rot:DEGREES[,DEGREES], flip, or rot:10+flip"
                )
        return cls(rotations=tuple(dict.fromkeys(rotations)), flip=flip)


def _grid(n: int, h: int, w: int, matrix: np.ndarray, offset: np.ndarray, like):
    """`grid_sample` grid (align_corners=True) that samples, for output pixel p = (x, y),
    the source pixel ``matrix @ p + offset``."""
    import torch

    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    m = torch.as_tensor(matrix, dtype=torch.float32)
    sx = m[0, 0] * xs + m[0, 1] * ys + float(offset[0])
    sy = m[1, 0] * xs + m[1, 1] * ys + float(offset[1])
    gx = 2.0 * sx / max(w - 1, 1) - 1.0
    gy = 2.0 * sy / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(device=like.device)
    return grid.unsqueeze(0).expand(n, h, w, 2)


def _warp(x, matrix: np.ndarray, offset: np.ndarray, mode: str = "bilinear"):
    """`x` (N, C, H, W) resampled so that output pixel p shows source ``matrix @ p + offset``
    (outside the source: zeros)."""
    import torch.nn.functional as F

    n, _, h, w = x.shape
    grid = _grid(n, h, w, matrix, offset, x).to(x.dtype)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def _copies(tta: TestTimeAugmentation) -> list[tuple[np.ndarray, bool]]:
    """Per augmented copy: (A, mirrored), the copy showing source pixel ``A @ (p - c) + c``
    at pixel p, c the input's centre (a turn, or the mirror ``x -> 2 c_x - x``)."""
    out = []
    for angle in tta.rotations:
        t = math.radians(angle)
        # image y points down: a counter-clockwise turn on screen
        a = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        out.append((a, False))
    if tta.flip:
        out.append((np.array([[-1.0, 0.0], [0.0, 1.0]]), True))
    return out


def _about(a: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A @ (p - c) + c`` as (matrix, offset)."""
    return a, centre - a @ centre


def augmented_forward(
    run: Callable,
    x,
    tta: TestTimeAugmentation,
    heads: Sequence,
    flip_permutations: dict[str, Sequence[int]] | None = None,
):
    """``run(x)``'s outputs with every confidence map averaged over `tta`'s copies.

    Args:
        run: the network: (N, C, H, W) float input -> {head name: output}.
        x: the preprocessed batch.
        tta: the copies to predict.
        heads: the model's heads (their ``name`` and ``output_stride``).
        flip_permutations: per confidence-map head, the channel each channel takes its
            mirrored map from (left/right parts swapped); required for ``tta.flip``.
    """
    import torch

    plain = run(x)
    names = [h.name for h in heads if h.name.endswith("ConfmapsHead") and h.name in plain]
    if not names:
        return plain
    strides = {h.name: float(h.output_stride) for h in heads}
    height, width = int(x.shape[-2]), int(x.shape[-1])
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    total = {k: plain[k].float().clone() for k in names}
    count = {k: torch.ones_like(total[k][:, :1]) for k in names}
    for a, mirrored in _copies(tta):
        m, off = _about(a, centre)
        outs = run(_warp(x, m, off))
        back = np.linalg.inv(a)
        for k in names:
            cm = outs[k].float()
            if mirrored:
                perm = (flip_permutations or {}).get(k)
                if perm is None:
                    raise PosekitError(f"test-time flips need the left/right parts of {k}")
                cm = cm[:, list(perm)]
            s = strides[k]
            # the same turn on the map grid: map pixel u is input pixel u * s
            bm, boff = _about(back, centre / s)
            # one resampling for the maps and the pixels the copy saw (a ones channel)
            warped = _warp(torch.cat([cm, torch.ones_like(cm[:, :1])], 1), bm, boff)
            seen = (warped[:, -1:] > 0.999).to(cm.dtype)
            total[k] += warped[:, :-1] * seen
            count[k] += seen
    out = dict(plain)
    for k in names:
        mean = total[k] / count[k]
        out[k] = mean.to(plain[k].dtype)
    out.pop(OFFSETS_HEAD, None)
    return out


def model_symmetries(model) -> list[tuple[int, int]]:
    """The model's left/right part pairs: its skeleton's symmetries, else from names."""
    names = list(getattr(model, "part_names", []) or [])
    skel = getattr(model, "skeleton", None)
    if skel is not None and list(skel.node_names) == names and skel.symmetries:
        return sorted(tuple(sorted(p)) for p in skel.symmetry_inds)
    return symmetry_pairs(names)


def head_flip_permutations(model, pairs=None) -> dict[str, list[int]]:
    """Per confidence-map head of `model`, the channel order of its mirrored maps (`pairs`:
    the left/right part pairs, default `model_symmetries`)."""
    pairs = model_symmetries(model) if pairs is None else pairs
    out = {}
    for h in getattr(model, "heads", []):
        if not h.name.endswith("ConfmapsHead"):
            continue
        k = int(getattr(h, "channels", 0) or len(getattr(model, "part_names", [])))
        out[h.name] = flip_permutation(k, [p for p in pairs if max(p) < k])
    return out
