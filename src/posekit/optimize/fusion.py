"""Inference-time graph optimisations that keep a model's outputs unchanged.

`optimize_for_inference(model)` returns an eval-mode copy of a model with

- **BatchNorm folded** into the convolution (or transposed convolution) that feeds it.
  In eval mode BatchNorm is a per-channel affine map ``y = a * x + b``; when ``x`` is the
  output of a convolution and nothing else reads that output, ``a`` and ``b`` can be
  baked into the convolution's weights and bias and the BatchNorm replaced by an
  identity. One memory pass per BatchNorm disappears, which matters on CPUs where
  these networks are memory-bound.
- **channels-last memory format** (NHWC in memory, NCHW in shape). oneDNN on CPUs and
  cuDNN on tensor-core GPUs run convolutions natively in that layout; in NCHW they
  reorder every activation first.
- **ReLU fused into the convolution** that alone feeds it (CPU: oneDNN's post-op), which
  saves one pass over every activation map; 3-19% more frames/s on SLEAP's UNets here.
- **Transposed convolutions as sub-pixel convolutions** (one ordinary convolution and a
  pixel shuffle; `posekit.optimize.subpixel`), which oneDNN runs much closer to its peak.
- **Winograd F(4x4, 3x3)** for the 3x3 convolutions with many channels (CPU, float32):
  4x fewer multiplications in the deep layers of a UNet (`posekit.optimize.winograd`).
- **ConvNeXt and Swin MLPs fused** (`posekit.optimize.convnext_blocks`, `.swin_blocks`):
  LayerNorm affine and layer scale folded into the Linears, GELU and the residual add as
  oneDNN post-ops.
- **Swin's shifted-window attention with less work** (`posekit.optimize.swin_blocks`):
  bias and shift mask computed once, pad / roll / window partition as one gather,
  `scaled_dot_product_attention`.

Folding is decided from what the network *does*, not from how its modules are nested:
one forward pass records which tensor each convolution produced, which tensor each
BatchNorm read, and how many operations read each tensor. A pair is folded only when the
BatchNorm's input is exactly the convolution's output and no other operation reads it.
That is why SLEAP's hourglass blocks (conv -> ReLU -> BatchNorm) are left alone: their
BatchNorm reads the ReLU's output, and the ReLU cannot be moved past the affine map.
ResNet bottlenecks (conv -> BN pairs called from a hand-written `forward`) fold, while a
convolution whose output also feeds a skip connection does not.

Reduced precision lives in `posekit.optimize.autocast`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from posekit.optimize import _modules
from posekit.optimize._modules import set_submodule

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "FoldedPair",
    "find_foldable_batchnorms",
    "fold_batchnorms",
    "fuse_conv_relu",
    "optimize_for_inference",
]


@dataclass(frozen=True)
class FoldedPair:
    """A convolution and the BatchNorm folded into it (module paths)."""

    conv: str
    batchnorm: str


def _conv_types() -> tuple[type, ...]:
    """Module types whose forward is a pure (linear) convolution, so folding is exact.

    Exact types only: a subclass may add a nonlinearity in `forward` (posekit's sigmoid
    1x1 head does), after which the BatchNorm no longer commutes with it.
    """
    from torch import nn

    from posekit.architectures.common import SameConv2d, SameConvTranspose2d

    return (nn.Conv2d, nn.ConvTranspose2d, SameConv2d, SameConvTranspose2d)


def _default_example(model: nn.Module) -> torch.Tensor:
    """A small input the model accepts: right channels, a size divisible by its stride."""
    import torch
    from torch import nn

    channels = getattr(model, "in_channels", None)
    if not isinstance(channels, int):
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None else 1
    size = getattr(model, "input_size", None)
    if not size:
        stride = int(getattr(model, "maximum_stride", 0) or 16)
        side = max(2 * stride, 32)
        size = (side, side)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    return torch.rand(1, int(channels), int(size[0]), int(size[1]), device=device)


def _trace_dataflow(model: nn.Module, example_input, producers: dict, consumers: dict):
    """One forward pass recording which tensor each producer module returned, which
    tensor each consumer module read, how often each module ran and how many
    tensor-producing operations read each tensor.

    `producers` / `consumers` map modules to their paths. Returns ``(calls, produced,
    consumed, readers)`` with tensors identified by ``id`` (kept alive during the pass so
    ids are never reused).
    """
    import torch
    from torch.overrides import TorchFunctionMode

    calls: dict[str, int] = {}
    produced: dict[str, int] = {}  # producer path -> id of the tensor it returned
    consumed: dict[str, int] = {}  # consumer path -> id of the tensor it read
    readers: dict[int, int] = {}  # tensor id -> number of tensor-producing ops that read it
    keep_alive: list[Any] = []

    def _tensors(obj: Any):
        if isinstance(obj, torch.Tensor):
            yield obj
        elif isinstance(obj, list | tuple):
            for item in obj:
                yield from _tensors(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                yield from _tensors(item)

    class _CountReaders(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            # Only operations that produce tensors consume data; `x.dim()`, `x.shape`
            # and friends read metadata and do not count.
            if any(True for _ in _tensors(out)):
                seen = set()
                for t in _tensors((args, kwargs or {})):
                    if id(t) not in seen:
                        seen.add(id(t))
                        readers[id(t)] = readers.get(id(t), 0) + 1
                keep_alive.append(out)
            return out

    def producer_hook(module, inputs, output):
        name = producers[module]
        calls[name] = calls.get(name, 0) + 1
        produced[name] = id(output)
        keep_alive.append(output)

    def consumer_pre_hook(module, inputs):
        name = consumers[module]
        calls[name] = calls.get(name, 0) + 1
        consumed[name] = id(inputs[0])
        keep_alive.append(inputs[0])

    handles = [m.register_forward_hook(producer_hook) for m in producers]
    handles += [m.register_forward_pre_hook(consumer_pre_hook) for m in consumers]
    x = example_input if example_input is not None else _default_example(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _CountReaders():
            result = model(x)
        # A tensor handed back to the caller is read by the caller too.
        for t in _tensors(result):
            readers[id(t)] = readers.get(id(t), 0) + 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    keep_alive.clear()
    return calls, produced, consumed, readers


def _sole_reader_pairs(model, example_input, producers: dict, consumers: dict):
    """(producer path, consumer path) where the consumer reads exactly the producer's
    output, both run once, and nothing else reads that output."""
    if not producers or not consumers:
        return []
    calls, produced, consumed, readers = _trace_dataflow(model, example_input, producers, consumers)
    by_tensor = {tid: name for name, tid in produced.items() if calls.get(name) == 1}
    pairs = []
    for consumer, tid in consumed.items():
        producer = by_tensor.get(tid)
        if producer is None or calls.get(consumer) != 1 or readers.get(tid, 0) != 1:
            continue
        pairs.append((producer, consumer))
    return pairs


def find_foldable_batchnorms(
    model: nn.Module, example_input: torch.Tensor | None = None
) -> list[FoldedPair]:
    """Convolution -> BatchNorm pairs of `model` that can be folded without changing it.

    Runs one forward pass (no gradients) on `example_input` (default: a small random
    input built from `model.in_channels`, `model.input_size` / `model.maximum_stride`) and
    records the data flow. A pair qualifies when

    - the convolution is a plain (transposed) convolution called exactly once,
    - the BatchNorm is called exactly once, uses running statistics, and its input is
      the very tensor the convolution returned,
    - no other operation reads that tensor (a skip connection, a second head, ...).
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    conv_types = _conv_types()
    convs = {m: n for n, m in model.named_modules() if type(m) in conv_types}
    bns = {
        m: n
        for n, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
    }
    return [FoldedPair(c, b) for c, b in _sole_reader_pairs(model, example_input, convs, bns)]


