"""`posekit evaluate` faults: other videos, damaged files, missing files."""

from __future__ import annotations

import shutil

from fault_helpers import assert_clean_failure, fingerprint, need_shared


def test_labels_of_another_video_are_refused(run_cli, tmp_path):
    """One video on each side, other names, other sizes: refused, not scored as mAP 0."""
    import sleap_io as sio

    flies = need_shared("data", "flies", "clip.slp")
    robot_video = need_shared("data", "minimal", "small_robot.mp4")
    labels = sio.load_slp(str(flies), open_videos=False)
    labels.labeled_frames = labels.labeled_frames[:5]
    labels.videos[0].replace_filename(str(robot_video), open=False)
    other = tmp_path / "robot_named.slp"
    sio.save_slp(labels, str(other))
    before = fingerprint(flies, other)
    code, out, err = run_cli("evaluate", flies, other)
    assert_clean_failure(code, err, "no labeled frame", "small_robot.mp4", "clip.mp4")
    assert fingerprint(flies, other) == before


def test_a_truncated_slp_is_named(run_cli, tmp_path):
    flies = need_shared("data", "flies", "clip.slp")
    bad = tmp_path / "cut.slp"
    bad.write_bytes(flies.read_bytes()[: flies.stat().st_size // 3])
    code, _, err = run_cli("evaluate", flies, bad)
    assert_clean_failure(code, err, "cut.slp", "damaged")


def test_a_text_file_named_slp_is_named(run_cli, tmp_path):
    flies = need_shared("data", "flies", "clip.slp")
    bad = tmp_path / "notes.slp"
    bad.write_text("not labels")
    code, _, err = run_cli("evaluate", bad, flies)
    assert_clean_failure(code, err, "notes.slp")


def test_a_missing_file_is_named(run_cli, tmp_path):
    flies = need_shared("data", "flies", "clip.slp")
    code, _, err = run_cli("evaluate", flies, tmp_path / "nope.slp")
    assert_clean_failure(code, err, "nope.slp", "does not exist")


def test_the_same_video_under_another_name_still_pairs(run_cli, tmp_path):
    """A renamed copy of the video is recognised by its frame count and size."""
    import sleap_io as sio

    flies = need_shared("data", "flies", "clip.slp")
    video = need_shared("data", "flies", "clip.mp4")
    labels = sio.load_slp(str(flies))
    labels.videos[0].replace_filename(str(video), open=False)
    labels.labeled_frames = labels.labeled_frames[:20]
    gt = tmp_path / "gt.slp"
    sio.save_slp(labels, str(gt))
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(video, renamed)
    labels.videos[0].replace_filename(str(renamed), open=False)
    pr = tmp_path / "pr.slp"
    sio.save_slp(labels, str(pr))
    code, out, err = run_cli("evaluate", gt, pr, "--json")
    assert code == 0, err
    assert '"n_frames": 20' in out
