"""`--frames` on a SLEAP project: the per-frame outputs hold the frames asked for, not
also the project's user-labeled frames; a `.slp` output is the whole project."""

from __future__ import annotations

import numpy as np
from fault_helpers import fingerprint, need_shared

BOTTOMUP = ("sleap_models", "minimal_instance.UNet.bottomup")


def test_a_frame_range_limits_the_analysis_file_to_it(run_cli, tmp_path):
    import h5py

    model = need_shared(*BOTTOMUP)
    project = need_shared("data", "minimal", "minimal_instance.slp")  # user frame 0
    before = fingerprint(project)
    out = tmp_path / "x.analysis.h5"
    code, _, err = run_cli(
        "predict", model, project, "--video-index", "0", "--frames", "5-7", "-o", out
    )
    assert code == 0, err
    with h5py.File(out) as f:
        occupied = np.flatnonzero(np.asarray(f["track_occupancy"]).any(axis=1))
    assert occupied.tolist() == [5, 6, 7]
    assert fingerprint(project) == before


def test_a_project_slp_output_keeps_the_whole_project(run_cli, tmp_path):
    import sleap_io as sio

    model = need_shared(*BOTTOMUP)
    project = need_shared("data", "minimal", "minimal_instance.slp")
    out = tmp_path / "x.slp"
    code, _, err = run_cli("predict", model, project, "--frames", "5-6", "-o", out)
    assert code == 0, err
    labels = sio.load_slp(str(out))
    user = [lf.frame_idx for lf in labels.labeled_frames if lf.user_instances]
    predicted = [lf.frame_idx for lf in labels.labeled_frames if lf.predicted_instances]
    assert user == [0] and predicted == [5, 6]
