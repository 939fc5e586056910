"""The JSON contract written beside (and inside) exported files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _export_models import (
    PARTS,
    make_model,
    max_err,
    multi_instance_model,
    ort_session,
    single_instance_model,
    smooth_frames,
    torch_outputs,
)

from posekit.errors import PosekitError


def _evaluate_dim(dim, sizes: dict[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    name, _, div = dim.partition("/")
    return sizes[name] // int(div) if div else sizes[name]


def test_sidecar_json_describes_the_outputs(tmp_path):
    from posekit.export import export_onnx, load_contract, sidecar_path

    model = multi_instance_model()
    path = export_onnx(model, tmp_path / "net.onnx", input_shape=(32, 32), verify=False)
    side = sidecar_path(path)
    assert side.name == "net.onnx.json"
    contract = json.loads(side.read_text())
    assert contract == load_contract(path)
    assert contract["part_names"] == PARTS
    assert contract["edges"] == [["head", "thorax"], ["thorax", "tail"]]
    assert contract["strides"] == {"MultiInstanceConfmapsHead": 2, "PartAffinityFieldsHead": 4}
    assert contract["input_scale"] == 1.0 and contract["max_stride"] == 8
    (inp,) = contract["inputs"]
    assert inp["name"] == "image" and inp["dtype"] == "float32"
    assert inp["shape"] == ["batch", 1, "height", "width"]

    session = ort_session(path)
    assert [o["name"] for o in contract["outputs"]] == [o.name for o in session.get_outputs()]
    x = np.random.default_rng(0).random((2, 1, 48, 64), dtype=np.float32)
    got = session.run(None, {"image": x})
    sizes = {"batch": 2, "height": 48, "width": 64}
    for spec, arr in zip(contract["outputs"], got):
        assert [_evaluate_dim(d, sizes) for d in spec["shape"]] == list(arr.shape)
        assert spec["dtype"] == str(arr.dtype)
        assert len(spec["channels"]) == arr.shape[1]
    paf = contract["outputs"][1]
    assert paf["channels"][:2] == ["head-thorax_x", "head-thorax_y"]


def test_contract_of_postprocessed_export_and_torchscript_extra_file(tmp_path):
    from posekit.export import export_torchscript
    from posekit.export.contract import TORCHSCRIPT_EXTRA_FILE

    model = single_instance_model(scale=0.5)
    path = export_torchscript(model, tmp_path / "m.pt", include_postprocessing=True)
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    contract = json.loads(extra[TORCHSCRIPT_EXTRA_FILE])
    assert contract == json.loads((tmp_path / "m.pt.json").read_text())
    assert contract["includes_preprocessing"] and contract["includes_postprocessing"]
    assert contract["input_scale"] == 0.5
    assert contract["inputs"][0]["dtype"] == "uint8"
    assert contract["inputs"][0]["shape"] == ["batch", "frame_height", "frame_width", 1]
    assert contract["postprocessing"]["refinement"] == "offsets"
    names = [o["name"] for o in contract["outputs"]]
    assert names == ["peaks", "peak_values"]  # the offset head is consumed
    frames = torch.from_numpy(smooth_frames(2, 45, 61))
    pts, vals = loaded(frames)
    assert list(pts.shape) == [2, 3, 2] and list(vals.shape) == [2, 3]
    assert contract["outputs"][0]["shape"] == ["batch", 3, 2]


def test_flattening_class_vectors_head_fixes_the_image_size(tmp_path):
    from posekit.config.model import (
        CenteredInstanceConfmapsHeadConfig,
        ClassVectorsHeadConfig,
        HeadsConfig,
        MultiClassTopDownConfig,
        UNetConfig,
    )
    from posekit.export import export_onnx

    heads = HeadsConfig(
        multi_class_topdown=MultiClassTopDownConfig(
            confmaps=CenteredInstanceConfmapsHeadConfig(part_names=PARTS, output_stride=2),
            class_vectors=ClassVectorsHeadConfig(
                classes=["a", "b"], global_pool=False, num_fc_units=8, output_stride=8
            ),
        )
    )
    unet = UNetConfig(filters=4, filters_rate=1.5, max_stride=8, output_stride=2)
    model = make_model(heads, input_size=(32, 32), unet=unet)
    path = export_onnx(model, tmp_path / "m.onnx", verify=False)
    contract = json.loads((tmp_path / "m.onnx.json").read_text())
    assert contract["inputs"][0]["shape"] == ["batch", 1, 32, 32]
    session = ort_session(path)
    x = torch.rand(3, 1, 32, 32)
    for r, g in zip(torch_outputs(model, x), session.run(None, {"image": x.numpy()})):
        assert max_err(r, g) < 1e-4
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
        session.run(None, {"image": torch.rand(1, 1, 40, 32).numpy()})
    with pytest.raises(PosekitError, match=r"flattens its feature.*\(32, 32\)"):
        export_onnx(model, tmp_path / "bad.onnx", input_shape=(40, 32), verify=False)
