"""Make the sleap-nn backbone fixtures that posekit's tests compare against.

Run it with a Python that has sleap-nn 0.3.5 installed (not posekit's environment):

    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_backbone_counts.py [--swin-dir DIR]

It writes, next to the tests (small, committed):

- `tests/fixtures/sleapnn/backbone_counts.json`: for each backbone config, sleap-nn's
  parameter count and, on a 1x1x64x64 input (3 channels where the config says so), the
  decoder outputs' strides and shapes and the middle block's shape.
- `tests/fixtures/sleapnn/convnext_custom_tiny.npz`: a tiny custom-arch ConvNeXt's
  weights (sleap-nn names), a fixed input and sleap-nn's outputs at every stride, in eval
  mode; once with bilinear upsampling and once with transposed convolutions.

and, with `--swin-dir` (too large to commit: ~110 MB), `swint_tiny.npz` there: the same
for Swin-T. posekit's test reads it from `$POSEKIT_SLEAPNN_FIXTURES` and skips without.
The pretrained (Hugging Face) backbones need `transformers`, which this environment
lacks, so they are not here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sleap_nn.architectures.convnext import ConvNextWrapper
from sleap_nn.architectures.swint import SwinTWrapper

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sleapnn"
SIZE = 64
TINY_ARCH = {"depths": [1, 1, 1, 1], "channels": [4, 8, 8, 16]}

# (name, backbone key, sleap-nn config fields that differ from its defaults)
CONFIGS = [
    ("convnext_custom_tiny", "convnext", {"model_type": "custom", "arch": TINY_ARCH}),
    (
        "convnext_custom_tiny_transposed",
        "convnext",
        {"model_type": "custom", "arch": TINY_ARCH, "up_interpolate": False},
    ),
    (
        "convnext_custom_stem4",
        "convnext",
        {
            "model_type": "custom",
            "arch": TINY_ARCH,
            "stem_patch_stride": 4,
            "stem_patch_kernel": 5,
            "convs_per_block": 3,
            "filters_rate": 1.5,
            "output_stride": 2,
            "kernel_size": 5,
        },
    ),
    (
        "convnext_custom_os4",
        "convnext",
        {"model_type": "custom", "arch": TINY_ARCH, "convs_per_block": 3, "output_stride": 4},
    ),
    ("convnext_tiny", "convnext", {"model_type": "tiny"}),
    ("convnext_small", "convnext", {"model_type": "small"}),
    ("convnext_base", "convnext", {"model_type": "base", "output_stride": 2}),
    ("convnext_large", "convnext", {"model_type": "large", "output_stride": 4}),
    ("convnext_tiny_rgb", "convnext", {"model_type": "tiny", "in_channels": 3}),
    ("swint_tiny", "swint", {"model_type": "tiny"}),
    (
        "swint_tiny_transposed",
        "swint",
        {"model_type": "tiny", "up_interpolate": False, "output_stride": 4},
    ),
    ("swint_small", "swint", {"model_type": "small", "output_stride": 2}),
    ("swint_base", "swint", {"model_type": "base", "output_stride": 4}),
]

DEFAULTS = {
    "convnext": dict(
        model_type="tiny",
        arch=None,
        stem_patch_kernel=4,
        stem_patch_stride=2,
        in_channels=1,
        kernel_size=3,
        filters_rate=2,
        convs_per_block=2,
        up_interpolate=True,
        output_stride=1,
        max_stride=32,
    ),
    "swint": dict(
        model_type="tiny",
        arch=None,
        max_stride=32,
        patch_size=4,
        stem_patch_stride=2,
        window_size=7,
        in_channels=1,
        kernel_size=3,
        filters_rate=2,
        convs_per_block=2,
        up_interpolate=True,
        output_stride=1,
    ),
}


def build(key: str, fields: dict) -> torch.nn.Module:
    """sleap-nn's wrapper for a config section (its `from_config` takes an OmegaConf node)."""
    cfg = {**DEFAULTS[key], **fields}
    if key == "convnext":
        return ConvNextWrapper(**cfg)
    for square in ("patch_size", "window_size"):
        cfg[square] = (cfg[square], cfg[square])
    return SwinTWrapper(**cfg)


def run(net: torch.nn.Module, x: torch.Tensor) -> dict:
    net.eval()
    with torch.no_grad():
        out = net(x)
    return out


def save_numeric(path: Path, net: torch.nn.Module, in_channels: int) -> None:
    """Weights (sleap-nn names), a fixed input and the outputs at every stride."""
    torch.manual_seed(1)
    for p in net.parameters():  # leave the default init: layer scales would hide the stages
        if p.ndim == 3 and p.shape[1:] == (1, 1):
            p.data.uniform_(0.5, 1.5)
    x = torch.rand(1, in_channels, SIZE, SIZE)
    out = run(net, x)
    arrays = {f"weight/{k}": v.numpy() for k, v in net.state_dict().items()}
    arrays["input"] = x.numpy()
    for stride, y in zip(out["strides"], out["outputs"], strict=True):
        arrays[f"output/{stride}"] = y.numpy()
    arrays["middle"] = out["middle_output"].numpy()
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swin-dir", type=Path, help="also write swint_tiny.npz here")
    args = parser.parse_args()
    import sleap_nn

    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    entries = []
    for name, key, fields in CONFIGS:
        net = build(key, fields)
        channels = {**DEFAULTS[key], **fields}["in_channels"]
        out = run(net, torch.rand(1, channels, SIZE, SIZE))
        entries.append(
            dict(
                name=name,
                backbone=key,
                config=fields,
                params=sum(p.numel() for p in net.parameters()),
                encoder_params=sum(p.numel() for p in net.enc.parameters()),
                input_shape=[1, channels, SIZE, SIZE],
                outputs=[
                    dict(stride=int(s), shape=list(y.shape))
                    for s, y in zip(out["strides"], out["outputs"], strict=True)
                ],
                middle_shape=list(out["middle_output"].shape),
            )
        )
        print(name, entries[-1]["params"])
        if name in ("convnext_custom_tiny", "convnext_custom_tiny_transposed"):
            save_numeric(OUT / f"{name}.npz", net, channels)
        if name == "swint_tiny" and args.swin_dir is not None:
            args.swin_dir.mkdir(parents=True, exist_ok=True)
            save_numeric(args.swin_dir / "swint_tiny.npz", net, channels)
        del net
    doc = dict(sleap_nn=sleap_nn.__version__, torch=torch.__version__, backbones=entries)
    (OUT / "backbone_counts.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT / 'backbone_counts.json'}")


if __name__ == "__main__":
    main()
