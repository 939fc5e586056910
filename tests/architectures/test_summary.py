"""`posekit.summary`: counts, shapes, FLOPs and receptive field, computed on the meta device."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import torch

from posekit.errors import PosekitError
from posekit.model.summary import print_summary, summary

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REFERENCE = SHARED / "reference" / "sleap_tf_params.json"
PROFILES = SHARED / "sleap_profiles"
needs_shared = pytest.mark.skipif(not REFERENCE.exists(), reason="../shared is absent")
BACKBONE_GROUPS = ("unet_config", "leap_config", "hourglass_config")


def _reference_cases() -> list[dict]:
    return json.loads(REFERENCE.read_text())["cases"]


def _nchw(shape: list) -> list:
    return [shape[0], shape[3], shape[1], shape[2]]


@needs_shared
def test_largest_reference_config_summarises_in_seconds_with_sleaps_counts():
    from posekit.config.model import HourglassConfig, LEAPConfig, UNetConfig

    classes = {
        "UNetConfig": UNetConfig,
        "LEAPConfig": LEAPConfig,
        "HourglassConfig": HourglassConfig,
    }
    cases = [c for c in _reference_cases() if c["group"] in BACKBONE_GROUPS and c["status"] == "ok"]
    case = max(cases, key=lambda c: c["total_params"])
    assert case["total_params"] > 100_000_000  # unet_max_stride32: 138M
    ((key, fields),) = ((k, v) for k, v in case["config"].items() if k in classes)
    start = time.perf_counter()
    info = summary(classes[key](**fields), input_shape=case["input_shape"][1:])
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"summary took {elapsed:.1f}s"
    assert info["total_params"] == case["total_params"]
    assert info["trainable_params"] == case["trainable_params"]
    assert info["non_trainable_params"] == case["non_trainable_params"]
    assert [o["shape"] for o in info["outputs"]] == [_nchw(o["shape"]) for o in case["outputs"]]
    assert info["max_stride"] == case["backbone_maximum_stride"]
    assert info["output_stride"] == case["backbone_output_stride"]
    assert sum(row["params"] for row in info["layers"]) == info["total_params"]


@needs_shared
def test_stacked_hourglass_counts_batchnorm_statistics_as_non_trainable():
    from posekit.config.model import HourglassConfig

    case = next(c for c in _reference_cases() if c["name"] == "hourglass_default_in256")
    info = summary(HourglassConfig(**case["config"]["HourglassConfig"]), input_shape=(256, 256))
    assert info["non_trainable_params"] == case["non_trainable_params"] == 33536
    assert info["total_params"] == case["total_params"]
    assert [o["name"] for o in info["outputs"]] == [f"backbone_stack{i}" for i in range(3)]
    assert all(o["shape"] == [1, 256, 64, 64] and o["stride"] == 4 for o in info["outputs"])


@needs_shared
@pytest.mark.parametrize(
    "profile",
    [
        "baseline.centroid",
        "baseline_large_rf.topdown",
        "baseline_medium_rf.topdown",
        "baseline_large_rf.bottomup",
        "baseline_medium_rf.bottomup",
    ],
)
def test_sleap_profile_summary_matches_sleap_with_placeholder_parts(profile):
    """SLEAP's reference built the shipped profiles with parts p0..p4 -- as summary does."""
    pytest.importorskip("posekit.model")
    case = next(c for c in _reference_cases() if c["name"] == f"profile_{profile}")
    info = summary(PROFILES / f"{profile}.json", input_shape=case["input_shape"][1:])
    assert info["total_params"] == case["total_params"]
    assert info["non_trainable_params"] == case["non_trainable_params"]
    expected = {o["layer"]: _nchw(o["shape"]) for o in case["outputs"]}
    assert {o["name"]: o["shape"] for o in info["outputs"]} == expected
    if profile != "baseline.centroid":
        assert any("placeholder parts p0..p4" in n for n in info["notes"])


