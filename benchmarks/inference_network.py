"""Network-only inference throughput of SLEAP's training profiles in posekit.

For each profile in `shared/sleap_profiles/` (with 5 placeholder body parts) and a
sleap-nn-like default UNet (filters 32, filters_rate 1.5, max_stride 16, output stride 1,
bilinear upsampling: 1.33M parameters, at 160 x 160), this times the forward pass in up to
four configurations side by side, in one run:

- ``eager``: the model as built, fp32, `torch.inference_mode`;
- ``optimized``: `posekit.optimize.optimize_for_inference` (BatchNorm folded into convs,
  channels-last), fp32: outputs equal eager's to float rounding;
- ``bf16``: optimized + bfloat16 autocast (CPUs with native bf16) or fp16 (CUDA);
- ``compile``: optimized + `torch.compile` (``--compile``; compile time is excluded).

It reports frames/s, GFLOP per frame (`posekit.summary`: 2 x multiply-adds of convs and
dense layers), the achieved GFLOP/s, and the machine's measured fp32 matrix-multiply
GFLOP/s as a roofline: "efficiency" is the best fp32 configuration's GFLOP/s over it.
Small UNets are memory-bound, so an efficiency far below 100% is expected; the roofline
tells how far from the compute limit the network runs.

Each configuration runs for about ``--seconds`` (default 1.0) after a warm-up, in three
alternating rounds so that all configurations see the same machine load; frames/s is the
batch over the median call time. The whole benchmark takes one to three minutes on two
CPU cores. Numbers from a shared or busy machine are noisy (an oversubscribed core can
slow OpenMP-parallel convolutions several-fold: there ``--threads 1`` gives steadier
figures); run twice before drawing conclusions. The matmul roofline measured on a busy
machine is too low, so efficiencies above 100% mean "measured in a quieter moment".

Usage:
    python benchmarks/inference_network.py [--compile] [--batch-size 1] [--seconds 1]
        [--device cpu|cuda] [--threads N] [--only NAME] [--json results.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
PROFILES = SHARED / "sleap_profiles"
PARTS = [f"p{i}" for i in range(5)]
EDGES = [(f"p{i}", f"p{i + 1}") for i in range(4)]
CLASSES = ["class0", "class1"]
DEFAULT_UNET = "sleap-nn default UNet"


@dataclass
class Row:
    """One benchmarked network."""

    name: str
    input_shape: list[int] = field(default_factory=list)  # H, W, C
    params: int | None = None
    gflops: float | None = None  # per frame
    fps: dict[str, float | None] = field(default_factory=dict)
    compile_seconds: float | None = None
    note: str = ""

    def gflops_per_s(self, mode: str) -> float | None:
        fps = self.fps.get(mode)
        return None if fps is None or self.gflops is None else fps * self.gflops


# --------------------------------------------------------------------------- models


def default_unet_config(parts: list[str] = PARTS):
    """sleap-nn's default UNet (1.33M parameters with a 5-part single-instance head)."""
    from posekit.config.job import TrainingJobConfig
    from posekit.config.model import (
        BackboneConfig,
        HeadsConfig,
        ModelConfig,
        SingleInstanceConfmapsHeadConfig,
        UNetConfig,
    )

    unet = UNetConfig(
        filters=32, filters_rate=1.5, max_stride=16, output_stride=1, up_interpolate=True
    )
    heads = HeadsConfig(
        single_instance=SingleInstanceConfmapsHeadConfig(part_names=parts, output_stride=1)
    )
    return TrainingJobConfig(model=ModelConfig(backbone=BackboneConfig(unet=unet), heads=heads))


def _in_channels(config) -> int:
    from posekit.config.model import PretrainedEncoderConfig, ResNetConfig

    if config.data.preprocessing.ensure_rgb:
        return 3
    backbone = config.model.backbone.which_oneof()
    return 3 if isinstance(backbone, ResNetConfig | PretrainedEncoderConfig) else 1


def _input_hw(config, default: int = 256) -> tuple[int, int]:
    """Crop size for top-down models, else `default`; rounded up to the max stride."""
    crop = None
    if config.model.heads.which_oneof_attrib_name() in ("centered_instance", "multi_class_topdown"):
        crop = config.data.instance_cropping.crop_size
    return int(crop or default), int(crop or default)


def random_weights(config):
    """The same network without downloading pretrained weights (speed does not change)."""
    from posekit.config.model import PretrainedEncoderConfig, ResNetConfig

    backbone = config.model.backbone.which_oneof()
    if isinstance(backbone, PretrainedEncoderConfig) and backbone.pretrained:
        backbone = backbone.model_copy(update={"pretrained": False})
    elif isinstance(backbone, ResNetConfig) and backbone.weights != "random":
        backbone = backbone.model_copy(update={"weights": "random"})
    else:
        return config, False
    key = config.model.backbone.which_oneof_attrib_name()
    new_backbone = config.model.backbone.model_copy(update={key: backbone})
    new_model = config.model.model_copy(update={"backbone": new_backbone})
    return config.model_copy(update={"model": new_model}), True


