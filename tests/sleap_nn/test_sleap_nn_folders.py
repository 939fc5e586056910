"""sleap-nn 0.3.5 model folders in posekit: outputs and points against sleap-nn's own.

The fixtures were made by sleap-nn itself (`scripts/make_sleapnn_fixtures.py`): tiny UNet
and ConvNeXt models of every pose model type, the network outputs `module.model(x)` on a
fixed input, and the points of sleap-nn's predictor on three fixed frames; tiny Hugging
Face models in sleap-nn's `pretrained` backbone likewise (`make_sleapnn_hf_fixtures.py`).
sleap-nn is not needed here. Swin-T folders of every type (about 335 MB each) are made
outside the repository (`make_sleapnn_fixtures.py --swin DIR`) and tested when present.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sleapnn"
TYPES = [
    "single_instance",
    "centroid",
    "centered_instance",
    "bottomup",
    "multi_class_bottomup",
    "multi_class_topdown",
]
CASES = TYPES + [f"convnext_{t}" for t in TYPES]
#: sleap-nn's `pretrained` backbone (tiny random Hugging Face models, their config.json in
#: the folder's hf_cache/): every family single-instance, the other types on the DINOv2
#: and the ConvNeXt (scripts/make_sleapnn_hf_fixtures.py).
# the pose cases (the embedding ones, `*_embedding`, have their own tests)
HF_CASES = sorted(
    p.name
    for p in FIXTURES.iterdir()
    if (p / "hf_cache").is_dir() and not p.name.endswith("_embedding")
)
#: posekit's names for sleap-nn's model types
POSEKIT_TYPE = {"bottomup": "multi_instance"}
#: The Swin-T folders `make_sleapnn_fixtures.py --swin DIR` writes (335 MB each, not
#: committed), found as tests/architectures/test_sleapnn_backbones.py finds its Swin-T fixture.
SWIN_DIR = Path(os.environ.get("POSEKIT_SLEAPNN_FIXTURES") or "/nonexistent")
SWIN_CASES = [
    pytest.param(
        f"swint_{t}",
        marks=pytest.mark.skipif(
            not (SWIN_DIR / f"swint_{t}" / "best.ckpt").is_file(),
            reason="Swin-T sleap-nn folders are 335 MB each, not committed: make them with "
            "/tmp/sleapnn-venv/bin/python scripts/make_sleapnn_fixtures.py --swin DIR and set "
            "POSEKIT_SLEAPNN_FIXTURES=DIR",
        ),
    )
    for t in TYPES
]


def _folder(case: str) -> Path:
    return SWIN_DIR / case if case.startswith("swint_") else FIXTURES / case


def _model_type(case: str) -> str:
    kind = next(t for t in sorted(TYPES, key=len, reverse=True) if case.endswith(t))
    return POSEKIT_TYPE.get(kind, kind)


@pytest.fixture
def hf_cache(monkeypatch):
    """Point Hugging Face's cache at a `pretrained` fixture's hf_cache/ (as a user's would)."""

    def use(case: str) -> None:
        if (_folder(case) / "hf_cache").is_dir():
            monkeypatch.setenv("HF_HUB_CACHE", str(_folder(case) / "hf_cache"))

    return use


@pytest.fixture(scope="module")
def frames():
    return np.load(FIXTURES / "frames.npz")["frames"]


#: the single-instance Hugging Face cases' outputs are tested with their parameter counts
#: in test_sleap_nn_dinov2 / test_sleap_nn_hf_hierarchical
HF_OTHER_TYPES = [c for c in HF_CASES if not c.endswith("single_instance")]


@pytest.mark.parametrize("case", [*CASES, *HF_OTHER_TYPES, *SWIN_CASES])
def test_network_outputs_equal_sleap_nn(case, hf_cache):
    import posekit

    hf_cache(case)
    model = posekit.load_model(_folder(case))
    assert model.model_type == _model_type(case)
    ref = np.load(_folder(case) / "outputs.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(ref["x"]))
    heads = [k for k in ref.files if k != "x"]
    assert sorted(out) == sorted(heads)
    for name in heads:
        got = out[name].numpy()
        assert got.shape == ref[name].shape, name
        np.testing.assert_allclose(got, ref[name], atol=1e-5, rtol=0, err_msg=f"{case} {name}")


def _predict(case: str, frames, sleap_compatible: bool):
    import posekit

    meta = json.loads((_folder(case) / "meta.json").read_text())
    paths = [_folder(case)]
    if meta["with_centroid"]:
        paths.insert(0, _folder(meta.get("centroid") or "centroid"))
    predictor = posekit.load_predictor(
        [str(p) for p in paths],
        peak_threshold=meta["peak_threshold"],
        max_instances=meta["max_instances"],
        integral_patch_size=meta["integral_patch_size"],
        device="cpu",
        progress=False,
        sleap_compatible=sleap_compatible,
        **(
            {"min_line_scores": meta["min_line_scores"]}
            if meta.get("min_line_scores") is not None
            else {}
        ),
    )
    results = predictor.predict_images(torch.from_numpy(frames))
    n_nodes = np.load(_folder(case) / "points.npz")["points"].shape[2]
    points = np.full((len(frames), 2, n_nodes, 2), np.nan)
    tracks = np.full((len(frames), 2), "", dtype=object)
    names = predictor.class_names
    for f, insts in enumerate(results):
        insts = sorted(insts, key=lambda r: tuple(np.nan_to_num(r.points[:, 0], nan=1e9)))
        for j, inst in enumerate(insts[:2]):
            points[f, j] = inst.points
            if inst.track is not None and names:
                tracks[f, j] = names[inst.track]
    return points, tracks.astype(str)


#: Briefly trained bottom-up models whose PAFs join no two peaks: sleap-nn's predictor
#: finds no instance on the fixture frames, and posekit must find none either.
NO_INSTANCE = {"hfconvnext_bottomup", "swint_bottomup"}


@pytest.mark.parametrize("case", [*CASES, *HF_CASES, *SWIN_CASES])
def test_points_equal_sleap_nn_predictor(case, frames, hf_cache):
    hf_cache(case)
    ref = np.load(_folder(case) / "points.npz")
    points, tracks = _predict(case, frames, sleap_compatible=True)
    want = ref["points"]
    if _model_type(case) == "centroid":
        # sleap-nn writes the centroid into every node, posekit into the anchor node only
        import posekit

        model = posekit.load_model(_folder(case))
        anchor = model.skeleton.node_names.index(model.anchor_part)
        points, want = points[:, :, anchor], want[:, :, anchor]
    assert np.array_equal(np.isnan(points), np.isnan(want)), f"{case}: different missing points"
    if case in NO_INSTANCE:
        assert not np.isfinite(want).any() and not np.isfinite(points).any()
        return
    assert np.isfinite(want).sum() >= 4, f"{case}: the fixture predicts too few points to test"
    np.testing.assert_allclose(points, want, atol=0.01, rtol=0, equal_nan=True)
    if ref["tracks"].any():
        assert (tracks == ref["tracks"]).all()


def _posekit_model(up_interpolate=True):
    """A posekit-built bottom-up UNet (seeded weights) with its job config."""
    from posekit.config.job import TrainingJobConfig
    from posekit.model.network import Model

    cfg = TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {
                    "unet": {
                        "filters": 8,
                        "filters_rate": 1.5,
                        "max_stride": 16,
                        "output_stride": 2,
                        "up_interpolate": up_interpolate,
                    }
                },
                "heads": {
                    "multi_instance": {
                        "confmaps": {
                            "part_names": ["a", "b", "c"],
                            "sigma": 2.5,
                            "output_stride": 2,
                        },
                        "pafs": {"edges": [["a", "b"], ["b", "c"]], "sigma": 5, "output_stride": 4},
                    }
                },
            },
        }
    )
    torch.manual_seed(0)
    model = Model.from_config(cfg.model, in_channels=1).eval()
    model.config = cfg
    return model