def test_gflops_and_receptive_field_of_a_tiny_leap_by_hand():
    from posekit.architectures.leap import LeapCNN

    # 8x8x1 input. enc0 conv 1->4 (k3) at 8x8: 64*4*9 = 2304 MACs; pool -> 4x4.
    # dec0: transposed conv 4->8 (k3, s2) over 4x4x4 inputs: 64*8*9 = 4608 MACs;
    # refine conv 8->8 (k3) at 8x8: 64*8*72 = 36864 MACs.
    with torch.device("meta"):
        model = LeapCNN(
            filters=4, down_blocks=1, down_convs_per_block=1, up_blocks=1, up_convs_per_block=1
        )
    info = summary(model, input_shape=(8, 8, 1))
    assert info["gflops"] == pytest.approx(2 * (2304 + 4608 + 36864) / 1e9)
    # RF: conv +2 -> 3; pool +1 -> 4 (jump 2); transposed conv +1 step of 2 -> 6 (jump 1);
    # refine conv +2 -> 8.
    assert info["receptive_field"] == 8
    assert info["total_params"] == (9 * 4 + 4) + (9 * 4 * 8 + 8) + (9 * 8 * 8 + 8)


def test_receptive_field_of_unet_matches_hand_count():
    from posekit.config.model import UNetConfig

    # max_stride 4, output stride 1, kernel 3 (jump j in input pixels):
    # enc0 convs 1+2+2=5; pool +1=6 (j2); enc1 convs +4+4=14; last pool +2=16 (j4);
    # middle expand/contract convs +8+8=32; dec0 transposed conv +1 step of 4=36 (j2),
    # refine +4+4=44; dec1 transposed conv +2=46 (j1), refine +2+2=50.
    info = summary(UNetConfig(filters=2, max_stride=4, output_stride=1), input_shape=(8, 8, 1))
    assert info["receptive_field"] == 50
    assert info["outputs"][0]["receptive_field"] == 50


def test_summary_reads_json_files_and_pads_the_input(tmp_path):
    pytest.importorskip("posekit.model")
    cfg = {
        "backbone": {"unet": {"filters": 4, "max_stride": 8, "output_stride": 2}},
        "heads": {
            "multi_instance": {
                "confmaps": {"part_names": ["a", "b", "c"], "output_stride": 2},
                "pafs": {"edges": [["a", "b"]], "output_stride": 4},
            }
        },
    }
    path = tmp_path / "model.json"
    path.write_text(json.dumps(cfg))
    info = summary(path, input_shape=(30, 20, 3))
    assert info["input_shape"] == [32, 24, 3]
    assert any("padded to 32x24" in n for n in info["notes"])
    assert not any("placeholder" in n for n in info["notes"])
    shapes = {o["name"]: (o["shape"], o["stride"]) for o in info["outputs"]}
    assert shapes == {
        "MultiInstanceConfmapsHead": ([1, 3, 16, 12], 2),
        "PartAffinityFieldsHead": ([1, 2, 8, 6], 4),
    }


def test_bad_input_shape_and_missing_file_are_clear_errors(tmp_path):
    from posekit.config.model import UNetConfig

    with pytest.raises(PosekitError, match="input_shape"):
        summary(UNetConfig(filters=2, max_stride=8), input_shape=(8,))
    with pytest.raises(PosekitError, match="not found|does not exist|no such"):
        summary(tmp_path / "missing.json")


def test_print_summary_shows_groups_and_totals():
    from rich.console import Console

    from posekit.config.model import UNetConfig

    info = summary(UNetConfig(filters=2, max_stride=4, output_stride=1), input_shape=(8, 8, 1))
    buf = io.StringIO()
    print_summary(info, console=Console(file=buf, width=200))
    text = buf.getvalue()
    assert "stack0_enc0" in text and "stack0_dec1_s2_to_s1" in text
    assert f"Total params:         {info['total_params']:,}" in text
    assert "50 px" in text
