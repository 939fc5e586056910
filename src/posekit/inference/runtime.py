"""How a network runs inside a predictor: runtime (PyTorch or ONNX Runtime) x precision.

Predictors never call a `Model` directly; they call the runner `make_runner` returns,
which takes a preprocessed float32 NCHW batch and returns ``{head name: float32 map}``,
whatever runs underneath. That keeps one inference loop for every engine and makes
"same results" testable: a runner is compared against the eager model on the same input.

Runtimes:

- ``torch`` (default): the model after `posekit.optimize.optimize_for_inference`
  (BatchNorm folded into convolutions, ReLUs fused into them, channels-last; on CPUs
  also transposed convolutions as sub-pixel convolutions and wide 3x3 convolutions as
  Winograd F(4x4, 3x3)), `torch.inference_mode`. Outputs equal the eager model's to
  float32 rounding (Winograd layers: ~1e-5 relative).
- ``onnx``: the model exported with `posekit.export.onnx.export_onnx` (dynamic batch and
  size, BatchNorm folded) into a temporary file and run by onnxruntime (the ``export``
  extra), on CUDA when the device is CUDA and onnxruntime has that provider. This is the
  path a deployed model takes, so predicting with it checks the export end to end.
- ``compile``: the ``torch`` model again, compiled by `torch.compile` (inductor) with
  its weights frozen, which lets inductor keep the weights pre-packed for oneDNN and
  fuse pooling, concatenation and activations. Measured on this project's 2-core CPU:
  0.99-1.42x the frames/s of ``torch`` (median 1.13x over SLEAP's profiles), after a
  15-60 s compile on the first batch; worth trying for long videos, not for a few
  frames. Needs a C++ compiler on CPUs (inductor
  generates C++). Every batch is padded to the first batch's size, so the network is
  compiled once per image size (top-down crops vary in number from frame to frame).

On CPUs the ``torch`` and ``compile`` runners also make malloc keep freed memory
(`posekit.optimize.allocator`): a full-frame network's 25-100 MiB activations are then
reused from batch to batch instead of being mapped and zero-filled anew.

Precisions (``torch`` runtime):

- ``fp32``: float32 throughout.
- ``bf16``: weights and activations in bfloat16 (the model is cast, not autocast: on
  CPUs with AVX512-BF16/AMX, oneDNN then runs every convolution natively in bf16, while
  autocast re-casts the float32 weights at every call). On CUDA, bf16 autocast. Maps are
  returned in float32, so peak refinement keeps its precision.
- ``fp16``: CUDA and MPS only (float16 autocast); CPUs have no fast float16 path, use
  bf16 there.
- ``int8``: CPU only, through onnxruntime (the ``export`` extra) whatever the runtime:
  the exported graph is statically quantized (int8 per-channel weights, uint8
  activations, QDQ), calibrated on the first batch the predictor sees. PyTorch's own
  int8 path (``torch.ao`` FX quantization) is deprecated and cannot trace the
  shape-dependent "same" padding of SLEAP's layers. See the README for the accuracy
  measured on the reference models before relying on it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from posekit.errors import PosekitError

RUNTIMES = ("torch", "compile", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def check_runtime_options(runtime: str, precision: str, device: str) -> None:
    """Raise one clear error for a runtime/precision/device combination that cannot run."""
    kind = str(device).split(":")[0]
    if runtime not in RUNTIMES:
        raise PosekitError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if precision not in PRECISIONS:
        raise PosekitError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if runtime == "onnx" and precision not in ("fp32", "int8"):
        raise PosekitError(
            f"--runtime onnx runs fp32 or int8; got --precision {precision}. Use "
            f"--runtime torch for {precision}"
        )
    if runtime == "compile" and precision == "int8":
        raise PosekitError(
            "--runtime compile runs fp32, bf16 or fp16; int8 runs through onnxruntime: "
            "use --runtime onnx --precision int8"
        )
    if precision == "fp16" and kind == "cpu":
        raise PosekitError(
            "fp16 inference needs a GPU (CUDA or MPS); on a CPU use --precision bf16 "
            "(native on CPUs with AVX512-BF16 or AMX) or fp32"
        )
    if precision == "int8" and kind != "cpu":
        raise PosekitError(
            f"int8 inference runs on the CPU only (device {device!r}); use --precision fp16 "
            "or bf16 on a GPU"
        )
    if runtime == "onnx" or precision == "int8":
        _import_onnxruntime()


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise PosekitError(
            "--runtime onnx needs onnxruntime: pip install 'posekit[export]' "
            "(or onnxruntime-gpu for CUDA)"
        ) from err
    return onnxruntime


def _as_float_maps(out: dict) -> dict:
    return {k: v.float().contiguous() for k, v in out.items()}


class TorchRunner:
    """`optimize_for_inference(model)` at the requested precision (built on first call).

    With ``compile=True`` the optimized network is also compiled by `torch.compile`
    (inductor, frozen weights, static shapes) on the first call; later batches are
    padded to that batch size, or split, so one compiled graph serves every batch.
    """

    def __init__(self, model, precision: str = "fp32", compile: bool = False):
        self.model = model
        self.precision = precision
        self.compile = bool(compile)
        self._net = None
        self._input_dtype = None  # cast the input to this (bf16 weights on CPU)
        self._autocast = None  # or run under autocast with this dtype (GPUs)
        self._batch = None  # the compiled batch size

    def _build(self, x) -> None:
        import torch

        from posekit.model.network import Model
        from posekit.optimize import optimize_for_inference

        kind = x.device.type
        if kind == "cpu":
            from posekit.optimize.allocator import keep_freed_memory

            keep_freed_memory()  # full-frame activations reused, not re-faulted, per batch
        if not isinstance(self.model, Model):
            self._net = self.model  # wrappers and test doubles run as given, in float32
        else:
            # torch.compile fuses activations itself (and better: weights pre-packed);
            # Winograd layers are float32-only (bf16 would lose the transforms' precision)
            self._net = optimize_for_inference(
                self.model,
                example_input=x[:1],
                fuse_relu=not self.compile,
                fuse_mlps=not self.compile,
                window_attention=not self.compile,
                winograd=self.precision == "fp32",
            )
            if self.precision == "bf16" and kind == "cpu":
                self._net.to(torch.bfloat16)
                self._input_dtype = torch.bfloat16
            elif self.precision in ("bf16", "fp16"):
                self._autocast = torch.bfloat16 if self.precision == "bf16" else torch.float16
        if self.compile:
            self._batch = int(x.shape[0])
            self._net = torch.compile(self._net, dynamic=False, options={"freezing": True})

    def _run(self, x) -> dict:
        import torch

        if self._input_dtype is not None:
            return _as_float_maps(self._net(x.to(self._input_dtype)))
        if self._autocast is not None:
            with torch.autocast(device_type=x.device.type, dtype=self._autocast):
                return _as_float_maps(self._net(x))
        return _as_float_maps(self._net(x))

    def _run_compiled(self, x) -> dict:
        """Run in chunks of exactly the compiled batch size (zero-padding the last).

        Each chunk is copied into a fresh inference-mode tensor: the compiled graph is
        guarded on its input's exact kind, and a caller's tensor made outside inference
        mode would otherwise trigger a second compile.
        """
        import torch

        n, size = int(x.shape[0]), self._batch
        parts = []
        with torch.inference_mode():
            for start in range(0, n, size):
                chunk = x[start : start + size]
                batch = chunk.new_zeros((size, *chunk.shape[1:]))
                batch[: chunk.shape[0]] = chunk
                parts.append(self._run(batch))
        return {
            k: torch.cat([p[k] for p in parts])[:n] if len(parts) > 1 else parts[0][k][:n]
            for k in parts[0]
        }

    def __call__(self, x) -> dict:
        first = self._net is None
        if first:
            self._build(x)
        if not self.compile:
            return self._run(x)
        if not first:
            return self._run_compiled(x)
        try:
            return self._run_compiled(x)
        except Exception as err:  # noqa: BLE001 - any compiler failure gets one message
            raise PosekitError(
                f"torch.compile could not compile the network ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no message'}). "
                "On a CPU inductor needs a working C++ compiler (gcc or clang); "
                "run with --runtime torch instead"
            ) from err


class OnnxRunner:
    """The model exported to ONNX (temporary file) and run by onnxruntime.

    With ``int8=True`` the exported graph is quantized before the session starts:
    onnxruntime's static quantization (QDQ format, int8 per-channel weights, uint8
    activations), calibrated on the first batch the runner sees.
    """

    def __init__(self, model, device: str = "cpu", int8: bool = False):
        self.model = model
        self.device = device
        self.int8 = int8
        self._session = None
        self._names: list[str] = []
        self._input = "image"
        self._tmp: tempfile.TemporaryDirectory | None = None

    def _build(self, x):
        import torch

        from posekit.export.onnx import export_onnx

        ort = _import_onnxruntime()
        self._tmp = tempfile.TemporaryDirectory(prefix="posekit-onnx-")
        path = Path(self._tmp.name) / "model.onnx"
        export_onnx(self.model, path, input_shape=tuple(x.shape[-2:]), verify=False)
        if self.int8:
            path = _quantize_onnx(path, x)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        # Idle onnxruntime threads spin by default, taking the cores the video reader
        # and peak finding need between forward passes (measured: e2e fps halved).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda") and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._names = [o.name for o in self._session.get_outputs()]

    def __call__(self, x) -> dict:
        import numpy as np
        import torch

        if self._session is None:
            self._build(x)
        feed = {self._input: np.ascontiguousarray(x.detach().float().cpu().numpy())}
        outs = self._session.run(self._names, feed)
        return {n: torch.from_numpy(o).to(x.device) for n, o in zip(self._names, outs)}


def _quantize_onnx(path: Path, calibration) -> Path:
    """Static int8 quantization of the ONNX file at `path`, calibrated on one batch."""
    import numpy as np
    import onnx
    from onnxruntime import quantization as q

    batch = np.ascontiguousarray(calibration.detach().float().cpu().numpy())

    class OneBatch(q.CalibrationDataReader):
        def __init__(self, name):
            self.items = iter([{name: batch}])

        def get_next(self):
            return next(self.items, None)

    name = onnx.load(str(path), load_external_data=False).graph.input[0].name
    out = path.with_name("model.int8.onnx")
    q.quantize_static(
        str(path),
        str(out),
        OneBatch(name),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
    )
    return out


def make_runner(model, *, device: str = "cpu", precision: str = "fp32", runtime: str = "torch"):
    """A callable running `model` on preprocessed batches -> ``{head name: float32 map}``."""
    check_runtime_options(runtime, precision, device)
    if precision == "bf16":
        from posekit.optimize import usable_bf16

        precision = "bf16" if usable_bf16(device) else "fp32"
    if runtime == "onnx" or precision == "int8":
        return OnnxRunner(model, device=device, int8=precision == "int8")
    return TorchRunner(model, precision=precision, compile=runtime == "compile")


__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "OnnxRunner",
    "TorchRunner",
    "check_runtime_options",
    "make_runner",
]
