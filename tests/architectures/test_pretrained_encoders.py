"""UnetPretrainedEncoder: SLEAP's shapes, strides, layers and parameter counts; weights; errors.

Every reference case (`shared/reference/sleap_tf_params.json`, built by SLEAP 1.4.1 with
Keras segmentation_models) must match exactly: total, trainable and non-trainable counts,
and, for the encoders posekit rebuilds as the Keras graph, every weighted layer by name
and kernel shape. `benchmarks/pretrained_encoder_counts.md` lists the counts side by
side; this module regenerates it when run as a script:

    .venv/bin/python tests/architectures/test_pretrained_encoders.py --write-table
"""

from __future__ import annotations

import json
import sys
import warnings
from functools import cache, lru_cache
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("segmentation_models_pytorch")

from posekit.architectures.keras_encoders import KERAS_ENCODERS  # noqa: E402
from posekit.architectures.pretrained_encoders import (  # noqa: E402
    ENCODER_SOURCES,
    UnetPretrainedEncoder,
)
from posekit.config.model import PRETRAINED_ENCODERS, PretrainedEncoderConfig  # noqa: E402
from posekit.errors import PosekitError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
REFERENCE = SHARED / "reference" / "sleap_tf_params.json"
TABLE = REPO / "benchmarks" / "pretrained_encoder_counts.md"
GROUPS = ("pretrained_encoder_config", "pretrained_encoder_config_pretrained_path")

warnings.filterwarnings("ignore", category=DeprecationWarning)


@lru_cache(maxsize=1)
def _cases() -> list[dict]:
    if not REFERENCE.exists():
        return []
    cases = json.loads(REFERENCE.read_text())["cases"]
    return [c for c in cases if c["group"] in GROUPS and c["status"] == "ok"]


def _params():
    if not _cases():
        return [pytest.param(None, marks=pytest.mark.skip(reason="shared/reference is absent"))]
    return [pytest.param(c, id=c["name"]) for c in _cases()]


