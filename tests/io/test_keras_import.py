"""Importing SLEAP Keras models: outputs must equal Keras' own (max abs error < 1e-4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
NUMERIC = SHARED / "reference" / "keras_numeric"
MODELS = SHARED / "sleap_models"

needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared is absent")


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float()


def _max_err(ours: torch.Tensor, keras: np.ndarray) -> float:
    if ours.ndim == 4:
        ours = ours.permute(0, 2, 3, 1)
    assert tuple(ours.shape) == keras.shape
    return float(np.abs(ours.detach().numpy() - keras).max())


@needs_shared
@pytest.mark.parametrize("weights_file", ["weights.h5", "model_full.h5"])
def test_full_model_with_offset_head_matches_keras(weights_file):
    from posekit.config.model import ModelConfig
    from posekit.io.keras_h5 import load_keras_weights
    from posekit.model.network import build

    case = NUMERIC / "single_instance_unet_f8_ms16_os2_offset"
    meta = json.loads((case / "meta.json").read_text())
    model = build(ModelConfig.model_validate(meta["config"]["ModelConfig"]), in_channels=1)
    load_keras_weights(model, case / weights_file)
    io = np.load(case / "io.npz")
    with torch.no_grad():
        out = model.eval()(_nchw(io["input"]))
    for entry in meta["outputs"]:
        assert _max_err(out[entry["key"]], io[entry["key"]]) < 1e-4


MODELS_WITH_OUTPUTS = [
    "min_tracks_2node.UNet.bottomup_multiclass",
    "minimal_instance.UNet.centered_instance",
    "minimal_instance.UNet.centroid",
    "minimal_robot.UNet.single_instance",
]


@needs_shared
@pytest.mark.parametrize("name", MODELS_WITH_OUTPUTS)
def test_trained_sleap_model_matches_keras_outputs(name):
    import posekit

    folder = MODELS / name
    model = posekit.load_model(folder)
    expected = np.load(folder / "keras_outputs.npz")
    errors = {}
    for which in ("frame", "random"):
        with torch.no_grad():
            out = model(_nchw(expected[f"input_{which}"]))
        for key in expected.files:
            if not key.startswith(f"{which}__"):
                continue
            head = key.split("__", 1)[1].removesuffix("_0")
            errors[key] = _max_err(out[head], expected[key])
    assert errors and max(errors.values()) < 1e-4, errors


ALL_MODELS = {
    "min_tracks_2node.UNet.bottomup_multiclass": (
        (512, 512, 1),
        {"MultiInstanceConfmapsHead": (256, 256, 2), "ClassMapsHead": (256, 256, 2)},
    ),
    "min_tracks_2node.UNet.topdown_multiclass": (
        (128, 128, 1),
        {"CenteredInstanceConfmapsHead": (64, 64, 2), "ClassVectorsHead": (2,)},
    ),
    "minimal_instance.UNet.bottomup": (
        (384, 384, 1),
        {
            "MultiInstanceConfmapsHead": (192, 192, 2),
            "PartAffinityFieldsHead": (96, 96, 2),
            "OffsetRefinementHead": (192, 192, 4),
        },
    ),
    "minimal_instance.UNet.centered_instance": (
        (96, 96, 1),
        {"CenteredInstanceConfmapsHead": (48, 48, 2), "OffsetRefinementHead": (48, 48, 4)},
    ),
    "minimal_instance.UNet.centered_instance_with_scaling": (
        (56, 56, 1),
        {"CenteredInstanceConfmapsHead": (28, 28, 2), "OffsetRefinementHead": (28, 28, 4)},
    ),
    "minimal_instance.UNet.centroid": (
        (384, 384, 1),
        {"CentroidConfmapsHead": (96, 96, 1), "OffsetRefinementHead": (96, 96, 2)},
    ),
    "minimal_robot.UNet.single_instance": (
        (160, 280, 3),
        {"SingleInstanceConfmapsHead": (40, 70, 2)},
    ),
}


@needs_shared
@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_every_trained_sleap_model_loads_and_runs(name):
    import posekit

    (h, w, c), expected = ALL_MODELS[name]
    model = posekit.load_model(MODELS / name)
    assert not model.training
    assert model.in_channels == c
    with torch.no_grad():
        out = model(torch.rand(1, c, h, w))
    shapes = {}
    for key, value in out.items():
        shapes[key] = (
            tuple(value.shape[2:]) + (value.shape[1],) if value.ndim == 4 else (value.shape[1],)
        )
    assert shapes == expected
    n_params = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")
    )
    assert n_params > 0
    if "ClassVectorsHead" in out:
        # Keras' layer ends in a softmax: rows are probabilities.
        assert torch.allclose(out["ClassVectorsHead"].sum(-1), torch.ones(1), atol=1e-5)


@needs_shared
def test_convert_writes_a_posekit_folder_with_identical_outputs(tmp_path):
    import posekit
    from posekit.model.folder import convert

    src = MODELS / "minimal_instance.UNet.centroid"
    out_dir = convert(src, tmp_path / "converted")
    assert (out_dir / "model.safetensors").exists()
    a = posekit.load_model(src)
    b = posekit.load_model(out_dir)
    x = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        oa, ob = a(x), b(x)
    assert set(oa) == set(ob)
    for k in oa:
        assert torch.equal(oa[k], ob[k])
    assert b.part_names == a.part_names
    assert b.config.model == a.config.model


def _tiny_model():
    from posekit.config.model import ModelConfig
    from posekit.model.network import build

    cfg = ModelConfig.model_validate(
        {
            "backbone": {"unet": {"filters": 4, "max_stride": 4, "output_stride": 2}},
            "heads": {"single_instance": {"part_names": ["a", "b"], "output_stride": 2}},
        }
    )
    return build(cfg, in_channels=1)


def _write_keras_file(path: Path, model, drop: str | None = None, rename: dict | None = None):
    """Write `model`'s weights in Keras save_weights layout (to test the loader)."""
    import h5py

    from posekit.io.keras_h5 import _weighted_modules

    rename = rename or {}
    layers = _weighted_modules(model)
    with h5py.File(path, "w") as f:
        names = []
        for name, layer in layers.items():
            if name == drop:
                continue
            kname = rename.get(name, name)
            names.append(kname.encode())
            g = f.create_group(kname)
            w = layer.weight.detach().numpy()
            kernel = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T
            g.create_dataset(f"{kname}/kernel:0", data=kernel)
            g.create_dataset(f"{kname}/bias:0", data=layer.bias.detach().numpy())
            g.attrs["weight_names"] = [f"{kname}/kernel:0".encode(), f"{kname}/bias:0".encode()]
        f.attrs["layer_names"] = names


