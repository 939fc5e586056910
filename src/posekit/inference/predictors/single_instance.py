"""One animal per frame: the single-instance model's global peak per part; with a mask
head (`segmentation`), also the frame's foreground mask, linked to the animal."""

from __future__ import annotations

import numpy as np

from posekit.inference.predictors.base import (
    MASK_THRESHOLD,
    OneModelPredictor,
    RawInstance,
    RawMask,
    need_head,
)
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
        masks = self._masks(out, tuple(images.shape[1:3]))
        results = []
        for i, (p, v) in enumerate(zip(pts, vals)):
            found = not np.isnan(p).all()
            frame = [RawInstance(p, v, float(np.nansum(v)))] if found else []
            if masks[i] is not None:
                frame.append(RawMask(*masks[i], instance=0 if found else None))
            results.append(frame)
        return results

    def _masks(self, out, frame_hw) -> list:
        """Per frame, (foreground mask, its mean probability) of a model with a mask head,
        else None (also for an empty mask)."""
        import torch

        from posekit.inference.predictors.segmentation import maps_to_frame

        head = next((h for h in self.model.heads if h.name == "SegmentationHead"), None)
        if head is None:
            return [None] * len(next(iter(out.values())))
        prob = torch.sigmoid(out[head.name].float())
        prob = maps_to_frame(
            prob, int(head.output_stride), self.model.input_scale, frame_hw, "bilinear"
        )
        masks = []
        for p in prob[:, 0]:
            fg = p > MASK_THRESHOLD
            masks.append((fg.cpu().numpy(), float(p[fg].mean())) if bool(fg.any()) else None)
        return masks
