"""Datasets and the batch pipeline for every model type, on synthetic labels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from posekit.config.model import HeadsConfig, ModelConfig
from posekit.data.dataset import DataPipeline, collate_samples
from posekit.data.instance_cropping import (
    crop_origins,
    extract_crops,
    find_instance_crop_size,
    instance_centroids,
)
from posekit.errors import PosekitError
from posekit.model.network import make_heads
from posekit.model.preprocessing import resize_images


def _config(heads, scale=1.0, aug=None, crop_size=None, center_on_part=None, max_stride=16):
    return {
        "data": {
            "preprocessing": {"input_scaling": scale},
            "instance_cropping": {
                "crop_size": crop_size,
                "center_on_part": center_on_part,
                "crop_size_detection_padding": 16,
            },
        },
        "model": {"heads": heads, "backbone": {"unet": {"max_stride": max_stride}}},
        "optimization": {"augmentation_config": aug or {}},
    }


def _pipeline(config, labels, **kwargs) -> DataPipeline:
    """The pipeline for `config`, given the heads a model of it has (names from the labels)."""
    model = config["model"] if isinstance(config, dict) else config.model
    heads = model["heads"] if isinstance(model, dict) else model.heads
    _, specs = make_heads(
        HeadsConfig.model_validate(heads) if isinstance(heads, dict) else heads,
        part_names=labels.node_names,
        edges=labels.skeleton.edges,
        classes=labels.class_names,
    )
    return DataPipeline.from_config(config, labels, specs, **kwargs)


def _far_apart(points: np.ndarray, min_dist: float) -> bool:
    c = np.nanmean(points, axis=1)
    return float(np.linalg.norm(c[0] - c[1])) > min_dist


def test_single_instance_targets_peak_at_first_instance(synthetic_labels):
    heads = {"single_instance": {"sigma": 1.0, "output_stride": 2, "offset_refinement": True}}
    pipe = _pipeline(_config(heads), synthetic_labels)
    ds = pipe.dataset(synthetic_labels, with_targets=True)
    assert len(ds) == 12
    sample = ds[5]
    assert sample["image"].shape == (1, 64, 80)
    cms, offs = sample["SingleInstanceConfmapsHead"], sample["OffsetRefinementHead"]
    assert cms.shape == (5, 32, 40) and offs.shape == (10, 32, 40)
    entry = synthetic_labels.entries[int(sample["frame_index"])]
    torch.testing.assert_close(
        sample["points"][0], torch.tensor(entry.points[0], dtype=torch.float32)
    )
    for k in range(5):
        x, y = entry.points[0, k]
        r, c = divmod(cms[k].argmax().item(), 40)
        assert (r, c) == (round(y / 2), round(x / 2))
        assert offs[2 * k, r, c].item() == pytest.approx((x - 2 * c) / 2, abs=1e-5)
        assert offs[2 * k + 1, r, c].item() == pytest.approx((y - 2 * r) / 2, abs=1e-5)


def test_centroid_maps_peak_at_anchor_part(synthetic_labels):
    heads = {"centroid": {"sigma": 1.5, "output_stride": 4, "anchor_part": "head"}}
    pipe = _pipeline(_config(heads), synthetic_labels)
    ds = pipe.dataset(synthetic_labels, with_targets=True)
    sample = ds[0]
    cm = sample["CentroidConfmapsHead"]
    assert cm.shape == (1, 16, 20)
    for head_xy in synthetic_labels.entries[0].points[:, 0]:
        col, row = round(head_xy[0] / 4), round(head_xy[1] / 4)
        d2 = (4 * col - head_xy[0]) ** 2 + (4 * row - head_xy[1]) ** 2
        assert cm[0, row, col].item() >= np.exp(-d2 / (2 * 6.0**2)) - 1e-6


def test_topdown_crops_equal_crops_of_the_scaled_frame(synthetic_labels):
    heads = {"centered_instance": {"sigma": 1.0, "output_stride": 2, "anchor_part": "spine1"}}
    pipe = _pipeline(_config(heads, scale=0.5, crop_size=24), synthetic_labels)
    ds = pipe.dataset(synthetic_labels)
    assert len(ds) == 24  # one item per instance
    raw = collate_samples([ds[i] for i in range(6)])
    batch = pipe.process(raw)
    assert batch["image"].shape == (6, 1, 24, 24)
    assert batch["CenteredInstanceConfmapsHead"].shape == (6, 5, 12, 12)
    for n in range(6):
        entry = synthetic_labels.entries[int(batch["frame_index"][n])]
        inst = int(batch["instance_index"][n])
        frame = torch.from_numpy(synthetic_labels.read_entry(int(batch["frame_index"][n])))
        full = resize_images(frame.permute(2, 0, 1)[None].float() / 255, 0.5)
        pts = torch.tensor(entry.points[inst], dtype=torch.float32) * 0.5
        origin = crop_origins(instance_centroids(pts, 4), 24)
        expected = extract_crops(full, origin[None], 24)[0]
        torch.testing.assert_close(batch["image"][n], expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(batch["crop_origin"][n], origin, atol=1e-4, rtol=0)
        torch.testing.assert_close(batch["points"][n, 0] + origin, pts, atol=1e-4, rtol=0)
        # the anchor lands at (S - 1) / 2
        torch.testing.assert_close(
            batch["points"][n, 0, 4], torch.tensor([11.5, 11.5]), atol=1e-4, rtol=0
        )


def test_topdown_augmented_crops_stay_centred_and_consistent(synthetic_labels):
    heads = {"centered_instance": {"sigma": 1.0, "output_stride": 1, "anchor_part": "head"}}
    aug = {
        "rotate": True,
        "rotation_min_angle": -180,
        "rotation_max_angle": 180,
        "random_flip": True,
    }
    pipe = _pipeline(_config(heads, crop_size=32, aug=aug), synthetic_labels, seed=0)
    ds = pipe.dataset(synthetic_labels)
    batch = pipe.process(collate_samples([ds[i] for i in range(8)]), augment=True)
    torch.testing.assert_close(
        batch["points"][:, 0, 0], torch.full((8, 2), 15.5), atol=1e-4, rtol=0
    )
    # the bright head blob is where the head point is: around the crop centre
    assert batch["image"][:, 0, 15:17, 15:17].mean().item() > 0.7
    # the tail (dark blob) moved with the image
    for n in range(8):
        tx, ty = batch["points"][n, 0, 1].tolist()
        if 1 <= tx <= 30 and 1 <= ty <= 30:
            assert batch["image"][n, 0, round(ty), round(tx)].item() < 0.45


def test_auto_crop_size_from_training_labels(synthetic_labels):
    heads = {"centered_instance": {"sigma": 2.0, "output_stride": 4}}
    pipe = _pipeline(_config(heads, scale=0.5), synthetic_labels)
    expected = find_instance_crop_size(synthetic_labels.all_points(), 16, 16, 0.5)
    assert pipe.crop_size == expected and expected % 16 == 0


def test_bottomup_pafs_follow_edges(synthetic_labels):
    heads = {
        "multi_instance": {
            "confmaps": {"sigma": 1.0, "output_stride": 2},
            "pafs": {"sigma": 5.0, "output_stride": 1},
        }
    }
    pipe = _pipeline(_config(heads), synthetic_labels)
    ds = pipe.dataset(synthetic_labels, with_targets=True)
    checked = 0
    for i in range(len(ds)):
        entry = synthetic_labels.entries[i]
        if not _far_apart(entry.points, 30):
            continue
        s = ds[i]
        assert s["MultiInstanceConfmapsHead"].shape == (5, 32, 40)
        assert s["PartAffinityFieldsHead"].shape == (8, 64, 80)
        head, tail = entry.points[0, 0], entry.points[0, 1]
        mid = np.round((head + tail) / 2).astype(int)
        vec = s["PartAffinityFieldsHead"][0:2, mid[1], mid[0]].numpy()
        unit = (tail - head) / np.linalg.norm(tail - head)
        assert float(vec @ unit) > 0.5 * np.linalg.norm(vec) > 0.1
        checked += 1
    assert checked > 0


def test_multiclass_targets_use_tracks(synthetic_labels):
    td = {
        "multi_class_topdown": {"confmaps": {"sigma": 1.0, "output_stride": 2}, "class_vectors": {}}
    }
    pipe = _pipeline(_config(td, crop_size=32), synthetic_labels)
    assert pipe.class_names == ["animal0", "animal1"]
    batch = pipe.process(collate_samples([pipe.dataset(synthetic_labels)[i] for i in range(4)]))
    for n in range(4):
        expected = torch.zeros(2)
        expected[int(batch["instance_index"][n])] = 1.0  # animal i is track i
        torch.testing.assert_close(batch["ClassVectorsHead"][n], expected)
        assert int(batch["class_index"][n]) == int(batch["instance_index"][n])

    bu = {
        "multi_class_bottomup": {
            "confmaps": {"sigma": 1.0, "output_stride": 2},
            "class_maps": {"sigma": 1.0, "output_stride": 2},
        }
    }
    pipe = _pipeline(_config(bu), synthetic_labels)
    ds = pipe.dataset(synthetic_labels, with_targets=True)
    for i in range(len(ds)):
        entry = synthetic_labels.entries[i]
        if not _far_apart(entry.points, 30):
            continue
        maps = ds[i]["ClassMapsHead"]
        for a in range(2):
            x, y = np.round(entry.points[a, 0] / 2).astype(int)
            assert maps[a, y, x].item() == pytest.approx(1.0, abs=1e-3)
            assert maps[1 - a, y, x].item() == pytest.approx(0.0, abs=1e-3)
        break


def test_loader_batches_and_seeded_augmentation_with_config_objects(synthetic_labels):
    cfg = SimpleNamespace(
        data=SimpleNamespace(preprocessing=None, instance_cropping=None),
        model=ModelConfig.model_validate(
            {
                "backbone": {"unet": {"max_stride": 32}},
                "heads": {"centroid": {"sigma": 2.0, "output_stride": 2}},
            }
        ),
        optimization=SimpleNamespace(augmentation_config={"rotate": True, "brightness": True}),
    )
    pipe = _pipeline(cfg, synthetic_labels, seed=0)
    assert pipe.max_stride == 32 and pipe.preprocessor.pad_to_stride == 32
    raw = next(iter(pipe.dataset(synthetic_labels).loader(batch_size=4, shuffle=False)))
    assert raw["image"].dtype == torch.uint8 and raw["points"].shape == (4, 2, 5, 2)
    a = pipe.process(raw, augment=True, generator=torch.Generator().manual_seed(3))
    b = pipe.process(raw, augment=True, generator=torch.Generator().manual_seed(3))
    plain = pipe.process(raw, augment=False)
    assert a["image"].shape == (4, 1, 64, 96)  # 64 x 80 padded to a multiple of 32
    torch.testing.assert_close(a["image"], b["image"])
    torch.testing.assert_close(a["CentroidConfmapsHead"], b["CentroidConfmapsHead"])
    assert not torch.allclose(a["image"], plain["image"])


def test_bad_anchor_and_part_names_are_clear_errors(synthetic_labels):
    with pytest.raises(PosekitError, match="anchor part 'nose'"):
        _pipeline(_config({"centroid": {"anchor_part": "nose"}}), synthetic_labels)
    with pytest.raises(PosekitError, match="skeleton mismatch.*'paw'"):
        _pipeline(_config({"single_instance": {"part_names": ["head", "paw"]}}), synthetic_labels)


def test_flips_swap_the_pairs_the_part_names_spell_when_none_are_declared(synthetic_labels):
    """Skeleton without symmetries, flips on: the pipeline swaps left/right (named so)
    and says so; with flips off it says nothing."""
    import copy
    import warnings

    labels = copy.deepcopy(synthetic_labels)
    labels.skeleton.symmetries = []
    heads = {"single_instance": {"sigma": 1.0, "output_stride": 2}}
    with pytest.warns(UserWarning, match="left/right"):
        pipe = _pipeline(_config(heads, aug={"random_flip": True}), labels)
    names = labels.node_names
    assert [(names[a], names[b]) for a, b in pipe.symmetry_inds] == [("left", "right")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _pipeline(_config(heads), labels).symmetry_inds == []
