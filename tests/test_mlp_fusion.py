"""ConvNeXt and Swin blocks with fused MLPs (`posekit.optimize.convnext_blocks`,
`posekit.optimize.swin_blocks`) and Swin's rewritten window attention keep their outputs,
replace only the standard blocks, and are idempotent."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models.convnext import CNBlock
from torchvision.models.swin_transformer import SwinTransformerBlock, SwinTransformerBlockV2

from posekit.optimize import _modules
from posekit.optimize.convnext_blocks import fuse_convnext_blocks
from posekit.optimize.swin_blocks import fuse_swin_blocks


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights everywhere (LayerNorm affine and layer scale included: at their
    defaults, 1 / 0 / 1e-6, folding them would be a no-op or invisible)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = float(a.abs().max())
    assert scale > 0.1  # a real signal
    assert float((a - b).abs().max()) <= 1e-5 * scale


def _cnblock(width: int = 16) -> CNBlock:
    return _randomize(CNBlock(width, 1e-6, 0.0, partial(nn.LayerNorm, eps=1e-6)))


def _swin_block(width: int = 16, shift=3, window=(7, 7), heads: int = 2) -> SwinTransformerBlock:
    shift = list(shift) if isinstance(shift, tuple) else [shift, shift]
    block = SwinTransformerBlock(width, heads, window_size=list(window), shift_size=shift)
    return _randomize(block)


class _Counting:
    """Wraps oneDNN's linear op and counts the calls (the fast path must really run)."""

    def __init__(self, op):
        self.op, self.calls = op, 0

    def __call__(self, *args):
        self.calls += 1
        return self.op(*args)

    def binary(self, *args):
        self.calls += 1
        return self.op.binary(*args)


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
def test_fused_cnblock_keeps_outputs(channels_last):
    block = _cnblock()
    x = torch.randn(2, 16, 13, 11)
    if channels_last:
        block = block.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    holder = nn.Sequential(copy.deepcopy(block))
    assert fuse_convnext_blocks(holder) == ["0"]
    fused = holder[0]
    if _modules.linear_pointwise_op() is not None:
        fused.mlp._op = _Counting(fused.mlp._op)
    with torch.inference_mode():
        _close(block(x), fused(x))
    if _modules.linear_pointwise_op() is not None:
        assert fused.mlp._op.calls == 2  # GELU and the residual add as post-ops


def test_fused_mlp_in_row_blocks_keeps_outputs(monkeypatch):
    """A hidden activation larger than `MLP_WHOLE_BYTES` runs in row blocks (thresholds
    shrunk here so a small input takes that path; the last block is a partial one)."""
    if _modules.linear_pointwise_op() is None:
        pytest.skip("this torch has no oneDNN fused linear")
    block = _cnblock()
    x = torch.randn(2, 16, 13, 11)  # 286 rows of 64 hidden floats
    holder = nn.Sequential(copy.deepcopy(block))
    fuse_convnext_blocks(holder)
    fused = holder[0]
    with torch.inference_mode():
        whole = fused(x)
        monkeypatch.setattr(_modules, "MLP_WHOLE_BYTES", 1024)
        monkeypatch.setattr(_modules, "MLP_CHUNK_BYTES", 64 * 4 * 100)  # 256 rows a block
        fused.mlp._op = _Counting(fused.mlp._op)
        blocked = fused(x)
    assert fused.mlp._op.calls == 4  # two blocks of two calls
    _close(block(x), blocked)
    torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=0)


def test_fused_blocks_fall_back_to_plain_calls_with_gradients_or_without_onednn():
    block, swin = _cnblock(), _swin_block()
    holder = nn.Sequential(copy.deepcopy(block), copy.deepcopy(swin))
    assert fuse_convnext_blocks(holder) == ["0"] and fuse_swin_blocks(holder) == ["1"]
    x, t = torch.randn(1, 16, 9, 9), torch.randn(1, 14, 14, 16)
    with torch.no_grad():
        want = block(x), swin(t)
    holder[0].mlp._op = holder[1].mlp._op = holder[1].attn._op = None  # no oneDNN
    with torch.no_grad():
        _close(want[0], holder[0](x))
        _close(want[1], holder[1](t))
    holder[0].mlp._op = _modules.linear_pointwise_op()
    got = holder[0](x)  # autograd on: ordinary calls
    _close(want[0], got.detach())