def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    """Rewrite `conv`'s weight and bias so that `conv(x)` equals `bn(conv(x))` (eval)."""
    import torch
    from torch import nn

    with torch.no_grad():
        w = conv.weight
        dtype = w.dtype
        var = bn.running_var.to(torch.float64)
        mean = bn.running_mean.to(torch.float64)
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.to(torch.float64)
        shift = -mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias.to(torch.float64)
        bias = (
            conv.bias.to(torch.float64)
            if conv.bias is not None
            else torch.zeros_like(mean, dtype=torch.float64)
        )
        new_bias = bias * scale + shift
        w64 = w.to(torch.float64)
        if isinstance(conv, nn.ConvTranspose2d):
            # Weight (in, out / groups, kh, kw): output channel g * (out / groups) + j.
            g = conv.groups
            cin, cout_g = w64.shape[0], w64.shape[1]
            w64 = w64.reshape(g, cin // g, cout_g, *w64.shape[2:])
            w64 = w64 * scale.reshape(g, 1, cout_g, 1, 1)
            w64 = w64.reshape(cin, cout_g, *w64.shape[3:])
        else:
            w64 = w64 * scale.reshape(-1, 1, 1, 1)
        conv.weight = nn.Parameter(w64.to(dtype), requires_grad=False)
        # A transposed conv whose kernel is smaller than its stride fills the unreached
        # pixels with the bias alone (SameConvTranspose2d); a real bias keeps that right.
        conv.bias = nn.Parameter(new_bias.to(dtype), requires_grad=False)


def fold_batchnorms(
    model: nn.Module, example_input: torch.Tensor | None = None
) -> list[FoldedPair]:
    """Fold every foldable conv -> BatchNorm pair of `model` in place (see module doc).

    The folded BatchNorms are replaced by `nn.Identity`, so module paths of everything
    else stay the same. Only meaningful for inference: the model must stay in eval mode.

    Returns:
        The pairs that were folded.
    """
    from torch import nn

    pairs = find_foldable_batchnorms(model, example_input)
    for pair in pairs:
        conv = model.get_submodule(pair.conv)
        bn = model.get_submodule(pair.batchnorm)
        _fold_into(conv, bn)
        set_submodule(model, pair.batchnorm, nn.Identity())
    return pairs


def fuse_conv_relu(model: nn.Module, example_input: torch.Tensor | None = None) -> list:
    """Fuse every convolution whose only reader is a ReLU into one `ConvReLU2d`, in place.

    Pairs are found from the data flow, as for BatchNorm folding (an identity left by a
    folded BatchNorm in between is transparent). Only plain `nn.Conv2d` with zero
    padding qualifies, or the convolution inside a `SubpixelConvTranspose2d` (the ReLU
    commutes with its pixel shuffle). The ReLU is replaced by `nn.Identity`. For inference only.
    Measured on this project's CPU: 1.03-1.19x the frames/s of SLEAP's UNets, outputs
    equal to float32 rounding.

    Returns:
        The fused (convolution path, ReLU path) pairs.
    """
    from torch import nn

    def plain(m):
        return type(m) is nn.Conv2d and m.padding_mode == "zeros" and isinstance(m.padding, tuple)

    def subpixel(m):  # pixel shuffle after its convolution: the ReLU commutes with it
        from posekit.optimize.subpixel import SubpixelConvTranspose2d

        return isinstance(m, SubpixelConvTranspose2d) and plain(m.conv)

    convs = {m: n for n, m in model.named_modules() if plain(m) or subpixel(m)}
    relus = {m: n for n, m in model.named_modules() if type(m) is nn.ReLU}
    pairs = _sole_reader_pairs(model, example_input, convs, relus)
    cls, op = _modules.conv_relu_class(), _modules.fused_conv_relu_op()
    for conv_path, relu_path in pairs:
        module = model.get_submodule(conv_path)
        if subpixel(module):
            module.conv = cls(module.conv, op)
        else:
            set_submodule(model, conv_path, cls(module, op))
        set_submodule(model, relu_path, nn.Identity())
    return pairs


def _channels_last_input(module, args):
    """Forward pre-hook: hand the network a channels-last input (shape unchanged)."""
    import torch

    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def optimize_for_inference(
    model: nn.Module,
    channels_last: bool = True,
    fold_batchnorm: bool = True,
    example_input: torch.Tensor | None = None,
    inplace: bool = False,
    fuse_relu: bool = True,
    winograd: bool = True,
    subpixel_convs: bool = True,
    fuse_mlps: bool = True,
    window_attention: bool = True,
) -> nn.Module:
    """An eval-mode copy of `model` with the same outputs, faster to run.

    Args:
        model: a posekit `Model` (or any module taking an NCHW image batch).
        channels_last: store weights channels-last and convert the input on entry (a
            forward pre-hook), so every convolution runs in NHWC. Output shapes are
            unchanged; outputs are channels-last strided (`.contiguous()` if needed).
        fold_batchnorm: fold conv -> BatchNorm pairs (module doc explains which).
        example_input: input used to trace the data flow for folding; default a small
            random batch the model accepts. A class-vectors head without global pooling
            needs the model's `input_size`, which posekit models carry.
        inplace: modify `model` itself instead of a deep copy.
        fuse_relu: run each convolution and the ReLU that alone reads it as one oneDNN
            call on CPUs (`fuse_conv_relu`); leave it off before `torch.compile`, which
            fuses by itself.
        winograd: run the 3x3 convolutions with many channels as Winograd F(4x4, 3x3)
            in float32 on CPUs (`posekit.optimize.winograd`; 4x fewer multiplications, 1.7-2.5x
            faster per layer here); outputs then agree to ~1e-5 relative, not 1e-7.
        subpixel_convs: run Keras-"same" transposed convolutions (SLEAP's UNet decoder
            default) as one ordinary convolution + pixel shuffle (`posekit.optimize.subpixel`;
            1.05-2.5x faster per layer here). This and `winograd` apply to a model on
            the CPU (where they were measured); on a GPU cuDNN's kernels stay.
        fuse_mlps: run the MLP half of ConvNeXt and Swin blocks as two oneDNN calls
            (`posekit.optimize.convnext_blocks`, `posekit.optimize.swin_blocks`); leave
            it off before `torch.compile`, which fuses them itself.
        window_attention: run the shifted-window attention half of Swin blocks as
            `posekit.optimize.swin_blocks.WindowAttention` (norm1 and q's scale folded
            into qkv, one gather for pad / roll / windows, bias and shift mask cached,
            `scaled_dot_product_attention`, residual add fused into the output Linear);
            left off before `torch.compile` (not measured there).

    Returns:
        The optimised model (eval mode, parameters without gradients). Its attribute
        `inference_optimizations` lists what was done. Outputs equal the original's to
        float32 rounding, Winograd layers to ~1e-5 relative (max abs error below 1e-4 on
        SLEAP's networks).
    """
    import torch

    out = model if inplace else copy.deepcopy(model)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    folded: list[FoldedPair] = []
    if fold_batchnorm:
        folded = fold_batchnorms(out, example_input)
    # Both rewrites were measured on CPUs only; GPUs keep cuDNN's own kernels.
    on_cpu = _modules.device_type(out) == "cpu"
    subpixel: list[str] = []
    if subpixel_convs and on_cpu:
        from posekit.optimize.subpixel import use_subpixel_convs

        subpixel = use_subpixel_convs(out)
    fused = fuse_conv_relu(out, example_input) if fuse_relu else []
    winograd_paths: list[str] = []
    # ConvNeXt / Swin decoders too: on idle cores 1.14-1.26x faster whole networks
    # (ConvNeXt-T, Swin-T at 160 and 256 px, 1 and 2 threads); an earlier A/B under load
    # had measured the opposite.
    if winograd and on_cpu:
        from posekit.optimize.winograd import use_winograd

        winograd_paths = use_winograd(out)
    mlp_blocks: list[str] = []
    if fuse_mlps:
        from posekit.optimize.convnext_blocks import fuse_convnext_blocks

        mlp_blocks = fuse_convnext_blocks(out)
    from posekit.optimize.swin_blocks import fuse_swin_blocks

    swin_blocks = fuse_swin_blocks(out, mlp=fuse_mlps, attention=window_attention)
    if fuse_mlps:
        mlp_blocks += swin_blocks
    if channels_last:
        out.to(memory_format=torch.channels_last)
        if not getattr(out, "_posekit_channels_last_hook", False):
            out.register_forward_pre_hook(_channels_last_input)
            out._posekit_channels_last_hook = True
    out.inference_optimizations = {
        "folded_batchnorm": [(p.conv, p.batchnorm) for p in folded],
        "channels_last": bool(channels_last),
        "fused_relu": fused,
        "winograd": winograd_paths,
        "subpixel_convs": subpixel,
        "fused_mlps": mlp_blocks,
        "window_attention": swin_blocks if window_attention else [],
    }
    return out
