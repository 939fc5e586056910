"""The batch sized to a memory budget (`posekit.inference.memory`): large frames, smaller
batches; an explicit batch is kept with a warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _inference_fakes import tiny_bottomup

from posekit.errors import PosekitError
from posekit.inference import memory
from posekit.inference.memory import (
    LiveTensorBytes,
    choose_batch_size,
    format_bytes,
    parse_memory,
)

UHD = (2160, 3840, 3)


def bottomup_model(filters=4):
    return tiny_bottomup(filters=filters)


def predictor(**kwargs):
    from posekit.inference.predictors.bottomup import BottomUpPredictor

    return BottomUpPredictor(bottomup_model(), device="cpu", progress=False, **kwargs)


def test_live_tensor_bytes_counts_storages_alive_at_once():
    keep = torch.ones(1000)  # made before: not counted
    with LiveTensorBytes() as live:
        a = keep * 2  # 4000 bytes
        b = a + 1  # 8000 alive
        view = b[:10]  # a view: no new storage
        del a, b  # b's storage lives on in the view
        c = torch.zeros(500)  # 4000 + 2000
        assert live.live == 6000
        del view, c
    assert live.peak == 8000 and live.live == 0


def test_parse_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 10 * 2**30)
    assert parse_memory("4G") == 4 * 2**30
    assert parse_memory("512M") == 512 * 2**20
    assert parse_memory("1.5GB") == int(1.5 * 2**30)
    assert parse_memory("60%") == 6 * 2**30
    assert parse_memory(123456) == 123456
    assert parse_memory(None, "cpu") == int(0.25 * 10 * 2**30)  # the CPU default share
    for bad in ("lots", "0G", "-1G", "150%", "4Q", 0):
        with pytest.raises(PosekitError, match="is not a size"):
            parse_memory(bad)


def test_the_estimate_follows_the_measured_memory_of_a_frame():
    """The two-size probe predicts what a 320 x 480 frame really allocates."""
    pred = predictor()
    cost = pred.frame_cost()
    frames = torch.zeros((1, 320, 480, 3), dtype=torch.uint8)
    with torch.inference_mode(), LiveTensorBytes() as live:
        pred._probe_batch(frames)
    predicted = cost.fixed + cost.per_pixel * 320 * 480
    assert 0.75 < predicted / live.peak < 1.4, (predicted, live.peak)


def test_large_frames_get_smaller_batches():
    pred = predictor()
    cost = pred.frame_cost()
    uhd = cost.frame_bytes(UHD)
    small = cost.frame_bytes((512, 512, 3))
    assert uhd > 25 * small  # cost grows with the pixels
    pred.max_memory = int(cost.fixed + 2.5 * uhd)  # room for two 4K frames
    assert pred.plan_batch((512, 512, 3)) == 4
    assert pred.plan_batch(UHD) == 2
    plan = pred.batch_plans[UHD]
    assert plan.warning is None and "batch 2" in plan.describe() and "3840x2160" in plan.describe()
    pred.batch_plans.clear()
    pred.max_memory = int(cost.fixed + 1.5 * uhd)
    assert pred.plan_batch(UHD) == 1
    pred.batch_plans.clear()
    pred.max_memory = int(uhd / 2)  # not even one frame: one at a time, with a warning
    assert pred.plan_batch(UHD) == 1 and "one frame at a time" in pred.batch_plans[UHD].warning


def test_auto_batches_divide_the_largest_batch():
    # 3 frames would fit, but resumable chunks are multiples of 4: take 2
    plan = choose_batch_size(100, 350, None, frame_shape=(10, 10, 1))
    assert plan.batch_size == 2 and not plan.explicit


def test_an_explicit_batch_is_kept_with_a_warning(monkeypatch):
    pred = predictor(batch_size=3, max_memory="1K")
    pred.frame_cost()  # the probe's own batches are not counted below
    sizes = []
    inner = pred._predict_batch

    def record(images, gt):
        sizes.append(int(images.shape[0]))
        return inner(images, gt)

    monkeypatch.setattr(pred, "_predict_batch", record)
    frames = np.zeros((7, 64, 96, 3), np.uint8)
    with pytest.warns(UserWarning, match="--batch-size 3 may need about .* more than the memory"):
        pred.predict(frames)
    assert sizes == [3, 3, 1]
    assert pred.batch_plans[(64, 96, 3)].explicit

    # the same frames without an explicit batch: one at a time, said once
    auto = predictor(max_memory="1K")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = auto.predict(frames)
    said = [w for w in caught if "one frame at a time" in str(w.message)]
    assert len(said) == 1 and auto.batch_plans[(64, 96, 3)].batch_size == 1
    assert len(labels.labeled_frames) == 7


def test_format_bytes():
    assert format_bytes(3 * 2**30) == "3.00 GiB"
    assert format_bytes(1536 * 2**10) == "1.50 MiB"
    assert format_bytes(12) == "12 B"
