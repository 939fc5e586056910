"""Configuration classes (pydantic) with SLEAP's names, fields and defaults.

`posekit.config.model` (backbones, heads) loads with this package; the job config
(`TrainingJobConfig`, `load_config`, ...) and skeletons load on first use, which keeps
`import posekit.config` quick.
"""

from posekit._lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [*_model_all, *_LAZY]
