"""PAF grouping on hand-built fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posekit.inference.paf_grouping import (
    EdgeConnection,
    PAFGrouper,
    assign_connections_to_instances,
    match_candidates,
    score_paf_lines,
    toposort_edges,
)
from posekit.ops.peaks import find_local_peaks


def paf_for(instances, edges, img_hw, stride, sigma=3.0):
    """PAFs (2E, H/stride, W/stride): Gaussian of the distance to each limb times its unit
    vector (GUIDE section 6), summed over instances."""
    h, w = img_hw[0] // stride, img_hw[1] // stride
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) * stride,
        torch.arange(w, dtype=torch.float64) * stride,
        indexing="ij",
    )
    pafs = torch.zeros(2 * len(edges), h, w, dtype=torch.float64)
    for inst in instances:
        for k, (s, d) in enumerate(edges):
            p0 = torch.tensor(inst[s], dtype=torch.float64)
            p1 = torch.tensor(inst[d], dtype=torch.float64)
            v = p1 - p0
            length = torch.linalg.norm(v)
            u = v / length
            t = ((xx - p0[0]) * u[0] + (yy - p0[1]) * u[1]).clamp(0, length)
            dx = xx - (p0[0] + t * u[0])
            dy = yy - (p0[1] + t * u[1])
            g = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
            pafs[2 * k] += g * u[0]
            pafs[2 * k + 1] += g * u[1]
    return pafs.float()


def confmaps_for(instances, n_nodes, img_hw, stride, sigma=1.5):
    h, w = img_hw[0] // stride, img_hw[1] // stride
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32) * stride,
        torch.arange(w, dtype=torch.float32) * stride,
        indexing="ij",
    )
    cms = torch.zeros(n_nodes, h, w)
    for inst in instances:
        for n, (x, y) in enumerate(inst):
            cms[n] = torch.maximum(
                cms[n], torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
            )
    return cms


# Two animals whose A->B limbs cross at (55, 55); nearest-neighbour grouping would pair
# A of one animal with B of the other (30 px apart instead of 42).
ANIMALS = [
    [(40.0, 40.0), (70.0, 70.0), (90.0, 70.0)],
    [(40.0, 70.0), (70.0, 40.0), (90.0, 40.0)],
]
EDGES = [(0, 1), (1, 2)]


def test_crossing_animals_are_grouped_correctly():
    img_hw = (128, 128)
    cm_stride, paf_stride = 2, 4  # PAFs at a coarser stride than the confidence maps
    cms = confmaps_for(ANIMALS, 3, img_hw, cm_stride)[None]
    pafs = paf_for(ANIMALS, EDGES, img_hw, paf_stride)[None]
    peaks, vals, samples, channels = find_local_peaks(cms, threshold=0.2)
    assert peaks.shape[0] == 6
    grouper = PAFGrouper(edges=EDGES, n_nodes=3, pafs_stride=paf_stride)
    (result,) = grouper.group(pafs, peaks * cm_stride, vals, samples, channels)
    assert len(result) == 2
    truth = np.array(ANIMALS)
    for inst in result.points:
        d = np.abs(truth - inst[None]).max(axis=(1, 2))
        assert d.min() < 0.5  # every predicted instance is one whole true animal
    matched = {
        int(np.argmin(np.abs(truth - inst[None]).max(axis=(1, 2)))) for inst in result.points
    }
    assert matched == {0, 1}
    # Point scores are the confidence-map values; instance scores sum two line scores.
    assert np.all(result.point_scores > 0.9)
    assert np.all(result.instance_scores > 2 * 0.25)
    assert np.all(result.instance_scores <= 2.0 + 1e-5)


def test_max_instances_keeps_best_scores():
    img_hw = (128, 128)
    cms = confmaps_for(ANIMALS, 3, img_hw, 2)[None]
    pafs = paf_for(ANIMALS, EDGES, img_hw, 4)[None]
    pafs[0, :, :, :16] *= 0.5  # weaken animal 0's A->B limb area a little (x < 64)
    peaks, vals, samples, channels = find_local_peaks(cms, threshold=0.2)
    full = PAFGrouper(edges=EDGES, n_nodes=3, pafs_stride=4).group(
        pafs, peaks * 2, vals, samples, channels
    )[0]
    one = PAFGrouper(edges=EDGES, n_nodes=3, pafs_stride=4, max_instances=1).group(
        pafs, peaks * 2, vals, samples, channels
    )[0]
    assert len(full) == 2 and len(one) == 1
    assert one.instance_scores[0] == pytest.approx(full.instance_scores.max())


def test_line_score_formula_by_hand():
    # Uniform field pointing +x: a horizontal line scores 1 + penalty, a vertical 0 + penalty.
    pafs = torch.zeros(2, 20, 20)
    pafs[0] = 1.0
    peaks = torch.tensor([[2.0, 2.0], [12.0, 2.0], [2.0, 18.0]])
    channels = torch.tensor([0, 1, 1])
    ((src, dst, scores),) = score_paf_lines(pafs, peaks, channels, [(0, 1)], pafs_stride=1)
    max_len = 0.25 * 20 * 1
    assert src.tolist() == [0] and dst.tolist() == [1, 2]
    assert scores[0, 0] == pytest.approx(1.0 + min(max_len / 10.0 - 1, 0))
    assert scores[0, 1] == pytest.approx(0.0 + min(max_len / 16.0 - 1, 0))
    # Without the penalty (short line) the score is exactly the mean dot product.
    ((_, _, s2),) = score_paf_lines(
        pafs, torch.tensor([[2.0, 2.0], [5.0, 6.0]]), torch.tensor([0, 1]), [(0, 1)], 1
    )
    assert s2[0, 0] == pytest.approx(3.0 / 5.0)


def test_min_line_scores_threshold_drops_weak_connections():
    pafs = torch.zeros(2, 32, 32)
    pafs[0] = 0.3  # weak field along +x
    peaks = torch.tensor([[2.0, 2.0], [6.0, 2.0]])
    vals = torch.tensor([1.0, 1.0])
    ch = torch.tensor([0, 1])
    s = torch.tensor([0, 0])
    strict = PAFGrouper([(0, 1)], 2, 1, min_line_scores=0.31).group(pafs[None], peaks, vals, s, ch)
    loose = PAFGrouper([(0, 1)], 2, 1, min_line_scores=0.29).group(pafs[None], peaks, vals, s, ch)
    assert len(strict[0]) == 0
    assert len(loose[0]) == 1
    assert loose[0].instance_scores[0] == pytest.approx(0.3)


def test_match_candidates_maximises_total_and_skips_nan():
    scores = np.array([[0.9, 0.8], [0.85, 0.1]])
    rows, cols, matched = match_candidates(scores)
    # Greedy would take 0.9 then 0.1 (sum 1.0); Hungarian takes 0.8 + 0.85.
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}
    assert matched.tolist() == pytest.approx([0.8, 0.85])
    rows, cols, matched = match_candidates(np.array([[np.nan, 0.5]]))
    assert cols.tolist() == [1]


def test_toposort_edges_bfs_from_root():
    # thorax(1) -> head(0), thorax -> abdomen(2), abdomen -> tail(3); listed out of order.
    edges = [(2, 3), (1, 0), (1, 2)]
    assert toposort_edges(edges) == [1, 2, 0]
    assert toposort_edges([]) == []


def test_assignment_merges_and_min_instance_peaks():
    conns = [
        ((0, 1), [EdgeConnection(0, 0, 0.9), EdgeConnection(1, 1, 0.8)]),
        ((1, 2), [EdgeConnection(0, 0, 0.7)]),
    ]
    assign = assign_connections_to_instances(conns)
    assert assign[(0, 0)] == assign[(1, 0)] == assign[(2, 0)]
    assert assign[(0, 1)] == assign[(1, 1)] != assign[(0, 0)]
    kept = assign_connections_to_instances(conns, min_instance_peaks=3)
    assert set(kept) == {(0, 0), (1, 0), (2, 0)}
    kept = assign_connections_to_instances(conns, min_instance_peaks=0.5, n_nodes=3)
    assert len(kept) == 5  # int(0.5 * 3) = 1 peak minimum


def test_bad_edges_and_paf_shape_are_reported():
    with pytest.raises(ValueError, match="outside 0..1"):
        PAFGrouper([(0, 2)], n_nodes=2, pafs_stride=1)
    with pytest.raises(ValueError, match=r"2 \* n_edges"):
        score_paf_lines(torch.zeros(3, 4, 4), torch.zeros(0, 2), torch.zeros(0), [(0, 1)], 1)
