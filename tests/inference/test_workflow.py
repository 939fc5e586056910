"""`posekit predict` on videos, folders, globs and SLEAP projects; formats; kill and resume.

A two-video project is built in a temporary folder from ../shared/data (links to
centered_pair_low_quality.mp4 as a.mp4 and b.mp4, user labels, suggestions and a track),
so every output is written there. Skipped when the shared data is absent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MODEL = SHARED / "sleap_models" / "minimal_instance.UNet.bottomup"
MINIMAL = SHARED / "data" / "minimal"
if not (MODEL.exists() and (MINIMAL / "minimal_instance.slp").exists()):
    pytest.skip("shared SLEAP models or data not available", allow_module_level=True)

import sleap_io as sio  # noqa: E402

from posekit.cli import main  # noqa: E402
from posekit.errors import PosekitError  # noqa: E402
from posekit.inference.sources import expand_sources, split_models_and_sources  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"


def make_project(folder: Path) -> Path:
    """project.slp with videos a.mp4 (user frame 0, suggestion 2, track "mouse") and b.mp4
    (user frame 3, suggestion 5)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a.mp4", "b.mp4"):
        if not (folder / name).exists():
            os.symlink(MINIMAL / "centered_pair_low_quality.mp4", folder / name)
    src = sio.load_slp(str(MINIMAL / "minimal_instance.slp"))
    skel = src.skeletons[0]
    va, vb = sio.Video(str(folder / "a.mp4")), sio.Video(str(folder / "b.mp4"))
    mouse = sio.Track("mouse")
    user = [sio.Instance.from_numpy(i.numpy(), skeleton=skel) for i in src[0].user_instances]
    user[0].track = mouse
    user_b = [sio.Instance.from_numpy(i.numpy() + 1.0, skeleton=skel) for i in user]
    labels = sio.Labels(
        labeled_frames=[sio.LabeledFrame(va, 0, user), sio.LabeledFrame(vb, 3, user_b)],
        videos=[va, vb],
        skeletons=[skel],
        tracks=[mouse],
        suggestions=[sio.SuggestionFrame(va, 2), sio.SuggestionFrame(vb, 5)],
    )
    path = folder / "project.slp"
    sio.save_slp(labels, str(path))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("proj"))


def frames_of(jobs):
    return {Path(j.video.filename).name: j.frames for j in jobs}


def test_model_folders_are_told_from_sources(project):
    models, sources = split_models_and_sources([str(MODEL), str(project), str(project)])
    assert models == [str(MODEL)] and len(sources) == 2
    with pytest.raises(PosekitError, match="model folder first"):
        split_models_and_sources([str(project), str(MODEL)])
    with pytest.raises(PosekitError, match="source after"):
        split_models_and_sources([str(MODEL)])


def test_project_sources_and_their_flags(project):
    assert frames_of(expand_sources([project])) == {"a.mp4": None, "b.mp4": None}
    assert frames_of(expand_sources([project], only_labeled_frames=True)) == {
        "a.mp4": [0],
        "b.mp4": [3],
    }
    assert frames_of(expand_sources([project], only_suggested_frames=True)) == {
        "a.mp4": [2],
        "b.mp4": [5],
    }
    both = expand_sources([project], only_labeled_frames=True, only_suggested_frames=True)
    assert frames_of(both) == {"a.mp4": [0, 2], "b.mp4": [3, 5]}
    excl = expand_sources([project], frames="0-5", exclude_user_labeled=True)
    assert frames_of(excl) == {"a.mp4": [1, 2, 3, 4, 5], "b.mp4": [0, 1, 2, 4, 5]}
    one = expand_sources([project], video_index=1, frames="7")
    assert frames_of(one) == {"b.mp4": [7]} and one[0].video_index == 1
    assert one[0].project is not None and one[0].video is one[0].project.videos[1]
    with pytest.raises(PosekitError, match="out of range"):
        expand_sources([project], video_index=2)
    with pytest.raises(PosekitError, match="no source is one"):
        expand_sources([project.parent / "a.mp4"], only_labeled_frames=True)
    with pytest.raises(PosekitError, match="no frames to predict"):
        expand_sources([project], only_labeled_frames=True, frames="1")


