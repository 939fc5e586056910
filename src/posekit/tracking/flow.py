"""Moving last frames' poses into the current frame with pyramidal Lucas-Kanade flow.

SLEAP's ``flow`` tracker compares a new instance not with where an animal *was* but with
where the image motion says it *is now*: every node of every candidate is shifted by
`cv2.calcOpticalFlowPyrLK` from its frame to the current one (SLEAP's ``img_scale``,
``of_window_size``, ``of_max_levels``; 30 iterations or 0.01 px, as SLEAP). A node the
flow loses becomes NaN.

Each frame is converted to gray (and scaled) once and kept for the `track_window` frames
it can serve as a reference. (OpenCV's Python binding does not accept prebuilt pyramids
in `calcOpticalFlowPyrLK`, so the pyramids themselves are rebuilt per call.) Both images
are cut to the region the flow can reach from the points (`FlowShifter._crop`), so the
cost follows the animals' extent, not the frame size. OpenCV is an optional extra,
imported here only.
"""

from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError

_CRITERIA_COUNT = 30
_CRITERIA_EPS = 0.01


def import_cv2():
    """OpenCV, or a `PosekitError` saying how to install it."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - depends on the environment
        raise PosekitError(
            "tracker='flow' needs OpenCV: pip install 'posekit[tracking]' "
            "(or opencv-python-headless); tracker='simple' works without it"
        ) from None
    return cv2


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) image of any dtype -> (H, W) uint8."""
    cv2 = import_cv2()
    img = np.asarray(image)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        if img.dtype != np.uint8:
            img = _to_uint8(img)
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
    if img.ndim != 2:
        raise PosekitError(
            f"flow tracking needs an (H, W) or (H, W, C) frame; got shape {img.shape}"
        )
    if img.dtype != np.uint8:
        img = _to_uint8(img)
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float64)
    if img.size and np.nanmax(img) <= 1.0:
        img = img * 255.0
    return np.clip(img, 0, 255).astype(np.uint8)


class FlowShifter:
    """Optical-flow shifts with SLEAP's settings; each frame prepared once."""

    def __init__(self, img_scale: float = 1.0, window_size: int = 21, max_levels: int = 3):
        self.cv2 = import_cv2()
        self.img_scale = float(img_scale)
        self.window_size = int(window_size)
        self.max_levels = int(max_levels)

    def pyramid(self, image: np.ndarray) -> np.ndarray:
        """One frame prepared for flow: gray uint8, scaled by `img_scale`."""
        cv2 = self.cv2
        gray = to_gray_uint8(image)
        if self.img_scale != 1.0:
            gray = cv2.resize(gray, None, fx=self.img_scale, fy=self.img_scale)
        return gray

    def _crop(self, ref_img: np.ndarray, img: np.ndarray, pts: np.ndarray):
        """Both images cut to the points' box plus the farthest the flow can reach.

        Pyramidal LK cannot follow a point further than about
        ``of_window_size * 2 ** of_max_levels`` pixels, so pixels beyond that margin
        around the points never influence the result; cutting them away makes the flow
        cost scale with the animals' extent instead of the frame size.
        """
        reach = self.window_size * (2**self.max_levels) + self.window_size
        h, w = img.shape[:2]
        x0 = max(int(np.floor(pts[:, 0].min())) - reach, 0)
        y0 = max(int(np.floor(pts[:, 1].min())) - reach, 0)
        x1 = min(int(np.ceil(pts[:, 0].max())) + reach + 1, w)
        y1 = min(int(np.ceil(pts[:, 1].max())) + reach + 1, h)
        if x0 == 0 and y0 == 0 and x1 == w and y1 == h:
            return ref_img, img, np.zeros(2, dtype=np.float32)
        return (
            np.ascontiguousarray(ref_img[y0:y1, x0:x1]),
            np.ascontiguousarray(img[y0:y1, x0:x1]),
            np.array([x0, y0], dtype=np.float32),
        )

    def shift(self, ref_pyramid, pyramid, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move (m, n, 2) points from the reference frame to the current one.

        Returns the shifted points (NaN where the node was missing or the flow lost it)
        and each instance's shift error (mean LK error of its found nodes; lower = better).
        """
        cv2 = self.cv2
        m, n = points.shape[:2]
        flat = points.reshape(-1, 2)
        valid = np.all(np.isfinite(flat), axis=1)
        out = np.full_like(flat, np.nan)
        errors = np.full(m, np.nan)
        if not valid.any():
            return out.reshape(m, n, 2), errors
        src = (flat[valid] * self.img_scale).astype(np.float32).reshape(-1, 1, 2)
        ref_img, img, origin = self._crop(ref_pyramid, pyramid, src.reshape(-1, 2))
        dst, status, err = cv2.calcOpticalFlowPyrLK(
            ref_img,
            img,
            src - origin,
            None,
            winSize=(self.window_size, self.window_size),
            maxLevel=self.max_levels,
            criteria=(
                cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT,
                _CRITERIA_COUNT,
                _CRITERIA_EPS,
            ),
        )
        found = status.reshape(-1).astype(bool)
        moved = (dst.reshape(-1, 2) + origin).astype(np.float64) / self.img_scale
        moved[~found] = np.nan
        out[valid] = moved
        err_all = np.full(len(flat), np.nan)
        e = err.reshape(-1).astype(np.float64)
        e[~found] = np.nan
        err_all[valid] = e
        with np.errstate(all="ignore"):
            per_inst = err_all.reshape(m, n)
            has = np.isfinite(per_inst).any(axis=1)
            errors[has] = np.nanmean(per_inst[has], axis=1)
        return out.reshape(m, n, 2), errors
