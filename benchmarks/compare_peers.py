"""posekit vs sleap-nn: network-only throughput on the same networks and inputs.

posekit and sleap-nn need different environments, so sleap-nn runs in its own
interpreter (``--sleap-nn-python /path/to/sleap-nn-venv/bin/python``) as a subprocess:
the child is kept running as a small line server (JSON requests on stdin: settings, then
"build" and "time" per network), builds sleap-nn's model for each network from the same SLEAP training profile
(sleap-nn's own SLEAP-config converter; 5 placeholder parts), for the default UNet
from sleap-nn's UNet defaults, and for the ConvNeXt / Swin networks (`HIERARCHICAL`) from
sleap-nn's own `ConvNextConfig` / `SwinTConfig` with the settings posekit's configs get, times it exactly like the posekit side (fp32, eval,
`torch.inference_mode`, one warm-up call, then batch / median call time over at least
three calls and ``--seconds``)  and
answers in JSON. Nothing is installed; without ``--sleap-nn-python`` only posekit is
timed. The two sides run one after the other, never at the same time, with the same number
of threads: in each round, sleap-nn is timed right after posekit's variants on the same
network, so both see the same minute of a machine whose speed drifts.

Printed per network: GFLOP/frame (posekit's summary), posekit fps (optimized: BatchNorm
folded + channels-last; eager in its own column), sleap-nn fps, the ratio posekit /
sleap-nn, and each side's efficiency against this machine's measured fp32 matmul
GFLOP/s. Where the hardware has a fast reduced precision (bf16 on CPUs with
AVX512-BF16/AMX, fp16 on CUDA), posekit is also timed as `posekit predict --precision`
runs it, and compared with sleap-nn's float32. ``--compile`` adds `posekit predict
--runtime compile` (torch.compile, frozen weights; compile time excluded, printed). sleap-nn's builder differs between its releases; a network it cannot build is
reported with its error instead of a number.

posekit's side runs with malloc keeping freed memory, as `posekit predict` and `posekit
train` set it on CPUs (`posekit.optimize.allocator`; its "eager" column too, since the
setting is process-wide); ``POSEKIT_MALLOC=system`` times it with glibc's default.

``--mode train`` times training steps instead (forward, MSE loss, backward, Adam; the
same timer source runs on both sides): posekit NCHW float32, channels-last float32 (how
`posekit train` runs) and, on bf16 hardware, channels-last bf16 autocast; sleap-nn as its
model is built (float32). Rates are steps/s at ``--batch-size``.

Usage:
    python benchmarks/compare_peers.py [--sleap-nn-python PATH] [--seconds 1] [--rounds 1]
        [--mode train] [--compile] [--batch-size 1] [--threads N] [--only NAME] [--timeout 900]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_network as bench  # noqa: E402 - the sibling benchmark's helpers

# Training-step timer, shared by both sides: the child runs this source and so does this
# script (exec), so posekit and sleap-nn are timed by the same code.
TRAIN_TIMER = r"""
import contextlib, statistics, time


def _tensors(out):
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return [out]


def time_train(model, x, seconds, channels_last=False, bf16=False):
    # Training steps/s: forward, MSE against zeros, backward, Adam step (batch = x).
    import torch
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        ctx = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            outs = _tensors(model(x))
        loss = sum(o.float().square().mean() for o in outs if torch.is_tensor(o))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    step()
    step()
    times = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times)
"""

# The child program, run by sleap-nn's interpreter. It imports only torch, omegaconf and
# sleap_nn, and reports every network separately so one failure does not hide the rest.
CHILD = (
    TRAIN_TIMER
    + r"""
import json, sys, time, traceback

