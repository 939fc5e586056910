"""`posekit suggest` / `posekit.suggest`: frames ranked by the model's doubt, written as
SLEAP suggestions into a new project. The pieces on arrays with known answers; the whole
on SLEAP's trained robot model and its project from ``../shared`` (skipped without)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from tracking_helpers import SHARED, sio

from posekit.cli import main
from posekit.tracking.suggest import (
    FrameDoubt,
    _disagreement,
    _rotated,
    _rotation,
    explain_path,
    pick_frames,
    spread_separation,
)

MODEL = SHARED / "sleap_models" / "minimal_robot.UNet.single_instance"
PROJECT = SHARED / "data" / "minimal" / "small_robot_minimal.slp"


def test_rotation_maps_points_back():
    pytest.importorskip("torchvision")
    img = np.zeros((1, 61, 81, 1), dtype=np.uint8)
    img[0, 15, 60] = 255
    out = _rotated(img, 20.0)[0, ..., 0].astype(float)
    yy, xx = np.mgrid[:61, :81]
    found = np.array([(out * xx).sum(), (out * yy).sum()]) / out.sum()
    R, c = _rotation(20.0, img.shape[1:3])
    np.testing.assert_allclose(c + R @ (np.array([60.0, 15.0]) - c), found, atol=0.3)
    np.testing.assert_allclose((found - c) @ R + c, [60.0, 15.0], atol=0.3)  # and back


def test_disagreement_counts_moved_missing_and_extra_points():
    a = [np.array([[0.0, 0.0], [100.0, 0.0], [50.0, 0.0]])]
    assert _disagreement(a, [a[0] + 1.0], 0.05, 3.0) == 0.0  # 1.4 px < 5 px: same answer
    moved = a[0].copy()
    moved[1] += 20.0
    assert _disagreement(a, [moved], 0.05, 3.0) == pytest.approx(1 / 3)
    # a ghost: its 3 of the 9 points have no partner
    assert _disagreement(a, [a[0], a[0] + 300], 0.05, 3.0) == pytest.approx(1 / 3)
    assert _disagreement(a, [], 0.05, 3.0) == 1.0


def test_picks_are_separated_and_videos_take_turns():
    v1, v2 = sio.Video(filename="a.mp4"), sio.Video(filename="b.mp4")
    doubts = [FrameDoubt(v1, f, {"low_score": 1.0 - f / 100}) for f in range(30)]
    doubts += [FrameDoubt(v2, f, {"low_score": 0.5}) for f in (3, 4, 40)]
    picks = pick_frames(doubts, 5, min_separation=10)
    assert [(p.video.filename, p.frame_idx) for p in picks] == [
        ("a.mp4", 0),
        ("b.mp4", 3),
        ("a.mp4", 10),
        ("b.mp4", 40),
        ("a.mp4", 20),
    ]
    d = FrameDoubt(v1, 0, {"low_score": 0.05, "jump": 0.5, "augmentation": 0.25})
    assert d.reason == "jump 0.50, augmentation 0.25" and d.score == pytest.approx(0.8)


def test_picks_spread_over_a_run_of_doubtful_frames():
    """A stretch of doubtful frames does not take every pick: picks stay half the even
    spacing apart (99 frames / (2 x 4) = 12) while still following the doubt."""
    v = sio.Video(filename="a.mp4")
    doubts = [FrameDoubt(v, f, {"low_score": 1.0 - f / 100}) for f in range(100)]
    assert spread_separation(range(100), 4) == 12
    picks = pick_frames(doubts, 4, min_separation=1)
    assert [p.frame_idx for p in picks] == [0, 12, 24, 36]
    # a larger --min-separation still wins
    assert [p.frame_idx for p in pick_frames(doubts, 4, min_separation=20)] == [0, 20, 40, 60]


needs_shared = pytest.mark.skipif(
    not (MODEL.exists() and PROJECT.exists()), reason="shared SLEAP model and data absent"
)


@needs_shared
def test_suggest_writes_a_new_project_with_labels_intact(tmp_path, capsys):
    out = tmp_path / "next.slp"
    argv = ["suggest", str(MODEL), str(PROJECT), "-o", str(out), "--n", "3"]
    argv += ["--min-separation", "3", "--frames", "0-11", "--explain", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    before, after = sio.load_slp(str(PROJECT)), sio.load_slp(str(out))
    assert [v.filename for v in after.videos] == [v.filename for v in before.videos]
    assert len(after.labeled_frames) == len(before.labeled_frames)
    for a, b in zip(after.labeled_frames, before.labeled_frames):
        assert a.frame_idx == b.frame_idx and len(a.user_instances) == len(b.user_instances)
        for ia, ib in zip(a.instances, b.instances):
            np.testing.assert_array_equal(ia.numpy(), ib.numpy())
    labelled = {lf.frame_idx for lf in before.labeled_frames}
    new = sorted(s.frame_idx for s in after.suggestions)
    assert len(after.suggestions) == len(before.suggestions) + 3
    assert all(0 <= f <= 11 and f not in labelled for f in new)
    assert min(np.diff(new)) >= 3
    with open(explain_path(out)) as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(int(r["frame_idx"]) for r in rows) == new
    doubts = [float(r["doubt"]) for r in rows]
    assert doubts == sorted(doubts, reverse=True)
    parts = ["low_score", "augmentation", "jump", "count_change", "identity"]
    for r in rows:
        assert float(r["doubt"]) == pytest.approx(sum(float(r[p]) for p in parts), abs=2e-3)
    kept = after.provenance["posekit.suggest"]["frames"]
    assert [k["frame_idx"] for k in kept] == [int(r["frame_idx"]) for r in rows]
    assert "Suggested 3 frames" in printed and rows[0]["reason"] in printed
    # the input is never the output
    assert main([*argv[:3], "-o", str(PROJECT), *argv[5:]]) == 2


@needs_shared
def test_suggest_from_python_ranks_the_frames_it_was_given(tmp_path):
    import posekit

    picks = posekit.suggest(
        MODEL,
        [PROJECT],
        tmp_path / "p.slp",
        n=2,
        min_separation=0,
        frames="5-8",
        rotation=0,
        device="cpu",
    )
    assert len(picks) == 2 and all(5 <= p.frame_idx <= 8 for p in picks)
    assert all(p.parts["augmentation"] == 0.0 for p in picks)  # rotation 0: not measured
    assert picks[0].score >= picks[1].score


class _FakePredictor:
    """Two animals walking apart; frame 3 scored low, frame 5 loses one animal, frame 7
    has a spike, frames 11-12 bring the animals together (a close identity decision)."""

    batch_size = 4
    skeleton = sio.Skeleton(nodes=["a", "b", "c"], edges=[("a", "b"), ("b", "c")])

    def predict_images(self, images):
        from posekit.inference.predictors.base import RawInstance

        out = []
        for img in images:
            f = int(img[0, 0, 0])
            gap = 60.0 if f not in (11, 12) else 6.0
            insts = []
            for k in range(2):
                pts = np.array([[10.0, 0], [20, 0], [30, 0]]) + [2.0 * f, 100 + gap * k]
                scores = np.full(3, 0.9)
                if f == 3:
                    scores[:] = 0.2
                if f == 7 and k == 0:
                    pts[2] += 40.0
                if f == 5 and k == 1:
                    continue
                insts.append(RawInstance(pts, scores, float(scores.mean())))
            out.append(insts)
        return out


class _FakeVideo:
    filename = "fake.mp4"

    def __getitem__(self, i):
        return np.full((4, 4, 1), i, dtype=np.uint8)


def test_each_doubt_names_its_frame():
    from posekit.tracking.suggest import frame_doubts

    doubts = frame_doubts(_FakePredictor(), _FakeVideo(), range(16), rotation=0)
    top = {name: max(doubts, key=lambda d: d.parts[name]).frame_idx for name in doubts[0].parts}
    assert top["low_score"] == 3
    assert top["jump"] == 7 and doubts[7].parts["jump"] == pytest.approx(1 / 6)
    assert {d.frame_idx for d in doubts if d.parts["count_change"]} == {4, 5, 6}
    close = {d.frame_idx for d in doubts if d.parts["identity"] > 0.9}
    assert 11 in close and close <= {6, 11, 13}  # 6: the lost animal comes back
    assert np.median([d.parts["identity"] for d in doubts]) == 0.0
    assert all(d.parts["augmentation"] == 0 for d in doubts)
