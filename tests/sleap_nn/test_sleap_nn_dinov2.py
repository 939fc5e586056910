"""sleap-nn 0.3.5 folders with a `pretrained` DINOv2 backbone (Hugging Face) in posekit.

The fixtures (`scripts/make_sleapnn_hf_fixtures.py`) are tiny random DINOv2 ViTs (hidden
32, 2 blocks, patch 14, position grid 4 x 4), without and with registers ("dpt" and "sfp"
necks), that sleap-nn trained for a few steps; the Hugging Face config.json sits in a
cache layout beside them (`hf_cache/`), as on a user's machine. Neither sleap-nn nor
transformers is needed here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sleapnn"
CASES = ["dinov2_single_instance", "dinov2reg_single_instance", "dinov2detail_single_instance"]


def _cache(case: str) -> Path:
    return FIXTURES / case / "hf_cache"


def _snapshot(case: str) -> Path:
    return next((_cache(case)).glob("models--*/snapshots/*"))


def _outputs_match(model, case: str) -> None:
    ref = np.load(FIXTURES / case / "outputs.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(ref["x"]))
    heads = [k for k in ref.files if k != "x"]
    assert sorted(out) == sorted(heads)
    for name in heads:
        np.testing.assert_allclose(out[name].numpy(), ref[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_dinov2_folder_outputs_and_parameters_equal_sleap_nn(case, monkeypatch):
    """The model id's sizes come from the cached config.json; input 128 x 128 resizes the
    4 x 4 position grid to 8 x 8 (bicubic; antialiased for the with-registers model)."""
    import posekit
    from posekit.architectures.vit_backbone import PretrainedViT

    monkeypatch.setenv("HF_HUB_CACHE", str(_cache(case)))
    model = posekit.load_model(FIXTURES / case)
    assert isinstance(model.backbone, PretrainedViT)
    assert model.model_type == "single_instance"
    _outputs_match(model, case)
    meta = json.loads((FIXTURES / case / "meta.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]


def test_dinov2_folder_with_a_local_model_directory(tmp_path, monkeypatch):
    """`model_name` may be a folder holding config.json (what save_pretrained writes)."""
    import posekit

    case = "dinov2_single_instance"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / case, folder)
    tree = yaml.safe_load((folder / "training_config.yaml").read_text())
    tree["model_config"]["backbone_config"]["pretrained"]["model_name"] = str(_snapshot(case))
    (folder / "training_config.yaml").write_text(yaml.safe_dump(tree))
    _outputs_match(posekit.load_model(folder), case)


@pytest.mark.parametrize(
    "model_id,count",
    [
        ("facebook/dinov2-small", 22_056_576),
        ("facebook/dinov2-with-registers-base", 86_583_552),
        ("facebook/dinov2-giant", 1_136_480_768),  # SwiGLU MLPs
    ],
)
def test_dinov2_table_sizes_give_transformers_parameter_counts(model_id, count):
    """Counts of transformers 5.25's Dinov2Model / Dinov2WithRegistersModel for these ids
    (measured in the sleap-nn environment); built on the meta device, no weights."""
    from posekit.architectures.dinov2 import DINOV2_SIZES, Dinov2

    with torch.device("meta"):
        enc = Dinov2(DINOV2_SIZES[model_id])
    assert sum(p.numel() for p in enc.parameters()) == count


def _hf_state(case: str) -> dict:
    ckpt = torch.load(FIXTURES / case / "best.ckpt", map_location="cpu", weights_only=True)
    prefix = "model.backbone.enc."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def _transformers4_names(state: dict) -> dict:
    old = {
        "q_proj": "attention.query",
        "k_proj": "attention.key",
        "v_proj": "attention.value",
        "o_proj": "output.dense",
    }
    out = {}
    for key, value in state.items():
        for new, was in old.items():
            key = key.replace(f"attention.{new}", f"attention.{was}")
        out[key] = value
    return out


@pytest.mark.parametrize("names", ["transformers5", "transformers4"])
def test_weights_true_loads_hugging_face_files_from_a_folder(names, tmp_path):
    """`weights: true` reads model.safetensors beside config.json (no network)."""
    from safetensors.torch import save_file

    from posekit.architectures.dinov2 import hf_to_posekit
    from posekit.architectures.vit_backbone import PretrainedViT
    from posekit.config.model import PretrainedConfig

    case = "dinov2reg_single_instance"
    state = _hf_state(case)
    shutil.copy(_snapshot(case) / "config.json", tmp_path / "config.json")
    on_disk = state if names == "transformers5" else _transformers4_names(state)
    save_file({k: v.contiguous() for k, v in on_disk.items()}, tmp_path / "model.safetensors")
    config = PretrainedConfig(model_name=str(tmp_path), weights=True, vit_neck="sfp")
    backbone = PretrainedViT.from_config(config)
    want = hf_to_posekit(state, depth=2)
    got = backbone.enc.state_dict()
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_hierarchical_and_unknown_pretrained_folders_are_refused(tmp_path, monkeypatch):
    """A Hugging Face model of another family has no weight map; an id with no
    config.json anywhere cannot be sized: one line each, naming what to do."""
    import posekit
    from posekit.errors import PosekitError

    cache = tmp_path / "cache"
    snap = cache / "models--google--efficientnet-b0" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "efficientnet"}))
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "dinov2_single_instance", folder)
    tree = yaml.safe_load((folder / "training_config.yaml").read_text())
    pretrained = tree["model_config"]["backbone_config"]["pretrained"]
    for name, match in (
        ("google/efficientnet-b0", "'efficientnet' 'pretrained' backbone"),
        ("someone/unknown-vit", "no config.json in the Hugging Face cache"),
    ):
        pretrained["model_name"] = name
        (folder / "training_config.yaml").write_text(yaml.safe_dump(tree))
        with pytest.raises(PosekitError, match=match) as err:
            posekit.load_model(folder)
        assert "\n" not in str(err.value)


def test_detail_stem_levels_follow_the_output_stride():
    """sleap-nn's rules for the detail stream: its maps finer than `output_stride` are left
    out (none of them at 16: ignored with a warning, as sleap-nn does), the others join the
    neck's level at their stride or add one; three channel counts or one clear error."""
    from posekit.architectures.vit_backbone import PretrainedViT
    from posekit.errors import PosekitError

    hf = json.loads((_snapshot("dinov2detail_single_instance") / "config.json").read_text())
    x = torch.rand(1, 1, 64, 64)
    for output_stride, strides in ((2, [2, 4, 8, 16, 32]), (4, [4, 8, 16, 32])):
        net = PretrainedViT(
            hf, output_stride=output_stride, detail_stem=True, detail_channels=[8, 16, 24]
        )
        assert net.strides == strides
        with torch.no_grad():
            detail = net.stem(torch.rand(1, 3, 64, 64))
            assert [tuple(d.shape[1:]) for d in detail] == [(8, 32, 32), (16, 16, 16), (24, 8, 8)]
            assert net.forward_features(x)[0][output_stride].shape[-1] == 64 // output_stride
    with pytest.warns(UserWarning, match="detail_stem ignored: output_stride=16"):
        net = PretrainedViT(hf, output_stride=16, detail_stem=True)
    assert not hasattr(net, "stem") and net.strides == [16, 32]
    with pytest.raises(PosekitError, match="give 3 channel counts"):
        PretrainedViT(hf, detail_stem=True, detail_channels=[8, 16])
