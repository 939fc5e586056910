"""Keras-graph pretrained encoders: SLEAP's weights reproduce SLEAP's outputs; ImageNet weights map.

- The two SLEAP backbones in `shared/reference/keras_numeric_pretrained` (EfficientNet-B0 at
  output stride 4, MobileNetV2 at output stride 2) load by layer name and reproduce every
  decoder stage Keras computed, max abs error < 1e-4 (float32).
- ImageNet weights from smp's encoders (random values here, in a local file) land on the
  right Keras layers: the encoder then computes what smp's network computes.
- ResNets fetch SLEAP's Keras ImageNet file into the torch hub cache (offline here).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("segmentation_models_pytorch")

from posekit.architectures.keras_encoders import (  # noqa: E402
    BatchNormNoScale,
    KerasConv2d,
    tf_same_pads,
)
from posekit.architectures.pretrained_encoders import (  # noqa: E402
    UnetPretrainedEncoder,
    build_keras_encoder,
)
from posekit.config.model import PretrainedEncoderConfig  # noqa: E402
from posekit.errors import PosekitError  # noqa: E402
from posekit.io import load_keras_weights  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
FIXTURES = SHARED / "reference" / "keras_numeric_pretrained"
CASES = [
    "pretrained_encoder_efficientnetb0_os4_random_rgb",
    "pretrained_encoder_mobilenetv2_os2_random_rgb",
]


def write_keras_h5(module: nn.Module, path: Path) -> None:
    """Save `module`'s weighted layers as a Keras `save_weights` file (Keras layouts)."""
    import h5py

    names = []
    with h5py.File(path, "w") as f:
        for full, m in module.named_modules():
            leaf = full.rsplit(".", 1)[-1]
            if isinstance(m, nn.Conv2d):
                w = m.weight.detach().numpy()
                if m.groups > 1:
                    weights = {"depthwise_kernel": w.transpose(2, 3, 0, 1)}
                else:
                    weights = {"kernel": w.transpose(2, 3, 1, 0)}
                if m.bias is not None:
                    weights["bias"] = m.bias.detach().numpy()
            elif isinstance(m, nn.BatchNorm2d):
                weights = {} if m.weight is None else {"gamma": m.weight.detach().numpy()}
                weights["beta"] = m.bias.detach().numpy()
                weights["moving_mean"] = m.running_mean.numpy()
                weights["moving_variance"] = m.running_var.numpy()
            else:
                continue
            group = f.create_group(leaf)
            group.attrs["weight_names"] = [f"{leaf}/{k}:0".encode() for k in weights]
            for k, v in weights.items():
                group.create_dataset(f"{leaf}/{k}:0", data=v)
            names.append(leaf.encode())
        f.attrs["layer_names"] = names


