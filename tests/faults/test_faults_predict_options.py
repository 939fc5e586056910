"""`posekit predict` faults of the command line: output paths, values, models, Ctrl-C.

Each refusal: exit 2 (130 after Ctrl-C), one `posekit: error:` naming the path or value
and the fix, no traceback, no output written, inputs unchanged. Everything except Ctrl-C
is refused before the models load (`load_predictor` is replaced by a tripwire).
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest
from fault_helpers import assert_clean_failure, fingerprint, need_shared

BOTTOMUP = ("sleap_models", "minimal_instance.UNet.bottomup")


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the command gets as far as loading models."""
    import posekit.inference.predictors as predictors

    def tripwire(*args, **kwargs):
        raise AssertionError("models were loaded before the refusal")

    monkeypatch.setattr(predictors, "load_predictor", tripwire)


@pytest.fixture
def labels_copy(tmp_path):
    """A writable copy of minimal_instance.slp next to its video (hand labels)."""
    src = need_shared("data", "minimal", "minimal_instance.slp")
    video = need_shared("data", "minimal", "centered_pair_low_quality.mp4")
    shutil.copy(video, tmp_path / video.name)
    dst = tmp_path / "hand_labels.slp"
    shutil.copy(src, dst)
    return dst


def _model_copy(tmp_path, name="model"):
    dst = tmp_path / name
    shutil.copytree(need_shared(*BOTTOMUP), dst, copy_function=shutil.copyfile)
    os.chmod(dst, 0o755)
    return dst


# -- output equal to an input (case 2)


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_output_equal_to_the_source_is_refused(
    run_cli, tmp_path, labels_copy, no_model_load, spelling
):
    model = need_shared(*BOTTOMUP)
    if spelling == "same":
        out = labels_copy
    elif spelling == "dotted":
        out = tmp_path / "." / labels_copy.name
    else:
        out = tmp_path / "link.slp"
        out.symlink_to(labels_copy)
    before = fingerprint(labels_copy)
    code, _, err = run_cli("predict", model, labels_copy, "-o", out)
    assert_clean_failure(code, err, "hand_labels.slp", "input", "choose another output")
    assert fingerprint(labels_copy) == before


def test_output_onto_a_file_of_the_model_folder_is_refused(
    run_cli, tmp_path, labels_copy, no_model_load
):
    model = _model_copy(tmp_path)
    shutil.copy(labels_copy, model / "labels_gt.train.slp")
    before = fingerprint(model)
    code, _, err = run_cli("predict", model, labels_copy, "-o", model / "labels_gt.train.slp")
    assert_clean_failure(code, err, "labels_gt.train.slp", "input")
    assert fingerprint(model) == before


# -- output checked before the first frame (case 5)


def test_wrong_output_suffix_is_refused_before_work(run_cli, tmp_path, labels_copy, no_model_load):
    model = need_shared(*BOTTOMUP)
    code, _, err = run_cli("predict", model, labels_copy, "-o", tmp_path / "out" / "pred.txt")
    assert_clean_failure(code, err, "pred.txt", ".slp", ".analysis.h5", "pred.slp")
    assert not (tmp_path / "out").exists()


def test_output_under_a_file_is_refused_before_work(run_cli, tmp_path, labels_copy, no_model_load):
    model = need_shared(*BOTTOMUP)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, _, err = run_cli("predict", model, labels_copy, "-o", notes / "pred.slp")
    assert_clean_failure(code, err, "notes.txt", "not a folder")
    assert notes.read_text() == "mine"


def test_output_that_is_a_folder_is_refused(run_cli, tmp_path, labels_copy, no_model_load):
    model = need_shared(*BOTTOMUP)
    folder = tmp_path / "results.slp"
    folder.mkdir()
    code, _, err = run_cli("predict", model, labels_copy, "-o", folder)
    assert_clean_failure(code, err, "results.slp", "is a folder")


