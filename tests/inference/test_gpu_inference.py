"""The CUDA code paths of prediction, compared with the CPU: pinned frame buffers and
asynchronous copies, fp16/bf16 autocast, torch.compile, onnxruntime's CUDA provider, the
memory budget from free GPU memory. They run where a CUDA GPU is present
(``benchmarks/gpu_check.sh`` runs them with the speed tables) and skip elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _inference_fakes import tiny_bottomup

from posekit.inference.runtime import make_runner
from posekit.model.network import Model

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_check.sh there)"
)


def bottomup(seed: int = 0) -> Model:
    return tiny_bottomup(filters=8, max_stride=16, in_channels=1, seed=seed, random_biases=True)


@pytest.fixture(autouse=True)
def no_tf32(monkeypatch):
    """Full float32 on the GPU (no TF32 convolutions): CUDA and CPU agree to ~1e-6, so
    a peak never flips across the threshold between them."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def outputs(model, x, device, precision="fp32", runtime="torch"):
    runner = make_runner(model.to(device), device=device, precision=precision, runtime=runtime)
    with torch.inference_mode():
        out = runner(x.to(device))
    return {k: v.float().cpu() for k, v in out.items()}


def relative_error(a: dict, b: dict) -> float:
    scale = max(float(v.abs().max()) for v in b.values())
    return max(float((a[k] - b[k]).abs().max()) for k in b) / scale


@pytest.fixture
def frames():
    """Four 96 x 128 grayscale frames with bright blobs (uint8, as decoded)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 40, (4, 96, 128, 1), dtype=np.uint8)
    yy, xx = np.mgrid[0:96, 0:128]
    for i in range(4):
        for cx, cy in ((30 + 5 * i, 40), (90, 50 + 3 * i)):
            img[i, ((xx - cx) ** 2 + (yy - cy) ** 2) < 36, 0] = 220
    return img


def test_fp32_on_cuda_equals_the_cpu():
    model = bottomup()
    x = torch.rand(2, 1, 64, 96)
    cpu = outputs(bottomup(), x, "cpu")
    assert relative_error(outputs(model, x, "cuda"), cpu) < 1e-4


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_autocast_on_cuda_is_close_to_the_cpu(precision):
    x = torch.rand(2, 1, 64, 96)
    cpu = outputs(bottomup(), x, "cpu")
    runner = make_runner(bottomup().to("cuda"), device="cuda", precision=precision)
    with torch.inference_mode():
        out = {k: v.cpu() for k, v in runner(x.to("cuda")).items()}
    expected = torch.float16 if precision == "fp16" else torch.bfloat16
    assert runner._autocast == expected  # autocast on GPUs, not cast weights
    assert all(v.dtype == torch.float32 for v in out.values())
    assert 0 < relative_error(out, cpu) < (0.01 if precision == "fp16" else 0.03)


def test_compile_on_cuda_equals_eager():
    pytest.importorskip("triton", reason="torch.compile on CUDA needs triton")
    import torch._dynamo

    torch._dynamo.reset()
    x = torch.rand(3, 1, 64, 96)
    eager = outputs(bottomup(), x, "cuda")
    assert relative_error(outputs(bottomup(), x, "cuda", runtime="compile"), eager) < 1e-3


def test_onnx_cuda_provider_equals_the_cpu():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without its CUDA provider (pip install onnxruntime-gpu)")
    x = torch.rand(2, 1, 64, 96)
    model = bottomup()
    runner = make_runner(model.to("cuda"), device="cuda", runtime="onnx")
    got = {k: v.float().cpu() for k, v in runner(x.to("cuda")).items()}
    assert runner._session.get_providers()[0] == "CUDAExecutionProvider"
    assert relative_error(got, outputs(bottomup(), x, "cpu")) < 5e-3


def test_predictions_on_cuda_match_the_cpu_with_pinned_buffers(frames, monkeypatch):
    from posekit.inference.predictors.bottomup import BottomUpPredictor
    from posekit.inference.predictors.pipeline import BufferPool

    pinned = []
    new = BufferPool._new

    def record(self, shape):
        buf = new(self, shape)
        pinned.append(torch.from_numpy(buf).is_pinned())
        return buf

    monkeypatch.setattr(BufferPool, "_new", record)
    points = {}
    for device in ("cpu", "cuda"):
        pinned.clear()
        pred = BottomUpPredictor(
            bottomup(),
            device=device,
            progress=False,
            peak_threshold=0.1,
            batch_size=2,
            min_line_scores=-10.0,  # this untrained model's PAFs: keep every peak
        )
        labels = pred.predict(frames)
        assert pinned and all(pinned) == (device == "cuda")  # page-locked on CUDA only
        # every peak of a frame, whichever instance grouping put it in
        points[device] = []
        for lf in labels.labeled_frames:
            pts = np.concatenate([i.numpy() for i in lf.instances])
            pts = pts[~np.isnan(pts).any(axis=1)]
            points[device].append(pts[np.lexsort((pts[:, 1], pts[:, 0]))])
    assert sum(len(p) for p in points["cpu"]) > 100  # ~70 instances per frame here (CPU)
    for a, b in zip(points["cuda"], points["cpu"]):
        assert a.shape == b.shape and np.allclose(a, b, atol=0.01)


def test_batch_budget_reads_free_gpu_memory_and_reports_the_gpu_peak():
    from posekit.inference.memory import DEFAULT_FRACTION, available_memory, peak_memory
    from posekit.inference.predictors.bottomup import BottomUpPredictor

    free, _ = torch.cuda.mem_get_info()
    assert abs(available_memory("cuda") - free) < 0.1 * free
    pred = BottomUpPredictor(bottomup(), device="cuda", progress=False)
    cost = pred.frame_cost()
    assert cost.per_pixel > 0
    uhd = (2160, 3840, 1)
    pred.max_memory = int(cost.fixed + 1.5 * cost.frame_bytes(uhd))
    assert pred.plan_batch(uhd) == 1 and pred.plan_batch((256, 256, 1)) == 4
    assert DEFAULT_FRACTION["cuda"] == 0.8
    torch.cuda.reset_peak_memory_stats()
    pred.predict(np.zeros((2, 256, 256, 1), np.uint8))
    peak, what = peak_memory("cuda")
    assert what == "GPU memory" and peak > 0
