"""Identity assignment for multi-class models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posekit.inference.identity import (
    classify_peaks_from_maps,
    classify_peaks_from_vectors,
    ensure_probabilities,
    group_class_peaks,
)


def test_group_class_peaks_hungarian_and_best_class_rule():
    probs = np.array(
        [
            [0.9, 0.1],  # sample 0, node 0
            [0.3, 0.7],  # sample 0, node 0
            [0.6, 0.4],  # sample 1, node 0 -> Hungarian gives class 1 but best is 0: dropped
            [0.95, 0.05],  # sample 1, node 0
        ]
    )
    peak_inds, class_inds = group_class_peaks(
        probs, np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), n_samples=2, n_channels=1
    )
    pairs = dict(zip(peak_inds.tolist(), class_inds.tolist()))
    assert pairs == {0: 0, 1: 1, 3: 0}


def test_classify_from_maps_builds_one_instance_per_class():
    # 2 classes; class 0 owns the left half, class 1 the right half of a 10x10 map.
    class_maps = torch.zeros(1, 2, 10, 10)
    class_maps[0, 0, :, :5] = 0.9
    class_maps[0, 1, :, 5:] = 0.8
    pts = torch.tensor([[7.2, 3.0], [1.0, 2.4], [2.0, 6.0], [8.0, 8.0]])
    vals = torch.tensor([0.5, 0.6, 0.7, 0.8])
    samples = torch.tensor([0, 0, 0, 0])
    channels = torch.tensor([0, 0, 1, 1])
    points, point_vals, class_probs = classify_peaks_from_maps(
        class_maps, pts, vals, samples, channels, n_channels=2
    )
    assert points.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(points[0, 0], [[1.0, 2.4], [2.0, 6.0]], atol=1e-6)
    np.testing.assert_allclose(points[0, 1], [[7.2, 3.0], [8.0, 8.0]], atol=1e-6)
    np.testing.assert_allclose(point_vals[0], [[0.6, 0.7], [0.5, 0.8]], atol=1e-6)
    np.testing.assert_allclose(class_probs[0], [[0.9, 0.9], [0.8, 0.8]], atol=1e-6)


def test_classify_from_vectors_assigns_crops_per_frame():
    pts = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)
    vals = np.ones((4, 2), np.float32)
    probs = np.array([[0.2, 0.8], [0.7, 0.3], [0.9, 0.1], [0.6, 0.4]])
    samples = np.array([0, 0, 1, 1])
    points, point_vals, class_probs, crop_inds = classify_peaks_from_vectors(
        pts, vals, probs, samples, n_samples=2
    )
    assert crop_inds.tolist() == [[1, 0], [2, -1]]  # crop 3 lost class 0 to crop 2
    np.testing.assert_array_equal(points[0, 0], pts[1])
    np.testing.assert_array_equal(points[0, 1], pts[0])
    assert np.isnan(points[1, 1]).all()
    np.testing.assert_allclose(class_probs, [[0.7, 0.8], [0.9, np.nan]])


def test_ensure_probabilities():
    p = torch.tensor([[0.25, 0.75]])
    assert ensure_probabilities(p).tolist() == [[0.25, 0.75]]
    logits = torch.tensor([[2.0, 0.0]])
    out = ensure_probabilities(logits)
    assert out.sum().item() == pytest.approx(1.0)
    assert out[0, 0].item() == pytest.approx(np.exp(2) / (np.exp(2) + 1))
