"""Data pipeline: labels via sleap-io, preprocessing, augmentation, crops and targets.

Submodules (imported lazily, so `import posekit.data` does not load torch):
`labels` (loading, moved videos, splits, frame decoding), `video` (frame reading),
`instance_cropping` (centroids, crop sizes, crops), `targets` (confidence maps, PAFs,
class maps/vectors, offsets), `augmentation` (`BatchAugmenter`), `dataset` (`PoseDataset`,
`DataPipeline`), `synthetic` (rendered data). Preprocessing (SLEAP's PreprocessingConfig
on NCHW batches) belongs to the model: `posekit.model.preprocessing`.
"""

from __future__ import annotations

from posekit._lazy import lazy_exports

_LAZY = {
    "PoseLabels": "posekit.data.labels",
    "load_labels": "posekit.data.labels",
    "load_training_labels": "posekit.data.labels",
    "split_labels": "posekit.data.labels",
    "Preprocessor": "posekit.model.preprocessing",
    "preprocess_frames": "posekit.model.preprocessing",
    "augmentation_config": "posekit.data.augmentation",
    "BatchAugmenter": "posekit.data.augmentation",
    "DataPipeline": "posekit.data.dataset",
    "PoseDataset": "posekit.data.dataset",
    "collate_samples": "posekit.data.dataset",
    "batch_to_device": "posekit.data.dataset",
    "find_instance_crop_size": "posekit.data.instance_cropping",
    "instance_centroids": "posekit.data.instance_cropping",
    "extract_crops": "posekit.data.instance_cropping",
    "crop_origins": "posekit.data.instance_cropping",
    "make_synthetic_labels": "posekit.data.synthetic",
    "save_synthetic_dataset": "posekit.data.synthetic",
    "render_synthetic_frames": "posekit.data.synthetic",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
