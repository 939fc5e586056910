"""A training run folder is a model wherever a model folder is: `posekit predict`,
`posekit.load_model` and `posekit.load_predictor` read paths the same way
(`posekit.model.locate`)."""

from __future__ import annotations

import shutil

import pytest
from fault_helpers import need_shared

from posekit.errors import PosekitError


def _run_folder(tmp_path, name, model):
    """A run folder as `posekit train` leaves it: the model in `best_model/`."""
    run = tmp_path / name
    shutil.copytree(need_shared("sleap_models", model), run / "best_model")
    return run


def test_load_model_takes_a_training_run_folder(tmp_path):
    import posekit

    run = _run_folder(tmp_path, "run", "minimal_instance.UNet.bottomup")
    model = posekit.load_model(run)
    assert model.model_type == "multi_instance"
    assert model.source_folder == run / "best_model"


def test_a_top_down_pair_folder_loads_as_one_predictor(tmp_path):
    import posekit

    pair = tmp_path / "pair"
    _run_folder(pair, "centroid", "minimal_instance.UNet.centroid")
    _run_folder(pair, "centered_instance", "minimal_instance.UNet.centered_instance")
    predictor = posekit.load_predictor(pair, device="cpu")
    assert type(predictor).__name__ == "TopDownPredictor"
    with pytest.raises(PosekitError, match="holds 2 models .*load_predictor"):
        posekit.load_model(pair)


def test_predict_and_load_predictor_agree_on_a_run_folder(tmp_path, run_cli):
    import posekit

    run = _run_folder(tmp_path, "run", "minimal_instance.UNet.bottomup")
    predictor = posekit.load_predictor(run, device="cpu")
    video = need_shared("data", "minimal", "centered_pair_low_quality.mp4")
    labels = predictor.predict(str(video), frames=[0])
    out = tmp_path / "pred.slp"
    code, _, err = run_cli("predict", run, video, "--frames", "0", "-o", out, "--device", "cpu")
    assert code == 0, err
    import sleap_io as sio

    cli = sio.load_slp(str(out))
    assert len(cli.labeled_frames[0].instances) == len(labels.labeled_frames[0].instances) > 0
