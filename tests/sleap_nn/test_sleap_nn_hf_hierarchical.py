"""sleap-nn 0.3.5 folders with a `pretrained` Hugging Face ConvNeXt / ConvNeXtV2 / ResNet /
Swinv2.

The fixtures (`scripts/make_sleapnn_hf_fixtures.py`) are tiny random Hugging Face models
(4 stages of one block, 8..32 channels; ResNet with bottleneck blocks; Swinv2 with two
blocks a stage, the second shifted, and a window of 3 so that the 128 x 128 input pads
every stage but the last) that sleap-nn trained for a few steps through `AutoBackbone`;
their config.json sits in a Hugging Face cache layout beside them (`hf_cache/`).
Neither sleap-nn nor transformers is needed here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sleapnn"
CASES = [
    "hfconvnext_single_instance",
    "hfconvnextv2_single_instance",
    "hfresnet_single_instance",
    "hfswinv2_single_instance",
]


def _load(case: str, monkeypatch):
    import posekit

    monkeypatch.setenv("HF_HUB_CACHE", str(FIXTURES / case / "hf_cache"))
    return posekit.load_model(FIXTURES / case)


@pytest.mark.parametrize("case", CASES)
def test_hf_hierarchical_folder_outputs_and_parameters_equal_sleap_nn(case, monkeypatch):
    """Same confidence maps (128 x 128 grayscale input) and parameter count as sleap-nn;
    the stem map is tapped and dropped (stride 4 twice), its output norm kept."""
    from posekit.architectures.hf_backbone import HFPretrained

    model = _load(case, monkeypatch)
    assert isinstance(model.backbone, HFPretrained)
    assert model.backbone.strides == [4, 8, 16, 32]
    ref = np.load(FIXTURES / case / "outputs.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(ref["x"]))
    heads = [k for k in ref.files if k != "x"]
    assert sorted(out) == sorted(heads)
    for name in heads:
        np.testing.assert_allclose(out[name].numpy(), ref[name], atol=1e-5, rtol=0)
    meta = json.loads((FIXTURES / case / "meta.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]


@pytest.mark.parametrize(
    "model_id,backbone,encoder",
    [
        ("facebook/convnext-tiny-224", 34_873_344, 27_821_664),
        ("facebook/convnextv2-nano-22k-224", 19_881_280, 14_984_080),  # sleap-nn's default
        ("microsoft/resnet-50", 73_646_912, 23_508_032),
        ("microsoft/resnet-18", 14_310_912, 11_176_512),
        ("microsoft/swinv2-tiny-patch4-window8-256", 34_628_298, 27_576_618),
    ],
)
def test_published_ids_give_sleap_nn_parameter_counts(model_id, backbone, encoder):
    """Counts of sleap-nn 0.3.5's PretrainedBackbone (output_stride 2) and of its
    transformers 5.25 AutoBackbone for these ids' configs (measured in the sleap-nn
    environment); no config.json needed, no weights, meta device."""
    from posekit.architectures.hf_backbone import HFPretrained
    from posekit.architectures.timm_backbone import TimmPretrained
    from posekit.config.model import PretrainedConfig

    with torch.device("meta"):
        net = TimmPretrained.from_config(PretrainedConfig(model_name=model_id, weights=False))
    assert isinstance(net, HFPretrained)
    assert sum(p.numel() for p in net.enc.parameters()) == encoder
    assert sum(p.numel() for p in net.parameters()) == backbone


def test_weights_true_reads_a_classifier_checkpoint_from_a_folder(tmp_path):
    """`weights: true` loads model.safetensors beside config.json, as the hub's
    ConvNextV2ForImageClassification stores it (`convnextv2.` prefix, a classifier and
    a pooled norm, no backbone output norms: those keep their fresh values)."""
    from safetensors.torch import save_file

    from posekit.architectures.hf_backbone import HFPretrained
    from posekit.architectures.hf_convnets import hf_to_posekit
    from posekit.config.model import PretrainedConfig

    case = "hfconvnextv2_single_instance"
    ckpt = torch.load(FIXTURES / case / "best.ckpt", map_location="cpu", weights_only=True)
    prefix = "model.backbone.enc."
    state = {
        k[len(prefix) :]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(prefix) and ".hidden_states_norms." not in k[len(prefix) - 1 :]
    }
    on_disk = {f"convnextv2.{k}": v.contiguous() for k, v in state.items()}
    on_disk["convnextv2.layernorm.weight"] = torch.ones(32)
    on_disk["classifier.weight"] = torch.zeros(10, 32)
    save_file(on_disk, tmp_path / "model.safetensors")
    snap = next((FIXTURES / case / "hf_cache").glob("models--*/snapshots/*"))
    shutil.copy(snap / "config.json", tmp_path / "config.json")
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]})
    )
    net = HFPretrained.from_config(PretrainedConfig(model_name=str(tmp_path), weights=True))
    got = net.enc.state_dict()
    for key, value in hf_to_posekit(state, net.enc).items():
        assert torch.equal(got[key], value), key
    assert torch.equal(got["hidden_states_norms.stage1.weight"], torch.ones(8))
    assert net.image_std.flatten().tolist() == [0.25, 0.25, 0.25]


def test_other_families_and_unsized_ids_are_refused_in_one_line(monkeypatch, tmp_path):
    """A sleap-nn folder whose Hugging Face model is of a family posekit does not build
    (here the Swinv2 fixture relabelled EfficientNet) has no weight map; an id with
    neither a table entry nor a config.json cannot be sized."""
    import posekit
    from posekit.architectures.timm_backbone import TimmPretrained
    from posekit.config.model import PretrainedConfig
    from posekit.errors import PosekitError

    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "hfswinv2_single_instance", folder)
    config = next((folder / "hf_cache").glob("models--*/snapshots/*/config.json"))
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "efficientnet"}))
    monkeypatch.setenv("HF_HUB_CACHE", str(folder / "hf_cache"))
    with pytest.raises(PosekitError, match="'efficientnet' 'pretrained' backbone") as err:
        posekit.load_model(folder)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PosekitError, match="is not a timm model") as err:
        TimmPretrained.from_config(PretrainedConfig(model_name="facebook/convnext-mega-224"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("freeze", [False, True])
def test_a_hugging_face_swinv2_trains_in_posekit(freeze):
    """Built from a config.json folder (no sleap-nn folder): one optimiser step moves the
    decoder, and the encoder only when not frozen (a frozen one stays in eval mode)."""
    from posekit.architectures.hf_backbone import HFPretrained
    from posekit.config.model import PretrainedConfig

    snap = next((FIXTURES / "hfswinv2_single_instance" / "hf_cache").glob("models--*/snapshots/*"))
    config = PretrainedConfig(model_name=str(snap), weights=False, freeze=freeze)
    net = HFPretrained.from_config(config, in_channels=1).train()
    assert net.enc.training is not freeze
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    feats = net.forward_features(torch.rand(2, 1, 96, 64))[0]
    assert feats[2].shape == (2, net.feature_channels[2], 48, 32)
    feats[2].square().mean().backward()
    opt.step()
    after = net.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("decoder.") for k in moved)
    assert any(k.startswith("enc.") for k in moved) is not freeze


@pytest.mark.parametrize("case", ["timmconvnextv2_single_instance", "timmdinov3_single_instance"])
def test_timm_wrapper_folder_outputs_and_parameters_equal_sleap_nn(case, monkeypatch):
    """sleap-nn builds `timm/...` ids as transformers' TimmWrapperModel (timm's model under
    `timm_model`); posekit builds the same timm model by the cached config's
    `architecture` and `model_args` (a ConvNeXt V2 with tiny stages under sleap-nn's
    decoder; a 2-block DINOv3 ViT under its ViT neck) and gives sleap-nn's maps and
    parameter count."""
    pytest.importorskip("timm")
    from posekit.architectures.timm_backbone import TimmPretrained
    from posekit.architectures.vit_backbone import PretrainedViT, TimmViT

    model = _load(case, monkeypatch)
    if "dinov3" in case:
        assert isinstance(model.backbone, PretrainedViT)
        assert isinstance(model.backbone.enc, TimmViT) and model.backbone.enc.depth == 2
    else:
        assert isinstance(model.backbone, TimmPretrained)
        chans = [int(f["num_chs"]) for f in model.backbone.enc.feature_info]
        assert chans == [8, 16, 24, 32]
    ref = np.load(FIXTURES / case / "outputs.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(ref["x"]))
    for name in (k for k in ref.files if k != "x"):
        np.testing.assert_allclose(out[name].numpy(), ref[name], atol=1e-5, rtol=0)
    meta = json.loads((FIXTURES / case / "meta.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]
