"""`posekit predict` faults of the source: unreadable videos, broken labels, skeletons.

Each refusal: exit 2, one `posekit: error:` naming the file and why, no traceback, no
output written, the inputs unchanged. Most are refused before any model loads.
"""

from __future__ import annotations

import numpy as np
import pytest
from fault_helpers import assert_clean_failure, fingerprint, need_shared

BOTTOMUP = ("sleap_models", "minimal_instance.UNet.bottomup")


def _predict(run_cli, model, source, out, *extra):
    code, stdout, err = run_cli("predict", model, source, "-o", out, *extra)
    return code, stdout, err


def _video_fault(kind: str, tmp_path):
    """A video path the way users meet it broken."""
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "cut":
        # small_robot.mp4 keeps its index (moov) at the end: cut to 30 %, nothing decodes.
        data = need_shared("data", "minimal", "small_robot.mp4").read_bytes()
        path.write_bytes(data[: len(data) * 3 // 10])
    elif kind == "text":
        path.write_text("these are my notes, not a video\n")
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    "kind, why",
    [
        ("empty", "empty (0 bytes)"),
        ("cut", "not a readable video"),
        ("text", "not a readable video"),
        ("folder", "empty folder"),
    ],
)
def test_an_unreadable_video_is_refused(run_cli, tmp_path, kind, why):
    model = need_shared(*BOTTOMUP)
    video = _video_fault(kind, tmp_path)
    out = tmp_path / "pred.slp"
    before = fingerprint(video, model)
    code, _, err = _predict(run_cli, model, video, out, "--frames", "0-3")
    assert_clean_failure(code, err, video.name, why)
    assert err.count("posekit: error:") == 1
    assert not out.exists()
    assert fingerprint(video, model) == before


def test_labels_whose_video_is_missing_are_refused(run_cli, tmp_path):
    import sleap_io as sio

    model = need_shared(*BOTTOMUP)
    labels = sio.load_slp(str(need_shared("data", "minimal", "minimal_instance.slp")))
    labels.videos[0].replace_filename(str(tmp_path / "moved" / "session1.mp4"), open=False)
    src = tmp_path / "labels.slp"
    sio.save_slp(labels, str(src))
    out = tmp_path / "pred.slp"
    before = fingerprint(src)
    code, _, err = _predict(run_cli, model, src, out)
    assert_clean_failure(code, err, "session1.mp4", "cannot be found", "next to the labels")
    assert err.count("could not be decoded") == 0
    assert not out.exists()
    assert fingerprint(src) == before


def test_labels_without_labeled_frames_give_nothing_with_only_labeled_frames(run_cli, tmp_path):
    """A project's videos are predicted by default (as sleap-track does); asking for its
    labeled frames when it has none is refused, naming the file."""
    import sleap_io as sio

    model = need_shared(*BOTTOMUP)
    labels = sio.load_slp(str(need_shared("data", "minimal", "minimal_instance.slp")))
    labels.labeled_frames = []
    src = tmp_path / "empty_labels.slp"
    sio.save_slp(labels, str(src))
    out = tmp_path / "pred.slp"
    code, _, err = _predict(run_cli, model, src, out, "--only-labeled-frames")
    assert_clean_failure(code, err, "empty_labels.slp", "no frame")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["truncated", "text"])
def test_a_damaged_slp_source_is_named(run_cli, tmp_path, kind):
    model = need_shared(*BOTTOMUP)
    good = need_shared("data", "minimal", "minimal_instance.slp")
    src = tmp_path / f"{kind}.slp"
    if kind == "truncated":
        src.write_bytes(good.read_bytes()[:5000])
    else:
        src.write_text("not labels")
    out = tmp_path / "pred.slp"
    code, _, err = _predict(run_cli, model, src, out)
    assert_clean_failure(code, err, src.name, "damaged")
    assert not out.exists()