def main():
    # A line server: one JSON request per stdin line, one JSON answer per stdout line, so
    # the parent can time sleap-nn right after posekit on the same network, every round.
    import torch
    out = sys.stdout
    sys.stdout = sys.stderr  # anything sleap-nn prints must not break the protocol
    req = json.loads(sys.stdin.readline())
    if req.get("threads"):
        torch.set_num_threads(int(req["threads"]))
    hello = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        import sleap_nn
        hello["sleap_nn"] = getattr(sleap_nn, "__version__", "?")
    except Exception as err:
        hello["error"] = "cannot import sleap_nn: %r" % (err,)
    out.write(json.dumps(hello) + "\n")
    out.flush()
    models = {}
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if "build" in msg:
                net = msg["build"]
                reply = {"name": net["name"]}
                model, channels = build(net, req)
                model = model.to(req["device"]).eval()
                reply["params"] = int(sum(p.numel() for p in model.parameters()))
                h, w, c = net["input_shape"]
                gen = torch.Generator().manual_seed(0)
                x = torch.rand(req["batch_size"], channels or c, h, w, generator=gen)
                models[net["name"]] = (model, x.to(req["device"]))
            else:
                reply = {"name": msg["time"]}
                model, x = models[msg["time"]]
                if req.get("mode") == "train":
                    reply["fps"] = time_train(model, x, req["seconds"])
                else:
                    reply["fps"] = time_forward(model, x, req["seconds"], req["device"])
        except Exception as err:
            reply["error"] = "%s: %s" % (type(err).__name__, err)
            reply["traceback"] = traceback.format_exc()[-2000:]
        out.write(json.dumps(reply) + "\n")
        out.flush()

def sync(device):
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()

def time_forward(model, x, seconds, device):
    import statistics, torch
    with torch.inference_mode():
        model(x)
        sync(device)
        times = []
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            model(x)
            sync(device)
            times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times)

def _fill_names(heads, net):
    for key in list(heads.keys()):
        sub = heads[key]
        if sub is None or not hasattr(sub, "keys"):
            continue
        if "part_names" in sub and sub["part_names"] is None:
            sub["part_names"] = list(net["parts"])
        if "edges" in sub and sub["edges"] is None:
            sub["edges"] = [list(e) for e in net["edges"]]
        if "classes" in sub and sub["classes"] is None:
            sub["classes"] = list(net["classes"])

def _model(backbone_type, backbone_cfg, heads, model_type):
    from sleap_nn.architectures.model import Model
    try:
        return Model(backbone_type=backbone_type, backbone_config=backbone_cfg,
                     head_configs=heads, model_type=model_type)
    except TypeError:
        return Model.from_config(backbone_type=backbone_type, backbone_config=backbone_cfg,
                                 head_configs=heads, model_type=model_type)

def build(net, req):
    from omegaconf import OmegaConf
    if net["kind"] == "profile":
        from sleap_nn.config.training_job_config import TrainingJobConfig
        cfg = TrainingJobConfig.load_sleap_config(net["path"])
        mc = cfg.model_config
        backbone_type = next((k for k, v in mc.backbone_config.items() if v is not None), None)
        model_type = next((k for k, v in mc.head_configs.items() if v is not None), None)
        if backbone_type is None or model_type is None:
            raise RuntimeError("its SLEAP-config converter has no such backbone")
        backbone_cfg = mc.backbone_config[backbone_type]
        heads = mc.head_configs[model_type]
        _fill_names(heads, net)
        channels = backbone_cfg.get("in_channels", None) if hasattr(backbone_cfg, "get") else None
        return _model(backbone_type, backbone_cfg, heads, model_type), channels
    if net["kind"] == "backbone":
        # ConvNeXt / Swin from sleap-nn's own config class and the same settings
        from sleap_nn.config import model_config
        cls = {"convnext": model_config.ConvNextConfig, "swint": model_config.SwinTConfig}
        backbone_cfg = OmegaConf.structured(cls[net["backbone"]](**net["settings"]))
        heads = OmegaConf.create({"confmaps": {"part_names": list(net["parts"]), "sigma": 5.0,
                                               "output_stride": net["settings"]["output_stride"]}})
        return (_model(net["backbone"], backbone_cfg, heads, "single_instance"),
                net["settings"]["in_channels"])
    # sleap-nn's default UNet, from its own config defaults where available.
    try:
        from sleap_nn.config.model_config import UNetConfig
        backbone_cfg = OmegaConf.structured(UNetConfig())
    except Exception:
        backbone_cfg = OmegaConf.create(dict(
            in_channels=1, kernel_size=3, filters=32, filters_rate=1.5, max_stride=16,
            stem_stride=None, middle_block=True, up_interpolate=True, stacks=1,
            convs_per_block=2, output_stride=1))
    for key, value in net["unet"].items():
        backbone_cfg[key] = value
    heads = OmegaConf.create({"confmaps": {"part_names": list(net["parts"]), "sigma": 5.0,
                                           "output_stride": net["unet"]["output_stride"]}})
    return _model("unet", backbone_cfg, heads, "single_instance"), backbone_cfg.get("in_channels")