@pytest.mark.parametrize("shift", [0, 3], ids=["window", "shifted"])
def test_fused_swin_block_keeps_outputs(shift):
    block = _swin_block(shift=shift)
    holder = nn.Sequential(copy.deepcopy(block))
    assert fuse_swin_blocks(holder) == ["0"]
    x = torch.randn(2, 14, 17, 16)  # not a multiple of the window: padded inside
    with torch.inference_mode():
        _close(block(x), holder(x))


def test_only_standard_blocks_are_replaced_and_a_second_run_changes_nothing():
    tanh = _cnblock()
    tanh.block[4] = nn.GELU(approximate="tanh")  # not the erf GELU oneDNN's post-op runs
    v2 = _randomize(SwinTransformerBlockV2(16, 2, window_size=[7, 7], shift_size=[0, 0]))
    model = nn.Sequential(
        nn.Sequential(_cnblock(), tanh), nn.Conv2d(16, 16, 3), _swin_block(), v2, nn.Linear(16, 4)
    )
    assert fuse_convnext_blocks(model) == ["0.0"]
    assert fuse_swin_blocks(model) == ["2"]
    assert type(model[0][1]) is CNBlock and type(model[3]) is SwinTransformerBlockV2
    assert type(model[1]) is nn.Conv2d and type(model[4]) is nn.Linear
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fuse_convnext_blocks(model) == [] and fuse_swin_blocks(model) == []
    after = model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)


@pytest.mark.parametrize("backbone", ["convnext", "swint"])
def test_optimize_for_inference_fuses_every_block_of_a_backbone(backbone):
    from posekit.architectures.convnext import ConvNeXt
    from posekit.architectures.swin import SwinT
    from posekit.optimize import optimize_for_inference

    if backbone == "convnext":
        net = ConvNeXt([1, 2, 1, 1], [8, 8, 16, 16], output_stride=2)
    else:  # Swin-T's layout at a test's size
        net = SwinT(8, [2, 2, 1, 1], [1, 2, 2, 2], window_size=4, output_stride=2)
    net = _randomize(net)
    x = torch.rand(2, 1, 64, 64)
    opt = optimize_for_inference(net, example_input=x[:1], winograd=False)
    blocks = 5 if backbone == "convnext" else 6
    assert len(opt.inference_optimizations["fused_mlps"]) == blocks
    attention = opt.inference_optimizations["window_attention"]
    assert len(attention) == (6 if backbone == "swint" else 0)
    with torch.inference_mode():
        _close(net(x), opt(x))
    again = optimize_for_inference(opt, example_input=x[:1], winograd=False)
    assert again.inference_optimizations["fused_mlps"] == []
    assert again.inference_optimizations["window_attention"] == []


def test_winograd_runs_convnext_decoders_with_fused_mlps():
    """Both rewrites on one network: the wide decoder convolutions go Winograd, the
    blocks' MLPs are fused, and the outputs stay those of the plain network."""
    from posekit.architectures.convnext import ConvNeXt
    from posekit.optimize import optimize_for_inference
    from posekit.optimize.winograd import worthwhile

    net = _randomize(ConvNeXt([1, 1, 1, 1], [64, 64, 128, 256], output_stride=2))
    x = torch.rand(2, 1, 64, 64)
    opt = optimize_for_inference(net, example_input=x[:1])
    wide = [m for m in net.modules() if isinstance(m, nn.Conv2d) and worthwhile(m)]
    assert wide and len(opt.inference_optimizations["winograd"]) == len(wide)
    assert len(opt.inference_optimizations["fused_mlps"]) == 4
    with torch.inference_mode():
        ref, got = net(x), opt(x)
    ref = ref if isinstance(ref, torch.Tensor) else ref[-1]
    got = got if isinstance(got, torch.Tensor) else got[-1]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


