"""Bottom-up predictors: every part of every animal in one pass, then grouped.

- `BottomUpPredictor`: local peaks grouped into instances by part affinity fields
  (`PAFGrouper`).
- `BottomUpMultiClassPredictor`: local peaks grouped into identities by class maps, one
  instance per identity.

Both read peaks on the full frame at the multi-instance confidence maps' stride.
"""

from __future__ import annotations

import numpy as np

from posekit.inference.identity import classify_peaks_from_maps
from posekit.inference.paf_grouping import PAFGrouper
from posekit.inference.predictors.base import OneModelPredictor, RawInstance, need_head
from posekit.ops.coordinates import to_image_coordinates
from posekit.ops.peaks import find_local_peaks

#: Keyword options only PAF grouping takes (`load_predictor` refuses them elsewhere).
GROUPING_OPTIONS = frozenset(
    {"max_edge_length_ratio", "dist_penalty_weight", "paf_line_points", "min_instance_peaks"}
)


class _BottomUpBase(OneModelPredictor):
    """Local peaks (with refinement) of the multi-instance confidence maps."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.confmaps_head = need_head(model, "MultiInstanceConfmapsHead")

    def _local_peaks(self, out: dict, images):
        return find_local_peaks(
            out[self.confmaps_head.name],
            threshold=self.peak_threshold,
            refinement=self.refinement,
            integral_patch_size=self.integral_patch_size,
            offsets=out.get("OffsetRefinementHead"),
            frame_map_hw=self._frame_map_hw(images, self.model, self.confmaps_head),
        )


class BottomUpPredictor(_BottomUpBase):
    """Multi-instance confidence maps + part affinity fields."""

    def __init__(
        self,
        model,
        *,
        max_edge_length_ratio: float = 0.25,
        dist_penalty_weight: float = 1.0,
        paf_line_points: int = 10,
        min_line_scores: float = 0.25,
        min_instance_peaks: int | float = 0,
        **kwargs,
    ):
        super().__init__(model, **kwargs)
        self.pafs_head = need_head(model, "PartAffinityFieldsHead")
        self.grouper = PAFGrouper(
            edges=list(model.edges),
            n_nodes=len(model.part_names),
            pafs_stride=self.pafs_head.output_stride,
            max_edge_length_ratio=max_edge_length_ratio,
            dist_penalty_weight=dist_penalty_weight,
            n_points=paf_line_points,
            min_instance_peaks=min_instance_peaks,
            min_line_scores=min_line_scores,
            max_instances=self.max_instances,
        )

    def _predict_batch(self, images, gt):
        out = self._forward(self.model, self._preprocess(self.model, images))
        pafs = out[self.pafs_head.name]
        pts, vals, samples, channels = self._local_peaks(out, images)
        pts = pts * self.confmaps_head.output_stride
        grouped = self.grouper.group(pafs, pts, vals, samples, channels)
        scale = self.model.input_scale
        results = []
        for g in grouped:
            frame = []
            points = to_image_coordinates(np.asarray(g.points), 1.0, scale)
            for p, v, sc in zip(points, g.point_scores, g.instance_scores):
                if np.isnan(p).all():
                    continue
                frame.append(RawInstance(p, v, float(sc)))
            results.append(frame)
        return results


class BottomUpMultiClassPredictor(_BottomUpBase):
    """Multi-instance confidence maps + class maps: one instance per identity."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.class_maps_head = need_head(model, "ClassMapsHead")

    @property
    def class_names(self):
        return self.model.classes

    def _predict_batch(self, images, gt):
        out = self._forward(self.model, self._preprocess(self.model, images))
        class_maps = out[self.class_maps_head.name]
        pts, vals, samples, channels = self._local_peaks(out, images)
        cls_stride = self.class_maps_head.output_stride
        pts = pts * self.confmaps_head.output_stride / cls_stride
        points, point_vals, class_probs = classify_peaks_from_maps(
            class_maps,
            pts,
            vals,
            samples,
            channels,
            n_channels=out[self.confmaps_head.name].shape[1],
        )
        points = to_image_coordinates(points, cls_stride, self.model.input_scale)
        results = []
        for p_frame, v_frame, c_frame in zip(points, point_vals, class_probs):
            frame = []
            for k, (p, v, c) in enumerate(zip(p_frame, v_frame, c_frame)):
                if np.isnan(p).all():
                    continue
                frame.append(
                    RawInstance(
                        p, v, float(np.nanmean(v)), track=k, tracking_score=float(np.nanmean(c))
                    )
                )
            results.append(self._keep_best(frame))
        return results