def _image_folder(tmp_path, broken=()):
    """Frames 0-2 of centered_pair_low_quality.mp4 as PNGs; `broken` ones are not PNGs."""
    import imageio.v3 as iio
    import sleap_io as sio

    video = sio.load_video(str(need_shared("data", "minimal", "centered_pair_low_quality.mp4")))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        path = folder / f"frame_{i:03d}.png"
        if i in broken:
            path.write_bytes(b"not a png")
        else:
            iio.imwrite(path, np.asarray(video[i])[..., 0])
    return folder


def test_a_partly_decodable_video_skips_and_counts(run_cli, tmp_path):
    """Today's behaviour is kept: bad frames are skipped with a count, the rest predicted."""
    model = need_shared(*BOTTOMUP)
    folder = _image_folder(tmp_path, broken=(1,))
    out = tmp_path / "pred.slp"
    code, stdout, err = _predict(run_cli, model, folder, out)
    assert code == 0, err
    assert "skipped 1 undecodable frame" in stdout
    assert out.exists()


def test_a_run_that_decodes_no_frame_writes_nothing(run_cli, tmp_path):
    """Every selected frame is undecodable (frame 0 is fine): the first selected frame is
    probed before any model loads, so the run stops there and writes nothing."""
    model = need_shared(*BOTTOMUP)
    folder = _image_folder(tmp_path, broken=(1, 2))
    out = tmp_path / "pred.slp"
    code, _, err = _predict(run_cli, model, folder, out, "--frames", "1-2")
    assert_clean_failure(code, err, "cannot decode frame 1", "frames")
    assert not out.exists()


def test_centered_instance_model_on_labels_of_another_skeleton(run_cli, tmp_path):
    """Its crop centres come from the labels: nodes A, B are missing from the flies."""
    model = need_shared("sleap_models", "minimal_instance.UNet.centered_instance")
    flies = need_shared("data", "flies", "clip.slp")
    out = tmp_path / "pred.slp"
    before = fingerprint(flies)
    code, _, err = _predict(run_cli, model, flies, out, "--frames", "0-1")
    assert_clean_failure(code, err, "'A', 'B'", "lacks", "centroid model")
    assert not out.exists()
    assert fingerprint(flies) == before


def test_multiclass_topdown_anchor_missing_from_labels(run_cli, tmp_path):
    model = need_shared("sleap_models", "min_tracks_2node.UNet.topdown_multiclass")
    labels = need_shared("data", "minimal", "minimal_instance.slp")
    out = tmp_path / "pred.slp"
    code, _, err = _predict(run_cli, model, labels, out)
    assert_clean_failure(code, err, "anchor part 'thorax'", "lacks 'thorax'")
    assert not out.exists()


def test_frames_that_fail_after_the_probe_write_nothing(run_cli, tmp_path, monkeypatch):
    """If the probe passes but no selected frame then decodes, the run fails, unwritten."""
    from posekit.data import video_probe

    monkeypatch.setattr(video_probe, "probe_video", lambda video, *a, **k: 3)
    model = need_shared(*BOTTOMUP)
    folder = _image_folder(tmp_path, broken=(1, 2))
    out = tmp_path / "pred.slp"
    code, _, err = _predict(run_cli, model, folder, out, "--frames", "1-2")
    assert_clean_failure(code, err, "none of the 2 frame(s)", "could be decoded")
    assert not out.exists()


def test_a_damaged_video_in_a_folder_does_not_stop_the_others(run_cli, tmp_path):
    """The readable videos are predicted and written; the damaged one is named in one
    error line at the end, and the run exits non-zero."""
    import shutil

    model = need_shared(*BOTTOMUP)
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(need_shared("data", "minimal", "centered_pair_low_quality.mp4"), folder / "a.mp4")
    (folder / "b.mp4").write_bytes(b"")
    code, stdout, err = run_cli("predict", model, folder, "--frames", "0-1")
    assert_clean_failure(code, err, "1 source(s) could not be read", "b.mp4", "empty (0 bytes)")
    assert err.count("posekit: error:") == 1
    assert "the others were predicted and written" in err
    assert (folder / "a.mp4.predictions.slp").exists()
    assert f"Wrote {folder / 'a.mp4.predictions.slp'}" in stdout
    assert not (folder / "b.mp4.predictions.slp").exists()
