"""Similarities, matchers, culling and post-processing on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.tracking.culling import cull_indices
from posekit.tracking.matching import greedy_matching, hungarian_matching, match_margins
from posekit.tracking.options import ALIASES, canonical_name, resolve_options
from posekit.tracking.poses import FramePoses
from posekit.tracking.postprocess import (
    clean_instance_count,
    connect_single_breaks,
    drop_short_tracks,
)
from posekit.tracking.similarity import (
    centroid_similarity,
    instance_similarity,
    iou_similarity,
    object_keypoint_similarity,
)

A = np.array([[[0.0, 0.0], [10.0, 0.0]]])  # one instance, two nodes


def test_instance_similarity_is_sleaps_pixel_gaussian():
    near = A + [1.0, 0.0]
    far = A + [50.0, 0.0]
    sim = instance_similarity(A, np.concatenate([A, near, far]))
    assert sim[0, 0] == pytest.approx(1.0)
    assert sim[0, 1] == pytest.approx(np.exp(-1.0))
    assert sim[0, 2] == pytest.approx(0.0, abs=1e-12)
    # normalised by the instance's visible nodes: a missing candidate node counts 0
    half = A.copy()
    half[0, 1] = np.nan
    assert instance_similarity(A, half)[0, 0] == pytest.approx(0.5)


def test_centroid_and_iou_similarity():
    moved = A + [3.0, 4.0]
    assert centroid_similarity(A, moved)[0, 0] == pytest.approx(-5.0)
    box = np.array([[[0.0, 0.0], [10.0, 10.0]]])
    half = np.array([[[5.0, 0.0], [15.0, 10.0]]])
    assert iou_similarity(box, box)[0, 0] == pytest.approx(1.0)
    assert iou_similarity(box, half)[0, 0] == pytest.approx(50 / 150)


def test_object_keypoint_similarity_errors_and_normalisation():
    moved = A + [2.0, 0.0]
    s1 = object_keypoint_similarity(A, moved, errors=1.0)[0, 0]
    s2 = object_keypoint_similarity(A, moved, errors=2.0)[0, 0]
    assert s1 == pytest.approx(np.exp(-4 / 2))
    assert s2 == pytest.approx(np.exp(-4 / 8))
    part = moved.copy()
    part[0, 1] = np.nan
    assert object_keypoint_similarity(A, part, normalization="all")[0, 0] == pytest.approx(
        np.exp(-2) / 2
    )
    assert object_keypoint_similarity(A, part, normalization="union")[0, 0] == pytest.approx(
        np.exp(-2)
    )
    with pytest.raises(PosekitError, match="oks_errors"):
        object_keypoint_similarity(A, moved, errors=[1, 2, 3])


def test_greedy_differs_from_hungarian_where_it_should():
    cost = np.array([[1.0, 2.0], [1.5, 10.0]])
    assert sorted(greedy_matching(cost)) == [(0, 0), (1, 1)]  # takes 1.0 first: total 11
    assert sorted(hungarian_matching(cost)) == [(0, 1), (1, 0)]  # total 3.5
    # pairs with nothing comparable are never matched
    assert greedy_matching(np.array([[np.inf]])) == []
    assert hungarian_matching(np.array([[np.inf, 1.0]])) == [(0, 1)]


def test_match_margins_name_the_weak_decision():
    sim = np.array([[0.9, 0.1], [0.2, 0.25]])
    m = match_margins(sim, [(0, 0), (1, 1)])
    assert m[0] == pytest.approx(0.9 - 0.2)
    assert m[1] == pytest.approx(0.25 - 0.2)


def test_culling_keeps_best_scores_and_suppresses_duplicates():
    box = np.array([[0.0, 0.0], [10.0, 10.0]])
    pts = np.stack([box, box + 0.5, box + 100])
    scores = np.array([0.9, 0.8, 0.5])
    assert cull_indices(pts, scores, 2).tolist() == [0, 1]  # score only: keeps the duplicate
    assert cull_indices(pts, scores, 2, iou_threshold=0.5).tolist() == [0, 2]
    assert cull_indices(pts, scores, 5).tolist() == [0, 1, 2]


def _frames(track_rows):
    out = []
    for t, ids in enumerate(track_rows):
        k = len(ids)
        out.append(
            FramePoses(
                frame_idx=t,
                points=np.zeros((k, 2, 2)) + t,
                scores=np.arange(k, 0, -1, dtype=float),
                point_scores=np.ones((k, 2)),
                instances=[None] * k,
                track_ids=np.array(ids, dtype=np.int64),
            )
        )
    return out


def test_connect_single_breaks_renames_the_new_track():
    frames = _frames([[0, 1], [0, 1], [0, 2], [0, 2], [2, 0]])
    connect_single_breaks(frames, 2)
    assert [fr.track_ids.tolist() for fr in frames] == [[0, 1], [0, 1], [0, 1], [0, 1], [1, 0]]


def test_drop_short_tracks_and_clean_instance_count():
    frames = _frames([[0, 1, 5], [0, 1], [0, 1]])
    drop_short_tracks(frames, 2)
    assert [fr.track_ids.tolist() for fr in frames] == [[0, 1], [0, 1], [0, 1]]
    frames = _frames([[0, 1, 2], [0, 1], [0, 1]])
    clean_instance_count(frames, 2)
    assert [len(fr) for fr in frames] == [2, 2, 2]


def test_options_aliases_and_bad_values():
    assert canonical_name("--tracking.max_tracks") == "max_tracks"
    assert canonical_name("tracking.of_window_size") == "of_window_size"
    assert ALIASES["window_size"] == "track_window"
    opts = resolve_options(**{"tracking.tracker": "flow", "tracking.target_instance_count": 2})
    assert opts.tracker == "flow" and opts.instance_count == 2
    assert resolve_options(max_tracks=3).tracker == "global"  # best for a known count
    assert resolve_options().tracker == "simple"
    with pytest.raises(PosekitError, match="max_tracks=0"):
        resolve_options(max_tracks=0)
    with pytest.raises(PosekitError, match="did you mean 'hungarian'"):
        resolve_options(match="hungarain")
    with pytest.raises(PosekitError, match="tracking option"):
        resolve_options(**{"tracking.no_such_thing": 1})
    with pytest.raises(PosekitError, match="max_tracks=N"):
        resolve_options(tracker="global")