def test_read_only_output_is_refused_before_work(run_cli, tmp_path, labels_copy, no_model_load):
    model = need_shared(*BOTTOMUP)
    out = tmp_path / "kept.slp"
    out.write_bytes(b"earlier predictions")
    out.chmod(stat.S_IRUSR | stat.S_IRGRP)
    code, _, err = run_cli("predict", model, labels_copy, "-o", out)
    assert_clean_failure(code, err, "kept.slp", "read-only")
    assert out.read_bytes() == b"earlier predictions"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_unwritable_output_folder_is_refused_before_work(
    run_cli, tmp_path, labels_copy, no_model_load
):
    model = need_shared(*BOTTOMUP)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run_cli("predict", model, labels_copy, "-o", locked / "sub" / "p.slp")
    finally:
        locked.chmod(0o755)
    assert_clean_failure(code, err, "locked", "permission")


# -- values (case 6)


@pytest.mark.parametrize(
    "option, value, needles",
    [
        ("--peak-threshold", "-1", ("-1.0", "outside (0, 1)")),
        ("--peak-threshold", "2", ("2.0", "outside (0, 1)")),
        ("--peak-threshold", "0", ("0.0", "outside (0, 1)")),
        ("--batch-size", "0", ("batch size", "got 0")),
        ("--max-instances", "0", ("max instances", "got 0")),
        ("--device", "gpu0", ("'gpu0'", "cuda:N")),
        ("--tta", "spin", ("'spin'", "rot:10+flip")),
        ("--tta", "rot:0", ("0 is the plain pass",)),
    ],
)
def test_values_out_of_range_are_refused(
    run_cli, tmp_path, labels_copy, no_model_load, option, value, needles
):
    model = need_shared(*BOTTOMUP)
    out = tmp_path / "pred.slp"
    code, _, err = run_cli("predict", model, labels_copy, "-o", out, option, value)
    assert_clean_failure(code, err, *needles)
    assert not out.exists()


def test_frames_beyond_the_video_are_refused(run_cli, tmp_path, no_model_load):
    model = need_shared(*BOTTOMUP)
    video = need_shared("data", "minimal", "small_robot.mp4")
    out = tmp_path / "pred.slp"
    code, _, err = run_cli("predict", model, video, "-o", out, "--frames", "5000-5010")
    assert_clean_failure(code, err, "5000-5010", "small_robot.mp4", "166 frames")
    assert not out.exists()


def test_frames_matching_no_labeled_frame_are_refused(
    run_cli, tmp_path, labels_copy, no_model_load
):
    model = need_shared(*BOTTOMUP)
    out = tmp_path / "pred.slp"
    code, _, err = run_cli("predict", model, labels_copy, "-o", out, "--frames", "5000-5010")
    assert_clean_failure(code, err, "hand_labels.slp", "--frames 5000-5010")
    assert not out.exists()


# -- damaged models (case 4)


@pytest.mark.parametrize("kind, why", [("empty", "empty (0 bytes)"), ("cut", "truncated")])
def test_a_damaged_best_model_h5_is_named(run_cli, tmp_path, labels_copy, kind, why):
    model = _model_copy(tmp_path)
    h5 = model / "best_model.h5"
    data = h5.read_bytes()
    h5.write_bytes(b"" if kind == "empty" else data[: len(data) // 3])
    out = tmp_path / "pred.slp"
    code, _, err = run_cli("predict", model, labels_copy, "-o", out)
    assert_clean_failure(code, err, "best_model.h5", why, "copy")
    assert not out.exists()


# -- Ctrl-C (case 4)


def test_ctrl_c_during_predict_is_one_line_and_says_how_to_resume(
    run_cli, tmp_path, labels_copy, monkeypatch
):
    from posekit.inference.predictors import bottomup

    def interrupted(self, images, gt):
        raise KeyboardInterrupt

    monkeypatch.setattr(bottomup.BottomUpPredictor, "_predict_batch", interrupted)
    model = need_shared(*BOTTOMUP)
    out = tmp_path / "pred.slp"
    before = fingerprint(labels_copy, model)
    code, _, err = run_cli("predict", model, labels_copy, "-o", out)
    assert code == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "posekit: error: interrupted; the chunks done so far are kept; run the same command "
        f"with --resume to continue {out}"
    ]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "posekit-tmp" in p.name]
    assert fingerprint(labels_copy, model) == before
