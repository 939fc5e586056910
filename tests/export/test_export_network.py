"""ONNX / TorchScript export of the network alone: the files compute what PyTorch computes.

Exports are checked here with onnxruntime / torch.jit directly (`verify=False` keeps the
exporter's own check out of the way), at two input sizes so dynamic shapes are exercised.
"""

from __future__ import annotations

import pytest
import torch
from _export_models import (
    MODELS,
    PARTS,
    max_err,
    needs_shared,
    ort_session,
    single_instance_model,
    torch_outputs,
)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_network_export_matches_pytorch_at_two_sizes(tmp_path, fmt):
    from posekit.export import export_onnx, export_torchscript

    model = single_instance_model()
    sizes = [(1, 32, 48), (3, 56, 40)]
    if fmt == "onnx":
        path = export_onnx(model, tmp_path / "m.onnx", input_shape=(32, 48), verify=False)
        session = ort_session(path)
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
        ref = torch_outputs(model, x)
        got = run(x)
        assert [g.shape for g in got] == [(n, 3, h // 2, w // 2), (n, 6, h // 2, w // 2)]
        for r, g in zip(ref, got):
            assert max_err(r, g) < 1e-4


@needs_shared
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_imported_sleap_model_exports_with_dynamic_shapes(tmp_path, fmt):
    import posekit
    from posekit.export import export_onnx, export_torchscript

    # Three heads at two strides (confmaps and offsets at 2, PAFs at 4).
    model = posekit.load_model(MODELS / "minimal_instance.UNet.bottomup")
    if fmt == "onnx":
        session = ort_session(
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
        ref = torch_outputs(model, x)
        got = run(x)
        assert [g.shape[2:] for g in got] == [r.shape[2:] for r in ref]
        assert ref[1].shape[2] == shape[2] // 4  # the PAF head really is at stride 4
        for r, g in zip(ref, got):
            assert max_err(r, g) < 1e-4


def test_batchnorm_is_folded_in_the_export_and_outputs_still_match(tmp_path):
    """A ResNet + transposed-conv decoder full of conv -> BN pairs, with real statistics."""
    from posekit.architectures.resnet import ResNetv1
    from posekit.config.model import UpsamplingConfig
    from posekit.export import build_export_module, export_onnx
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
    session = ort_session(
        export_onnx(model, tmp_path / "r.onnx", input_shape=(32, 32), verify=False)
    )
    for shape in [(1, 1, 32, 32), (2, 1, 48, 24)]:
        x = torch.rand(*shape)
        (ref,) = torch_outputs(model, x)
        (got,) = session.run(None, {"image": x.numpy()})
        assert max_err(ref, got) < 1e-4


def test_run_export_writes_default_file_for_a_model_folder(tmp_path, capsys):
    from posekit.cli import parse_args
    from posekit.cli.export import run as run_export
    from posekit.model.folder import save_model

    model = single_instance_model()
    folder = save_model(model, tmp_path / "model")
    args = parse_args(["export", str(folder), "--format", "torchscript"])
    assert run_export(args) == 0
    path = folder / "model.torchscript.pt"
    loaded = torch.jit.load(str(path))
    x = torch.rand(1, 1, 24, 40)
    for r, g in zip(torch_outputs(model, x), loaded(x)):
        assert max_err(r, g.detach().numpy()) < 1e-4
    printed = capsys.readouterr().out
    assert "SingleInstanceConfmapsHead" in printed and str(path) in printed