def build_network(config, hw: tuple[int, int], device: str):
    """A posekit `Model` for `config` with placeholder names, in eval mode on `device`.

    Pretrained encoders get random weights (same architecture, no download).
    """
    from posekit.model.network import Model

    config, _ = random_weights(config)
    c = _in_channels(config)
    model = Model.from_config(
        config.model,
        in_channels=c,
        part_names=PARTS,
        edges=EDGES,
        classes=CLASSES,
        input_size=hw,
    )
    stride = model.maximum_stride
    hw = (math.ceil(hw[0] / stride) * stride, math.ceil(hw[1] / stride) * stride)
    if hw != tuple(model.input_size or hw):  # a flattening head needs the padded size
        model = Model.from_config(
            config.model, in_channels=c, part_names=PARTS, edges=EDGES, classes=CLASSES,
            input_size=hw,
        )  # fmt: skip
    return model.to(device).eval(), (hw[0], hw[1], c)


def gflops_per_frame(model, input_shape) -> float | None:
    """GFLOP per frame from `posekit.summary`, else PyTorch's FLOP counter."""
    try:
        from posekit.model.summary import summary

        return float(summary(model, input_shape=tuple(input_shape))["gflops"])
    except Exception:  # noqa: BLE001 - summary is optional here
        pass
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        h, w, c = input_shape
        device = next(model.parameters()).device
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, c, h, w, device=device))
        return counter.get_total_flops() / 1e9
    except Exception:  # noqa: BLE001
        return None


def networks(only: str | None = None):
    """(name, job config, input H, W) for every profile and the default UNet."""
    from posekit.config.job import TrainingJobConfig

    items = []
    for path in sorted(glob.glob(str(PROFILES / "*.json"))):
        name = Path(path).stem
        if only and only not in name:
            continue
        try:
            config = TrainingJobConfig.load_json(path)
        except Exception as err:  # noqa: BLE001
            items.append((name, err, None))
            continue
        items.append((name, config, _input_hw(config)))
    if not only or only in DEFAULT_UNET:
        items.append((DEFAULT_UNET, default_unet_config(), (160, 160)))
    return items


# --------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_forward(fn, x, seconds: float, device: str, min_iters: int = 3) -> float:
    """Frames per second of `fn(x)`: batch / median call time, over about `seconds`.

    One warm-up call first. The median (not the mean) keeps a call slowed down by another
    process on a shared machine from dominating the figure.
    """
    import statistics

    import torch

    with torch.inference_mode():
        fn(x)
        sync(device)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < min_iters or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            fn(x)
            sync(device)
            times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times)


def matmul_gflops(dtype_name: str, device: str, seconds: float = 0.75, n: int = 1536) -> float:
    """Dense matrix-multiply GFLOP/s of this machine (best call): the compute roofline.

    The best call rather than the median: the roofline is what the hardware can do, so a
    busy machine should not lower it (which would flatter the efficiency figures).
    """
    import torch

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.rand(n, n, device=device, generator=gen).to(dtype)
    b = torch.rand(n, n, device=device, generator=gen).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        a @ b
        sync(device)
        start, calls = time.perf_counter(), 0
        while calls < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - t0)
            calls += 1
    return 2 * n**3 / best / 1e9


def low_precision_name(device: str) -> str | None:
    from posekit.optimize import resolve_precision

    name = resolve_precision("auto", device)
    return None if name == "float32" else name


def benchmark_one(name: str, config, hw, args, modes: list[str]) -> Row:
    """Time one network in every mode."""
    import torch

    from posekit.optimize import optimize_for_inference, precision

    row = Row(name)
    if isinstance(config, Exception):
        row.note = f"config: {config}"[:80]
        return row
    try:
        model, shape = build_network(config, hw, args.device)
    except Exception as err:  # noqa: BLE001 - e.g. an encoder family not available here
        row.note = f"not built: {type(err).__name__}: {err}"[:80]
        return row
    row.input_shape = list(shape)
    row.params = sum(p.numel() for p in model.parameters())
    row.gflops = gflops_per_frame(model, shape)
    h, w, c = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, c, h, w, generator=gen).to(args.device)
    optimized = optimize_for_inference(model, example_input=x[:1])
    low = low_precision_name(args.device)
    fns = {}
    for mode in modes:
        try:
            if mode == "eager":
                fns[mode] = model
            elif mode == "optimized":
                fns[mode] = optimized
            elif mode == "bf16":
                if low is None:
                    row.fps[mode] = None
                    continue

                def run(inp, m=optimized):
                    with precision(low, args.device):
                        return m(inp)

                fns[mode] = run
            elif mode == "compile":
                compiled = torch.compile(optimized)
                start = time.perf_counter()
                with torch.inference_mode():
                    compiled(x)
                sync(args.device)
                row.compile_seconds = time.perf_counter() - start
                fns[mode] = compiled
        except Exception as err:  # noqa: BLE001 - report and go on
            row.fps[mode] = None
            row.note = f"{mode}: {type(err).__name__}: {err}"[:80]
    try:
        row.fps.update(time_interleaved(fns, x, args.seconds, args.device))
    except Exception as err:  # noqa: BLE001
        row.note = f"timing: {type(err).__name__}: {err}"[:80]
    return row


