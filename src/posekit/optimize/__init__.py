"""Inference-time rewrites of a trained model that keep its outputs (and precision helpers).

- `fusion`: BatchNorm folding, ReLU fusion, channels-last, and `optimize_for_inference`,
  which applies every rewrite;
- `winograd`: wide 3x3 convolutions as Winograd F(4x4, 3x3) (CPU, float32);
- `subpixel`: Keras-"same" transposed convolutions as convolution + pixel shuffle;
- `convnext_blocks`, `swin_blocks`: ConvNeXt / Swin blocks with the MLP as two fused
  oneDNN calls (LayerNorm affine and layer scale folded in); Swin's shifted-window
  attention with cached bias + shift mask, gathers for the windows, and SDPA;
- `autocast`: which reduced precision a device runs well, and autocast around it;
- `_modules`: the module-surgery helpers the rewrites share.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "FoldedPair": ".fusion",
    "find_foldable_batchnorms": ".fusion",
    "fold_batchnorms": ".fusion",
    "fuse_conv_relu": ".fusion",
    "optimize_for_inference": ".fusion",
    "bf16_support": ".autocast",
    "cpu_runs_bf16": ".autocast",
    "cpu_supports_bf16": ".autocast",
    "usable_bf16": ".autocast",
    "precision": ".autocast",
    "resolve_precision": ".autocast",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
