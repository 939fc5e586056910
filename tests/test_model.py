"""Backbone + heads, checked against the models SLEAP 1.4.1 built from the same configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posekit.errors import PosekitError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
PARAMS = SHARED / "reference" / "sleap_tf_params.json"


def _cases(groups: tuple[str, ...], status: str = "ok"):
    if not PARAMS.exists():
        return []
    cases = json.loads(PARAMS.read_text())["cases"]
    return [c for c in cases if c["group"] in groups and c["status"] == status]


def _ids(cases):
    return [c["name"] for c in cases]


MODEL_CASES = _cases(("model_from_config", "training_profile"))
# Pretrained encoders are torch encoders whose layer names differ from Keras'.
NAMED_CASES = [
    c for c in MODEL_CASES if not c["config"]["ModelConfig"]["backbone"].get("pretrained_encoder")
]


@pytest.mark.skipif(not PARAMS.exists(), reason="../shared is absent")
@pytest.mark.parametrize("case", MODEL_CASES, ids=_ids(MODEL_CASES))
def test_model_matches_sleap_counts_and_head_shapes(case):
    import posekit
    from posekit.config.model import ModelConfig

    cfg = ModelConfig.model_validate(case["config"]["ModelConfig"])
    n, h, w, c = case["input_shape"]
    info = posekit.summary(cfg, input_shape=(h, w, c))
    if cfg.backbone.pretrained_encoder is None:
        # Pretrained encoders come from a different library than Keras' segmentation_models,
        # so only shapes are compared for them (counts are tabulated in the README).
        assert info["total_params"] == case["total_params"]
        assert info["trainable_params"] == case["trainable_params"]
        assert info["non_trainable_params"] == case["non_trainable_params"]
    got = {o["name"]: o["shape"] for o in info["outputs"]}
    for out in case["outputs"]:
        shape = out["shape"]
        if len(shape) == 4:  # NHWC -> NCHW
            shape = [shape[0], shape[3], shape[1], shape[2]]
        assert list(got[out["layer"]]) == shape
    assert info["output_stride"] == case["backbone_output_stride"]


@pytest.mark.skipif(not PARAMS.exists(), reason="../shared is absent")
@pytest.mark.parametrize("case", NAMED_CASES, ids=_ids(NAMED_CASES))
def test_model_layer_names_match_keras(case):
    from posekit.config.model import ModelConfig
    from posekit.io.keras_h5 import _weighted_modules
    from posekit.model.network import build

    cfg = ModelConfig.model_validate(case["config"]["ModelConfig"])
    n, h, w, c = case["input_shape"]
    with torch.device("meta"):
        model = build(cfg, in_channels=c, input_size=(h, w))
    layers = _weighted_modules(model)
    for wl in case["weighted_layers"]:
        assert wl["name"] in layers, wl["name"]
        if wl.get("kernel_shape"):
            weight = layers[wl["name"]].weight
            k = wl["kernel_shape"]
            if len(k) == 4 and wl["class"] == "Conv2D":
                assert tuple(weight.shape) == (k[3], k[2], k[0], k[1])
            elif len(k) == 4:  # Conv2DTranspose (kh, kw, out, in)
                assert tuple(weight.shape) == (k[3], k[2], k[0], k[1])
            else:
                assert tuple(weight.shape) == (k[1], k[0])


def _stacked_config(stacks: int):
    from posekit.config.model import ModelConfig

    return ModelConfig.model_validate(
        {
            "backbone": {
                "hourglass": {
                    "stem_stride": 4,
                    "max_stride": 32,
                    "output_stride": 4,
                    "stem_filters": 8,
                    "filters": 8,
                    "filter_increase": 4,
                    "stacks": stacks,
                }
            },
            "heads": {
                "single_instance": {
                    "part_names": ["a", "b", "c"],
                    "output_stride": 4,
                    "offset_refinement": True,
                }
            },
        }
    )


def test_stacked_backbone_gets_heads_per_stack_where_sleap_fails():
    from posekit.model.network import build

    model = build(_stacked_config(2), in_channels=1).eval()
    names = set(model.head_layers)
    assert names == {
        "SingleInstanceConfmapsHead_0",
        "SingleInstanceConfmapsHead_1",
        "OffsetRefinementHead_0",
        "OffsetRefinementHead_1",
    }
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        stacks = model.forward_stacks(x)
        final = model(x)
    assert [t.shape for t in stacks["SingleInstanceConfmapsHead"]] == [(1, 3, 16, 16)] * 2
    assert [t.shape for t in stacks["OffsetRefinementHead"]] == [(1, 6, 16, 16)] * 2
    # The two stacks have their own layers, so their outputs differ; forward = last stack.
    assert not torch.equal(*stacks["SingleInstanceConfmapsHead"])
    assert torch.equal(final["SingleInstanceConfmapsHead"], stacks["SingleInstanceConfmapsHead"][1])


def test_parts_and_edges_come_from_skeleton_when_config_leaves_them_null():
    import sleap_io as sio

    from posekit.config.model import ModelConfig
    from posekit.model.network import build

    skel = sio.Skeleton(["head", "thorax", "tail"], edges=[("head", "thorax"), ("thorax", "tail")])
    cfg = ModelConfig.model_validate(
        {
            "backbone": {"unet": {"filters": 4, "max_stride": 8, "output_stride": 2}},
            "heads": {
                "multi_instance": {
                    "confmaps": {"output_stride": 2},
                    "pafs": {"output_stride": 4},
                }
            },
        }
    )
    model = build(cfg, in_channels=1, skeleton=skel)
    assert model.part_names == ["head", "thorax", "tail"]
    assert model.edges == [(0, 1), (1, 2)]
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 32))
    assert out["MultiInstanceConfmapsHead"].shape == (2, 3, 16, 16)
    assert out["PartAffinityFieldsHead"].shape == (2, 4, 8, 8)


def test_finer_secondary_head_builds_backbone_to_that_stride():
    from posekit.config.model import ModelConfig
    from posekit.model.network import build

    cfg = ModelConfig.model_validate(
        {
            "backbone": {"unet": {"filters": 4, "max_stride": 16, "output_stride": 4}},
            "heads": {
                "multi_instance": {
                    "confmaps": {"part_names": ["a", "b"], "output_stride": 4},
                    "pafs": {"edges": [["a", "b"]], "output_stride": 2},
                }
            },
        }
    )
    model = build(cfg, in_channels=1)
    assert model.output_stride == 2
    with torch.no_grad():
        out = model(torch.rand(1, 1, 64, 64))
    assert out["MultiInstanceConfmapsHead"].shape == (1, 2, 16, 16)
    assert out["PartAffinityFieldsHead"].shape == (1, 2, 32, 32)


def test_missing_part_names_and_missing_heads_are_clear_errors():
    from posekit.config.model import ModelConfig
    from posekit.model.network import build

    cfg = ModelConfig.model_validate(
        {"backbone": {"unet": {"filters": 4, "max_stride": 8}}, "heads": {"single_instance": {}}}
    )
    with pytest.raises(PosekitError, match="part_names"):
        build(cfg)
    cfg = ModelConfig.model_validate({"backbone": {"unet": {"filters": 4, "max_stride": 8}}})
    with pytest.raises(PosekitError, match="no heads"):
        build(cfg)
