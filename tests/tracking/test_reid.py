"""Re-identification: identity vectors carry identities across a long occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.tracking.global_assignment import assign_identities
from posekit.tracking.options import resolve_options
from posekit.tracking.poses import FramePoses


def _pose(x: float, y: float, rng) -> np.ndarray:
    """A 3-node animal (head, middle, tail) facing right, with 0.5 px noise."""
    pts = np.array([[x + 6, y], [x, y], [x - 6, y]], dtype=np.float64)
    return pts + rng.normal(0.0, 0.5, pts.shape)


def _vanish_and_swap(with_embeddings: bool, gap: int = 100):
    """Animals 0 and 1 sit at x=20 and x=80, vanish for `gap` frames and reappear at
    each other's place; returns (frames, true animal per instance per frame)."""
    rng = np.random.default_rng(0)
    looks = np.eye(8)[:2]  # animal 0 and 1: orthogonal unit vectors
    frames, truth = [], []
    for t in list(range(50)) + list(range(50 + gap, 100 + gap)):
        xs = (20.0, 80.0) if t < 50 else (80.0, 20.0)
        order = rng.permutation(2)  # detections come in no particular order
        pts = np.stack([_pose(xs[a], 50.0, rng) for a in order])
        emb = looks[order] + rng.normal(0.0, 0.3, (2, 8))
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        frames.append(
            FramePoses(
                frame_idx=t,
                points=pts,
                scores=np.ones(2),
                point_scores=np.ones((2, 3)),
                instances=[None, None],
                embeddings=emb if with_embeddings else None,
            )
        )
        truth.append(order)
    return frames, truth


def _switched(frames, truth) -> bool:
    """True when the identity given to animal 0 after the gap differs from before."""
    before = {int(a): int(i) for a, i in zip(truth[0], frames[0].track_ids)}
    after = {int(a): int(i) for a, i in zip(truth[-1], frames[-1].track_ids)}
    return before != after


def test_motion_alone_swaps_animals_that_reappear_at_each_others_place():
    opts = resolve_options(max_tracks=2)
    frames, truth = _vanish_and_swap(with_embeddings=False)
    out, _ = assign_identities(frames, opts, [(0, 1), (1, 2)])
    assert _switched(out, truth)


def test_embeddings_carry_identities_across_the_gap():
    opts = resolve_options(max_tracks=2)
    frames, truth = _vanish_and_swap(with_embeddings=True)
    out, _ = assign_identities(frames, opts, [(0, 1), (1, 2)])
    assert not _switched(out, truth)
    # every frame consistent: the same animal keeps one identity throughout
    ids = {(int(a), int(i)) for fr, tr in zip(out, truth) for a, i in zip(tr, fr.track_ids)}
    assert len(ids) == 2
    # without weight the vectors are ignored and motion decides again
    frames, truth = _vanish_and_swap(with_embeddings=True)
    off = resolve_options(max_tracks=2, reid_weight=0)
    out, _ = assign_identities(frames, off, [(0, 1), (1, 2)])
    assert _switched(out, truth)


def test_reid_model_is_for_the_global_tracker():
    with pytest.raises(PosekitError, match="global"):
        resolve_options(tracker="simple", reid_model="some/folder")
    opts = resolve_options(max_tracks=2, reid_model="some/folder", reid_weight="4")
    assert (opts.tracker, opts.reid_model, opts.reid_weight) == ("global", "some/folder", 4.0)


def test_track_command_refuses_a_bad_reid_model_in_one_line(tmp_path, capsys):
    import sleap_io as sio

    from posekit.cli import main
    from posekit.data.synthetic import make_synthetic_labels

    labels = make_synthetic_labels(
        n_frames=4, image_size=48, n_parts=3, video_path=tmp_path / "v.h5"
    )
    src = tmp_path / "pred.slp"
    sio.save_slp(labels, str(src))
    missing = tmp_path / "no_such_model"
    assert main(["track", str(src), "--max-tracks", "2", "--reid-model", str(missing)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("posekit: error:") and "no_such_model" in err[0]
    assert main(["track", str(src), "--tracker", "simple", "--reid-model", str(missing)]) != 0
    assert "global" in capsys.readouterr().err
    assert not (tmp_path / "pred.tracked.slp").exists()


def test_predict_tracks_when_only_a_reid_model_is_given():
    """`posekit predict ... --reid-model M` without a count must not ignore the model."""
    from posekit.cli.track import wants_tracking

    assert wants_tracking({"reid_model": "m"})
    assert not wants_tracking({})
    with pytest.raises(PosekitError, match="max_tracks"):
        resolve_options(reid_model="m")
