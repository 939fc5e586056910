"""Test-time augmentation: turned and mirrored copies land back on the plain map grid.

The fake networks read their maps straight from painted blobs, so a copy turned back to
the wrong place (sign of the angle, the stride's grid, the turn's centre) moves a peak
by pixels, and a mirrored copy with its left/right channels unswapped halves a peak.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch
from _inference_fakes import FakeModel, blob_frame

from posekit.data.symmetry import flip_permutation, symmetry_pairs
from posekit.errors import PosekitError
from posekit.inference.predictors import SingleInstancePredictor
from posekit.inference.test_time_augmentation import (
    TestTimeAugmentation,
    augmented_forward,
    head_flip_permutations,
)

H, W = 64, 96
# far from the centre (47.5, 31.5), and never half-way between two map pixels (a tie
# between two pixels may go either way and move a point by half a map pixel)
POINTS = [(20.6, 14.4), (69.6, 43.6), (50.8, 30.4)]


def _frame(points=POINTS, sigma=3.0):
    return blob_frame(H, W, [[p] for p in points], sigma=sigma)


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("spec", ["rot:10", "rot:5,20", "flip", "rot:10+flip"])
def test_turned_copies_give_the_plain_points(stride, spec):
    """A network that answers every copy exactly: the augmented points equal the plain
    ones (a turn back by the wrong angle or about the wrong centre moves them by pixels:
    20 degrees at 30 px from the centre is ~10 px)."""
    model = FakeModel(
        "single_instance", ["a", "b", "c"], {"SingleInstanceConfmapsHead": (0, 3, stride)}
    )
    frame = _frame(sigma=max(3.0, 1.5 * stride))  # maps of a few pixels' width
    (plain,) = SingleInstancePredictor(model, progress=False).predict_images(frame[None])
    predictor = SingleInstancePredictor(model, progress=False, tta=spec)
    model.calls = 0
    with pytest.warns(UserWarning, match="own mirror") if "flip" in spec else nullcontext():
        (aug,) = predictor.predict_images(frame[None])
    assert model.calls == predictor.tta.copies
    np.testing.assert_allclose(aug[0].points, plain[0].points, atol=0.15 * stride)
    np.testing.assert_allclose(aug[0].points, POINTS, atol=0.6 * stride)  # refinement bias
    # every copy saw the blobs, so the peaks keep their height
    np.testing.assert_allclose(aug[0].point_scores, plain[0].point_scores, rtol=0.12)


class SideFakeModel(FakeModel):
    """Names parts by where they are, as a network trained on unmirrored animals does:
    channel 0 (``earL``) is the blob on the image's left half, channel 1 (``earR``) the
    one on its right half; the frame paints both blobs into one channel."""

    def forward(self, x):
        self.calls += 1
        s = self.heads[0].output_stride
        img = x[:, :1, ::s, ::s]
        cols = torch.arange(img.shape[-1], dtype=img.dtype) * s
        left = (cols < (x.shape[-1] - 1) / 2).to(img.dtype)
        return {"SingleInstanceConfmapsHead": torch.cat([img * left, img * (1 - left)], 1)}


def test_mirrored_copies_swap_left_and_right_parts():
    model = SideFakeModel(
        "single_instance", ["earL", "earR"], {"SingleInstanceConfmapsHead": (0, 2, 2)}
    )
    frame = blob_frame(H, W, [[(20.0, 14.0), (70.0, 44.0)], []], sigma=3.0)
    (plain,) = SingleInstancePredictor(model, progress=False).predict_images(frame[None])
    (aug,) = SingleInstancePredictor(model, progress=False, tta="flip").predict_images(frame[None])
    np.testing.assert_allclose(aug[0].points, [(20.0, 14.0), (70.0, 44.0)], atol=0.3)
    np.testing.assert_allclose(aug[0].point_scores, plain[0].point_scores, rtol=0.05)
    # the same copies without the swap: each part's peak is half as high (a wrong swap
    # would show here as halved scores)
    x = model.preprocess(frame[None])
    run = model.forward
    unswapped = augmented_forward(
        run,
        x,
        TestTimeAugmentation(rotations=(), flip=True),
        model.heads,
        {"SingleInstanceConfmapsHead": [0, 1]},
    )["SingleInstanceConfmapsHead"]
    swapped = augmented_forward(
        run,
        x,
        TestTimeAugmentation(rotations=(), flip=True),
        model.heads,
        head_flip_permutations(model),
    )["SingleInstanceConfmapsHead"]
    assert float(unswapped.amax()) < 0.6 * float(swapped.amax())


def test_offsets_are_dropped_and_other_outputs_kept():
    heads = [
        type("H", (), {"name": "CentroidConfmapsHead", "output_stride": 2})(),
        type("H", (), {"name": "OffsetRefinementHead", "output_stride": 2})(),
        type("H", (), {"name": "ClassVectorsHead", "output_stride": 16})(),
    ]
    vec = torch.arange(6.0).view(2, 3)

    def run(x):
        return {
            "CentroidConfmapsHead": x[:, :1, ::2, ::2],
            "OffsetRefinementHead": torch.zeros(2, 2, 8, 8),
            "ClassVectorsHead": vec,
        }

    x = torch.rand(2, 1, 16, 16)
    out = augmented_forward(run, x, TestTimeAugmentation(), heads)
    assert "OffsetRefinementHead" not in out
    assert out["ClassVectorsHead"] is vec


def test_parse():
    assert TestTimeAugmentation.parse("off") is None
    assert TestTimeAugmentation.parse(None) is None
    assert TestTimeAugmentation.parse("on") == TestTimeAugmentation((-10.0, 10.0), False)
    tta = TestTimeAugmentation.parse("rot:5,10+flip")
    assert tta.rotations == (-5.0, 5.0, -10.0, 10.0) and tta.flip and tta.copies == 6
    assert TestTimeAugmentation.parse("flip") == TestTimeAugmentation((), True)
    for bad, match in [
        ("rot:", "angles"),
        ("rot:x", "angles"),
        ("spin", "use off"),
        ("rot:0", "plain pass"),
        ("rot:200", "between"),
    ]:
        with pytest.raises(PosekitError, match=match):
            TestTimeAugmentation.parse(bad)
    with pytest.raises(PosekitError, match="sleap_compatible"):
        SingleInstancePredictor(
            FakeModel("single_instance", ["a"], {"SingleInstanceConfmapsHead": (0, 1, 1)}),
            tta="on",
            sleap_compatible=True,
        )


def test_left_right_pairs_from_part_names():
    flies = [
        "head",
        "thorax",
        "abdomen",
        "wingL",
        "wingR",
        "forelegL4",
        "forelegR4",
        "eyeL",
        "eyeR",
    ]
    assert symmetry_pairs(flies) == [(3, 4), (5, 6), (7, 8)]
    mouse = [
        "nose",
        "left_ear",
        "right_ear",
        "paw1LH",
        "paw1RH",
        "LForelimb",
        "RForelimb",
        "l_hip",
        "r_hip",
        "tail",
    ]
    assert symmetry_pairs(mouse) == [(1, 2), (3, 4), (5, 6), (7, 8)]
    # capitals inside words and lowercase letters inside words are not markers
    assert symmetry_pairs(["Rump", "Lump", "tail", "taiR", "ear", "eal"]) == []
    # a name that pairs with two others is ambiguous and left out
    assert symmetry_pairs(["L_L", "R_L", "L_R"]) == []
    assert flip_permutation(5, [(0, 3), (1, 2)]) == [3, 2, 1, 0, 4]


def test_declared_symmetries_win_over_names():
    model = FakeModel(
        "single_instance", ["pL", "pR", "q"], {"SingleInstanceConfmapsHead": (0, 3, 1)}
    )
    assert head_flip_permutations(model)["SingleInstanceConfmapsHead"] == [1, 0, 2]
    model.skeleton.add_symmetry("pL", "q")
    assert head_flip_permutations(model)["SingleInstanceConfmapsHead"] == [2, 1, 0]
