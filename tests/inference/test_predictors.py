"""Predictors end to end on fake models whose outputs are known."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sleap_io as sio
import torch
from _inference_fakes import FakeModel, blob_frame

from posekit.data.instance_cropping import instance_centroids
from posekit.data.video import parse_frames
from posekit.errors import PosekitError
from posekit.inference.predictors import (
    BottomUpMultiClassPredictor,
    SingleInstancePredictor,
    TopDownMultiClassPredictor,
    TopDownPredictor,
    crop_centered,
    load_predictor,
)


def image_video(tmp_path, frames):
    """An ImageVideo (PNG files) holding the frames."""
    import imageio.v3 as iio

    paths = []
    for i, f in enumerate(frames):
        p = tmp_path / f"frame_{i:03d}.png"
        iio.imwrite(p, f if f.shape[-1] != 1 else f[..., 0])
        paths.append(str(p))
    return sio.Video.from_filename(paths), paths


def test_single_instance_points_scores_and_empty_frames(tmp_path):
    truth = [[(20.3, 14.6), (40.2, 30.7)], [(10.0, 40.0), (50.5, 8.25)]]
    frames = [blob_frame(48, 64, [[a], [b]]) for a, b in truth]
    frames.append(np.zeros((48, 64, 2), np.uint8))  # blank frame: no instance
    model = FakeModel("single_instance", ["a", "b"], {"SingleInstanceConfmapsHead": (0, 2, 2)})
    pred = SingleInstancePredictor(model, progress=False, batch_size=2)
    labels = pred.predict_images(np.stack(frames))
    assert [len(f) for f in labels] == [1, 1, 0]
    for raws, pts in zip(labels, truth):
        np.testing.assert_allclose(raws[0].points, np.array(pts), atol=0.15)
        assert raws[0].score == pytest.approx(float(np.nansum(raws[0].point_scores)))


def test_predict_video_batches_skips_bad_frames_and_counts(tmp_path):
    truth = [(12.0 + 3 * i, 20.0 + i) for i in range(5)]
    frames = [blob_frame(32, 48, [[p], [p]]) for p in truth]
    # ImageVideo decodes grayscale PNGs; use single-part maps on channel 0.
    frames = [f[..., :1] for f in frames]
    video, paths = image_video(tmp_path, frames)
    with open(paths[2], "wb") as fh:
        fh.write(b"not a png")
    model = FakeModel("single_instance", ["a"], {"SingleInstanceConfmapsHead": (0, 1, 1)})
    pred = SingleInstancePredictor(model, progress=False, batch_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = pred.predict(video)
    assert pred.stats["skipped"] == 1 and pred.stats["frames"] == 4
    assert any("skipping frame 2" in str(w.message) for w in caught)
    assert [lf.frame_idx for lf in labels.labeled_frames] == [0, 1, 3, 4]
    for lf in labels.labeled_frames:
        np.testing.assert_allclose(lf.instances[0].numpy()[0], truth[lf.frame_idx], atol=0.1)
        assert isinstance(lf.instances[0], sio.PredictedInstance)
    assert model.calls == 2  # batches [0, 1] and [3, 4]: the reader refills around the gap
    sub = pred.predict(video, frames="3-4")
    assert [lf.frame_idx for lf in sub.labeled_frames] == [3, 4]


def _topdown_models(crop_size=24):
    centroid = FakeModel(
        "centroid",
        [],
        {"CentroidConfmapsHead": (0, 1, 2)},
        anchor_part="a",
        skeleton_nodes=["a", "b"],
        edges=[(0, 1)],
    )
    centered = FakeModel(
        "centered_instance",
        ["a", "b"],
        {"CenteredInstanceConfmapsHead": (0, 2, 1)},
        edges=[(0, 1)],
        anchor_part="a",
        crop_size=crop_size,
    )
    return centroid, centered


ANIMALS = [[(20.4, 18.2), (26.7, 23.1)], [(60.0, 41.5), (53.2, 36.9)]]


def _topdown_frame():
    return blob_frame(64, 80, [[a for a, _ in ANIMALS], [b for _, b in ANIMALS]], sigma=1.0)


def test_topdown_crop_origin_maps_back_exactly():
    centroid, centered = _topdown_models()
    pred = TopDownPredictor(centroid, centered, progress=False)
    (frame,) = pred.predict_images(_topdown_frame()[None])
    assert len(frame) == 2
    got = sorted(np.round(r.points, 1).tolist() for r in frame)
    for g, t in zip(got, sorted(ANIMALS)):
        np.testing.assert_allclose(g, t, atol=0.15)
    for r in frame:  # instance score = centroid confmap value at the grid peak
        assert 0.5 < r.score <= 1.0
        assert r.score != pytest.approx(float(np.nansum(r.point_scores)))
    shifted = TopDownPredictor(centroid, centered, progress=False, sleap_crop_offsets=True)
    (frame2,) = shifted.predict_images(_topdown_frame()[None])
    d = np.array(sorted(r.points.tolist() for r in frame2)) - np.array(
        sorted(r.points.tolist() for r in frame)
    )
    np.testing.assert_allclose(d, -0.5, atol=1e-4)


def test_topdown_max_instances_and_threshold():
    centroid, centered = _topdown_models()
    one = TopDownPredictor(centroid, centered, progress=False, max_instances=1)
    (frame,) = one.predict_images(_topdown_frame()[None])
    assert len(frame) == 1
    none = TopDownPredictor(centroid, centered, progress=False, peak_threshold=1.5)
    assert none.predict_images(_topdown_frame()[None]) == [[]]


def _labels_with_truth():
    skel = sio.Skeleton(nodes=["a", "b"], edges=[("a", "b")])
    frame = _topdown_frame()
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp())
    video, _ = image_video(d, [frame[..., :1], frame[..., 1:]])
    lf = sio.LabeledFrame(
        video=video,
        frame_idx=0,
        instances=[sio.Instance.from_numpy(np.array(a), skeleton=skel) for a in ANIMALS],
    )
    return sio.Labels(labeled_frames=[lf], videos=[video], skeletons=[skel]), frame


def test_topdown_ground_truth_modes(monkeypatch):
    centroid, centered = _topdown_models()
    labels, frame = _labels_with_truth()
    # Images come from the labels' video; give the predictor the two-channel frame.
    monkeypatch.setattr(sio.LabeledFrame, "image", property(lambda self: frame))
    only_centered = TopDownPredictor(None, centered, progress=False)
    out = only_centered.predict(labels)
    pts = sorted(i.numpy().tolist() for i in out.labeled_frames[0].instances)
    np.testing.assert_allclose(pts, sorted(ANIMALS), atol=0.15)
    assert all(i.score == 1.0 for i in out.labeled_frames[0].instances)
    only_centroid = TopDownPredictor(centroid, None, progress=False)
    out = only_centroid.predict(labels)
    pts = sorted(i.numpy().tolist() for i in out.labeled_frames[0].instances)
    np.testing.assert_allclose(pts, sorted(ANIMALS), atol=1e-9)  # the labeled instances
    # On unlabeled frames a centroid model yields anchor-only instances.
    (raw,) = only_centroid.predict_images(frame[None])
    for r in raw:
        assert np.isnan(r.points[1]).all() and not np.isnan(r.points[0]).any()
    with pytest.raises(PosekitError, match="centroid model"):
        only_centered.predict_images(frame[None])


def test_instance_centroids_anchor_or_bbox():
    # The top-down predictors take the labels' centroids with training's rule.
    inst = torch.tensor([[[1.0, 2.0], [5.0, 10.0]], [[np.nan, np.nan], [4.0, 6.0]]])
    np.testing.assert_allclose(instance_centroids(inst, 0), [[1.0, 2.0], [4.0, 6.0]])
    np.testing.assert_allclose(instance_centroids(inst, None), [[3.0, 6.0], [4.0, 6.0]])


def test_crop_centered_matches_integer_slicing_and_zero_outside():
    img = torch.arange(10 * 12, dtype=torch.uint8).reshape(1, 10, 12, 1)
    # Centroid (5.5, 4.5) with crop 4 -> origin (4, 3): exact slice.
    crop = crop_centered(img, torch.tensor([[5.5, 4.5]]), torch.tensor([0]), 4)
    assert torch.equal(crop[0], img[0, 3:7, 4:8])
    # Near the corner, pixels outside the frame are zero.
    crop = crop_centered(img, torch.tensor([[0.5, 0.5]]), torch.tensor([0]), 4)
    assert torch.equal(crop[0, :1], torch.zeros_like(crop[0, :1]))
    assert torch.equal(crop[0, 1:, 1:], img[0, 0:3, 0:3])
    # Half-pixel centre: bilinear average, truncated to uint8 like SLEAP.
    f = torch.tensor([[0, 3], [0, 3]], dtype=torch.uint8).reshape(1, 2, 2, 1)
    crop = crop_centered(f, torch.tensor([[0.5, 0.0]]), torch.tensor([0]), 1)
    assert crop.item() == 1  # 1.5 truncated


def test_bottomup_multiclass_identity_from_class_maps():
    # Channels: part a, part b, class-0 region, class-1 region.
    h, w = 40, 60
    frame = blob_frame(h, w, [[(10.0, 10.0), (45.0, 30.0)], [(15.0, 12.0), (50.0, 33.0)], [], []])
    frame[:, :30, 2] = 230
    frame[:, 30:, 3] = 200
    model = FakeModel(
        "multi_class_bottomup",
        ["a", "b"],
        {"MultiInstanceConfmapsHead": (0, 2, 1), "ClassMapsHead": (2, 2, 2)},
        edges=[(0, 1)],
        classes=["left", "right"],
    )
    pred = BottomUpMultiClassPredictor(model, progress=False)
    (frame_pred,) = pred.predict_images(frame[None])
    by_track = {r.track: r for r in frame_pred}
    np.testing.assert_allclose(by_track[0].points, [[10, 10], [15, 12]], atol=0.1)
    np.testing.assert_allclose(by_track[1].points, [[45, 30], [50, 33]], atol=0.1)
    assert by_track[0].tracking_score == pytest.approx(230 / 255)
    assert by_track[1].tracking_score == pytest.approx(200 / 255)
    assert pred.class_names == ["left", "right"]


def test_topdown_multiclass_assigns_crops_to_classes():
    centroid, _ = _topdown_models()

    def class_vectors(x):  # crops whose centre is in the left half of the frame -> class 0
        left = x[:, 2].mean(dim=(1, 2))
        right = x[:, 3].mean(dim=(1, 2))
        return torch.softmax(torch.stack([left, right], dim=1) * 20, dim=1)

    centered = FakeModel(
        "multi_class_topdown",
        ["a", "b"],
        {"CenteredInstanceConfmapsHead": (0, 2, 1)},
        edges=[(0, 1)],
        anchor_part="a",
        crop_size=24,
        classes=["L", "R"],
        extra={"ClassVectorsHead": class_vectors},
    )
    frame = _topdown_frame()
    regions = np.zeros((64, 80, 2), np.uint8)
    regions[:, :40, 0] = 255
    regions[:, 40:, 1] = 255
    frame4 = np.concatenate([frame, regions], axis=-1)
    centroid.maps = {"CentroidConfmapsHead": (0, 1, 2)}
    pred = TopDownMultiClassPredictor(centroid, centered, progress=False)
    (out,) = pred.predict_images(frame4[None])
    by_track = {r.track: r for r in out}
    np.testing.assert_allclose(by_track[0].points, ANIMALS[0], atol=0.15)
    np.testing.assert_allclose(by_track[1].points, ANIMALS[1], atol=0.15)


def test_predict_builds_tracks_for_multiclass(tmp_path):
    frame = blob_frame(40, 60, [[(10.0, 10.0)], [(15.0, 12.0)]])
    video, _ = image_video(tmp_path, [frame[..., :1]])
    model = FakeModel(
        "multi_class_bottomup",
        ["a"],
        {"MultiInstanceConfmapsHead": (0, 1, 1), "ClassMapsHead": (0, 1, 1)},
        classes=["only"],
    )
    labels = BottomUpMultiClassPredictor(model, progress=False).predict(video)
    (inst,) = labels.labeled_frames[0].instances
    assert inst.track is not None and inst.track.name == "only"
    assert [t.name for t in labels.tracks] == ["only"]


def test_parse_frames():
    assert parse_frames("0-3") == [0, 1, 2, 3]
    assert parse_frames("5,1,2-3") == [1, 2, 3, 5]
    assert parse_frames(None) is None
    assert parse_frames(range(3)) == [0, 1, 2]
    with pytest.warns(UserWarning, match="beyond"):
        assert parse_frames("8-12", n_frames=10) == [8, 9]
    with pytest.raises(PosekitError, match="frame selection"):
        parse_frames("a-b")


def test_load_predictor_rejects_bad_combinations():
    single = FakeModel("single_instance", ["a"], {"SingleInstanceConfmapsHead": (0, 1, 1)})
    centroid, centered = _topdown_models()
    assert isinstance(load_predictor(single, progress=False, device="cpu"), SingleInstancePredictor)
    td = load_predictor([centroid, centered], progress=False, device="cpu")
    assert isinstance(td, TopDownPredictor)
    with pytest.raises(PosekitError, match="cannot combine"):
        load_predictor([single, centroid], device="cpu")
    with pytest.raises(PosekitError, match="two centroid"):
        load_predictor([centroid, centroid], device="cpu")
    with pytest.raises(PosekitError, match="bottom-up"):
        load_predictor(single, device="cpu", paf_line_points=5)
    with pytest.raises(PosekitError, match="batch_size"):
        load_predictor(single, device="cpu", batch_size=0)
