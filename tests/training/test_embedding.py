"""The `embedding` model type: unit identity vectors per crop, learnt with SupCon."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from _training_helpers import step_loss_recorder, tiny_config

from posekit.errors import PosekitError
from posekit.heads import EmbeddingHead
from posekit.training.losses import head_loss, supcon


@pytest.mark.parametrize("pool", ["avg", "max", "gem"])
def test_embedding_layer_gives_one_unit_vector_per_crop(pool):
    head = EmbeddingHead(16, embedding_dim=12, num_fc_units=8, pool=pool, classes=["a", "b"])
    layer = head.make_layer(24)
    out = layer(torch.rand(5, 24, 3, 3))
    assert out.shape == (5, 12) and head.channels == 12 and not head.is_map
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    unnormed = EmbeddingHead(16, embedding_dim=12, normalize=False).make_layer(24)
    assert not torch.allclose(unnormed(torch.rand(5, 24, 3, 3)).norm(dim=1), torch.ones(5))


def test_registry_builds_the_head_from_the_config():
    from posekit.config.model import HeadsConfig
    from posekit.model.registry import make_heads, model_type

    cfg = HeadsConfig.model_validate({"embedding": {"embedding": {"embedding_dim": 4}}})
    name, heads = make_heads(cfg, part_names=["a"], classes=["f", "m"])
    assert name == "embedding" and isinstance(heads[0], EmbeddingHead)
    assert (heads[0].embedding_dim, heads[0].classes, heads[0].output_stride) == (4, ["f", "m"], 16)
    entry = model_type("embedding")
    assert entry.crops and entry.multi_class
    # the identities are training targets only: a trained model (sleap-nn's keep none)
    # builds without them
    _, heads = make_heads(cfg, part_names=["a"])
    assert heads[0].classes == [] and heads[0].channels == 4


def test_training_an_embedding_model_needs_tracked_labels(single_labels):
    import sleap_io as sio

    from posekit.config.job import TrainingJobConfig
    from posekit.data.labels import load_labels
    from posekit.training.run import _build_model

    labels = sio.load_slp(single_labels)
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            inst.track = None
    labels.tracks.clear()
    config = TrainingJobConfig.model_validate(
        {"model": {"backbone": {"unet": {"filters": 4}}, "heads": {"embedding": {}}}}
    )
    with pytest.raises(PosekitError, match="no tracks: track them first"):
        _build_model(config, load_labels(labels))


def test_embedding_layer_loads_checkpoints_with_the_old_layer_names():
    """posekit's first embedding layers were named `gem_p` / `fc.{2i}`; such checkpoints
    load into sleap-nn's names with the same numbers."""
    head = EmbeddingHead(16, embedding_dim=6, num_fc_layers=2, num_fc_units=5, pool="gem")
    layer = head.make_layer(7)
    with torch.no_grad():
        layer.pre_embedding_pool.p.fill_(2.5)
    new = layer.state_dict()
    old = {"gem_p": new["pre_embedding_pool.p"]}
    for i, name in enumerate(["pre_embedding0_fc", "pre_embedding1_fc", "EmbeddingHead"]):
        old[f"fc.{2 * i}.weight"] = new[f"{name}.weight"]
        old[f"fc.{2 * i}.bias"] = new[f"{name}.bias"]
    fresh = head.make_layer(7)
    fresh.load_state_dict(old)
    x = torch.rand(3, 7, 4, 4)
    assert torch.equal(fresh(x), layer(x))
    assert float(fresh.pre_embedding_pool.p) == 2.5


def test_supcon_values():
    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0], [1, 0], [-1, 0], [-1, 0]])
    mixed = torch.tensor([[1.0, 0], [-1, 0], [1, 0], [-1, 0]])
    t = 0.5
    # separated: each anchor's one positive at cos 1, two negatives at cos -1
    expect = -np.log(np.exp(2.0) / (np.exp(2.0) + 2 * np.exp(-2.0)))
    assert float(supcon(apart, labels, t)) == pytest.approx(expect, rel=1e-5)
    assert float(supcon(mixed, labels, t)) > float(supcon(apart, labels, t)) + 3
    # anchors without a positive (or without identity) count for nothing
    assert float(supcon(apart, torch.tensor([0, 1, 2, 3]), t)) == 0.0
    assert float(supcon(apart, torch.tensor([0, 0, -1, -1]), t)) == pytest.approx(
        float(-torch.log_softmax(torch.tensor([2.0, -2.0, -2.0]) / 1, 0)[0]), rel=1e-5
    )
    head = EmbeddingHead(temperature=t)
    assert float(head_loss(head, apart, labels)) == pytest.approx(expect, rel=1e-5)


