"""Predictors look for peaks on the frame, not on the stride padding below/right of it.

The fake network here pads its input like a real one (bottom/right, to a multiple of
16) and, like a network that answers to the dark strip, puts a strong blob into the
padding: the predicted point must be the weaker blob on the frame, unless
``sleap_compatible`` asks for SLEAP's whole-map rule.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _inference_fakes import FakeModel, blob_frame

from posekit.inference.predictors import (
    BottomUpMultiClassPredictor,
    SingleInstancePredictor,
    TopDownPredictor,
)


class PaddingFakeModel(FakeModel):
    """A fake whose maps peak on the padded strip (value 1 near the padding's corner)."""

    def preprocess(self, frames):
        x = super().preprocess(frames)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % 16, 0, (-h) % 16))
        x[:, :, -2, -2] = 1.0  # a peak near the bottom-right corner of the padded strip
        return x


H, W = 40, 54  # padded to 48 x 64; maps of stride 2: 24 x 32, on the frame 20 x 27


def test_single_instance_point_is_on_the_frame_not_on_the_padding():
    frame = blob_frame(H, W, [[(10.0, 12.0)], []])
    frame[..., 0] = (frame[..., 0] * 0.7).astype(np.uint8)  # weaker than the padding's 1.0
    model = PaddingFakeModel(
        "single_instance", ["a", "b"], {"SingleInstanceConfmapsHead": (0, 2, 2)}
    )
    (raws,) = SingleInstancePredictor(model, progress=False).predict_images(frame[None])
    np.testing.assert_allclose(raws[0].points[0], (10.0, 12.0), atol=0.2)
    assert np.isnan(raws[0].points[1]).all()  # nothing on the frame: missing, not a corner
    (sleap,) = SingleInstancePredictor(model, progress=False, sleap_compatible=True).predict_images(
        frame[None]
    )
    assert (sleap[0].points >= (W, H)).all()  # SLEAP's rule: both parts in the padding


def test_centroids_in_the_padding_are_not_animals():
    frame = blob_frame(H, W, [[(20.0, 16.0)], [(20.0, 16.0)]])
    centroid = PaddingFakeModel(
        "centroid",
        [],
        {"CentroidConfmapsHead": (0, 1, 2)},
        anchor_part="a",
        skeleton_nodes=["a"],
    )
    pred = TopDownPredictor(centroid, None, progress=False)
    cents, _, _ = pred._find_centroids(torch.from_numpy(frame[None]), None)
    np.testing.assert_allclose(cents.numpy(), [[20.0, 16.0]], atol=0.2)
    sleap = TopDownPredictor(centroid, None, progress=False, sleap_compatible=True)
    cents, _, _ = sleap._find_centroids(torch.from_numpy(frame[None]), None)
    assert len(cents) == 2  # the padding's corner is a second "animal" under SLEAP's rule


def test_bottomup_peaks_in_the_padding_are_not_parts():
    # Channels: part a, part b, class-0 region, class-1 region (as in test_predictors).
    frame = blob_frame(H, W, [[(10.0, 10.0)], [(15.0, 12.0)], [], []])
    frame[..., :2] = (frame[..., :2] * 0.7).astype(np.uint8)
    frame[:, :, 2] = 230
    model = PaddingFakeModel(
        "multi_class_bottomup",
        ["a", "b"],
        {"MultiInstanceConfmapsHead": (0, 2, 1), "ClassMapsHead": (2, 2, 2)},
        edges=[(0, 1)],
        classes=["left", "right"],
    )

    def points(**options):
        (found,) = BottomUpMultiClassPredictor(model, progress=False, **options).predict_images(
            frame[None]
        )
        return np.concatenate([r.points for r in found])

    on_frame = points()
    np.testing.assert_allclose(
        np.sort(on_frame[~np.isnan(on_frame[:, 0])], 0), [[10, 10], [15, 12]], atol=0.1
    )
    sleap = points(sleap_compatible=True)
    assert (sleap[~np.isnan(sleap[:, 0])] >= (W, H)).all(axis=1).any()
