"""Feathered makeup-region masks from the 478 mesh landmarks, drawn at working size.

Every mask is float32 in [0, 1] with the crop's shape. Feather widths scale with the inter-ocular
distance so a mask looks the same on a 256-px crop and a 512-px one.
"""

from __future__ import annotations

import cv2
import numpy as np

LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
# Upper and lower eyelid from the outer corner to the inner one.
RIGHT_UPPER_LID = (33, 246, 161, 160, 159, 158, 157, 173, 133)
LEFT_UPPER_LID = (263, 466, 388, 387, 386, 385, 384, 398, 362)
RIGHT_LOWER_LID = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_LOWER_LID = (263, 249, 390, 373, 374, 380, 381, 382, 362)
# Brows: upper edge outer to inner, lower edge outer to inner.
RIGHT_BROW_UPPER, RIGHT_BROW_LOWER = (70, 63, 105, 66, 107), (46, 53, 52, 65, 55)
LEFT_BROW_UPPER, LEFT_BROW_LOWER = (300, 293, 334, 296, 336), (276, 283, 282, 295, 285)
FACE_OVAL = (
    *(10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377),
    *(152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
)
CHEEKS = (50, 280)  # apples of the cheeks
FOREHEAD_TOP, CHIN = 10, 152
TEMPLES = (54, 284)  # the face outline's points at the temples

# How far up the forehead skin and paint reach (where their fade starts and ends, as shares of the
# way from the brows to the mesh's top edge). Skin stops well short of the hairline, so hair and
# bangs are never smeared; above it, the hairline band is the top of a painted forehead or the
# selfie's hair, which paint tells apart by colour and texture.
SKIN_FOREHEAD = (0.15, 0.7)
HAIRLINE_FOREHEAD = (0.6, 0.9)
TEMPLE_FADE = (0.5, 0.8)  # the band fades across the forehead over these shares of its half-width

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _fill(shape: tuple[int, int], pts: np.ndarray, polys: list[tuple[int, ...]]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    fixed = [np.round(pts[list(p)] * _ONE).astype(np.int32) for p in polys]
    cv2.fillPoly(mask, fixed, (255,), cv2.LINE_AA, _SHIFT)
    return mask.astype(np.float32) / 255.0


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; a wide one runs on a downsampled copy (a smooth result loses nothing there)
    and costs about the same as a narrow one."""
    factor = int(sigma / 2.0)
    if factor < 2:
        return cv2.GaussianBlur(image, (0, 0), max(sigma, 0.5))
    h, w = image.shape[:2]
    small = cv2.resize(
        image, ((w + factor - 1) // factor, (h + factor - 1) // factor), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


_feather = blur


def _eye_shadow_zone(
    pts: np.ndarray, lid: tuple[int, ...], lower_lid: tuple[int, ...], brow_lower: tuple[int, ...]
) -> np.ndarray:
    """Where eye makeup goes: from the lower lash line over the lid up to the brow bone (the brow
    itself stays clean), with a wing past the outer corner and the inner corner included."""
    lid_pts, lower = pts[list(lid)], pts[list(lower_lid)]
    brow = pts[list(brow_lower)]
    # Brow lower edge runs outer to inner like the lid; the zone reaches just past it (the brow mask,
    # taken out of this zone later, keeps the brow itself clean).
    lid_at_brow = lid_pts[np.linspace(0, len(lid) - 1, len(brow_lower)).round().astype(int)]
    upper = brow - 0.05 * (lid_at_brow - brow)
    outer, inner = lid_pts[0], lid_pts[-1]
    width = outer - inner
    # A wing past the outer corner, rising towards the brow's tail, as shadow and liner are drawn.
    wing = outer + 0.3 * width + 0.25 * (upper[0] - outer)
    inner_corner = inner - 0.12 * width
    # The lower lash line: the lower lid pushed down by a fifth of the eye's width.
    down = np.array([-width[1], width[0]], np.float32) / max(float(np.linalg.norm(width)), 1e-6)
    if down[1] < 0:
        down = -down
    lash_line = lower + 0.2 * float(np.linalg.norm(width)) * down
    return np.vstack([wing[None], upper, inner_corner[None], lash_line[::-1]]).astype(np.float32)


def region_masks(pts: np.ndarray, shape: tuple[int, int], iod: float) -> dict[str, np.ndarray]:
    """Masks for lips, eyes (shadow + liner), brows, blush, skin and paint (the whole face but eyeballs
    and the open mouth) for one face, and the hairline band above the skin's reach that paint takes
    where the face shows bare skin there (the caller tells it from hair).

    `pts` are the 478 landmarks in the crop's pixel coordinates; `iod` their inter-ocular distance.
    """
    lips_outer = _fill(shape, pts, [LIPS_OUTER])
    mouth = _open_mouth(shape, pts, iod)
    eyeballs = _fill(shape, pts, [RIGHT_EYE, LEFT_EYE])
    brows_hard = _fill(
        shape, pts, [RIGHT_BROW_UPPER + RIGHT_BROW_LOWER[::-1], LEFT_BROW_UPPER + LEFT_BROW_LOWER[::-1]]
    )

    # Lips: a soft outer edge, a hard inner one (teeth and the inside of the mouth stay untouched).
    lips_soft = blur(lips_outer, 0.01 * iod)
    lips = lips_soft * (1.0 - mouth)

    # Eyes: lash line to brow bone, wing and inner corner; the eyeball stays untouched.
    zones = np.zeros(shape, np.uint8)
    for lid, lower, brow in (
        (RIGHT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_BROW_LOWER),
        (LEFT_UPPER_LID, LEFT_LOWER_LID, LEFT_BROW_LOWER),
    ):
        poly = _eye_shadow_zone(pts, lid, lower, brow)
        cv2.fillPoly(zones, [np.round(poly * _ONE).astype(np.int32)], (255,), cv2.LINE_AA, _SHIFT)
    brows = blur(cv2.dilate(brows_hard, disk(0.02 * iod)), 0.025 * iod)
    eyes_soft = blur(zones.astype(np.float32) / 255.0, 0.05 * iod) * (1.0 - brows)
    eyes = eyes_soft * (1.0 - eyeballs)

    blush = np.zeros(shape, np.float32)
    for idx in CHEEKS:
        center = tuple(int(v) for v in np.round(pts[idx] * _ONE))
        axes = (int(0.28 * iod * _ONE), int(0.2 * iod * _ONE))
        cv2.ellipse(blush, center, axes, 0.0, 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)  # type: ignore[call-overload]
    blush = blur(blush, 0.12 * iod)

    # The same soft edges as the feature masks, so skin and features blend without a gap or a seam.
    features = np.maximum.reduce([lips_soft, eyes_soft, eyeballs, brows])
    fade = _forehead_fade(pts, shape, *SKIN_FOREHEAD)
    skin = (1.0 - features) * fade
    paint = (1.0 - eyeballs) * (1.0 - mouth) * fade
    hairline = (_forehead_fade(pts, shape, *HAIRLINE_FOREHEAD) - fade) * _off_temples(pts, shape)
    masks = {
        "lips": lips,
        "eyes": eyes,
        "brows": brows,
        "blush": blush * skin,
        "skin": skin,
        "paint": paint,
        "hairline": hairline,
    }
    oval = _inner_fade(pts, shape, 0.12 * iod)
    return {name: m * oval for name, m in masks.items()}


def _open_mouth(shape: tuple[int, int], pts: np.ndarray, iod: float) -> np.ndarray:
    """The inside of the mouth where it is really open (teeth, tongue): the inner lip outline minus
    its slivers thinner than a few percent of the eye distance, so the seam between closed lips is
    lip, not mouth."""
    inner = (_fill(shape, pts, [LIPS_INNER]) * 255).astype(np.uint8)
    opened = cv2.morphologyEx(inner, cv2.MORPH_OPEN, disk(0.025 * iod))
    return opened.astype(np.float32) / 255.0


def _inner_fade(pts: np.ndarray, shape: tuple[int, int], width: float) -> np.ndarray:
    """0 on and outside the face outline, rising smoothly to 1 at `width` inside it: nothing outside
    the face ever changes, and no edge shows."""
    outline = np.zeros(shape, np.uint8)
    cv2.fillPoly(outline, [np.round(pts[list(FACE_OVAL)] * _ONE).astype(np.int32)], (1,), cv2.LINE_8, _SHIFT)
    t = np.clip(cv2.distanceTransform(outline, cv2.DIST_L2, 3) / max(width, 1.0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def disk(radius: float) -> np.ndarray:
    """An elliptical structuring element of `radius` pixels (at least 1), for dilating masks."""
    r = max(1, round(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _upward(pts: np.ndarray) -> np.ndarray:
    """The unit vector from the chin to the top of the forehead: the face's own vertical axis."""
    up = pts[FOREHEAD_TOP] - pts[CHIN]
    return up / max(float(np.linalg.norm(up)), 1e-6)


def _off_temples(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """1 over the middle of the forehead, fading to 0 towards the temples (across the face's own
    axis), where a reference's hair meets its face outline and a turned selfie stretches it."""
    top, axis = pts[FOREHEAD_TOP], _upward(pts)
    across = np.array([axis[1], -axis[0]], np.float32)
    half_width = max(abs(float((pts[TEMPLES[1]] - pts[TEMPLES[0]]) @ across)) / 2, 1.0)
    h, w = shape
    xs = np.arange(w, dtype=np.float32)[None, :] - top[0]
    ys = np.arange(h, dtype=np.float32)[:, None] - top[1]
    side = np.abs(xs * across[0] + ys * across[1]) / half_width
    start, end = TEMPLE_FADE
    return np.clip((end - side) / (end - start), 0.0, 1.0).astype(np.float32)


def _forehead_fade(pts: np.ndarray, shape: tuple[int, int], start: float, end: float) -> np.ndarray:
    """1 below the brows, fading to 0 from `start` to `end` of the way from the brows to the mesh's
    top edge, along the face's own vertical axis (head tilt included)."""
    top, chin, axis = pts[FOREHEAD_TOP], pts[CHIN], _upward(pts)
    brow_y = float(np.mean((pts[list(RIGHT_BROW_UPPER + LEFT_BROW_UPPER)] - chin) @ axis))
    top_y = float((top - chin) @ axis)
    fade_start = brow_y + start * (top_y - brow_y)
    fade_end = brow_y + end * (top_y - brow_y)
    h, w = shape
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    height = (xs - chin[0]) * axis[0] + (ys - chin[1]) * axis[1]
    return np.clip((fade_end - height) / max(fade_end - fade_start, 1e-6), 0.0, 1.0).astype(np.float32)
