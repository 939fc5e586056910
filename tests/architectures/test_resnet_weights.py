"""ImageNet weight files for ResNets: where they are found, how they load, offline errors."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from posekit.architectures import weights as W
from posekit.architectures.resnet import ResNetv1
from posekit.errors import PosekitError

TINY_STACKS = [
    dict(filters=2, blocks=1, stride1=1, name="conv2"),
    dict(filters=2, blocks=2, stride1=2, name="conv3"),
    dict(filters=2, blocks=1, stride1=2, name="conv4"),
    dict(filters=2, blocks=1, stride1=2, name="conv5"),
]
FILENAME = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No real cache or Keras folder may leak into these tests."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)


def _no_network(monkeypatch):
    def fail(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def _tiny(weights: str, **kwargs) -> ResNetv1:
    return ResNetv1("ResNet50", weights=weights, stack_configs=TINY_STACKS, **kwargs)


def _write_keras_h5(model: ResNetv1, path: Path, seed: int = 0) -> dict[str, dict]:
    """A Keras `save_weights`-layout file with random values for every encoder layer."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict] = {}
    with h5py.File(path, "w") as f:
        names = []
        for full, m in model.encoder.named_modules():
            leaf = full.rsplit(".", 1)[-1]
            if isinstance(m, nn.Conv2d):
                o, i, kh, kw = m.weight.shape
                arrays = {
                    "kernel": rng.standard_normal((kh, kw, i, o)).astype("float32"),
                    "bias": rng.standard_normal(o).astype("float32"),
                }
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                arrays = {
                    "gamma": rng.standard_normal(n).astype("float32"),
                    "beta": rng.standard_normal(n).astype("float32"),
                    "moving_mean": rng.standard_normal(n).astype("float32"),
                    "moving_variance": rng.random(n).astype("float32") + 0.5,
                }
            else:
                continue
            names.append(leaf)
            group = f.create_group(leaf)
            group.attrs["weight_names"] = [f"{leaf}/{k}:0".encode() for k in arrays]
            for k, v in arrays.items():
                group.create_dataset(f"{leaf}/{k}:0", data=v)
            written[leaf] = arrays
        f.attrs["layer_names"] = [n.encode() for n in names]
    return written


def _assert_loaded(model: ResNetv1, written: dict[str, dict]) -> None:
    layers = {n.rsplit(".", 1)[-1]: m for n, m in model.encoder.named_modules()}
    conv = layers["conv3_block1_1_conv"]
    np.testing.assert_array_equal(
        conv.weight.detach().numpy(),
        written["conv3_block1_1_conv"]["kernel"].transpose(3, 2, 0, 1),
    )
    np.testing.assert_array_equal(
        conv.bias.detach().numpy(), written["conv3_block1_1_conv"]["bias"]
    )
    stem = layers["conv1_conv"]
    assert stem.weight.shape == (64, 3, 7, 7)
    np.testing.assert_array_equal(
        stem.weight.detach().numpy(), written["conv1_conv"]["kernel"].transpose(3, 2, 0, 1)
    )
    bn = layers["conv5_block1_3_bn"]
    np.testing.assert_array_equal(
        bn.running_var.numpy(), written["conv5_block1_3_bn"]["moving_variance"]
    )
    np.testing.assert_array_equal(bn.weight.detach().numpy(), written["conv5_block1_3_bn"]["gamma"])


def _template() -> ResNetv1:
    return _tiny("random", in_channels=3)


def test_weights_from_env_dir_land_in_the_right_tensors(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    folder = tmp_path / "weights"
    folder.mkdir()
    written = _write_keras_h5(_template(), folder / FILENAME)
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(folder))
    model = _tiny("frozen", in_channels=1)
    _assert_loaded(model, written)
    assert all(not p.requires_grad for p in model.encoder.parameters())


def test_explicit_path_and_cache_dir(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    explicit = tmp_path / "my_weights.h5"
    written = _write_keras_h5(_template(), explicit, seed=1)
    _assert_loaded(_tiny("tunable", in_channels=3, weights_path=explicit), written)

    cache = W.default_cache_dir()
    cache.mkdir(parents=True)
    written = _write_keras_h5(_template(), cache / FILENAME, seed=2)
    assert W.resnet_imagenet_weights("resnet50") == cache / FILENAME
    _assert_loaded(_tiny("tunable", in_channels=3), written)

    with pytest.raises(PosekitError, match="does not exist"):
        _tiny("tunable", weights_path=tmp_path / "missing.h5")


def test_keras_cache_of_an_existing_sleap_install_is_used(monkeypatch):
    _no_network(monkeypatch)
    keras_dir = Path.home() / ".keras" / "models"
    keras_dir.mkdir(parents=True)
    _write_keras_h5(_template(), keras_dir / FILENAME)
    assert W.resnet_imagenet_weights("resnet50") == keras_dir / FILENAME


def test_offline_error_names_file_url_and_destination(monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(PosekitError) as info:
        _tiny("frozen")
    msg = str(info.value)
    assert FILENAME in msg
    assert W.KERAS_RESNET_BASE_URL + FILENAME in msg
    assert str(W.default_cache_dir() / FILENAME) in msg
    assert W.WEIGHTS_DIR_ENV in msg and "URLError" in msg
    assert not (W.default_cache_dir() / (FILENAME + ".part")).exists()


def test_download_is_md5_checked_and_cached(tmp_path, monkeypatch):
    payload = b"not really weights"

    def fake_download(url, dst, *args, **kwargs):
        Path(dst).write_bytes(payload)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    good = hashlib.md5(payload).hexdigest()
    got = W.resolve_weights_file("x.h5", "https://example.org/x.h5", cache_dir=tmp_path, md5=good)
    assert got == tmp_path / "x.h5" and got.read_bytes() == payload

    with pytest.raises(PosekitError, match="MD5 is .* expected 0123"):
        W.resolve_weights_file("y.h5", "https://example.org/y.h5", cache_dir=tmp_path, md5="0123")
    assert not (tmp_path / "y.h5").exists() and not (tmp_path / "y.h5.part").exists()


def test_wrong_file_fails_strictly(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    other = ResNetv1(
        "ResNet50",
        in_channels=3,
        stack_configs=[dict(c, filters=3) for c in TINY_STACKS],
    )
    _write_keras_h5(other, tmp_path / FILENAME)
    with pytest.raises(PosekitError, match="do not fit"):
        _tiny("frozen", weights_path=tmp_path)


def test_unknown_model_has_no_weights():
    with pytest.raises(PosekitError, match="resnet18"):
        W.resnet_imagenet_weights("resnet18")
