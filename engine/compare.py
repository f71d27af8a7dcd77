"""Pictures for people to look at: before | after side by side, and previews of uploaded photos."""

from __future__ import annotations

import cv2
import numpy as np

from engine.api import CompareRequest, MakeupResult
from engine.errors import Role
from engine.images import encode_image, load_image
from engine.settings import EngineSettings

# Each half is scaled down to this longest side: the picture is for looking at, not for keeping.
HALF_MAX_SIDE = 1280
# Enough for a before/after slider over a result on a large screen.
PREVIEW_MAX_SIDE = 1024


def before_after(before: bytes, after: bytes, limits: EngineSettings) -> bytes:
    """JPEG of `before` (left) and `after` (right) at the same size; EXIF orientation applied."""
    return encode_image(_side_by_side(before, after, limits))


def compare(request: CompareRequest, limits: EngineSettings) -> MakeupResult:
    """`before_after` as an engine job (the bot's "Before / after" button): run where try-ons run."""
    picture = _side_by_side(request.before, request.after, limits)
    return MakeupResult(encode_image(picture), width=picture.shape[1], height=picture.shape[0], faces=0)


def _side_by_side(before: bytes, after: bytes, limits: EngineSettings) -> np.ndarray:
    left = _fit(load_image(before, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes), HALF_MAX_SIDE)
    right = load_image(after, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes)
    right = cv2.resize(right, (left.shape[1], left.shape[0]), interpolation=cv2.INTER_AREA)
    return np.hstack([left, right])


def preview(photo: bytes, limits: EngineSettings, role: Role | None = None) -> bytes:
    """JPEG of any photo the gate accepts (HEIC, AVIF, a 16-bit PNG...), upright and at most
    `PREVIEW_MAX_SIDE` pixels long, for a browser that cannot show the original. Raises the gate's
    `ImageError`, naming `role`."""
    rgb = load_image(photo, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes, role=role)
    return encode_image(_fit(rgb, PREVIEW_MAX_SIDE), quality=85)


def _fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    scale = max_side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