def test_export_writes_sleap_nn_keys_and_reloads(tmp_path):
    from posekit.model.folder import load_model
    from posekit.model.sleap_nn_folder import save_sleap_nn_folder

    model = _posekit_model()
    out = save_sleap_nn_folder(model, tmp_path / "snn")
    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "training_config.yaml"]
    state = torch.load(out / "best.ckpt", weights_only=True)["state_dict"]
    assert all(k.startswith(("model.backbone.", "model.head_layers.")) for k in state)
    assert "model.head_layers.1.PartAffinityFieldsHead.0.weight" in state
    assert any(k.startswith("model.backbone.middle_blocks.1.blocks.") for k in state)
    again = load_model(out)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = model(x), again(x)
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize(
    "case",
    ["bottomup", "centroid", "multi_class_topdown"]
    + ["convnext_bottomup", "convnext_centroid", "convnext_multi_class_topdown"]
    + HF_CASES,
)
def test_export_keys_equal_sleap_nn_checkpoint(case, tmp_path, hf_cache):
    """A sleap-nn model, loaded and written back, has the checkpoint's keys and weights
    (Hugging Face encoders: their renaming read backwards, q / k / v split again)."""
    from posekit.model.folder import load_model
    from posekit.model.sleap_nn_folder import save_sleap_nn_folder

    hf_cache(case)
    out = save_sleap_nn_folder(load_model(FIXTURES / case), tmp_path / case)
    mine = torch.load(out / "best.ckpt", weights_only=True)["state_dict"]
    theirs = torch.load(FIXTURES / case / "best.ckpt", weights_only=True)["state_dict"]
    theirs = {k: v for k, v in theirs.items() if k.startswith("model.")}
    assert sorted(mine) == sorted(theirs), case
    for k in theirs:
        assert mine[k].shape == theirs[k].shape and torch.equal(mine[k], theirs[k]), k