def test_folder_and_glob_sources(project):
    folder = frames_of(expand_sources([project.parent], frames="0-1"))
    assert folder == {"a.mp4": [0, 1], "b.mp4": [0, 1]}
    globbed = expand_sources([str(project.parent / "*.mp4")])
    assert [Path(j.video.filename).name for j in globbed] == ["a.mp4", "b.mp4"]
    with pytest.raises(PosekitError, match="no video or .slp file matches"):
        expand_sources([str(project.parent / "*.avi")])


def predict(*args) -> int:
    return main(["predict", str(MODEL), *map(str, args), "--device", "cpu", "--batch-size", "2"])


def test_predicting_a_project_keeps_user_labels_suggestions_and_tracks(project, tmp_path):
    out = tmp_path / "out.slp"
    assert predict(project, "--frames", "2-3", "-o", out) == 0
    labels = sio.load_slp(str(out))
    assert [Path(v.filename).name for v in labels.videos] == ["a.mp4", "b.mp4"]
    assert [t.name for t in labels.tracks] == ["mouse"]
    assert len(labels.skeletons) == 1
    assert {(Path(s.video.filename).name, s.frame_idx) for s in labels.suggestions} == {
        ("a.mp4", 2),
        ("b.mp4", 5),
    }
    got = {
        (Path(lf.video.filename).name, lf.frame_idx): (
            len(lf.user_instances),
            len(lf.predicted_instances),
        )
        for lf in labels
    }
    # a.mp4: user frame 0 kept (not predicted), frames 2-3 predicted; b.mp4: frame 3 has
    # its user labels and the new predictions.
    assert got[("a.mp4", 0)] == (2, 0)
    assert got[("a.mp4", 2)][0] == 0 and got[("a.mp4", 2)][1] > 0
    assert got[("b.mp4", 3)][0] == 2 and got[("b.mp4", 3)][1] > 0
    assert labels.labeled_frames[0].user_instances[0].track.name == "mouse"
    assert not list(tmp_path.glob(".*posekit*"))  # no chunks or temporaries left


def test_default_outputs_beside_each_video(project):
    assert predict(project.parent / "a.mp4", project.parent / "b.mp4", "--frames", "0") == 0
    for name in ("a.mp4", "b.mp4"):
        out = project.parent / f"{name}.predictions.slp"
        labels = sio.load_slp(str(out))
        assert [lf.frame_idx for lf in labels] == [0]
        out.unlink()


@pytest.fixture(scope="module")
def predicted(project, tmp_path_factory):
    """Predictions of frames 0-3 of both project videos, as .slp (SLEAP's format)."""
    out = tmp_path_factory.mktemp("pred") / "pred.slp"
    assert predict(project, "--frames", "0-3", "-o", out) == 0
    return out


def _points_by_frame(labels, video_name=None, predicted_only=True):
    out = {}
    for lf in labels:
        if video_name is not None and Path(lf.video.filename).name != video_name:
            continue
        insts = lf.predicted_instances if predicted_only else lf.instances
        pts = sorted((np.round(i.numpy(), 3).tolist() for i in insts), key=str)
        if pts:
            out[int(lf.frame_idx)] = pts
    return out


def _preferred_by_frame(labels, video_name):
    """What SLEAP's analysis exports show per frame: user instances, else predictions."""
    out = {}
    for lf in labels:
        if Path(lf.video.filename).name != video_name:
            continue
        insts = lf.user_instances or lf.predicted_instances
        pts = sorted((np.round(i.numpy(), 3).tolist() for i in insts), key=str)
        if pts:
            out[int(lf.frame_idx)] = pts
    return out


@pytest.mark.parametrize("suffix", [".analysis.h5", ".csv"])
def test_per_video_formats_read_back_equal_to_the_slp(predicted, suffix, tmp_path):
    from posekit.data.formats import write_predictions

    labels = sio.load_slp(str(predicted))
    files = write_predictions(labels, tmp_path / f"x{suffix}")
    assert [f.name for f in files] == [f"x.000_a{suffix}", f"x.001_b{suffix}"]
    for f, video in zip(files, ("a.mp4", "b.mp4")):
        back = sio.load_analysis_h5(str(f)) if suffix.endswith("h5") else sio.load_csv(str(f))
        want = _preferred_by_frame(labels, video)
        assert _points_by_frame(back, predicted_only=False) == want


