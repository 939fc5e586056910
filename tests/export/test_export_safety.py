"""Failed or wrong exports leave nothing broken behind, and bad options say what is wrong."""

from __future__ import annotations

import os

import pytest
import torch
from _export_models import single_instance_model

from posekit.errors import PosekitError


def test_failed_export_leaves_the_old_file_and_no_temporaries(tmp_path, monkeypatch):
    from posekit.export import export_onnx

    model = single_instance_model()
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old model")

    def broken(*args, **kwargs):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(PosekitError, match="simulated exporter crash"):
        export_onnx(model, target, verify=False)
    assert target.read_bytes() == b"old model"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_verification_catches_a_wrong_graph(tmp_path, monkeypatch):
    """The built-in check compares onnxruntime with PyTorch and refuses a mismatch."""
    pytest.importorskip("onnxruntime")
    from posekit.export import onnx as onnx_export

    model = single_instance_model()
    real_compare = onnx_export.compare

    def tampered(names, ref, got, *args):
        got = [g + 1e-2 for g in got]
        return real_compare(names, ref, got, *args)

    monkeypatch.setattr(onnx_export, "compare", tampered)
    with pytest.raises(PosekitError, match="differs from PyTorch"):
        onnx_export.export_onnx(model, tmp_path / "m.onnx", input_shape=(32, 32))
    assert not (tmp_path / "m.onnx").exists()
    assert not (tmp_path / "m.onnx.json").exists()


def test_verify_true_without_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    from posekit.export import export_onnx

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(PosekitError, match=r"onnxruntime.*posekit\[export\]"):
        export_onnx(single_instance_model(), tmp_path / "m.onnx", verify=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opset": 16}, "opset=16"),
        ({"refinement": "local"}, "refinement='local'"),
        ({"max_peaks": 0}, "max_peaks=0"),
        ({"input_shape": (32,)}, "input_shape"),
    ],
)
def test_bad_options_raise_clear_errors(tmp_path, kwargs, message):
    from posekit.export import export_onnx

    with pytest.raises(PosekitError, match=message.replace("[", r"\[")):
        export_onnx(single_instance_model(), tmp_path / "m.onnx", verify=False, **kwargs)
