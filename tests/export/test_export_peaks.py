"""Peak finding inside exported graphs finds the peaks posekit's predictors find."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _export_models import (
    MODELS,
    max_err,
    multi_instance_model,
    needs_shared,
    ort_session,
    single_instance_model,
    smooth_frames,
)


def _reference_global(model, frames: np.ndarray, threshold: float, use_offsets: bool):
    from posekit.ops.coordinates import to_image_coordinates
    from posekit.ops.peaks import find_global_peaks, frame_map_size

    x = model.preprocess(frames)
    with torch.no_grad():
        out = model(x)
    head = model.heads[0]
    offsets = out.get("OffsetRefinementHead") if use_offsets else None
    # as the predictors do: peaks on the frame only, not on the stride padding
    on_frame = frame_map_size(frames.shape[1:3], model.input_scale, head.output_stride)
    pts, vals = find_global_peaks(out[head.name], threshold, offsets=offsets, frame_map_hw=on_frame)
    return to_image_coordinates(pts, head.output_stride, model.input_scale).numpy(), vals.numpy()


def _median_peak_value(model, frames) -> float:
    """A threshold that leaves about half of the peaks valid and half NaN."""
    with torch.no_grad():
        cms = model(model.preprocess(frames))[model.heads[0].name]
    return float(cms.flatten(2).amax(-1).median())


@pytest.mark.parametrize(("scale", "use_offsets"), [(1.0, True), (0.5, False)])
def test_global_peaks_in_the_graph_equal_posekits(tmp_path, use_offsets, scale):
    from posekit.export import export_onnx

    model = single_instance_model(scale=scale)
    frames = smooth_frames(2, 70, 90, seed=1)  # not multiples of the stride: the graph pads
    threshold = _median_peak_value(model, frames)
    path = export_onnx(
        model,
        tmp_path / "m.onnx",
        input_shape=(64, 64),
        include_postprocessing=True,
        peak_threshold=threshold,
        use_offsets=use_offsets,
        verify=False,
    )
    session = ort_session(path)
    assert session.get_inputs()[0].name == "frames"
    nan_flags = []
    for f in (frames, smooth_frames(1, 51, 77, seed=2)):
        ref_pts, ref_vals = _reference_global(model, f, threshold, use_offsets)
        pts, vals = session.run(["peaks", "peak_values"], {"frames": f})
        assert pts.shape == (f.shape[0], 3, 2)
        np.testing.assert_array_equal(np.isnan(pts), np.isnan(ref_pts))
        nan_flags += list(np.isnan(pts[..., 0]).ravel())
        if not np.isnan(pts).all():
            assert np.nanmax(np.abs(pts - ref_pts)) < 1e-3
        assert max_err(vals, ref_vals) < 1e-4
    assert any(nan_flags) and not all(nan_flags)  # both branches of the threshold ran


def _sorted_local(points, values, sample_inds, channel_inds, n, c, k):
    """posekit's flat local-peak list -> per (sample, channel) top-k by value."""
    out = {}
    for s in range(n):
        for ch in range(c):
            sel = (sample_inds == s) & (channel_inds == ch)
            v, p = values[sel], points[sel]
            order = np.argsort(-v, kind="stable")[:k]
            out[s, ch] = (p[order], v[order])
    return out


def test_local_peaks_in_the_graph_equal_posekits(tmp_path):
    from posekit.export import export_onnx
    from posekit.ops.coordinates import to_image_coordinates
    from posekit.ops.peaks import find_local_peaks

    model = multi_instance_model()
    frames = smooth_frames(2, 64, 80, seed=4)
    with torch.no_grad():
        out = model(model.preprocess(frames))
    cms = out["MultiInstanceConfmapsHead"]
    threshold = float(cms.quantile(0.5))
    k = 6
    path = export_onnx(
        model,
        tmp_path / "m.onnx",
        include_postprocessing=True,
        peak_threshold=threshold,
        max_peaks=k,
        verify=False,
    )
    pts, vals, pafs = ort_session(path).run(None, {"frames": frames})
    assert pts.shape == (2, 3, k, 2) and vals.shape == (2, 3, k)
    assert max_err(pafs, out["PartAffinityFieldsHead"].numpy()) < 1e-4

    rp, rv, rs, rc = find_local_peaks(cms, threshold)
    rp = to_image_coordinates(rp, 2, 1.0).numpy()
    ref = _sorted_local(rp, rv.numpy(), rs.numpy(), rc.numpy(), 2, 3, k)
    some_full = False
    for (s, ch), (p, v) in ref.items():
        m = len(v)
        some_full |= m == k
        np.testing.assert_allclose(vals[s, ch, :m], v, atol=1e-5)
        np.testing.assert_allclose(pts[s, ch, :m], p, atol=1e-3)
        assert np.isnan(pts[s, ch, m:]).all() and (vals[s, ch, m:] == 0).all()
    assert some_full  # the top-k cut was exercised


@needs_shared
def test_sleap_centroid_export_finds_posekits_centroids_on_a_real_frame(tmp_path):
    import posekit
    from posekit.export import export_torchscript
    from posekit.ops.coordinates import to_image_coordinates
    from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD, find_local_peaks

    folder = MODELS / "minimal_instance.UNet.centroid"
    model = posekit.load_model(folder)
    frame = np.load(folder / "keras_outputs.npz")["input_frame"]  # (1, 384, 384, 1) in [0, 1]
    frames = (frame * 255).round().astype(np.uint8)
    path = export_torchscript(model, tmp_path / "c.pt", include_postprocessing=True, verify=False)
    with torch.no_grad():
        pts, vals = torch.jit.load(str(path))(torch.from_numpy(frames))
        out = model(model.preprocess(frames))
    rp, rv, _, _ = find_local_peaks(
        out["CentroidConfmapsHead"], DEFAULT_PEAK_THRESHOLD, offsets=out["OffsetRefinementHead"]
    )
    rp = to_image_coordinates(rp, 4, 1.0).numpy()
    order = np.argsort(-rv.numpy())
    n = len(order)
    assert n >= 2  # two animals in the frame
    np.testing.assert_allclose(vals[0, 0, :n].numpy(), rv.numpy()[order], atol=1e-5)
    np.testing.assert_allclose(pts[0, 0, :n].numpy(), rp[order], atol=1e-3)
    assert torch.isnan(pts[0, 0, n:]).all()


@pytest.mark.parametrize("model_fn", [single_instance_model, multi_instance_model])
def test_traced_graph_pins_no_device_and_keeps_the_batch_dynamic(model_fn):
    """A TorchScript export is traced on the CPU and documented to load on a GPU: no
    operation in it may carry the tracing device as a constant."""
    import warnings

    from posekit.export import build_export_module

    module = build_export_module(model_fn(), include_postprocessing=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (torch.from_numpy(smooth_frames(1, 40, 56)),))
        other = torch.from_numpy(smooth_frames(3, 48, 40, seed=5))
        for got, ref in zip(traced(other), module(other)):
            np.testing.assert_array_equal(got.numpy(), ref.numpy())
    pinned = [line for line in str(traced.inlined_graph).splitlines() if "Device = " in line]
    assert not pinned, "\n".join(pinned)