def test_one_video_analysis_h5_and_untracked_csv_rows(project, tmp_path):
    out = tmp_path / "one.analysis.h5"
    assert predict(project.parent / "a.mp4", "--frames", "0-2", "-o", out) == 0
    back = sio.load_analysis_h5(str(out))
    ref = tmp_path / "one.slp"
    assert predict(project.parent / "a.mp4", "--frames", "0-2", "-o", ref) == 0
    slp = sio.load_slp(str(ref))
    assert _points_by_frame(back) == _points_by_frame(slp)
    import h5py

    with h5py.File(out, "r") as f:  # SLEAP's layout: (tracks, xy, nodes, frames)
        assert f["tracks"].shape[1:3] == (2, 2) and f["tracks"].shape[3] == 1100
        assert [n.decode() for n in f["node_names"][:]] == list(slp.skeletons[0].node_names)
    from posekit.data.formats import write_predictions

    (csv,) = write_predictions(slp, tmp_path / "one.csv")
    rows = csv.read_text().strip().splitlines()
    n_inst = sum(len(lf.predicted_instances) for lf in slp)
    assert len(rows) == 1 + n_inst  # one row per (untracked) instance
    assert rows[0].startswith("track,frame_idx,instance.score")


def test_nwb_reads_back_with_the_slp_points(predicted, tmp_path):
    from posekit.data.formats import write_predictions

    labels = sio.load_slp(str(predicted))
    (f,) = write_predictions(labels, tmp_path / "x.nwb")
    back = sio.load_nwb(str(f))
    # sleap-io 0.9.5 reads NWB frame indices back as ranks; compare frame by frame in order.
    for video in ("a.mp4", "b.mp4"):
        want = list(_points_by_frame(labels, video).values())
        got = list(_points_by_frame(back, video).values())
        assert got == want


def test_sigkill_then_resume_equals_an_uninterrupted_run(project, tmp_path):
    video = project.parent / "a.mp4"
    common = [str(MODEL), str(video), "--frames", "0-31", "--device", "cpu"]
    common += ["--batch-size", "4", "--chunk-size", "8"]
    ref = tmp_path / "ref.slp"
    assert main(["predict", *common, "-o", str(ref)]) == 0

    out = tmp_path / "out.slp"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "posekit.cli", "predict", *common, "-o", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = tmp_path / ".out.slp.posekit-chunks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("chunk-*.npz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(chunks.glob("chunk-*.npz")))
    assert 2 <= done < 4 and not out.exists()

    assert main(["predict", *common, "-o", str(out), "--resume"]) == 0
    a, b = sio.load_slp(str(ref)), sio.load_slp(str(out))
    assert [lf.frame_idx for lf in a] == [lf.frame_idx for lf in b] == list(range(32))
    for fa, fb in zip(a, b):
        pa = np.stack([i.numpy() for i in fa.instances])
        pb = np.stack([i.numpy() for i in fb.instances])
        assert np.array_equal(pa, pb, equal_nan=True)
        assert [i.score for i in fa.instances] == [i.score for i in fb.instances]
    assert not chunks.exists()


def test_a_pkg_slp_without_frame_0_predicts_its_stored_frames(tmp_path, capsys):
    """A .pkg.slp stores only its labelled frames (here 4, 9, ..., 54): nothing may ask
    for frame 0, and every stored frame is predicted."""
    from posekit.cli import main

    shared = Path(__file__).resolve().parents[2] / ".." / "shared"
    pkg = shared / "data" / "reaching" / "reaching.test.pkg.slp"
    model = shared / "sleap_models" / "minimal_robot.UNet.single_instance"
    if not pkg.exists() or not model.exists():
        pytest.skip("shared data not available")
    out = tmp_path / "p.slp"
    assert main(["predict", str(model), str(pkg), "-o", str(out), "--device", "cpu"]) == 0
    assert "Predicted 11 frames" in capsys.readouterr().out
