"""Configuration classes (pydantic) with SLEAP's names, fields and defaults.

`posekit.config.model` (backbones, heads) loads with this package; the job config
(`TrainingJobConfig`, `load_config`, ...) and skeletons load on first use, which keeps
`import posekit.config` quick.
"""

from posekit.config.model import *  # noqa: F403
from posekit.config.model import __all__ as _model_all

_LAZY = {
    **dict.fromkeys(
        [
            "AugmentationConfig",
            "CheckpointingConfig",
            "DataConfig",
            "EarlyStoppingConfig",
            "HardKeypointMiningConfig",
            "InstanceCroppingConfig",
            "LabelsConfig",
            "LearningRateScheduleConfig",
            "OptimizationConfig",
            "OutputsConfig",
            "PreprocessingConfig",
            "SLEAP_VERSION",
            "TensorBoardConfig",
            "TrainingJobConfig",
            "ZMQConfig",
            "load_config",
            "load_model_config",
            "shipped_configs",
        ],
        "posekit.config.job",
    ),
    **dict.fromkeys(["SkeletonConfig", "read_slp_skeletons"], "posekit.config.skeleton"),
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'posekit.config' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


__all__ = [*_model_all, *_LAZY]
