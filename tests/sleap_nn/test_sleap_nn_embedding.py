"""sleap-nn 0.3.5 `embedding` (re-ID) model folders in posekit: vectors against sleap-nn's.

The fixtures were made by sleap-nn itself (`scripts/make_sleapnn_embedding_fixtures.py`):
embedding models on a tiny UNet, a tiny custom ConvNeXt, and sleap-nn's `pretrained`
backbone (encoder-only) on a tiny random Hugging Face DINOv2 (frozen) and ConvNeXtV2,
trained on the flies frames; their network outputs on a fixed crop, sleap-nn's own
vectors (`embed_labels`) for the two flies of three frames, and sleap-nn's crops around
centres near the frame's edges. sleap-nn is not needed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sleapnn"
CASES = [
    "embedding",
    "convnext_embedding",
    "dinov2_embedding",
    "hfconvnextv2_embedding",
    "timmconvnextv2_embedding",
    "timmdinov3_embedding",
]


def _load(case: str, monkeypatch):
    """The fixture; a Hugging Face one finds its model's config.json in its own cache."""
    import posekit

    monkeypatch.setenv("HF_HUB_CACHE", str(FIXTURES / case / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return posekit.load_model(FIXTURES / case)


@pytest.mark.parametrize("case", CASES)
def test_network_outputs_equal_sleap_nn(case, monkeypatch):
    """The network, its per-crop standardisation included, from the raw crop (gray,
    tiled to RGB for the Hugging Face encoders as sleap-nn's model does)."""
    model = _load(case, monkeypatch)
    assert model.model_type == "embedding" and model.standardize_input
    ref = np.load(FIXTURES / case / "outputs.npz")
    gray = torch.from_numpy(ref["gray"]).repeat(1, model.in_channels, 1, 1)
    with torch.no_grad():
        out = model(gray / 255.0)["EmbeddingHead"]
    np.testing.assert_allclose(out.numpy(), ref["EmbeddingHead"], atol=1e-5, rtol=0)
    # sleap-nn's standardised input is what posekit's network standardises to
    from posekit.model.network import standardize_crops

    x = standardize_crops(torch.from_numpy(ref["gray"]) / 255.0)
    np.testing.assert_allclose(x.numpy(), ref["x"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_vectors_equal_sleap_nn_embed_labels(case, monkeypatch):
    """The same flies embedded by posekit's `EmbeddingPredictor` and by sleap-nn's
    `embed_labels`: crop centre (mean of the points; the thorax for the ConvNeXt), crop
    filter and standardisation all as sleap-nn's."""
    from posekit.inference.embeddings import load_embedder

    frames = np.load(FIXTURES / "frames.npz")["frames"]
    ref = np.load(FIXTURES / case / "embeddings.npz")
    monkeypatch.setenv("HF_HUB_CACHE", str(FIXTURES / case / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = load_embedder(FIXTURES / case, device="cpu")  # what `--reid-model` loads
    ours = np.stack(embedder.embed_frames(zip(frames, ref["points"])))
    assert ours.shape == ref["vectors"].shape == (3, 2, 16)
    np.testing.assert_allclose(ours, ref["vectors"], atol=1e-5, rtol=0)


def test_convnext_fixture_tells_the_two_flies_apart():
    """A check on the fixture itself: its vectors separate the flies, so equal vectors
    above are equal identities, not one collapsed vector."""
    ref = np.load(FIXTURES / "convnext_embedding" / "embeddings.npz")
    v, tracks = ref["vectors"], ref["tracks"]
    assert (tracks[:, 0] != tracks[:, 1]).all()
    order = np.argsort(tracks, axis=1)  # instances in track order in every frame
    v = np.take_along_axis(v, order[..., None], axis=1)
    across = (v[:, 0] * v[:, 1]).sum(-1)
    same = (v[0] * v[1]).sum(-1)  # frame 0 and frame 1, fly by fly
    assert across.max() < 0 and same.min() > 0.9


def test_crops_equal_sleap_nn_skia_crops_at_the_edges():
    from posekit.data.instance_cropping import sleap_nn_crops

    frame = np.load(FIXTURES / "frames.npz")["frames"][0]
    ref = np.load(FIXTURES / "embedding_crops.npz")
    img = torch.from_numpy(frame.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    n = len(ref["centres"])
    crops = sleap_nn_crops(img, torch.from_numpy(ref["centres"]), 64, torch.zeros(n).long())
    ours = (crops[:, 0] * 255).round().numpy()
    np.testing.assert_array_equal(ours, ref["crops"].astype(np.float32))
    # the frame's edges are blended with black by coverage, as Skia's anti-aliasing does
    assert ref["crops"][4, 1, :8].mean() < 0.7 * ref["crops"][4, 2, :8].mean()


def test_sleap_nn_embedding_config_maps_onto_posekit():
    import yaml

    from posekit.config.job import from_sleap_nn

    tree = yaml.safe_load((FIXTURES / "embedding" / "training_config.yaml").read_text())
    cfg = from_sleap_nn(tree)
    head = cfg.model.heads.embedding.embedding
    assert (head.embedding_dim, head.num_fc_units, head.pool) == (16, 32, "gem")
    assert head.output_stride == 16 and head.standardize
    assert head.centroid_method == "center_of_mass" and head.anchor_part is None
    # the objective's settings posekit does not act on are named, the defaults are not
    assert "model_config.head_configs.embedding.embedding.objective.positives.scope=tracklet" in (
        cfg.unused_settings
    )
    assert not any("sampler" in s or "projection" in s for s in cfg.unused_settings)

    emb = tree["model_config"]["head_configs"]["embedding"]["embedding"]
    emb.update(pool=None, anchor_part="thorax", centroid_fallback="bbox_center")
    emb["objective"]["loss"] = {"name": "triplet", "temperature": 0.1, "margin": 0.2}
    tree["data_config"]["preprocessing"]["scale"] = 0.5
    cfg = from_sleap_nn(tree)
    head = cfg.model.heads.embedding.embedding
    assert head.pool == "gem"  # sleap-nn's choice for an encoder that trains
    assert (head.anchor_part, head.centroid_method) == ("thorax", "bbox_center")
    assert cfg.data.preprocessing.input_scaling == 1.0  # sleap-nn never scales these crops
    unused = " ".join(cfg.unused_settings)
    assert "objective.loss.name=triplet" in unused and "scale=0.5" in unused


@pytest.mark.parametrize("case", CASES)
def test_export_writes_sleap_nn_checkpoint_back(case, tmp_path, monkeypatch):
    """The way back: the fixture written as a sleap-nn folder holds sleap-nn's network
    weights under its keys (the training-only projection head left out, and the config
    saying so) and the head's settings. sleap-nn 0.3.5 gives the fixture's vectors from
    such folders exactly (`make_sleapnn_embedding_fixtures.py --check-export DIR`)."""
    import yaml

    from posekit.model.sleap_nn_folder import save_sleap_nn_folder

    folder = save_sleap_nn_folder(_load(case, monkeypatch), tmp_path / case)
    ours = torch.load(folder / "best.ckpt", weights_only=True)["state_dict"]
    theirs = torch.load(FIXTURES / case / "best.ckpt", weights_only=True)["state_dict"]
    theirs = {k: v for k, v in theirs.items() if k.startswith("model.")}
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    back = yaml.safe_load((folder / "training_config.yaml").read_text())
    leaf = back["model_config"]["head_configs"]["embedding"]["embedding"]
    given = yaml.safe_load((FIXTURES / case / "training_config.yaml").read_text())
    given = given["model_config"]["head_configs"]["embedding"]["embedding"]
    for key in ("embedding_dim", "num_fc_layers", "num_fc_units", "pool", "output_stride"):
        assert leaf[key] == given[key]
    assert leaf["anchor_part"] == given["anchor_part"]
    assert leaf["objective"]["use_projection"] is False


def test_export_refuses_an_embedding_model_without_standardisation(tmp_path):
    import posekit
    from posekit.errors import PosekitError
    from posekit.model.sleap_nn_folder import save_sleap_nn_folder

    model = posekit.load_model(FIXTURES / "embedding")
    model.config.model.heads.embedding.embedding.standardize = False
    with pytest.raises(PosekitError, match="standardize: true"):
        save_sleap_nn_folder(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_train_a_sleap_nn_embedding_config_then_export_it(tmp_path):
    """`posekit train embedding.yaml` (sleap-nn's file, its embedding head as sleap-nn
    writes it) trains a standardising model on tracked labels, and `export --format
    sleap-nn` writes it back; loaded again it gives the same vectors."""
    import yaml

    from posekit.cli import main
    from posekit.data.synthetic import save_synthetic_dataset
    from posekit.model.folder import load_model

    labels = save_synthetic_dataset(
        tmp_path / "data", n_frames=8, n_animals=2, image_size=64, n_parts=3, seed=0
    )
    tree = yaml.safe_load((FIXTURES / "embedding" / "training_config.yaml").read_text())
    tree["data_config"] |= {"train_labels_path": [str(labels)], "val_labels_path": None}
    tree["data_config"]["skeletons"] = None
    tree["data_config"]["preprocessing"] |= {"crop_size": 32, "max_height": None, "max_width": None}
    tree["trainer_config"] |= {"max_epochs": 1, "train_steps_per_epoch": 2}
    tree["trainer_config"] |= {"ckpt_dir": str(tmp_path / "runs"), "run_name": "emb"}
    (tmp_path / "embedding.yaml").write_text(yaml.safe_dump(tree))

    argv = ["train", str(tmp_path / "embedding.yaml"), "--device", "cpu"]
    assert main([*argv, "optimization.val_batches_per_epoch=1"]) == 0
    run = tmp_path / "runs" / "emb"
    trained = load_model(run)
    head = trained.config.model.heads.embedding.embedding
    assert trained.standardize_input and head.centroid_method == "center_of_mass"
    out = tmp_path / "snn"
    assert main(["export", str(run), "--format", "sleap-nn", str(out)]) == 0
    again = load_model(out)
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        a, b = trained(x)["EmbeddingHead"], again(x)["EmbeddingHead"]
    assert torch.equal(a, b)
    # brightness and contrast do not move a standardised model's vectors
    with torch.no_grad():
        c = again(0.5 * x + 0.2)["EmbeddingHead"]
    torch.testing.assert_close(a, c, atol=1e-4, rtol=0)


def test_an_embedding_model_on_a_pretrained_encoder_is_encoder_only():
    """As sleap-nn does: `mode: auto` becomes `encoder` for an embedding model (its pooled
    head reads the encoder's last map); `decoder` is refused in one line."""
    import yaml

    from posekit.config.job import from_sleap_nn
    from posekit.errors import PosekitError

    tree = yaml.safe_load((FIXTURES / "dinov2_embedding" / "training_config.yaml").read_text())
    tree["model_config"]["backbone_config"]["pretrained"]["mode"] = "auto"
    cfg = from_sleap_nn(tree)
    assert cfg.model.backbone.pretrained.mode == "encoder"
    assert cfg.model.heads.embedding.embedding.pool == "avg"  # frozen: sleap-nn's choice
    tree["model_config"]["backbone_config"]["pretrained"]["mode"] = "decoder"
    with pytest.raises(PosekitError, match="mode: encoder or auto"):
        from_sleap_nn(tree)


def test_timm_vit_encoder_mode_taps_one_layer(tmp_path, monkeypatch):
    """sleap-nn's encoder mode pools one tapped block: two are refused in one line."""
    import shutil

    import yaml

    from posekit.errors import PosekitError

    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "timmdinov3_embedding", folder)
    tree = yaml.safe_load((folder / "training_config.yaml").read_text())
    tree["model_config"]["backbone_config"]["pretrained"]["layers"] = [1, 2]
    (folder / "training_config.yaml").write_text(yaml.safe_dump(tree))
    monkeypatch.setenv("HF_HUB_CACHE", str(folder / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import posekit

    with pytest.raises(PosekitError, match=r"mode 'encoder' pools exactly one layer"):
        posekit.load_model(folder)
