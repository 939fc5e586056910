"""ONNX / TorchScript export: exported graphs compute what the PyTorch model computes.

Exports are checked here with onnxruntime / torch.jit directly (`verify=False` keeps the
exporter's own check out of the way), at two input sizes so dynamic shapes are exercised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MODELS = SHARED / "sleap_models"
needs_shared = pytest.mark.skipif(not MODELS.exists(), reason="../shared is absent")
PARTS = ["head", "thorax", "tail"]


# --------------------------------------------------------------------------- helpers


def _job(heads, unet=None, scale: float = 1.0):
    from posekit.config.job import TrainingJobConfig
    from posekit.config.model import BackboneConfig, ModelConfig, UNetConfig

    unet = unet or UNetConfig(filters=4, filters_rate=1.5, max_stride=8, output_stride=2)
    job = TrainingJobConfig(model=ModelConfig(backbone=BackboneConfig(unet=unet), heads=heads))
    job.data.preprocessing.input_scaling = scale
    return job


def _model(heads, seed: int = 0, scale: float = 1.0, input_size=None, unet=None):
    """A tiny randomly initialised UNet model with its job config attached."""
    from posekit.model.network import Model

    torch.manual_seed(seed)
    job = _job(heads, unet=unet, scale=scale)
    model = Model.from_config(job.model, in_channels=1, input_size=input_size)
    # Non-zero biases so that outputs are not trivially symmetric.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(-0.2, 0.2)
    model.config = job
    return model.eval()


def _single_instance_model(scale: float = 1.0):
    from posekit.config.model import HeadsConfig, SingleInstanceConfmapsHeadConfig

    heads = HeadsConfig(
        single_instance=SingleInstanceConfmapsHeadConfig(
            part_names=PARTS, output_stride=2, offset_refinement=True
        )
    )
    return _model(heads, scale=scale)


def _multi_instance_model():
    from posekit.config.model import (
        HeadsConfig,
        MultiInstanceConfig,
        MultiInstanceConfmapsHeadConfig,
        PartAffinityFieldsHeadConfig,
    )

    heads = HeadsConfig(
        multi_instance=MultiInstanceConfig(
            confmaps=MultiInstanceConfmapsHeadConfig(part_names=PARTS, output_stride=2),
            pafs=PartAffinityFieldsHeadConfig(
                edges=[("head", "thorax"), ("thorax", "tail")], output_stride=4
            ),
        )
    )
    return _model(heads, seed=1)


def _ort_session(path: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_outputs(model, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(x)
    return [out[h.name].numpy() for h in model.heads]


def _max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def _frames(n: int, h: int, w: int, c: int = 1, seed: int = 0) -> np.ndarray:
    """Smooth-ish uint8 frames (blurred noise) so maps have clear maxima."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=gen)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2)
    x = (x - x.amin()) / (x.amax() - x.amin())
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# --------------------------------------------------------------------------- network only


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_network_export_matches_pytorch_at_two_sizes(tmp_path, fmt):
    from posekit.export.core import export_onnx, export_torchscript

    model = _single_instance_model()
    sizes = [(1, 32, 48), (3, 56, 40)]
    if fmt == "onnx":
        path = export_onnx(model, tmp_path / "m.onnx", input_shape=(32, 48), verify=False)
        session = _ort_session(path)
        assert [o.name for o in session.get_outputs()] == [
            "SingleInstanceConfmapsHead",
            "OffsetRefinementHead",
        ]

        def run(x):
            return session.run(None, {"image": x.numpy()})
    else:
        path = export_torchscript(model, tmp_path / "m.pt", input_shape=(32, 48), verify=False)
        loaded = torch.jit.load(str(path))

        def run(x):
            with torch.no_grad():
                return [o.numpy() for o in loaded(x)]

    for n, h, w in sizes:
        x = torch.rand(n, 1, h, w)
        ref = _torch_outputs(model, x)
        got = run(x)
        assert [g.shape for g in got] == [(n, 3, h // 2, w // 2), (n, 6, h // 2, w // 2)]
        for r, g in zip(ref, got):
            assert _max_err(r, g) < 1e-4


@needs_shared
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_imported_sleap_model_exports_with_dynamic_shapes(tmp_path, fmt):
    import posekit
    from posekit.export.core import export_onnx, export_torchscript

    # Three heads at two strides (confmaps and offsets at 2, PAFs at 4).
    model = posekit.load_model(MODELS / "minimal_instance.UNet.bottomup")
    if fmt == "onnx":
        session = _ort_session(
            export_onnx(model, tmp_path / "m.onnx", input_shape=(32, 48), verify=False)
        )

        def run(x):
            return session.run(None, {"image": x.numpy()})
    else:
        loaded = torch.jit.load(
            str(export_torchscript(model, tmp_path / "m.pt", input_shape=(32, 48), verify=False))
        )

        def run(x):
            with torch.no_grad():
                return [o.numpy() for o in loaded(x)]

    gen = torch.Generator().manual_seed(3)
    for shape in [(1, 1, 32, 48), (2, 1, 56, 32)]:
        x = torch.rand(*shape, generator=gen)
        ref = _torch_outputs(model, x)
        got = run(x)
        assert [g.shape[2:] for g in got] == [r.shape[2:] for r in ref]
        assert ref[1].shape[2] == shape[2] // 4  # the PAF head really is at stride 4
        for r, g in zip(ref, got):
            assert _max_err(r, g) < 1e-4


def test_batchnorm_is_folded_in_the_export_and_outputs_still_match(tmp_path):
    """A ResNet + transposed-conv decoder full of conv -> BN pairs, with real statistics."""
    from posekit.architectures.resnet import ResNetv1
    from posekit.config.model import UpsamplingConfig
    from posekit.export.core import build_export_module, export_onnx
    from posekit.heads import SingleInstanceConfmapsHead
    from posekit.model.network import Model

    torch.manual_seed(0)
    stacks = [
        dict(filters=4, blocks=1, stride1=1, name="conv2"),
        dict(filters=6, blocks=1, stride1=2, name="conv3"),
    ]
    up = UpsamplingConfig(method="transposed_conv", filters=6, refine_convs=1, batch_norm=True)
    backbone = ResNetv1(stack_configs=stacks, upsampling=up, max_stride=8, output_stride=4)
    model = Model(backbone, [SingleInstanceConfmapsHead(4, 1.0, 5.0, PARTS)], "single_instance")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
    model.eval()
    exported = build_export_module(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in exported.modules())
    session = _ort_session(
        export_onnx(model, tmp_path / "r.onnx", input_shape=(32, 32), verify=False)
    )
    for shape in [(1, 1, 32, 32), (2, 1, 48, 24)]:
        x = torch.rand(*shape)
        (ref,) = _torch_outputs(model, x)
        (got,) = session.run(None, {"image": x.numpy()})
        assert _max_err(ref, got) < 1e-4


# --------------------------------------------------------------------------- peaks


def _reference_global(model, frames: np.ndarray, threshold: float, use_offsets: bool):
    from posekit.ops.coordinates import to_image_coordinates
    from posekit.ops.peaks import find_global_peaks

    x = model.preprocess(frames)
    with torch.no_grad():
        out = model(x)
    head = model.heads[0]
    offsets = out.get("OffsetRefinementHead") if use_offsets else None
    pts, vals = find_global_peaks(out[head.name], threshold, offsets=offsets)
    return to_image_coordinates(pts, head.output_stride, model.input_scale).numpy(), vals.numpy()


def _median_peak_value(model, frames) -> float:
    """A threshold that leaves about half of the peaks valid and half NaN."""
    with torch.no_grad():
        cms = model(model.preprocess(frames))[model.heads[0].name]
    return float(cms.flatten(2).amax(-1).median())


@pytest.mark.parametrize(("scale", "use_offsets"), [(1.0, True), (0.5, False)])
def test_global_peaks_in_the_graph_equal_posekits(tmp_path, use_offsets, scale):
    from posekit.export.core import export_onnx

    model = _single_instance_model(scale=scale)
    frames = _frames(2, 70, 90, seed=1)  # not multiples of the stride: the graph pads
    threshold = _median_peak_value(model, frames)
    path = export_onnx(
        model,
        tmp_path / "m.onnx",
        input_shape=(64, 64),
        include_postprocessing=True,
        peak_threshold=threshold,
        use_offsets=use_offsets,
        verify=False,
    )
    session = _ort_session(path)
    assert session.get_inputs()[0].name == "frames"
    nan_flags = []
    for f in (frames, _frames(1, 51, 77, seed=2)):
        ref_pts, ref_vals = _reference_global(model, f, threshold, use_offsets)
        pts, vals = session.run(["peaks", "peak_values"], {"frames": f})
        assert pts.shape == (f.shape[0], 3, 2)
        np.testing.assert_array_equal(np.isnan(pts), np.isnan(ref_pts))
        nan_flags += list(np.isnan(pts[..., 0]).ravel())
        if not np.isnan(pts).all():
            assert np.nanmax(np.abs(pts - ref_pts)) < 1e-3
        assert _max_err(vals, ref_vals) < 1e-4
    assert any(nan_flags) and not all(nan_flags)  # both branches of the threshold ran


def _sorted_local(points, values, sample_inds, channel_inds, n, c, k):
    """posekit's flat local-peak list -> per (sample, channel) top-k by value."""
    out = {}
    for s in range(n):
        for ch in range(c):
            sel = (sample_inds == s) & (channel_inds == ch)
            v, p = values[sel], points[sel]
            order = np.argsort(-v, kind="stable")[:k]
            out[s, ch] = (p[order], v[order])
    return out


def test_local_peaks_in_the_graph_equal_posekits(tmp_path):
    from posekit.export.core import export_onnx
    from posekit.ops.coordinates import to_image_coordinates
    from posekit.ops.peaks import find_local_peaks

    model = _multi_instance_model()
    frames = _frames(2, 64, 80, seed=4)
    with torch.no_grad():
        out = model(model.preprocess(frames))
    cms = out["MultiInstanceConfmapsHead"]
    threshold = float(cms.quantile(0.5))
    k = 6
    path = export_onnx(
        model,
        tmp_path / "m.onnx",
        include_postprocessing=True,
        peak_threshold=threshold,
        max_peaks=k,
        verify=False,
    )
    pts, vals, pafs = _ort_session(path).run(None, {"frames": frames})
    assert pts.shape == (2, 3, k, 2) and vals.shape == (2, 3, k)
    assert _max_err(pafs, out["PartAffinityFieldsHead"].numpy()) < 1e-4

    rp, rv, rs, rc = find_local_peaks(cms, threshold)
    rp = to_image_coordinates(rp, 2, 1.0).numpy()
    ref = _sorted_local(rp, rv.numpy(), rs.numpy(), rc.numpy(), 2, 3, k)
    some_full = False
    for (s, ch), (p, v) in ref.items():
        m = len(v)
        some_full |= m == k
        np.testing.assert_allclose(vals[s, ch, :m], v, atol=1e-5)
        np.testing.assert_allclose(pts[s, ch, :m], p, atol=1e-3)
        assert np.isnan(pts[s, ch, m:]).all() and (vals[s, ch, m:] == 0).all()
    assert some_full  # the top-k cut was exercised


@needs_shared
def test_sleap_centroid_export_finds_posekits_centroids_on_a_real_frame(tmp_path):
    import posekit
    from posekit.export.core import export_torchscript
    from posekit.ops.coordinates import to_image_coordinates
    from posekit.ops.peaks import find_local_peaks

    folder = MODELS / "minimal_instance.UNet.centroid"
    model = posekit.load_model(folder)
    frame = np.load(folder / "keras_outputs.npz")["input_frame"]  # (1, 384, 384, 1) in [0, 1]
    frames = (frame * 255).round().astype(np.uint8)
    path = export_torchscript(model, tmp_path / "c.pt", include_postprocessing=True, verify=False)
    with torch.no_grad():
        pts, vals = torch.jit.load(str(path))(torch.from_numpy(frames))
        out = model(model.preprocess(frames))
    rp, rv, _, _ = find_local_peaks(
        out["CentroidConfmapsHead"], 0.2, offsets=out["OffsetRefinementHead"]
    )
    rp = to_image_coordinates(rp, 4, 1.0).numpy()
    order = np.argsort(-rv.numpy())
    n = len(order)
    assert n >= 2  # two animals in the frame
    np.testing.assert_allclose(vals[0, 0, :n].numpy(), rv.numpy()[order], atol=1e-5)
    np.testing.assert_allclose(pts[0, 0, :n].numpy(), rp[order], atol=1e-3)
    assert torch.isnan(pts[0, 0, n:]).all()


# --------------------------------------------------------------------------- contract


def _evaluate_dim(dim, sizes: dict[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    name, _, div = dim.partition("/")
    return sizes[name] // int(div) if div else sizes[name]


def test_sidecar_json_describes_the_outputs(tmp_path):
    from posekit.export.core import export_onnx, load_contract, sidecar_path

    model = _multi_instance_model()
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

    session = _ort_session(path)
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
    from posekit.export.core import TORCHSCRIPT_EXTRA_FILE, export_torchscript

    model = _single_instance_model(scale=0.5)
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
    frames = torch.from_numpy(_frames(2, 45, 61))
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
    from posekit.export.core import export_onnx

    heads = HeadsConfig(
        multi_class_topdown=MultiClassTopDownConfig(
            confmaps=CenteredInstanceConfmapsHeadConfig(part_names=PARTS, output_stride=2),
            class_vectors=ClassVectorsHeadConfig(
                classes=["a", "b"], global_pool=False, num_fc_units=8, output_stride=8
            ),
        )
    )
    unet = UNetConfig(filters=4, filters_rate=1.5, max_stride=8, output_stride=2)
    model = _model(heads, input_size=(32, 32), unet=unet)
    path = export_onnx(model, tmp_path / "m.onnx", verify=False)
    contract = json.loads((tmp_path / "m.onnx.json").read_text())
    assert contract["inputs"][0]["shape"] == ["batch", 1, 32, 32]
    session = _ort_session(path)
    x = torch.rand(3, 1, 32, 32)
    for r, g in zip(_torch_outputs(model, x), session.run(None, {"image": x.numpy()})):
        assert _max_err(r, g) < 1e-4
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
        session.run(None, {"image": torch.rand(1, 1, 40, 32).numpy()})
    with pytest.raises(PosekitError, match=r"flattens its feature.*\(32, 32\)"):
        export_onnx(model, tmp_path / "bad.onnx", input_shape=(40, 32), verify=False)


# --------------------------------------------------------------------------- safety


def test_failed_export_leaves_the_old_file_and_no_temporaries(tmp_path, monkeypatch):
    from posekit.export import core as export_mod

    model = _single_instance_model()
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old model")

    def broken(*args, **kwargs):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(PosekitError, match="simulated exporter crash"):
        export_mod.export_onnx(model, target, verify=False)
    assert target.read_bytes() == b"old model"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_verification_catches_a_wrong_graph(tmp_path, monkeypatch):
    """The built-in check compares onnxruntime with PyTorch and refuses a mismatch."""
    pytest.importorskip("onnxruntime")
    from posekit.export import core as export_mod

    model = _single_instance_model()
    real_compare = export_mod._compare

    def tampered(names, ref, got, *args):
        got = [g + 1e-2 for g in got]
        return real_compare(names, ref, got, *args)

    monkeypatch.setattr(export_mod, "_compare", tampered)
    with pytest.raises(PosekitError, match="differs from PyTorch"):
        export_mod.export_onnx(model, tmp_path / "m.onnx", input_shape=(32, 32))
    assert not (tmp_path / "m.onnx").exists()
    assert not (tmp_path / "m.onnx.json").exists()


def test_verify_true_without_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    from posekit.export.core import export_onnx

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(PosekitError, match=r"onnxruntime.*posekit\[export\]"):
        export_onnx(_single_instance_model(), tmp_path / "m.onnx", verify=True)


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
    from posekit.export.core import export_onnx

    with pytest.raises(PosekitError, match=message.replace("[", r"\[")):
        export_onnx(_single_instance_model(), tmp_path / "m.onnx", verify=False, **kwargs)


def test_run_export_writes_default_file_for_a_model_folder(tmp_path, capsys):
    from posekit.cli import parse_args
    from posekit.cli.export import run as run_export
    from posekit.model.folder import save_model

    model = _single_instance_model()
    folder = save_model(model, tmp_path / "model")
    args = parse_args(["export", str(folder), "--format", "torchscript"])
    assert run_export(args) == 0
    path = folder / "model.torchscript.pt"
    loaded = torch.jit.load(str(path))
    x = torch.rand(1, 1, 24, 40)
    for r, g in zip(_torch_outputs(model, x), loaded(x)):
        assert _max_err(r, g.detach().numpy()) < 1e-4
    printed = capsys.readouterr().out
    assert "SingleInstanceConfmapsHead" in printed and str(path) in printed