def _randomize(module: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random non-trivial weights, biases and BatchNorm statistics; returns the state."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in module.state_dict().items():
        if k.endswith("running_var"):
            v = torch.rand(v.shape, generator=gen) + 0.5
        elif v.is_floating_point():
            v = torch.randn(v.shape, generator=gen) * 0.1
        state[k] = v.contiguous()
    module.load_state_dict(state)
    return state


@pytest.mark.skipif(not FIXTURES.exists(), reason="shared/reference is absent")
@pytest.mark.parametrize("case", CASES)
def test_sleap_keras_weights_reproduce_keras_outputs(case):
    meta = json.loads((FIXTURES / case / "meta.json").read_text())
    cfg = PretrainedEncoderConfig(**meta["config"]["PretrainedEncoderConfig"])
    model = UnetPretrainedEncoder.from_config(cfg, in_channels=3).eval()
    loaded = load_keras_weights(model, FIXTURES / case / "weights.h5")  # strict: all layers
    assert len(loaded) == len(meta["weighted_layers"])
    io = np.load(FIXTURES / case / "io.npz")
    x = torch.from_numpy(np.ascontiguousarray(io["input"].transpose(0, 3, 1, 2)))
    with torch.no_grad():
        feats = model.forward_features(x)[0]
    checked = 0
    for entry in meta["intermediate_features"]:
        if entry["key"] not in io.files:
            continue
        ours = feats[entry["stride"]].permute(0, 2, 3, 1).numpy()
        assert ours.shape == io[entry["key"]].shape
        assert np.abs(ours - io[entry["key"]]).max() < 1e-4
        checked += 1
    assert checked >= 1 and meta["outputs"][0]["key"] in io.files


def test_efficientnet_imagenet_mapping_reproduces_smp(tmp_path):
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import get_encoder

    smp_enc = get_encoder("efficientnet-b0", weights=None).eval()
    save_file(_randomize(smp_enc), str(tmp_path / "b0.safetensors"))
    model = UnetPretrainedEncoder(
        "efficientnetb0",
        (8,),
        pretrained=True,
        in_channels=3,
        weights_path=tmp_path / "b0.safetensors",
    ).eval()
    seen = {}
    model.encoder.keras_layer("block7a_project_bn").register_forward_hook(
        lambda m, i, o: seen.setdefault("out", o)
    )
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        theirs = smp_enc(x)[-1]  # smp's last feature: block 7a's output
        model.encoder(x)
    # Both use TF "same" padding, so the numbers agree, not only the tensors.
    assert seen["out"].shape == theirs.shape == (1, 320, 2, 2)
    assert (seen["out"] - theirs).abs().max() < 1e-5


def test_mobilenetv2_imagenet_mapping_reproduces_torchvision(tmp_path):
    from segmentation_models_pytorch.encoders import get_encoder

    smp_enc = get_encoder("mobilenet_v2", weights=None).eval()
    torch.save(_randomize(smp_enc, seed=1), tmp_path / "mnv2.pth")
    model = UnetPretrainedEncoder(
        "mobilenetv2", (8,), pretrained=True, in_channels=3, weights_path=tmp_path / "mnv2.pth"
    ).eval()
    # The graphs differ in two settings only: torchvision pads stride-2 convs symmetrically
    # and its BatchNorm epsilon is 1e-5 (Keras: 1e-3). With those, the mapped encoder
    # computes torchvision's numbers.
    for m in model.encoder.modules():
        if isinstance(m, KerasConv2d) and m.tf_same:
            m.tf_same, m.padding = False, (1, 1)
        elif isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-5
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        theirs, ours = smp_enc(x)[-1], model.encoder(x)[-1]
    assert ours.shape == theirs.shape == (1, 1280, 2, 2)
    assert float(theirs.abs().max()) > 0.1
    assert (ours - theirs).abs().max() < 1e-5


def _offline_torch_hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_resnet_imagenet_weights_are_sleaps_keras_file(tmp_path, monkeypatch):
    cache = _offline_torch_hub(tmp_path, monkeypatch)
    with pytest.raises(PosekitError) as info:
        UnetPretrainedEncoder("resnet18", (8,), pretrained=True)
    msg = str(info.value)
    assert "resnet18_imagenet_1000_no_top.h5" in msg and "github.com/qubvel" in msg
    assert str(cache / "resnet18_imagenet_1000_no_top.h5") in msg

    # A download that does not match classification_models' MD5 is refused and removed.
    def bad_download(url, dst, *args, **kwargs):
        Path(dst).write_bytes(b"not the weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", bad_download)
    with pytest.raises(PosekitError, match="damaged"):
        UnetPretrainedEncoder("resnet18", (8,), pretrained=True)
    assert not list(cache.iterdir())

    # With the file cached (random weights in Keras layout), it loads by layer name.
    donor = build_keras_encoder("resnet18")
    state = _randomize(donor, seed=2)
    write_keras_h5(donor, cache / "resnet18_imagenet_1000_no_top.h5")
    model = UnetPretrainedEncoder("resnet18", (8,), pretrained=True, in_channels=1)
    for k, v in model.encoder.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert (
        isinstance(model.encoder.bn_data, BatchNormNoScale) and model.encoder.bn_data.weight is None
    )
    assert model.ensure_rgb is not None  # grayscale is tiled for the RGB weights


def test_tf_same_padding_and_unknown_encoder():
    # TensorFlow puts the odd pixel at the end: (0, 1) for 3x3 / stride 2 on even sizes.
    assert tf_same_pads(160, 3, 2) == (0, 1)
    assert tf_same_pads(160, 5, 2) == (1, 2)
    assert tf_same_pads(161, 3, 2) == (1, 1)
    assert tf_same_pads(40, 5, 1) == (2, 2)
    with pytest.raises(PosekitError, match="no Keras-graph encoder"):
        build_keras_encoder("vgg16")
