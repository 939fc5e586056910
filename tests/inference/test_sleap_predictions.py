"""posekit's predicted points against SLEAP 1.4.1's own predictors, and in-memory frames.

`shared/reference/sleap_predictions/` holds what SLEAP's predictors returned for the
trained models in `shared/sleap_models`, with the exact uint8 frames they were fed
(`frames/*.npy`; for `small_robot.mp4` sleap-io decodes different pixels, so the frames
are given to `predict` as an array). With ``sleap_compatible=True`` every case must match
to 0.01 px; the default differs only where posekit deliberately does (top-down: +0.5 px
on both axes). The reference tests skip when the shared folder is absent; the in-memory
frame tests use fake models and always run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _inference_fakes import FakeModel, blob_frame
from scipy.optimize import linear_sum_assignment

from posekit.errors import PosekitError
from posekit.inference.predictors import SingleInstancePredictor, load_predictor

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / ".." / "shared" / "reference" / "sleap_predictions"
CASES = sorted(p.name for p in REF.glob("*.json")) if REF.is_dir() else []
needs_reference = pytest.mark.skipif(not CASES, reason="shared SLEAP reference predictions absent")


def _case(name: str) -> dict:
    return json.loads((REF / name).read_text())


def _predict(case: dict, **options) -> list[list[np.ndarray]]:
    """posekit's points per frame of a reference case, with the case's models and
    settings, on the exact frames SLEAP saw (fed as one in-memory array per frame)."""
    kw = case["from_trained_models_kwargs"]
    keys = ("centroid_model_path", "confmap_model_path", "model_path")
    paths = [str(ROOT / kw[k]) for k in keys if kw.get(k)]
    settings = case["settings"]
    pred = load_predictor(
        paths,
        peak_threshold=settings["peak_threshold"],
        integral_refinement=settings["integral_refinement"],
        integral_patch_size=settings["integral_patch_size"],
        max_instances=settings.get("max_instances"),
        device="cpu",
        progress=False,
        **options,
    )
    out = []
    for frame in case["frames"]:
        image = np.load(REF / frame["raw"]["image_npy"])
        labels = pred.predict(image[None])
        (lf,) = labels.labeled_frames
        out.append([inst.numpy() for inst in lf.instances])
    return out


def _paired(ours: list[np.ndarray], theirs: list[np.ndarray]) -> list[tuple]:
    """(ours, theirs) pairs, matched by the smallest mean point distance."""
    assert len(ours) == len(theirs)
    cost = np.array([[np.nanmean(np.linalg.norm(a - b, axis=-1)) for b in theirs] for a in ours])
    rows, cols = linear_sum_assignment(cost)
    return [(ours[r], theirs[c]) for r, c in zip(rows, cols)]


def _sleap_points(case: dict) -> list[list[np.ndarray]]:
    return [[np.array(p["points"], float) for p in f["pred_instances"]] for f in case["frames"]]


@needs_reference
@pytest.mark.parametrize("name", CASES)
def test_sleap_compatible_reproduces_sleap_points(name):
    case = _case(name)
    worst = 0.0
    for ours, theirs in zip(_predict(case, sleap_compatible=True), _sleap_points(case)):
        for a, b in _paired(ours, theirs):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            worst = max(worst, float(np.nanmax(np.linalg.norm(a - b, axis=-1))))
    assert worst <= 0.01, f"{name}: {worst:.5f} px from SLEAP's points"


@needs_reference
@pytest.mark.parametrize("name", CASES)
def test_default_differs_from_sleap_only_by_the_documented_shift(name):
    """Top-down: SLEAP's crop offset is half a resized-frame pixel short, so its points are
    0.5 px lower on both axes (README "Parity with SLEAP"; scaled crop models: plus the
    difference of resizing in float, as training does, instead of to uint8). The other
    predictors already follow SLEAP."""
    case = _case(name)
    topdown = case["predictor"].startswith("TopDown")
    scaled = topdown and case["inference_layers"]["instance_peaks"]["input_scale"] != 1.0
    for ours, theirs in zip(_predict(case), _sleap_points(case)):
        for a, b in _paired(ours, theirs):
            shift = 0.5 if topdown else 0.0
            np.testing.assert_allclose(a - b, shift, atol=0.1 if scaled else 0.01)


# ------------------------------------------------------------------ in-memory frames


def _blob_frames():
    truth = [[(20.3, 14.6), (40.2, 30.7)], [(10.0, 40.0), (50.5, 8.25)]]
    frames = np.stack([blob_frame(48, 64, [[a], [b], []]) for a, b in truth])  # RGB
    model = FakeModel("single_instance", ["a", "b"], {"SingleInstanceConfmapsHead": (0, 2, 2)})
    return frames, SingleInstancePredictor(model, progress=False, batch_size=1)


def test_predict_takes_an_in_memory_frame_array(tmp_path):
    import sleap_io as sio

    frames, pred = _blob_frames()
    labels = pred.predict(frames)
    assert [lf.frame_idx for lf in labels.labeled_frames] == [0, 1]
    expected = pred.predict_images(frames)
    for lf, raws in zip(labels.labeled_frames, expected):
        np.testing.assert_array_equal(lf.instances[0].numpy(), raws[0].points)
    (video,) = labels.videos
    assert video.filename == "in-memory frames" and tuple(video.shape) == frames.shape
    assert [lf.frame_idx for lf in pred.predict(frames, frames="1").labeled_frames] == [1]
    sio.save_slp(labels, str(tmp_path / "pred.slp"))  # the labels save
    assert len(sio.load_slp(str(tmp_path / "pred.slp")).labeled_frames) == 2


@pytest.mark.parametrize(
    "bad",
    [
        lambda f: f[0],  # one frame without the batch axis
        lambda f: f.astype(np.float32),
        lambda f: f.astype(np.uint16),
        lambda f: f[..., :2],
        lambda f: f[:0],
        lambda f: f[None],
    ],
    ids=["hwc", "float32", "uint16", "2_channels", "empty", "5d"],
)
def test_frame_array_shape_and_dtype_errors_are_one_clear_error(bad):
    frames, pred = _blob_frames()
    with pytest.raises(PosekitError, match=r"uint8 array of shape \(N, H, W, C\)"):
        pred.predict(bad(frames))


# ------------------------------------------------------------------ the switch


def test_sleap_crop_offsets_is_an_alias_of_sleap_compatible():
    model = FakeModel("single_instance", ["a", "b"], {"SingleInstanceConfmapsHead": (0, 2, 2)})
    assert SingleInstancePredictor(model, progress=False).sleap_compatible is False
    for kw in ({"sleap_compatible": True}, {"sleap_crop_offsets": True}):
        pred = SingleInstancePredictor(model, progress=False, **kw)
        assert pred.sleap_compatible is True and pred.sleap_crop_offsets is True
    with pytest.raises(PosekitError, match="alias"):
        SingleInstancePredictor(
            model, progress=False, sleap_compatible=True, sleap_crop_offsets=False
        )
    pred = load_predictor(model, progress=False, device="cpu", sleap_crop_offsets=True)
    assert pred.sleap_compatible is True


def test_cli_predict_has_the_sleap_compatible_flag():
    from posekit.cli import parse_args

    assert parse_args(["predict", "model", "video.mp4"]).sleap_compatible is False
    assert parse_args(["predict", "model", "video.mp4", "--sleap-compatible"]).sleap_compatible