def keras_counts(module: nn.Module) -> tuple[int, int, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    stats = sum(
        b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    return trainable + frozen + stats, trainable, frozen + stats


@cache
def _built(name: str) -> tuple[UnetPretrainedEncoder, dict, torch.Tensor]:
    """Model (meta device), features and output of a reference case, built once per run."""
    case = next(c for c in _cases() if c["name"] == name)
    cfg = PretrainedEncoderConfig(**case["config"]["PretrainedEncoderConfig"])
    n, h, w, c = case["input_shape"]
    with torch.device("meta"):  # structure only: pretrained weights are not fetched here
        model = UnetPretrainedEncoder.from_config(cfg, in_channels=c)
        feats = model.forward_features(torch.zeros(n, c, h, w))[0]
        out = model(torch.zeros(n, c, h, w))
    return model, feats, out


def _keras_layers(model: nn.Module) -> dict[str, tuple[list | None, int]]:
    """{leaf name: (Keras kernel shape, Keras parameter count)} of every weighted layer."""
    layers = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            o, i, kh, kw = m.weight.shape
            # The reference gives no kernel shape for DepthwiseConv2D (params still compared).
            shape = None if m.groups > 1 else [kh, kw, i, o]
        elif isinstance(m, nn.BatchNorm2d):
            shape = None
        else:
            continue
        layers[name.rsplit(".", 1)[-1]] = (shape, keras_counts(m)[0])
    return layers


def _decoder_layers(pairs) -> dict[str, list | None]:
    return {
        name: shape for name, shape in pairs if name.startswith(("decoder_stage", "center_block"))
    }


@pytest.mark.parametrize("case", _params())
def test_pretrained_encoder_shapes_and_strides_match_sleap(case):
    model, feats, out = _built(case["name"])
    n, h, w, c = case["outputs"][0]["shape"]
    assert tuple(out.shape) == (n, c, h, w)
    assert model.output_stride == case["backbone_output_stride"]
    assert model.maximum_stride == case["backbone_maximum_stride"]
    assert case["input_shape"][1] // out.shape[-2] == case["output_strides_measured"][0]
    expected = {
        f["stride"]: (f["shape"][3], f["shape"][1], f["shape"][2])
        for f in case["intermediate_features"]
    }
    assert {s: tuple(t.shape[1:]) for s, t in feats.items()} == expected
    assert model.feature_channels == {s: v[0] for s, v in expected.items()}
    attrs = case["backbone_attrs"]
    assert model.encoder_name == attrs["encoder"]
    assert list(model.decoder_filters) == attrs["decoder_filters"]
    assert model.pretrained == attrs["pretrained"]

    # Keras' counting: BatchNorm moving statistics are non-trainable.
    assert keras_counts(model) == (
        case["total_params"],
        case["trainable_params"],
        case["non_trainable_params"],
    )
    # Layers carry SLEAP's names with its kernel shapes and parameter counts: all of them for
    # the Keras-graph encoders, the decoder for VGG (smp's VGG is the same network, other names).
    ref = {
        w["name"].split("/")[-1]: (w["kernel_shape"], w["params"]) for w in case["weighted_layers"]
    }
    ours = _keras_layers(model)
    if attrs["encoder"] in KERAS_ENCODERS:
        assert ours == ref
    else:
        assert _decoder_layers(ours.items()) == _decoder_layers(ref.items())

    # Grayscale: tiled to RGB with pretrained weights (first conv sees 3 channels), fed
    # directly without (SLEAP's stem conv then has 1 input channel).
    first_conv = next(m for m in model.encoder.modules() if isinstance(m, nn.Conv2d))
    if case["input_shape"][3] == 1:
        assert first_conv.in_channels == (3 if attrs["pretrained"] else 1)
        assert (model.ensure_rgb is not None) == attrs["pretrained"]


def _fake_hf_cache(tmp_path, monkeypatch, populate: bool) -> dict:
    """Point the Hugging Face cache at tmp_path, offline; optionally cache mobilenet_v2."""
    from huggingface_hub import constants
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import encoders, get_encoder

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if not populate:
        return {}
    settings = encoders["mobilenet_v2"]["pretrained_settings"]["imagenet"]
    torch.manual_seed(0)
    state = {}
    for k, v in get_encoder("mobilenet_v2", weights=None).state_dict().items():
        if k.endswith("running_var"):
            v = torch.rand_like(v) + 0.5
        elif v.is_floating_point():
            v = torch.randn_like(v)
        state[k] = v.contiguous()
    repo = "models--" + settings["repo_id"].replace("/", "--")
    snapshot = tmp_path / "hf" / repo / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    save_file(state, str(snapshot / "model.safetensors"))
    return state


def test_pretrained_weights_load_through_smp_from_its_cache(tmp_path, monkeypatch):
    # smp downloads (here: finds in its cache) torchvision's MobileNetV2 weights; posekit
    # copies them onto the Keras layers (mapping checked numerically in
    # test_pretrained_encoders_keras.py).
    state = _fake_hf_cache(tmp_path, monkeypatch, populate=True)
    model = UnetPretrainedEncoder("mobilenetv2", (8, 8), pretrained=True, in_channels=1).eval()
    loaded = model.encoder.state_dict()
    for ours, theirs in (
        ("Conv1.weight", "features.0.0.weight"),
        ("blocks.8.block_8_depthwise.weight", "features.9.conv.1.0.weight"),
        ("Conv_1_bn.running_var", "features.18.1.running_var"),
    ):
        torch.testing.assert_close(loaded[ours], state[theirs], rtol=0, atol=0)
    # Grayscale goes through the pretrained RGB conv as three identical channels.
    gray = torch.rand(1, 1, 64, 64)
    out = model(gray)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, model(gray.repeat(1, 3, 1, 1)), rtol=0, atol=0)


def test_local_weights_file_option(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import get_encoder

    _fake_hf_cache(tmp_path, monkeypatch, populate=False)
    # smp's (torchvision's) keys ...
    state = {
        k: (v + 1.5 if v.is_floating_point() else v)
        for k, v in get_encoder("mobilenet_v2", weights=None).state_dict().items()
    }
    save_file(state, str(tmp_path / "mnv2.safetensors"))
    model = UnetPretrainedEncoder(
        "mobilenetv2", (8,), pretrained=True, weights_path=tmp_path / "mnv2.safetensors"
    )
    torch.testing.assert_close(model.encoder.Conv1.weight, state["features.0.0.weight"])
    # ... or posekit's own encoder's keys.
    torch.save(model.encoder.state_dict(), tmp_path / "own.pth")
    again = UnetPretrainedEncoder(
        "mobilenetv2", (8,), pretrained=True, weights_path=tmp_path / "own.pth"
    )
    torch.testing.assert_close(again.encoder.Conv1.weight, state["features.0.0.weight"])
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(PosekitError, match="does not hold weights for the efficientnetb0"):
        UnetPretrainedEncoder(
            "efficientnetb0", (8,), pretrained=True, weights_path=tmp_path / "wrong.pth"
        )


def test_offline_without_cache_is_one_clear_error(tmp_path, monkeypatch):
    _fake_hf_cache(tmp_path, monkeypatch, populate=False)
    with pytest.raises(PosekitError) as info:
        UnetPretrainedEncoder("mobilenetv2", (8,), pretrained=True)
    msg = str(info.value)
    assert "'mobilenetv2'" in msg and "smp-hub/mobilenet_v2.imagenet" in msg
    assert str(tmp_path / "hf") in msg and "weights_path=" in msg

    # timm model with a plain URL: torch hub's cache under $TORCH_HOME.
    def no_network(url, dst, *args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(PosekitError) as info:
        UnetPretrainedEncoder("seresnet18", (8,), pretrained=True)
    msg = str(info.value)
    assert "seresnet18-4bb0ce65.pth" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg


def test_decoder_options_and_errors():
    cfg = PretrainedEncoderConfig(
        encoder="vgg16",
        pretrained=False,
        decoder_filters=64,
        decoder_filters_rate=0.5,
        output_stride=4,
        decoder_batchnorm=False,
    )
    with torch.device("meta"):
        model = UnetPretrainedEncoder.from_config(cfg, in_channels=3)
    assert model.decoder_filters == (64, 32, 16)
    assert model.feature_channels == {16: 64, 8: 32, 4: 16}
    convs = [m for n, m in model.named_modules() if n.endswith("decoder_stage1a_conv")]
    assert convs[0].bias is not None  # no BatchNorm -> the conv keeps its bias
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.decoder.modules())

    with torch.device("meta"):
        bare = UnetPretrainedEncoder("resnet18", (), pretrained=False, in_channels=3)
        out = bare(torch.zeros(1, 3, 64, 64))
    assert bare.output_stride == 32 and tuple(out.shape) == (1, 512, 2, 2)

    with pytest.raises(PosekitError, match="did you mean 'efficientnetb0'"):
        UnetPretrainedEncoder("efficientnet-b0", pretrained=False)
    with pytest.raises(ValueError, match="not divisible"):
        UnetPretrainedEncoder("mobilenetv2", (8,), pretrained=False)(torch.zeros(1, 1, 40, 40))
    assert set(ENCODER_SOURCES) | set(KERAS_ENCODERS) == set(PRETRAINED_ENCODERS)


def count_table() -> str:
    """Markdown table: SLEAP's counts (Keras segmentation_models) vs posekit's."""
    lines = [
        "# Pretrained-encoder backbones: parameter counts, SLEAP vs posekit",
        "",
        "SLEAP 1.4.1 builds `UnetPretrainedEncoder` with the Keras `segmentation_models`",
        "encoders. posekit rebuilds EfficientNet-B0..B7, MobileNetV2 and ResNet18..152 as",
        'those Keras graphs ("Keras graph": same layers, names and decoder skips, so SLEAP',
        "weights import) and takes the other encoders from segmentation-models-pytorch / timm",
        "(VGG is the same network there). Counts follow Keras: non-trainable = BatchNorm",
        "moving statistics. Regenerate with",
        "`.venv/bin/python tests/architectures/test_pretrained_encoders.py --write-table`.",
        "",
        "| case | encoder (posekit source) | input | SLEAP total | posekit total | "
        "SLEAP trainable | posekit trainable | SLEAP non-trainable | posekit non-trainable | "
        "difference |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in _cases():
        model = _built(case["name"])[0]
        source, (total, trainable, frozen) = model.encoder_source, keras_counts(model)
        ref_total, ref_frozen = case["total_params"], case["non_trainable_params"]
        ref_trainable = case["trainable_params"]
        diff = (total - ref_total) / ref_total
        lines.append(
            f"| {case['name']} | {case['backbone_attrs']['encoder']} ({source}) | "
            f"{'x'.join(str(v) for v in case['input_shape'][1:])} | {ref_total:,} | {total:,} | "
            f"{ref_trainable:,} | {trainable:,} | {ref_frozen:,} | {frozen:,} | {diff:+.2%} |"
        )
    return "\n".join(lines) + "\n"


def test_benchmark_table_is_current():
    if not _cases():
        pytest.skip("shared/reference is absent")
    if not TABLE.exists():
        pytest.skip(f"{TABLE} not generated")
    assert TABLE.read_text() == count_table(), "regenerate with --write-table (module doc)"


if __name__ == "__main__" and "--write-table" in sys.argv:
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(count_table())
    print(TABLE.read_text())