# (window, shift, map size, window groups): padded on one side, both or none; odd and
# non-square shifts; a side within one window (its shift dropped, as torchvision does).
# Groups: windows with the same shift mask (interior, last column, last row, corner).
ATTENTION_CASES = [
    ((7, 7), (3, 3), (14, 14), 4),
    ((7, 7), (3, 3), (15, 23), 4),
    ((7, 7), (0, 0), (13, 9), 1),
    ((7, 7), (3, 3), (5, 9), 2),
    ((4, 6), (2, 3), (9, 13), 4),
    ((5, 5), (1, 2), (11, 10), 4),
]


@pytest.mark.parametrize("window,shift,size,groups", ATTENTION_CASES, ids=str)
def test_window_attention_keeps_outputs(window, shift, size, groups):
    block = _swin_block(window=window, shift=shift)
    holder = nn.Sequential(copy.deepcopy(block))
    assert fuse_swin_blocks(holder, mlp=False) == ["0"]
    attn = holder[0].attn
    assert type(attn).__name__ == "WindowAttention" and not holder[0].fused_mlp
    for batch in (2, 1, 2):  # a second batch size, then the cached mask again
        x = torch.randn(batch, *size, 16)
        with torch.inference_mode():
            _close(block(x), holder(x))
    assert len(attn._plans) == 1  # one plan per input size, reused
    plan = next(iter(attn._plans.values()))
    # one (heads, n, n) mask per group of windows, not one per window and image
    assert sum(plan["sizes"]) == plan["src"].shape[0] and len(plan["masks"]) == groups
    n = window[0] * window[1]
    assert all(m.shape == (1, 2, n, n) for m in plan["masks"])


def test_window_attention_serves_several_sizes_and_matches_the_mlp_fused_block():
    block = _swin_block(width=32, heads=4)
    both, attention_only = nn.Sequential(copy.deepcopy(block)), nn.Sequential(copy.deepcopy(block))
    assert fuse_swin_blocks(both) == ["0"]
    assert fuse_swin_blocks(attention_only, mlp=False) == ["0"]
    assert fuse_swin_blocks(nn.Sequential(copy.deepcopy(block)), mlp=False, attention=False) == []
    onednn = _modules.linear_pointwise_op() is not None
    if onednn:
        both[0].attn._op = _Counting(both[0].attn._op)
    for size in ((14, 14), (8, 19), (14, 14), (21, 16)):
        x = torch.randn(2, *size, 32)
        with torch.inference_mode():
            want = block(x)
            _close(want, both(x))
            _close(want, attention_only(x))
    assert len(both[0].attn._plans) == 3
    if onednn:  # qkv and the output Linear (+ residual) as oneDNN calls, every time
        assert both[0].attn._op.calls == 2 * 4


def test_window_attention_in_bfloat16():
    from posekit.optimize import bf16_support

    support = bf16_support()
    if not support.runs:
        pytest.skip(support.reason)
    block = _swin_block(width=32, heads=2)
    holder = nn.Sequential(copy.deepcopy(block))
    fuse_swin_blocks(holder)
    x = torch.randn(2, 15, 12, 32)
    with torch.inference_mode():
        want = block.to(torch.bfloat16)(x.bfloat16()).float()
        got = holder.to(torch.bfloat16)(x.bfloat16()).float()
        exact = holder.float()(x)  # the float32 rewrite stays within bf16's rounding
    scale = float(want.abs().max())
    assert float((want - got).abs().max()) <= 0.05 * scale
    assert float((exact - got).abs().max()) <= 0.05 * scale


def test_optimized_swin_backbone_keeps_outputs_at_sizes_that_pad_and_shift():
    from posekit.architectures.swin import SwinT
    from posekit.optimize import optimize_for_inference

    # window 7: stage maps 32x48, 16x24, 8x12, 4x6 (64x96) or 48x80 ... 6x10 (96x160),
    # padded to whole windows; shifted blocks in every stage with two blocks
    net = _randomize(SwinT(8, [2, 2, 2, 1], [1, 2, 2, 2], window_size=7, output_stride=2))
    x = torch.rand(2, 1, 64, 96)
    opt = optimize_for_inference(net, example_input=x[:1])
    assert len(opt.inference_optimizations["window_attention"]) == 7
    for size in ((64, 96), (96, 160)):
        x = torch.rand(2, 1, *size)
        with torch.inference_mode():
            _close(net(x), opt(x))
