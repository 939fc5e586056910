"""`posekit track` and the tracking flags as a user runs them, on the real flies clip."""

from __future__ import annotations

import json

import pytest
from tracking_helpers import flies_predictions, sio

from posekit.cli import main

pytest.importorskip("motmetrics")


def _write(labels, path):
    sio.save_slp(labels, str(path))
    return path


def test_track_command_gives_two_tracks_without_switches(flies, tmp_path, capsys):
    pred, gt = flies_predictions(flies, n_frames=200)
    src = _write(pred, tmp_path / "pred.slp")
    truth = _write(gt, tmp_path / "gt.slp")
    before = src.read_bytes()
    assert main(["track", str(src), "--max-tracks", "2"]) == 0
    out = tmp_path / "pred.tracked.slp"
    assert "into 2 tracks" in capsys.readouterr().out
    tracked = sio.load_slp(str(out))
    assert len({i.track.name for lf in tracked.labeled_frames for i in lf.instances}) == 2
    assert src.read_bytes() == before
    assert main(["evaluate", str(truth), str(out), "--json"]) == 0
    tracking = json.loads(capsys.readouterr().out)["tracking"]
    assert tracking["identity_switches"] == 0 and tracking["idf1"] == pytest.approx(1.0)


def test_sleap_spellings_reach_the_tracker(flies, tmp_path, capsys):
    pred, _ = flies_predictions(flies, n_frames=60)
    src = _write(pred, tmp_path / "pred.slp")
    out = tmp_path / "t.slp"
    argv = ["track", str(src), "-o", str(out), "--tracking.tracker", "simple"]
    argv += ["--tracking.max_tracks", "2", "--tracking.similarity", "centroid"]
    assert main(argv) == 0
    prov = sio.load_slp(str(out)).provenance["tracking"]
    assert prov["tracker"] == "simple" and prov["similarity"] == "centroid"
    assert prov["max_tracks"] == 2


def test_track_faults_end_cleanly(flies, tmp_path, capsys):
    pred, _ = flies_predictions(flies, n_frames=20)
    src = _write(pred, tmp_path / "pred.slp")
    before = src.read_bytes()
    assert main(["track", str(src), "--max-tracks", "0"]) == 2
    assert "max_tracks" in capsys.readouterr().err
    assert main(["track", str(src), "-o", str(src)]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    moved = sio.load_slp(str(src))
    moved.videos[0].replace_filename(str(tmp_path / "gone.mp4"), open=False)
    gone = _write(moved, tmp_path / "gone.slp")
    assert main(["track", str(gone), "--tracker", "flow", "--max-tracks", "2"]) == 2
    err = capsys.readouterr().err
    assert "simple" in err and "Traceback" not in err
    assert src.read_bytes() == before
    assert not (tmp_path / "pred.tracked.slp").exists()


MODELS = [
    ["minimal_instance.UNet.bottomup"],
    ["minimal_instance.UNet.centroid", "minimal_instance.UNet.centered_instance"],
]


@pytest.mark.parametrize("models", MODELS, ids=["bottomup", "topdown"])
def test_predict_tracks_every_multi_animal_model_type(models, tmp_path, capsys):
    """`predict --max-tracks 2` on SLEAP's trained models and their two-animal video."""
    from tracking_helpers import SHARED

    video = SHARED / "data" / "minimal" / "centered_pair_low_quality.mp4"
    dirs = [SHARED / "sleap_models" / m for m in models]
    if not video.exists() or not all(d.exists() for d in dirs):
        pytest.skip("shared SLEAP models not available")
    out = tmp_path / "pred.slp"
    argv = ["predict", *map(str, dirs), str(video), "-o", str(out), "--frames", "0-19"]
    assert main([*argv, "--max-tracks", "2"]) == 0
    labels = sio.load_slp(str(out))
    names = [i.track.name for lf in labels.labeled_frames for i in lf.instances if i.track]
    assert len(set(names)) == 2
    assert len(names) == sum(len(lf.instances) for lf in labels.labeled_frames) >= 30