def test_export_writes_timm_encoders_under_their_timm_id(tmp_path):
    """sleap-nn builds a `timm/...` id as transformers' TimmWrapperModel: a posekit model
    on a timm encoder exports under timm's own Hugging Face id, its weights under
    `enc.timm_model.`, mean and std included, and loads back with the same outputs; a
    timm model with no such id is refused in one line, nothing written."""
    pytest.importorskip("timm")
    import yaml

    from posekit.config.job import TrainingJobConfig
    from posekit.errors import PosekitError
    from posekit.model.folder import load_model
    from posekit.model.network import Model
    from posekit.model.sleap_nn_folder import save_sleap_nn_folder

    cfg = TrainingJobConfig.model_validate(
        {
            "model": {
                "backbone": {"pretrained": {"model_name": "convnextv2_atto", "weights": False}},
                "heads": {
                    "single_instance": {"part_names": ["a", "b"], "sigma": 2.5, "output_stride": 2}
                },
            }
        }
    )
    torch.manual_seed(0)
    model = Model.from_config(cfg.model, in_channels=1).eval()
    model.config = cfg
    out = save_sleap_nn_folder(model, tmp_path / "x")
    written = yaml.safe_load((out / "training_config.yaml").read_text())
    name = written["model_config"]["backbone_config"]["pretrained"]["model_name"]
    assert name.startswith("timm/convnextv2_atto.")
    state = torch.load(out / "best.ckpt", weights_only=True)["state_dict"]
    assert "model.backbone.enc.timm_model.stem.0.weight" in state
    assert "model.backbone.image_mean" in state and "model.backbone.image_std" in state
    again = load_model(out)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = model(x), again(x)
    assert torch.equal(a["SingleInstanceConfmapsHead"], b["SingleInstanceConfmapsHead"])

    model.backbone.enc.pretrained_cfg = {}  # a timm model with no timm/ repository
    with pytest.raises(PosekitError, match="timm/ repository") as err:
        save_sleap_nn_folder(model, tmp_path / "y")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "y").exists()


