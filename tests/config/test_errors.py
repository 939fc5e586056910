"""Each mistake gets one error that names the field, the value and what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from posekit.config import (
    BackboneConfig,
    HeadsConfig,
    HourglassConfig,
    ModelConfig,
    PretrainedEncoderConfig,
    ResNetConfig,
    TrainingJobConfig,
    UNetConfig,
    UpsamplingConfig,
)
from posekit.config.base import format_validation_error


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ValidationError) as err:
        fn(*args, **kwargs)
    return format_validation_error(err.value)


def test_unknown_field_named_with_suggestion():
    msg = _message(TrainingJobConfig.from_dict, {"optimization": {"batch_sise": 4}})
    assert "optimization:" in msg
    assert "unknown field 'batch_sise'" in msg and "did you mean 'batch_size'" in msg
    msg = _message(UNetConfig, filter=8)
    assert "unknown field 'filter'" in msg and "did you mean 'filters'" in msg


def test_wrong_type_names_field_and_value():
    msg = _message(TrainingJobConfig.from_dict, {"optimization": {"batch_size": "many"}})
    assert "optimization.batch_size" in msg and "'many'" in msg
    msg = _message(UNetConfig, middle_block="sometimes")
    assert "middle_block" in msg and "'sometimes'" in msg


@pytest.mark.parametrize("field", ["max_stride", "output_stride", "stem_stride"])
def test_non_power_of_two_stride(field):
    kwargs = {"max_stride": 32, field: 12}
    msg = _message(UNetConfig, **kwargs)
    assert f"{field}=12 is not a power of two" in msg


def test_pad_to_stride_power_of_two_or_null():
    msg = _message(TrainingJobConfig.from_dict, {"data": {"preprocessing": {"pad_to_stride": 24}}})
    assert "data.preprocessing.pad_to_stride" in msg and "pad_to_stride=24" in msg
    for ok in (None, 1, 32):
        cfg = TrainingJobConfig.from_dict({"data": {"preprocessing": {"pad_to_stride": ok}}})
        assert cfg.data.preprocessing.pad_to_stride == ok


def test_output_stride_above_max_stride():
    msg = _message(UNetConfig, max_stride=8, output_stride=16)
    assert "output_stride=16" in msg and "max_stride=8" in msg
    msg = _message(HourglassConfig, max_stride=16, output_stride=32)
    assert "output_stride=32" in msg and "max_stride=16" in msg


def test_unknown_resnet_version():
    msg = _message(ResNetConfig, version="ResNet34")
    assert "version='ResNet34'" in msg and "ResNet50" in msg


def test_unknown_encoder_suggests_close_name():
    msg = _message(PretrainedEncoderConfig, encoder="efficientnet-b0")
    assert "encoder='efficientnet-b0'" in msg and "did you mean 'efficientnetb0'" in msg


@pytest.mark.parametrize("head", ["single_instance", "centroid", "centered_instance"])
def test_negative_sigma(head):
    msg = _message(HeadsConfig, **{head: {"sigma": -2.0}})
    assert f"{head}.sigma" in msg and "sigma=-2.0" in msg


def test_negative_sigma_in_nested_head():
    msg = _message(ModelConfig, heads={"multi_instance": {"pafs": {"sigma": -1}}})
    assert "heads.multi_instance.pafs.sigma" in msg and "sigma=-1" in msg


def test_one_of_two_backbones_set():
    msg = _message(BackboneConfig, unet={}, hourglass={})
    assert "unet, hourglass" in msg  # both fields that were set
    for allowed in BackboneConfig.model_fields:
        assert allowed in msg
    msg = _message(HeadsConfig, centroid={}, single_instance={})
    assert "single_instance, centroid" in msg and "multi_class_topdown" in msg


def test_one_of_none_set_is_valid():
    backbone = BackboneConfig()
    assert backbone.which_oneof() is None and backbone.which_oneof_attrib_name() is None
    with pytest.raises(ValueError, match="set one of: leap, unet"):
        backbone.require_oneof()
    assert BackboneConfig(resnet={}).which_oneof_attrib_name() == "resnet"


def test_both_spellings_accepted():
    assert HourglassConfig(filters_increase=64).filter_increase == 64
    assert HourglassConfig(filter_increase=32).filter_increase == 32
    assert UpsamplingConfig(conv_batchnorm=False).batch_norm is False
    assert UpsamplingConfig(batch_norm=False).batch_norm is False
    # SLEAP's spelling is what gets written.
    assert "filter_increase" in HourglassConfig(filters_increase=64).to_dict()
    assert "batch_norm" in UpsamplingConfig(conv_batchnorm=False).to_dict()
    msg = _message(HourglassConfig, filters_increase=64, filter_increase=32)
    assert "'filters_increase'" in msg and "'filter_increase'" in msg


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("data.labels", "validation_fraction", 1.0),
        ("data.labels", "validation_fraction", -0.1),
        ("data.preprocessing", "input_scaling", 0),
        ("data.preprocessing", "imagenet_mode", "pytorch"),
        ("data.instance_cropping", "crop_size", 0),
        ("optimization", "batch_size", 0),
        ("optimization", "epochs", 0),
        ("optimization", "optimizer", "sgd"),
        ("optimization", "initial_learning_rate", -1e-3),
        ("optimization.learning_rate_schedule", "reduction_factor", 1.5),
        ("optimization.augmentation_config", "scale_min", 0),
        ("outputs.tensorboard", "loss_frequency", "hourly"),
    ],
)
def test_job_values_checked(section, field, value):
    tree: dict = {field: value}
    for part in reversed(section.split(".")):
        tree = {part: tree}
    msg = _message(TrainingJobConfig.from_dict, tree)
    assert f"{section}.{field}" in msg and repr(value) in msg


def test_augmentation_range_order():
    msg = _message(
        TrainingJobConfig.from_dict,
        {"optimization": {"augmentation_config": {"scale_min": 1.2, "scale_max": 1.1}}},
    )
    assert "scale_min=1.2" in msg and "scale_max=1.1" in msg


def test_optimizer_case_and_assignment_checked():
    cfg = TrainingJobConfig.from_dict({"optimization": {"optimizer": "AdamW"}})
    assert cfg.optimization.optimizer == "adamw"
    with pytest.raises(ValidationError, match="batch_size"):
        cfg.optimization.batch_size = 0
    assert cfg.optimization.batch_size == 8