def time_interleaved(
    fns: dict, x, seconds: float, device: str, rounds: int = 3
) -> dict[str, float]:
    """Frames/s of each function, timed in alternating rounds (batch / median call time).

    On a shared machine the load changes from second to second; alternating the
    configurations in short rounds exposes all of them to the same conditions, so the
    side-by-side ratios stay meaningful even when the absolute numbers are noisy.
    """
    import statistics

    import torch

    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn(x)  # warm-up
        sync(device)
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                calls = 0
                while calls < 1 or time.perf_counter() - start < seconds / rounds:
                    t0 = time.perf_counter()
                    fn(x)
                    sync(device)
                    times[name].append(time.perf_counter() - t0)
                    calls += 1
    return {name: x.shape[0] / statistics.median(t) for name, t in times.items()}


# --------------------------------------------------------------------------- output


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def best_fp32(row: Row) -> float | None:
    vals = [row.fps.get(m) for m in ("eager", "optimized", "compile")]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def print_table(rows: list[Row], modes: list[str], roofline: dict[str, float], args) -> None:
    import torch
    from rich.console import Console
    from rich.table import Table

    low = low_precision_name(args.device)
    title = (
        f"posekit network-only inference, {args.device}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; fps = batch / median call"
    )
    table = Table(title=title, show_lines=False)
    table.add_column("model")
    table.add_column("input HxWxC", justify="right")
    table.add_column("params", justify="right")
    table.add_column("GFLOP/frame", justify="right")
    labels = {"eager": "eager fps", "optimized": "optimized fps",
              "bf16": f"{'bf16' if low == 'bfloat16' else 'fp16' if low else 'low-prec'} fps",
              "compile": "compile fps"}  # fmt: skip
    for mode in modes:
        table.add_column(labels[mode], justify="right")
    table.add_column("GFLOP/s (best fp32)", justify="right")
    table.add_column("efficiency", justify="right")
    table.add_column("note", no_wrap=True, overflow="ellipsis", max_width=40)
    peak = roofline.get("float32")
    for row in rows:
        best = best_fp32(row)
        achieved = None if best is None or row.gflops is None else best * row.gflops
        eff = None if achieved is None or not peak else 100 * achieved / peak
        table.add_row(
            row.name,
            "x".join(str(v) for v in row.input_shape) or "-",
            _fmt(row.params / 1e6, ".2f") + "M" if row.params else "-",
            _fmt(row.gflops, ".2f"),
            *(_fmt(row.fps.get(m)) for m in modes),
            _fmt(achieved),
            _fmt(eff, ".0f") + "%" if eff is not None else "-",
            row.note,
        )
    console = Console(width=max(160, Console().width))
    console.print(table)
    roof = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in roofline.items())
    console.print(f"roofline (best {1536}^3 matmul): {roof}")
    console.print(
        "efficiency = best fp32 GFLOP/s / fp32 matmul GFLOP/s. Small UNets are memory-bound; "
        "numbers from a busy machine are noisy."
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--no-bf16", action="store_true", help="skip the reduced-precision column")
    p.add_argument("--only", default=None, help="only networks whose name contains this")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def run(args) -> tuple[list[Row], dict[str, float]]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    modes = ["eager", "optimized"]
    if not args.no_bf16:
        modes.append("bf16")
    if args.compile:
        modes.append("compile")
    roofline = {"float32": matmul_gflops("float32", args.device)}
    low = low_precision_name(args.device)
    if low and not args.no_bf16:
        roofline[low] = matmul_gflops(low, args.device)
    rows = []
    for name, config, hw in networks(args.only):
        start = time.perf_counter()
        rows.append(benchmark_one(name, config, hw, args, modes))
        print(f"  {name}: {time.perf_counter() - start:.1f}s", flush=True)
    # Measured again at the end and the best kept: a busy moment should not lower it.
    for key in list(roofline):
        roofline[key] = max(roofline[key], matmul_gflops(key, args.device))
    return rows, roofline


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    rows, roofline = run(args)
    modes = ["eager", "optimized"] + ([] if args.no_bf16 else ["bf16"])
    modes += ["compile"] if args.compile else []
    print_table(rows, modes, roofline, args)
    print(f"total {time.perf_counter() - start:.0f}s")
    if args.json:
        payload: dict[str, Any] = {
            "device": args.device,
            "batch_size": args.batch_size,
            "roofline_gflops": roofline,
            "rows": [asdict(r) for r in rows],
            "cpu_count": os.cpu_count(),
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
