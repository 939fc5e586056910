"""posekit vs sleap-nn on ConvNeXt / Swin, both in ONE process, interleaved (issue 23).

`compare_peers.py` times sleap-nn in its own interpreter, one side after the other; on a
machine shared with other jobs its ratio moves with the load between the two timings.
This script runs in sleap-nn's interpreter (which imports posekit from ``src/`` too:
both need only torch, torchvision and posekit's light dependencies), builds the same
network on both sides (`compare_peers.HIERARCHICAL`: sleap-nn from its own
`ConvNextConfig` / `SwinTConfig`, posekit from its configs; random weights) and times, in
every round and in turn: sleap-nn's model as it runs it (eager NCHW), posekit eager,
posekit `optimize_for_inference` without the fused MLPs, and with them (`posekit
predict`'s default). Medians and ranges of
the rounds are printed, with the load average at the start and end.

Usage (from the repository root):
    PYTHONPATH=src /path/to/sleap-nn-venv/bin/python benchmarks/hierarchical_ab.py \
        [--rounds 5] [--seconds 2] [--batch-size 4] [--only NAME] [--json out.json]
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
    args = p.parse_args(argv)
    results = {"load_start": os.getloadavg(), "threads": torch.get_num_threads(), "rows": {}}
    for name, config, hw in cp.hierarchical_networks(args.only):
        model, shape = bench.build_network(config, hw, "cpu")
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(args.batch_size, shape[2], shape[0], shape[1], generator=gen)
        kind, settings, _ = cp.HIERARCHICAL[name]
        one = x[:1]
        variants = {
            "sleap-nn": sleap_nn_model(kind, settings, shape[2], bench.PARTS),
            "posekit eager": model,
            "posekit, MLPs unfused": optimize_for_inference(
                model, example_input=one, fuse_mlps=False
            ),
            "posekit": optimize_for_inference(model, example_input=one),
        }
        fps: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for key, fn in variants.items():
                fps[key].append(bench.time_forward(fn, x, args.seconds, "cpu"))
        results["rows"][name] = fps
        base = statistics.median(fps["sleap-nn"])
        print(f"{name} ({shape[0]} px, batch {args.batch_size}, fps: median [min-max], / sleap-nn)")
        for key, values in fps.items():
            med = statistics.median(values)
            print(
                f"  {key:22s} {med:7.2f} [{min(values):.2f}-{max(values):.2f}]  {med / base:.2f}x"
            )
    results["load_end"] = os.getloadavg()
    print(f"load average start {results['load_start']}, end {results['load_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
