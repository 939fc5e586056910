"""track() and Tracker on synthetic videos: identities, max_tracks, offline, suggestions."""

from __future__ import annotations

import numpy as np
import pytest
from tracking_helpers import identity_map, make_labels, make_skeleton, n_switches, sio

import posekit
from posekit.errors import PosekitError
from posekit.tracking import Tracker, track


def _two_walkers(n=40):
    t = np.arange(n)
    a = np.stack([100 + 2 * t, np.full(n, 100.0)], axis=1)
    b = np.stack([100 + 2 * t, np.full(n, 200.0)], axis=1)
    return np.stack([a, b])


@pytest.mark.parametrize("similarity", ["instance", "centroid", "iou", "object_keypoint"])
@pytest.mark.parametrize("match", ["greedy", "hungarian"])
def test_simple_tracker_keeps_identities(similarity, match):
    labels, truth = make_labels(_two_walkers())
    out = track(labels, "simple", similarity=similarity, match=match)
    ids = identity_map(out, truth)
    assert n_switches(ids) == 0
    assert len({ids[0][0], ids[0][1]}) == 2
    assert len(out.tracks) == 2
    # every instance has a tracking score; matched ones carry their similarity
    scores = [i.tracking_score for lf in out.labeled_frames[1:] for i in lf.instances]
    assert all(s is not None for s in scores)


def test_input_is_not_modified_and_tracks_are_reassigned():
    labels, truth = make_labels(_two_walkers(10))
    stale = sio.Track(name="stale")
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            inst.track = stale
    out = posekit.track(labels, "simple")  # the lazy top-level name
    assert all(i.track is stale for lf in labels.labeled_frames for i in lf.instances)
    assert {t.name for t in out.tracks} == {"track_0", "track_1"}
    kept = track(labels, "simple", keep_tracks=True)
    assert {t.name for t in kept.tracks} == {"stale"}


def test_max_tracks_culls_extra_instances_by_score():
    traj = _two_walkers(20)
    extra = np.stack([np.stack([np.full(20, 400.0), np.full(20, 400.0)], axis=1)])
    labels, truth = make_labels(np.concatenate([traj, extra]), scores=[0.9, 0.8, 0.1])
    out = track(labels, "simple", max_tracks=2)
    assert len(out.tracks) == 2
    assert all(len(lf.instances) == 2 for lf in out.labeled_frames)
    # without the cap the false animal gets its own track
    assert len(track(labels, "simple").tracks) == 3


def test_online_tracker_frame_by_frame_matches_batch():
    labels, truth = make_labels(_two_walkers(15))
    tracker = Tracker(tracker="simple", max_tracks=2)
    names = []
    for lf in labels.labeled_frames:
        new = tracker.track_frame(lf)
        names.append(
            {truth[lf.frame_idx][i]: inst.track.name for i, inst in enumerate(new.instances)}
        )
    assert all(n == names[0] for n in names)
    with pytest.raises(PosekitError, match="increasing frame order"):
        tracker.track_frame(labels.labeled_frames[3])


def test_min_track_length_drops_blips():
    traj = _two_walkers(20)
    labels, truth = make_labels(traj)
    blip = sio.PredictedInstance.from_numpy(
        points_data=np.full((3, 2), 500.0),
        skeleton=labels.skeletons[0],
        point_scores=np.ones(3),
        score=0.5,
    )
    labels.labeled_frames[5].instances.append(blip)
    assert len(track(labels, "simple").tracks) == 3
    out = track(labels, "simple", min_track_length=3)
    assert len(out.tracks) == 2
    assert len(out.labeled_frames[5].instances) == 2


def _meet_and_bounce(n=60, sizes=(10.0, 14.0)):
    """Two animals meet, stand on the same spot for 3 frames and go back the way they came.

    After the meeting, motion says nothing about who is who (both stood still, both leave
    at the same speed): only body size can tell them apart.
    """
    mid = n // 2
    t = np.arange(n, dtype=float)
    before = np.clip(mid - 1 - t, 0, None)
    after = np.clip(t - mid - 1, 0, None)
    xa = 200 - 4 * before - 4 * after
    xb = 200 + 4 * before + 4 * after
    a = np.stack([xa, np.full(n, 150.0)], axis=1)
    b = np.stack([xb, np.full(n, 150.0)], axis=1)
    return np.stack([a, b]), list(sizes), mid


def test_global_uses_body_shape_to_undo_a_crossing_swap():
    traj, sizes, mid = _meet_and_bounce()
    labels, truth = make_labels(traj, sizes=sizes)
    out = track(labels, max_tracks=2)  # no tracker named: posekit's best, 'global'
    assert out.provenance["tracking"]["tracker"] == "global"
    ids = identity_map(out, truth)
    assert n_switches(ids) == 0
    assert len(out.tracks) == 2
    # the meeting is where the weakest decision was: suggested for proofreading
    sugg = [s.frame_idx for s in out.suggestions]
    assert sugg and abs(sugg[0] - mid) <= 3
    assert all(s.metadata["source"] == "posekit.tracking" for s in out.suggestions)
    # the same meeting with identical bodies: nothing can tell them apart, and the
    # decision is reported as a coin flip (tracking score ~0.5 after the meeting)
    labels, truth = make_labels(traj, sizes=[10.0, 10.0])
    out = track(labels, max_tracks=2)
    late = [i.tracking_score for lf in out.labeled_frames[mid + 3 :] for i in lf.instances]
    assert max(late) < 0.75


def test_global_uses_identity_classes_when_present():
    traj, _, _ = _meet_and_bounce()
    labels, truth = make_labels(traj)  # identical bodies: only the classes can tell
    classes = [sio.Identity(name="female"), sio.Identity(name="male")]
    for lf in labels.labeled_frames:
        for i, inst in enumerate(lf.instances):
            inst.identity = classes[truth[lf.frame_idx][i]]
            inst.identity_score = 0.7
    out = track(labels, max_tracks=2)
    assert {t.name for t in out.tracks} == {"female", "male"}
    for lf in out.labeled_frames:
        for i, inst in enumerate(lf.instances):
            assert inst.track.name == ["female", "male"][truth[lf.frame_idx][i]]


def test_bad_inputs_are_one_clear_error(tmp_path):
    skel = make_skeleton()
    video = sio.Video(filename="x.mp4")
    empty = sio.Labels(
        [sio.LabeledFrame(video=video, frame_idx=0)], videos=[video], skeletons=[skel]
    )
    with pytest.raises(PosekitError, match="no instances"):
        track(empty)
    labels, _ = make_labels(_two_walkers(5))
    with pytest.raises(PosekitError, match="max_tracks=0"):
        track(labels, max_tracks=0)
    missing = sio.Video(filename=str(tmp_path / "missing.mp4"))
    for lf in labels.labeled_frames:
        lf.video = missing
    with pytest.raises(PosekitError, match="tracker='simple'"):
        track(labels, "flow")
    other = make_skeleton(4)
    labels.labeled_frames[2].instances.append(
        sio.PredictedInstance.from_numpy(
            points_data=np.zeros((4, 2)), skeleton=other, point_scores=np.ones(4), score=1.0
        )
    )
    with pytest.raises(PosekitError, match="different skeletons"):
        track(labels, "simple")
    with pytest.raises(PosekitError, match="sleap_io.Labels"):
        track([1, 2, 3])