def test_export_refuses_keras_transposed_convs(tmp_path):
    from posekit.errors import PosekitError
    from posekit.model.sleap_nn_folder import save_sleap_nn_folder

    with pytest.raises(PosekitError, match="up_interpolate: true"):
        save_sleap_nn_folder(_posekit_model(up_interpolate=False), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_convert_keeps_sleap_nn_padding(tmp_path):
    """A sleap-nn model with transposed convolutions, converted to a posekit folder,
    still gives sleap-nn's outputs."""
    from posekit.model.folder import convert, load_model

    convert(FIXTURES / "centroid", tmp_path / "pk")
    model = load_model(tmp_path / "pk")
    ref = np.load(FIXTURES / "centroid" / "outputs.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(ref["x"]))
    np.testing.assert_allclose(
        out["CentroidConfmapsHead"].numpy(), ref["CentroidConfmapsHead"], atol=1e-5
    )


@pytest.mark.parametrize("case", ["bottomup", "convnext_bottomup"])
def test_cli_summary_and_export_take_sleap_nn_files(case, tmp_path, capsys):
    from posekit.cli import main

    assert main(["summary", str(FIXTURES / case / "training_config.yaml"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    theirs = torch.load(FIXTURES / case / "best.ckpt", weights_only=True)["state_dict"]
    assert info["total_params"] == sum(v.numel() for v in theirs.values())
    assert main(["export", str(FIXTURES / case), "--format", "sleap-nn", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "best.ckpt").is_file()


def test_train_a_sleap_nn_convnext_config_then_export_it(tmp_path, capsys):
    """`posekit train convnext.yaml` (a sleap-nn file), then `export --format sleap-nn`:
    the folder holds sleap-nn's config and keys, and gives the trained model's outputs."""
    import yaml

    from posekit.cli import main
    from posekit.config.sleap_nn import default_tree
    from posekit.data.synthetic import save_synthetic_dataset
    from posekit.model.folder import load_model

    labels = save_synthetic_dataset(
        tmp_path / "data", n_frames=8, n_animals=1, image_size=64, n_parts=3, seed=0
    )
    convnext = {
        "model_type": "custom",
        "arch": {"depths": [1, 1, 1, 1], "channels": [4, 8, 8, 16]},
        "up_interpolate": False,
        "output_stride": 2,
    }
    tree = default_tree()
    tree["data_config"]["train_labels_path"] = [str(labels)]
    tree["model_config"]["backbone_config"] = {"convnext": convnext}
    heads = {"confmaps": {"part_names": None, "sigma": 2.5, "output_stride": 2}}
    tree["model_config"]["head_configs"] = {"single_instance": heads}
    tree["trainer_config"] |= {"max_epochs": 1, "train_steps_per_epoch": 2}
    tree["trainer_config"] |= {"ckpt_dir": str(tmp_path / "runs"), "run_name": "cnx"}
    (tmp_path / "convnext.yaml").write_text(yaml.safe_dump(tree))

    argv = ["train", str(tmp_path / "convnext.yaml"), "--device", "cpu"]
    assert (
        main([*argv, "optimization.val_batches_per_epoch=1", "outputs.save_visualizations=false"])
        == 0
    )
    run = tmp_path / "runs" / "cnx"
    assert (run / "training_config.sleap_nn.yaml").is_file()
    trained = load_model(run)
    assert trained.backbone.stage_channels == [4, 8, 8, 16]
    out = tmp_path / "snn"
    assert main(["export", str(run), "--format", "sleap-nn", str(out)]) == 0
    written = yaml.safe_load((out / "training_config.yaml").read_text())
    section = written["model_config"]["backbone_config"]
    assert section["unet"] is None and {k: section["convnext"][k] for k in convnext} == convnext
    state = torch.load(out / "best.ckpt", weights_only=True)["state_dict"]
    assert "model.backbone.enc.features.0.0.weight" in state  # sleap-nn's stem conv
    assert "model.head_layers.0.SingleInstanceConfmapsHead.0.weight" in state
    again = load_model(out)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = trained(x), again(x)
    assert torch.equal(a["SingleInstanceConfmapsHead"], b["SingleInstanceConfmapsHead"])


def test_pretrained_backbone_folders_are_refused_with_one_line(tmp_path, monkeypatch):
    """sleap-nn's `pretrained` EfficientNet has Hugging Face weight names that posekit does
    not map: refused, not guessed (DINOv2, ConvNeXt(V2), ResNet and Swinv2 folders load:
    test_sleap_nn_dinov2, test_sleap_nn_hf_hierarchical)."""
    import yaml

    import posekit
    from posekit.errors import PosekitError

    snap = tmp_path / "hub" / "models--google--efficientnet-b0" / "snapshots" / "main"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "efficientnet"}')
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    tree = yaml.safe_load(
        (FIXTURES / "convnext_single_instance" / "training_config.yaml").read_text()
    )
    tree["model_config"]["backbone_config"] = {
        "convnext": None,
        "pretrained": {"model_name": "google/efficientnet-b0", "output_stride": 2},
    }
    (tmp_path / "training_config.yaml").write_text(yaml.safe_dump(tree))
    torch.save({"state_dict": {}}, tmp_path / "best.ckpt")
    with pytest.raises(PosekitError, match="'pretrained' backbone through Hugging Face") as err:
        posekit.load_model(tmp_path)
    assert "\n" not in str(err.value) and "posekit train" in str(err.value)
