"""Configuration classes (pydantic) with SLEAP's names, fields and defaults."""

from posekit.config.model import *  # noqa: F403
from posekit.config.model import __all__ as _model_all


def __getattr__(name):
    # The job config pulls in YAML and skeleton parsing; load it on first use.
    if name in ("TrainingJobConfig", "load_config"):
        from posekit.config import job

        return getattr(job, name)
    raise AttributeError(name)


__all__ = [*_model_all, "TrainingJobConfig", "load_config"]
