"""posekit vs sleap-nn on ConvNeXt / Swin, both in ONE process, interleaved (issue 23).

`compare_peers.py` times sleap-nn in its own interpreter, one side after the other; on a
machine shared with other jobs its ratio moves with the load between the two timings.
This script runs in sleap-nn's interpreter (which imports posekit from ``src/`` too:
both need only torch, torchvision and posekit's light dependencies), builds the same
network on both sides (`compare_peers.HIERARCHICAL`: sleap-nn from its own
`ConvNextConfig` / `SwinTConfig`, posekit from its configs; random weights) and times, in
every round and in turn: sleap-nn's model as it runs it (eager NCHW), posekit eager,
posekit `optimize_for_inference` without the fused MLPs, with them but with torchvision's
Swin attention (``window_attention=False``, the default before the attention rewrite),
and `posekit predict`'s default. Medians and ranges of the rounds are printed, with the
load average at the start and end, and for Swin the new / old attention ratio.

``--tiny-swin`` adds a small Swin (embed 32, depths 2-2-2-2, heads 1-2-4-8, window 7,
sleap-nn's decoder; posekit only: sleap-nn builds only its presets) at the same input
size. ``--no-sleap-nn`` leaves sleap-nn out, so the script also runs in posekit's own
environment (the posekit columns need nothing else).

Usage (from the repository root):
    PYTHONPATH=src /path/to/sleap-nn-venv/bin/python benchmarks/hierarchical_ab.py \
        [--rounds 5] [--seconds 2] [--batch-size 4] [--only NAME] [--json out.json] \
        [--tiny-swin] [--no-sleap-nn]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_peers as cp  # noqa: E402 - the sibling benchmark's network list
import inference_network as bench  # noqa: E402


def sleap_nn_model(kind: str, settings: dict, in_channels: int, parts: list[str]):
    """sleap-nn's model for `settings` (its own config class), eval mode."""
    from omegaconf import OmegaConf
    from sleap_nn.architectures.model import Model
    from sleap_nn.config import model_config

    cls = {"convnext": model_config.ConvNextConfig, "swint": model_config.SwinTConfig}[kind]
    backbone = OmegaConf.structured(cls(**settings, output_stride=2, in_channels=in_channels))
    heads = OmegaConf.create({"confmaps": {"part_names": parts, "sigma": 5.0, "output_stride": 2}})
    return Model(
        backbone_type=kind, backbone_config=backbone, head_configs=heads,
        model_type="single_instance",
    ).eval()  # fmt: skip


TINY_SWIN = "Swin tiny custom (embed 32, depths 2,2,2,2), posekit only"


def tiny_swin(side: int, in_channels: int = 1):
    """The small Swin of ``--tiny-swin``: posekit's `SwinT` backbone with sleap-nn's
    decoder at output stride 2, random weights, eval mode (no head: the heads are the
    same 1x1 convolution either way)."""
    from posekit.architectures.swin import SwinT

    net = SwinT(32, [2, 2, 2, 2], [1, 2, 4, 8], in_channels=in_channels, output_stride=2)
    return net.eval(), (side, side, in_channels)


def main(argv=None) -> int:
    import os

    import torch

    from posekit.optimize import optimize_for_inference

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--only", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--tiny-swin", action="store_true", help="add a small posekit-only Swin")
    p.add_argument("--no-sleap-nn", action="store_true", help="time the posekit side only")
    args = p.parse_args(argv)
    results = {"load_start": os.getloadavg(), "threads": torch.get_num_threads(), "rows": {}}
    networks = [(name, config, hw) for name, config, hw in cp.hierarchical_networks(args.only)]
    if args.tiny_swin and (not args.only or args.only in TINY_SWIN):
        networks.append((TINY_SWIN, None, (cp.HIERARCHICAL["Swin-T"][2],) * 2))
    for name, config, hw in networks:
        if config is None:
            model, shape = tiny_swin(hw[0])
        else:
            model, shape = bench.build_network(config, hw, "cpu")
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(args.batch_size, shape[2], shape[0], shape[1], generator=gen)
        one = x[:1]
        variants = {}
        if config is not None and not args.no_sleap_nn:
            kind, settings, _ = cp.HIERARCHICAL[name]
            variants["sleap-nn"] = sleap_nn_model(kind, settings, shape[2], bench.PARTS)
        variants["posekit eager"] = model
        variants["posekit, MLPs unfused"] = optimize_for_inference(
            model, example_input=one, fuse_mlps=False, window_attention=False
        )
        if "Swin" in name:
            variants["posekit, old attention"] = optimize_for_inference(
                model, example_input=one, window_attention=False
            )
        variants["posekit"] = optimize_for_inference(model, example_input=one)
        fps: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for key, fn in variants.items():
                fps[key].append(bench.time_forward(fn, x, args.seconds, "cpu"))
        results["rows"][name] = fps
        ref = "sleap-nn" if "sleap-nn" in fps else "posekit eager"
        base = statistics.median(fps[ref])
        print(f"{name} ({shape[0]} px, batch {args.batch_size}, fps: median [min-max], / {ref})")
        for key, values in fps.items():
            med = statistics.median(values)
            print(
                f"  {key:22s} {med:7.2f} [{min(values):.2f}-{max(values):.2f}]  {med / base:.2f}x"
            )
        if "posekit, old attention" in fps:
            pairs = [n / o for n, o in zip(fps["posekit"], fps["posekit, old attention"])]
            print(
                f"  new / old attention, per round: median {statistics.median(pairs):.2f}x "
                f"[{min(pairs):.2f}-{max(pairs):.2f}]"
            )
    results["load_end"] = os.getloadavg()
    print(f"load average start {results['load_start']}, end {results['load_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
