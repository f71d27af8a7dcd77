"""The structure ControlNet's input: a face's 68 iBUG/300W landmarks drawn as coloured strokes.

Drawn exactly as Stable-Makeup's structure images were drawn for training (black canvas, 4 px strokes;
jaw lime, brows yellow, nose orange, eyes magenta, outer lips cyan, inner lips blue; eyes and lips closed
and filled), with OpenCV instead of a matplotlib figure. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

LINE_WIDTH = 4
_SUBPIXEL_BITS = 4  # cv2 draws at 1/16 px so the strokes follow float landmarks smoothly

Color = tuple[int, int, int]
LIME: Color = (0, 255, 0)
YELLOW: Color = (255, 255, 0)
ORANGE: Color = (255, 165, 0)
MAGENTA: Color = (255, 0, 255)
CYAN: Color = (0, 255, 255)
BLUE: Color = (0, 0, 255)

# (first index, end index, colour, closed and filled), in drawing order: later parts paint over earlier.
PARTS: tuple[tuple[int, int, Color, bool], ...] = (
    (0, 17, LIME, False),  # jaw line
    (17, 22, YELLOW, False),  # brow
    (22, 27, YELLOW, False),  # brow
    (27, 31, ORANGE, False),  # nose bridge
    (31, 36, ORANGE, False),  # nostrils
    (36, 42, MAGENTA, True),  # eye
    (42, 48, MAGENTA, True),  # eye
    (48, 60, CYAN, True),  # outer lips
    (60, 68, BLUE, True),  # inner lips
)


def draw_structure(faces: Iterable[np.ndarray], height: int, width: int) -> np.ndarray:
    """An H×W×3 uint8 RGB drawing of every face's (68, 2) landmarks, in pixel coordinates (x, y)."""
    canvas = np.zeros((height, width, 3), np.uint8)
    for points in faces:
        if points.shape != (68, 2):
            raise ValueError(f"expected 68 (x, y) landmarks, got shape {points.shape}")
        fixed = np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        for start, end, color, closed in PARTS:
            part = fixed[start:end]
            if closed:
                cv2.fillPoly(canvas, [part], color, cv2.LINE_AA, _SUBPIXEL_BITS)
            cv2.polylines(canvas, [part], closed, color, LINE_WIDTH, cv2.LINE_AA, _SUBPIXEL_BITS)
    return canvas