main()
"""
)


_timer: dict = {}
exec(TRAIN_TIMER, _timer)  # the same training-step timer the child runs
time_train = _timer["time_train"]


def time_train_copy(model, x, seconds, channels_last=False, bf16=False):
    """`time_train` on a fresh copy of `model` (every timing starts from the same weights)."""
    return time_train(copy.deepcopy(model), x, seconds, channels_last, bf16)


class SleapNNProcess:
    """sleap-nn in its own interpreter, kept running so that each of its timings can sit
    right next to posekit's on the same network (the machine's speed drifts by up to 2x
    between minutes; timing one side after the other made the ratio drift with it)."""

    def __init__(self, python: str, args):
        import torch

        settings = {
            "device": args.device,
            "batch_size": args.batch_size,
            "seconds": args.seconds,
            "mode": args.mode,
            "threads": args.threads or torch.get_num_threads(),
        }
        python = os.path.abspath(shutil.which(python) or python)  # abspath: keep venv symlinks
        self.python, self.timeout = python, args.timeout
        self._tmp = tempfile.TemporaryDirectory()
        child = Path(self._tmp.name) / "sleap_nn_child.py"
        child.write_text(CHILD)
        self._stderr = open(Path(self._tmp.name) / "stderr.txt", "w+")
        self.proc = None
        self.errors: dict[str, str] = {}
        try:
            self.proc = subprocess.Popen(
                [python, str(child)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                bufsize=1,
                cwd=self._tmp.name,  # keep posekit's source tree off the child's path
            )
            self.info = self._ask(settings)
        except (OSError, RuntimeError) as err:
            self.info = {"error": f"could not run {python}: {err}"}

    def _ask(self, message: dict) -> dict:
        import select

        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"sleap-nn child exited: {self._stderr_tail()}")
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            tail = self._stderr_tail()
            self.close()
            raise RuntimeError(f"sleap-nn child gave no answer: {tail}")
        return json.loads(line)

    def _stderr_tail(self) -> str:
        if self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().strip().splitlines()[-3:])

    def ok(self) -> bool:
        return "error" not in self.info

    def build(self, entry: dict) -> dict:
        try:
            return self._ask({"build": entry})
        except RuntimeError as err:
            self.info["error"] = str(err)
            return {"name": entry["name"], "error": str(err)}

    def time(self, name: str) -> float | None:
        """Frames (or steps) per second; None, with the reason in `errors`, if it failed."""
        try:
            reply = self._ask({"time": name})
        except RuntimeError as err:
            self.info["error"] = str(err)
            return None
        if reply.get("error"):
            self.errors[name] = reply["error"]
        return reply.get("fps")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._stderr.close()
        self._tmp.cleanup()


# sleap-nn's ConvNeXt and Swin backbones (issue 23), single-instance confidence maps at
# output stride 2, with the input size each is timed at.
HIERARCHICAL = {
    "ConvNeXt tiny": ("convnext", {"model_type": "tiny"}, 160),
    "ConvNeXt small custom": (
        "convnext",
        {"model_type": "custom", "arch": {"depths": [2, 2, 2, 2], "channels": [32, 64, 128, 256]}},
        256,
    ),
    "Swin-T": ("swint", {"model_type": "tiny"}, 160),
}


def hierarchical_networks(only: str | None = None):
    """(name, job config, input H, W) for the `HIERARCHICAL` networks, built from
    posekit's `ConvNextConfig` / `SwinTConfig` with the settings sleap-nn gets too."""
    from posekit.config.job import TrainingJobConfig
    from posekit.config.model import (
        BackboneConfig,
        ConvNextConfig,
        HeadsConfig,
        ModelConfig,
        SingleInstanceConfmapsHeadConfig,
        SwinTConfig,
    )

    items = []
    for name, (kind, settings, side) in HIERARCHICAL.items():
        if only and only not in name:
            continue
        cls = {"convnext": ConvNextConfig, "swint": SwinTConfig}[kind]
        backbone = BackboneConfig(**{kind: cls(**settings, output_stride=2)})
        head = SingleInstanceConfmapsHeadConfig(part_names=bench.PARTS, output_stride=2)
        model = ModelConfig(backbone=backbone, heads=HeadsConfig(single_instance=head))
        items.append((name, TrainingJobConfig(model=model), (side, side)))
    return items


