"""One animal per frame: the single-instance model's global peak per part."""

from __future__ import annotations

import numpy as np

from posekit.inference.predictors.base import OneModelPredictor, RawInstance, need_head
from posekit.ops.coordinates import to_image_coordinates
from posekit.ops.peaks import find_global_peaks


class SingleInstancePredictor(OneModelPredictor):
    """One animal per frame: a global peak per part; instance score = sum of the point
    scores (SLEAP's)."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.confmaps_head = need_head(model, "SingleInstanceConfmapsHead")

    def _predict_batch(self, images, gt):
        out = self._forward(self.model, self._preprocess(self.model, images))
        cms = out[self.confmaps_head.name]
        offsets = out.get("OffsetRefinementHead")
        pts, vals = find_global_peaks(
            cms,
            threshold=self.peak_threshold,
            refinement=self.refinement,
            integral_patch_size=self.integral_patch_size,
            offsets=offsets,
            frame_map_hw=self._frame_map_hw(images, self.model, self.confmaps_head),
        )
        pts = to_image_coordinates(pts, self.confmaps_head.output_stride, self.model.input_scale)
        pts, vals = pts.cpu().numpy(), vals.cpu().numpy()
        results = []
        for p, v in zip(pts, vals):
            if np.isnan(p).all():
                results.append([])
            else:
                results.append([RawInstance(p, v, float(np.nansum(v)))])
        return results