def test_supcon_separates_synthetic_identities():
    """A linear map of noisy 16-d points of 4 identities, trained with SupCon alone."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g)
    labels = torch.arange(4).repeat(8)
    x = centres[labels] + 0.8 * torch.randn(32, 16, generator=g)
    proj = torch.nn.Linear(16, 8)
    opt = torch.optim.Adam(proj.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        z = torch.nn.functional.normalize(proj(x), dim=1)
        loss = supcon(z, labels, 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    floor = np.log(7)  # 7 positives per anchor: SupCon's minimum is log(7)
    assert losses[-1] - floor < 0.2 * (losses[0] - floor), losses
    z = torch.nn.functional.normalize(proj(x), dim=1).detach()
    sim = z @ z.T
    same = labels[:, None] == labels[None, :]
    assert float(sim[same & ~torch.eye(32, dtype=torch.bool)].mean()) > 0.8
    assert float(sim[~same].mean()) < 0.1


def test_embedding_model_trains_and_tells_the_animals_apart(multi_labels, tmp_path):
    """Two synthetic animals of different brightness: after a few steps the same
    animal's crops are closer than the other's, and the tracker takes the model."""
    import sleap_io as sio

    from posekit.inference.embeddings import load_embedder
    from posekit.tracking import track
    from posekit.training import train

    rec = step_loss_recorder()
    cfg = tiny_config(
        "embedding",
        tmp_path,
        epochs=5,
        batches_per_epoch=16,
        batch_size=8,
        # 3e-3 sat on the edge: on an AMD CPU limited to AVX2 the loss stayed at
        # log(positives + negatives) (vectors collapsed), elsewhere it learnt
        initial_learning_rate=1e-3,
    )
    run = train(
        cfg,
        labels=multi_labels,
        run_name="emb",
        device="cpu",
        progress=False,
        callbacks=[rec],
        seed=0,
    )
    # per-step losses are too noisy to compare (each batch has its own mix of
    # identities, so its own minimum): the test compares what the vectors learnt
    assert len(rec.losses) == 80 and np.isfinite(rec.losses).all()

    # the run ends with the model's re-ID accuracy on the validation frames
    val = json.loads((run / "metrics.val.json").read_text())
    assert val["reid.n_instances"] > 0 and val["reid.accuracy"] >= 0.9

    embedder = load_embedder(run / "best_model")
    assert embedder.model.model_type == "embedding" and embedder.model.crop_size % 16 == 0
    labels = sio.load_slp(multi_labels)
    lfs = labels.labeled_frames
    names = [i.track.name for lf in lfs for i in lf.instances]
    same = np.equal.outer(names, names)
    off = ~np.eye(len(names), dtype=bool)

    def gap(emb):  # mean cosine to the same animal's crops minus to the other's
        z = np.concatenate(emb.embed_labeled_frames(lfs))
        assert z.shape == (len(names), 8)
        np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
        sim = z @ z.T
        return sim[same & off].mean() - sim[~same].mean()

    untrained = load_embedder(copy.deepcopy(embedder.model))
    torch.manual_seed(0)
    for m in untrained.model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    trained_gap, untrained_gap = gap(embedder), gap(untrained)
    assert trained_gap > 0.8 and trained_gap > untrained_gap + 0.5, (trained_gap, untrained_gap)

    out = track(labels, max_tracks=2, reid_model=str(run / "best_model"))
    assert len(out.tracks) == 2
    assert out.provenance["tracking"]["reid_model"] == str(run / "best_model")
    with pytest.raises(PosekitError, match="finds no animals"):
        embedder.predict(labels)
