"""bfloat16 asked for on a CPU that cannot run it (AVX2-only CPUs: no oneDNN bf16 path).

posekit's answer: the work runs in float32 with one warning saying why. The CPU kind is
simulated two ways: `POSEKIT_CPU_BF16=0` (the capability check forced off, in-process) and
oneDNN limited to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`, in a subprocess), which makes torch
refuse bf16 convolutions exactly as an AVX2-only CPU does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from fault_helpers import need_shared

from posekit.optimize import autocast


@pytest.fixture
def no_bf16(monkeypatch):
    """This process behaves as on a CPU without bfloat16."""
    monkeypatch.setenv(autocast.BF16_ENV, "0")
    autocast.bf16_support.cache_clear()
    yield
    autocast.bf16_support.cache_clear()


def test_forced_off_capability_says_no_and_why(no_bf16):
    from posekit.training.hardware import detect_hardware

    support = autocast.bf16_support()
    assert not support.runs and not support.native
    assert autocast.BF16_ENV in support.reason
    assert not autocast.cpu_supports_bf16() and not autocast.cpu_runs_bf16()
    assert detect_hardware("cpu").bf16 is False  # so --auto never plans bf16-mixed


def test_a_failing_probe_means_no_bf16(monkeypatch):
    message = "mkldnn_convolution: bf16 path needs the cpu support avx512bw"
    monkeypatch.delenv(autocast.BF16_ENV, raising=False)  # the probe, not the switch, answers
    monkeypatch.setattr(autocast, "_probe_bf16", lambda: message)
    autocast.bf16_support.cache_clear()
    try:
        support = autocast.bf16_support()
        assert not support.runs and message in support.reason
    finally:
        autocast.bf16_support.cache_clear()


def test_bf16_runner_falls_back_to_float32_with_one_warning(no_bf16, single_instance_unet):
    from posekit.inference.runtime import make_runner

    model = single_instance_unet(parts=("a", "b"), filters=8, max_stride=8)
    x = torch.rand(2, 1, 32, 32)
    with pytest.warns(UserWarning, match="running in float32 instead") as caught:
        runner = make_runner(model, device="cpu", precision="bf16")
    assert len(caught) == 1
    reference = make_runner(model, device="cpu", precision="fp32")
    with torch.inference_mode():
        out, ref = runner(x), reference(x)
    assert {p.dtype for p in runner._net.parameters()} == {torch.float32}
    for name in ref:
        assert torch.equal(out[name], ref[name])  # the float32 path itself, not an approximation


def test_resolve_precision_and_training_precision_fall_back(no_bf16):
    from posekit.training.hardware import runnable_precision

    with pytest.warns(UserWarning, match="POSEKIT_CPU_BF16"):
        assert autocast.resolve_precision("bf16", "cpu") == "float32"
    with pytest.warns(UserWarning, match="--precision bf16-mixed"):
        assert runnable_precision("bf16-mixed", "cpu") == "32-true"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say for float32 or a GPU's bf16
        assert runnable_precision("32-true", "cpu") == "32-true"
        assert autocast.resolve_precision("bf16", "cuda") == "bfloat16"


def test_predict_cli_with_bf16_on_such_a_cpu_writes_float32_points(no_bf16, run_cli, tmp_path):
    import sleap_io as sio

    model = need_shared("sleap_models", "minimal_instance.UNet.bottomup")
    source = need_shared("data", "minimal", "minimal_instance.pkg.slp")
    points = {}
    for precision in ("bf16", "fp32"):
        out = tmp_path / f"{precision}.slp"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, _, err = run_cli(
                "predict", model, source, "-o", out, "--device", "cpu", "--precision", precision
            )
        assert code == 0 and "Traceback" not in err, err
        said = [str(w.message) for w in caught if "float32 instead" in str(w.message)]
        assert len(said) == (1 if precision == "bf16" else 0), said
        labels = sio.load_slp(str(out))
        points[precision] = np.stack(
            [i.numpy() for lf in labels for i in lf.instances if type(i).__name__ != "Instance"]
        )
    np.testing.assert_array_equal(points["bf16"], points["fp32"])


def test_the_cli_prints_posekits_warnings_as_one_line():
    from posekit.cli import _format_warning

    line = _format_warning("bf16: no; running in float32", UserWarning, "/x/posekit/a.py", 3)
    assert line == "posekit: warning: bf16: no; running in float32\n"
    other = _format_warning("deprecated", DeprecationWarning, "/x/lightning/a.py", 3, "x = 1")
    assert "lightning/a.py:3" in other  # other libraries' warnings keep Python's format


def test_onednn_limited_to_avx2_is_detected_like_an_avx2_cpu(single_instance_unet, tmp_path):
    """oneDNN capped at AVX2 refuses bf16 convolutions as an AVX2-only EPYC does; the probe
    must see that (a flag list would not), and a bf16 runner must still predict."""
    from posekit.model.folder import save_model

    folder = save_model(
        single_instance_unet(parts=("a", "b"), filters=8, max_stride=8), tmp_path / "model"
    )
    code = (
        "import warnings, torch\n"
        "from posekit.optimize.autocast import bf16_support\n"
        "from posekit.inference.runtime import make_runner\n"
        "s = bf16_support()\n"
        "assert not s.runs, s\n"
        "assert 'bf16' in s.reason or 'bfloat16' in s.reason, s\n"
        "import posekit\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    r = make_runner(posekit.load_model({str(folder)!r}), device='cpu', precision='bf16')\n"
        "with torch.inference_mode():\n"
        "    out = r(torch.rand(1, 1, 32, 32))\n"
        "assert len(w) == 1 and all(v.dtype == torch.float32 for v in out.values())\n"
        "print('ok')\n"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    env.pop(autocast.BF16_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
