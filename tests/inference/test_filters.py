"""Instance filters, the chunk store and output-format names: no models, no shared data."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.inference.filters import InstanceFilter, box_iou, pose_oks


def _pts(*xy):
    return np.asarray(xy, dtype=np.float64)


def test_filters_are_off_by_default():
    f = InstanceFilter()
    assert not f.active
    pts = [_pts([0, 0], [1, 1]), _pts([0, 0], [1, 1])]
    assert f.keep(pts, [0.1, 0.2]) == [0, 1]


def test_min_instance_score_and_visible_nodes():
    pts = [_pts([0, 0], [1, 1], [2, 2]), _pts([0, 0], [np.nan, np.nan], [np.nan, np.nan])]
    assert InstanceFilter(min_instance_score=0.5).keep(pts, [0.4, 0.6]) == [1]
    assert InstanceFilter(min_visible_nodes=2).keep(pts, [0.4, 0.6]) == [0]


@pytest.mark.parametrize("method", ["iou", "oks"])
def test_overlapping_duplicates_keep_the_better_one(method):
    a = _pts([10, 10], [90, 110])
    dup = a + 0.5
    other = _pts([200, 200], [280, 330])
    f = InstanceFilter(overlap_method=method, overlap_threshold=0.8)
    assert f.keep([a, dup, other], [0.5, 0.9, 0.1]) == [1, 2]
    assert f.keep([a, other], [0.5, 0.1]) == [0, 1]


def test_similarities():
    a = _pts([0, 0], [10, 10])
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, a + 20) == 0.0
    assert pose_oks(a, a) == pytest.approx(1.0)
    assert pose_oks(a, a + 5) < 0.01
    assert pose_oks(a, _pts([np.nan, np.nan], [np.nan, np.nan])) == 0.0


def test_bad_filter_settings_are_refused():
    with pytest.raises(PosekitError, match="overlap method"):
        InstanceFilter(overlap_method="nms")
    with pytest.raises(PosekitError, match="threshold"):
        InstanceFilter(overlap_method="iou", overlap_threshold=1.5)


def test_output_format_by_suffix():
    from posekit.data.formats import output_format

    assert output_format("x.slp") == "slp"
    assert output_format("x.predictions.slp") == "slp"
    assert output_format("x.analysis.h5") == "analysis.h5"
    assert output_format("x.h5") == "analysis.h5"
    assert output_format("dir/x.CSV") == "csv"
    assert output_format("x.nwb") == "nwb"
    with pytest.raises(PosekitError, match=r"\.analysis\.h5"):
        output_format("x.json")


def test_chunk_store_refuses_to_resume_another_run(tmp_path):
    from posekit.inference.chunks import ChunkStore, chunk_folder

    out = tmp_path / "out.slp"
    ChunkStore(out, {"peak_threshold": 0.2})
    assert chunk_folder(out).is_dir()
    with pytest.raises(PosekitError, match="peak_threshold"):
        ChunkStore(out, {"peak_threshold": 0.3}, resume=True)
    store = ChunkStore(out, {"peak_threshold": 0.3})  # without --resume: starts over
    assert store.resumed_chunks == 0
    store.finish()
    assert not chunk_folder(out).exists()


def test_chunks_round_trip_points_scores_and_tracks(tmp_path):
    import sleap_io as sio

    from posekit.inference.chunks import ChunkStore

    skel = sio.Skeleton(["a", "b"])
    t = sio.Track("t0")
    inst = sio.PredictedInstance.from_numpy(
        points_data=_pts([1.25, 2.5], [np.nan, np.nan]),
        skeleton=skel,
        point_scores=np.asarray([0.9, np.nan]),
        score=0.7,
        track=t,
        tracking_score=0.5,
    )
    store = ChunkStore(tmp_path / "o.slp", {})
    store.write(0, 0, [(5, [inst]), (3, []), (4, None)])
    video = sio.Video("v.mp4")
    reordered = sio.Skeleton(["b", "a"])
    frames, skipped = store.frames(0, 0, video, reordered, {})
    assert [lf.frame_idx for lf in frames] == [3, 5] and skipped == [4]
    got = frames[1].instances[0]
    assert np.array_equal(got.numpy(), inst.numpy()[::-1], equal_nan=True)
    assert got.score == pytest.approx(0.7) and got.track.name == "t0"
    assert got.tracking_score == pytest.approx(0.5)


def test_a_chunk_without_any_instance_round_trips(tmp_path):
    """No animal in view (or only undecodable frames) in a whole chunk is stored too."""
    import sleap_io as sio

    from posekit.inference.chunks import ChunkStore

    store = ChunkStore(tmp_path / "out.slp", {"x": 1}, resume=False)
    store.write(0, 0, [(3, []), (4, None), (5, [])])
    skeleton = sio.Skeleton(["a", "b"])
    video = sio.Video(filename="v.mp4", open_backend=False)
    frames, skipped = store.frames(0, 0, video, skeleton, {})
    assert [lf.frame_idx for lf in frames] == [3, 5] and skipped == [4]
    assert all(len(lf.instances) == 0 for lf in frames)
