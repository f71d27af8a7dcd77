"""Before | after pictures: a selfie and its made-up result side by side, as one image."""

from __future__ import annotations

import cv2
import numpy as np

from engine.images import encode_image, load_image
from facelab.settings import EngineSettings

# Each half is scaled down to this longest side: the picture is for looking at, not for keeping.
HALF_MAX_SIDE = 1280


def before_after(before: bytes, after: bytes, limits: EngineSettings) -> bytes:
    """JPEG of `before` (left) and `after` (right) at the same size; EXIF orientation applied."""
    left = _fit(load_image(before, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes))
    right = load_image(after, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes)
    right = cv2.resize(right, (left.shape[1], left.shape[0]), interpolation=cv2.INTER_AREA)
    return encode_image(np.hstack([left, right]))


def _fit(rgb: np.ndarray) -> np.ndarray:
    scale = HALF_MAX_SIDE / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