def _request_entry(name: str, config, shape) -> dict:
    entry = {
        "name": name,
        "input_shape": list(shape),
        "parts": bench.PARTS,
        "edges": [list(e) for e in bench.EDGES],
        "classes": bench.CLASSES,
    }
    if name in HIERARCHICAL:
        kind, settings, _ = HIERARCHICAL[name]
        entry["kind"] = "backbone"
        entry["backbone"] = kind
        entry["settings"] = {**settings, "output_stride": 2, "in_channels": shape[2]}
    elif name == bench.DEFAULT_UNET:
        unet = config.model.backbone.unet
        entry["kind"] = "default_unet"
        entry["unet"] = {
            "filters": unet.filters,
            "filters_rate": unet.filters_rate,
            "max_stride": unet.max_stride,
            "output_stride": unet.output_stride,
            "up_interpolate": unet.up_interpolate,
            "in_channels": shape[2],
        }
    else:
        entry["kind"] = "profile"
        entry["path"] = str((bench.PROFILES / f"{name}.json").resolve())
    return entry


def main(argv=None) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from posekit.inference.runtime import make_runner
    from posekit.optimize import optimize_for_inference

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sleap-nn-python", default=None, help="sleap-nn venv's python")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every variant this many times, interleaved, and keep the best (a "
        "shared machine's speed varies by up to 2x from minute to minute)",
    )
    p.add_argument(
        "--mode",
        default="inference",
        choices=["inference", "train"],
        help="train: training steps/s (forward, loss, backward, Adam) instead of inference",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time --runtime compile (torch.compile; 30-60 s to compile per network)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only", default=None)
    p.add_argument("--timeout", type=float, default=900, help="for the sleap-nn child")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu":
        from posekit.optimize.allocator import keep_freed_memory

        # this process is posekit's side: malloc as `posekit predict` / `train` set it
        # (POSEKIT_MALLOC=system keeps glibc's default); the sleap-nn child keeps its own
        keep_freed_memory()
    start = time.perf_counter()
    peak = bench.matmul_gflops("float32", args.device)
    low_name = bench.low_precision_name(args.device)  # bfloat16 on AMX/AVX512-BF16 CPUs
    low = {"bfloat16": "bf16", "float16": "fp16"}.get(low_name or "")

    peer = SleapNNProcess(args.sleap_nn_python, args) if args.sleap_nn_python else None
    rows: list[dict] = []
    for name, config, hw in bench.networks(args.only) + hierarchical_networks(args.only):
        row: dict = {"name": name}
        rows.append(row)
        if isinstance(config, Exception):
            row["note"] = f"config: {config}"[:70]
            continue
        try:
            model, shape = bench.build_network(config, hw, args.device)
        except Exception as err:  # noqa: BLE001 - e.g. an encoder family not available here
            row["note"] = f"posekit: {type(err).__name__}: {err}"[:70]
            continue
        row["shape"] = shape
        row["config"] = config
        row["gflops"] = bench.gflops_per_frame(model, shape)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(args.batch_size, shape[2], shape[0], shape[1], generator=gen)
        x = x.to(args.device)
        if args.mode == "train":
            # NCHW as built ("eager"); channels-last as `posekit train` runs it; bf16-mixed
            # as `posekit train --precision bf16-mixed` (what --auto picks on AMX CPUs).
            # each run trains its own copy of the weights
            timers = {
                "eager": partial(time_train_copy, model, x, args.seconds),
                "posekit": partial(time_train_copy, model, x, args.seconds, True),
            }
            if low == "bf16":
                timers["posekit_low"] = partial(time_train_copy, model, x, args.seconds, True, True)
        else:
            fns = {"eager": model, "posekit": optimize_for_inference(model, example_input=x[:1])}
            if low is not None:  # what `posekit predict --precision bf16|fp16` runs
                fns["posekit_low"] = make_runner(model, device=args.device, precision=low)
            if args.compile:  # what `posekit predict --runtime compile` runs
                # Every posekit model shares `Model.forward`'s code, and dynamo stops
                # compiling a code object after 8 variants: each network starts clean.
                torch._dynamo.reset()
                runner = make_runner(model, device=args.device, runtime="compile")
                t0 = time.perf_counter()
                with torch.inference_mode():
                    runner(x)  # compiles
                row["compile_s"] = time.perf_counter() - t0
                fns["posekit_compiled"] = runner
            timers = {
                key: partial(bench.time_forward, f, x, args.seconds, args.device)
                for key, f in fns.items()
            }
        if peer is not None and peer.ok():
            built = peer.build(_request_entry(name, config, shape))
            row["sleap_nn_params"] = built.get("params")
            if built.get("error"):
                row["note"] = f"sleap-nn: {built['error']}"[:70]
            else:
                timers["sleap_nn"] = partial(peer.time, name)
        for _ in range(args.rounds):  # interleaved; the best of the rounds is kept
            for key, timer in timers.items():
                rate = timer()
                if rate is not None:
                    row[key] = max(row.get(key, 0.0), rate)
            # the roofline is sampled as often as the networks, so a slow minute cannot
            # lower it (which would flatter the efficiencies)
            peak = max(peak, bench.matmul_gflops("float32", args.device))
        print(f"  posekit {name}: done", flush=True)

    if peer is not None:
        peer.close()
        for row in rows:
            if row["name"] in peer.errors:
                row["note"] = f"sleap-nn: {peer.errors[row['name']]}"[:70]

    peak = max(peak, bench.matmul_gflops("float32", args.device))  # and at the end
    train = args.mode == "train"
    unit = "steps/s" if train else "fps"
    title = f"posekit vs sleap-nn, {args.mode}, {args.device}, batch {args.batch_size}, fp32, " + (
        f"{torch.get_num_threads()} threads"
    )
    table = Table(title=title)
    low_cols = (f"posekit {low} {unit}", f"{low} ratio") if low else ()
    compiled = any("posekit_compiled" in r for r in rows)
    compile_cols = ("compile fps", "compile eff.", "compile s") if compiled else ()
    eager_col = "posekit NCHW" if train else "posekit eager"
    for col in ("model", "GFLOP/frame", f"posekit {unit}", f"{eager_col} {unit}",
                f"sleap-nn {unit}", "ratio", "posekit eff.", "sleap-nn eff.", *low_cols,
                *compile_cols, "note"):  # fmt: skip
        if col == "note":
            table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=40)
        elif col == "model":
            table.add_column(col, no_wrap=True)
        else:
            table.add_column(col, justify="right")

    def eff(rate, gflops):
        # a training step costs ~3x the forward pass (forward + two backward products)
        if rate is None or gflops is None:
            return None
        samples = rate * args.batch_size if train else rate
        return 100 * samples * gflops * (3 if train else 1) / peak

    for row in rows:
        pk, sn, g = row.get("posekit"), row.get("sleap_nn"), row.get("gflops")
        ratio = None if pk is None or not sn else pk / sn
        e1, e2 = eff(pk, g), eff(sn, g)
        lo = row.get("posekit_low")
        lo_ratio = None if lo is None or not sn else lo / sn
        low_cells = (bench._fmt(lo), bench._fmt(lo_ratio, ".2f") + ("x" if lo_ratio else ""))
        cc = row.get("posekit_compiled")
        e3 = eff(cc, g)
        compile_cells = (
            bench._fmt(cc),
            bench._fmt(e3, ".0f") + ("%" if e3 is not None else ""),
            bench._fmt(row.get("compile_s"), ".0f"),
        )
        table.add_row(
            row["name"],
            bench._fmt(g, ".2f"),
            bench._fmt(pk),
            bench._fmt(row.get("eager")),
            bench._fmt(sn) if args.sleap_nn_python else "not run",
            bench._fmt(ratio, ".2f") + ("x" if ratio else ""),
            bench._fmt(e1, ".0f") + ("%" if e1 is not None else ""),
            bench._fmt(e2, ".0f") + ("%" if e2 is not None else ""),
            *(low_cells if low else ()),
            *(compile_cells if compiled else ()),
            row.get("note", ""),
        )
    console = Console(width=max(230, Console().width))
    console.print(table)
    console.print(f"roofline: fp32 {1536}^3 matmul, best call over the run: {peak:.0f} GFLOP/s")
    info = peer.info if peer is not None else {}
    if info.get("error"):
        console.print(f"sleap-nn: {info['error']}")
    elif info:
        console.print(
            f"sleap-nn {info.get('sleap_nn')} on torch {info.get('torch')}, "
            f"{info.get('threads')} threads, timed right after posekit on each network, "
            "every round"
        )
    if not args.sleap_nn_python:
        console.print("sleap-nn not timed: pass --sleap-nn-python /path/to/venv/bin/python")
    console.print(f"total {time.perf_counter() - start:.0f}s")
    if args.json:
        clean = [{k: v for k, v in r.items() if k != "config"} for r in rows]
        Path(args.json).write_text(
            json.dumps({"roofline_gflops": peak, "rows": clean, "peer": info}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