def test_loader_roundtrip_and_head_suffix(tmp_path):
    from posekit.io.keras_h5 import load_keras_weights

    src = _tiny_model()
    path = tmp_path / "w.h5"
    _write_keras_file(
        path, src, rename={"SingleInstanceConfmapsHead": "SingleInstanceConfmapsHead_0"}
    )
    dst = _tiny_model()
    load_keras_weights(dst, path)
    for (ka, a), (kb, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert ka == kb and torch.equal(a, b)


def test_loader_reports_missing_layers(tmp_path):
    from posekit.io.keras_h5 import load_keras_weights

    path = tmp_path / "w.h5"
    _write_keras_file(path, _tiny_model(), drop="stack0_enc0_conv0")
    with pytest.raises(PosekitError, match="stack0_enc0_conv0"):
        load_keras_weights(_tiny_model(), path)


def test_loader_rejects_corrupt_and_foreign_files(tmp_path):
    import h5py

    from posekit.io.keras_h5 import load_keras_weights

    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(PosekitError, match="corrupt"):
        load_keras_weights(_tiny_model(), corrupt)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(PosekitError, match="not a Keras weights file"):
        load_keras_weights(_tiny_model(), foreign)
    with pytest.raises(PosekitError, match="not found"):
        load_keras_weights(_tiny_model(), tmp_path / "missing.h5")


PRETRAINED_FIXTURE = (
    SHARED
    / "reference"
    / "keras_numeric_pretrained"
    / "pretrained_encoder_efficientnetb0_os4_random_rgb"
)


@pytest.mark.skipif(not PRETRAINED_FIXTURE.exists(), reason="../shared is absent")
def test_sleap_model_with_pretrained_encoder_imports(tmp_path):
    """A SLEAP best_model.h5 whose backbone is a pretrained encoder: SLEAP nests the
    segmentation_models UNet as a Keras model ("model_1") with the heads after it. Built here
    from the EfficientNet-B0 reference backbone plus a centroid head (no TensorFlow)."""
    import h5py

    import posekit.io
    from posekit.architectures.pretrained_encoders import skip_imagenet_weights
    from posekit.config.model import ModelConfig
    from posekit.model import build

    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.05, (1, 1, 256, 1)).astype(np.float32)
    bias = np.array([0.1], np.float32)
    h5 = tmp_path / "best_model.h5"
    with h5py.File(PRETRAINED_FIXTURE / "weights.h5", "r") as src, h5py.File(h5, "w") as dst:
        group = dst.create_group("model_weights")
        src.copy(src["model_1"], group, "model_1")
        group.create_group("input").attrs["weight_names"] = []
        head = group.create_group("CentroidConfmapsHead")
        head.create_dataset("CentroidConfmapsHead/kernel:0", data=kernel)
        head.create_dataset("CentroidConfmapsHead/bias:0", data=bias)
        head.attrs["weight_names"] = [
            b"CentroidConfmapsHead/kernel:0",
            b"CentroidConfmapsHead/bias:0",
        ]
        group.attrs["layer_names"] = [b"input", b"model_1", b"CentroidConfmapsHead"]

    config = ModelConfig.model_validate(
        {
            "backbone": {
                "pretrained_encoder": {
                    "encoder": "efficientnetb0",
                    "pretrained": True,  # as SLEAP trains it; the weights come from the file
                    "decoder_filters": 256,
                    "decoder_filters_rate": 1.0,
                    "output_stride": 4,
                    "decoder_batchnorm": True,
                }
            },
            "heads": {
                "centroid": {"anchor_part": None, "sigma": 2.5, "output_stride": 4},
            },
        }
    )
    with skip_imagenet_weights():  # offline: nothing is downloaded, the .h5 fills every layer
        model = build(config, in_channels=3).eval()
    loaded = posekit.io.load_keras_weights(model, h5)
    assert "CentroidConfmapsHead" in loaded and "block6a_expand_conv" in loaded

    io = np.load(PRETRAINED_FIXTURE / "io.npz")
    with torch.no_grad():
        out = model(_nchw(io["input"]))
    # The head is a 1x1 conv on the backbone output Keras computed.
    expected = io["decoder_stage2b_relu"] @ kernel[0, 0] + bias
    assert _max_err(out["CentroidConfmapsHead"], expected) < 1e-4
