"""What every backbone exposes, so heads and decoders attach by stride.

A backbone is an `nn.Module` with:

- `forward(x)`: the output tensor, or a list with one tensor per stack when stacks > 1.
- `forward_features(x)`: a list (one entry per stack) of `{stride: tensor}` holding the
  decoder's intermediate features and the final output, so a head at any of those
  strides can attach (SLEAP's `IntermediateFeature`s).
- `feature_channels`: `{stride: channels}` for the entries of `forward_features`.
- `stacks`, `maximum_stride` (what the input size must be divisible by) and
  `output_stride`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IntermediateFeature:
    """A feature map's place in the network: its stride and channel count."""

    stride: int
    channels: int
