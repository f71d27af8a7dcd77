"""How made up a face looks, from what the mesh shows: a number for telling which of two photos is
the reference (the made-up face) when the user did not say.

Each cue compares a feature with the face's *own* skin (cheek patches), so skin tone and lighting
cancel out: lipstick is lip colour far from the skin's, eye shadow a lid whose colour departs from
the skin's, liner a lash line much darker than the skin, paint a share of plain skin far from the
cheeks' colour. Bare features differ from skin too (lips are redder, lids a little shaded), so each
cue counts only beyond what bare faces show, in units of a clearly made-up feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engine.faces import Face

# Mesh indices (mediapipe's 478-point face mesh).
_LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
_LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
_EYES = (
    (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
    (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
)
# Upper lid (outer to inner corner) and the brow's lower edge above it (outer to inner), per eye.
_LIDS = (
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (46, 53, 52, 65, 55)),
    ((263, 466, 388, 387, 386, 385, 384, 398, 362), (276, 283, 282, 295, 285)),
)
_BROWS = ((70, 63, 105, 66, 107, 55, 65, 52, 53, 46), (300, 293, 334, 296, 336, 285, 295, 282, 283, 276))
_FACE_OVAL = (
    *(10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377),
    *(152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
)
_CHEEKS = (50, 280, 101, 330, 205, 425)  # where bare skin is most reliably seen

_IOD_PX = 64.0  # the face is scored at this inter-ocular distance: same cost and scale for any photo
# (bare level, made-up span) per cue, in CIELAB units (paint: a share of the skin area).
_LIPS = (14.0, 20.0)
_LID = (10.0, 12.0)
_LINER = (45.0, 20.0)
_PAINT = (0.08, 0.25)
_PAINT_DISTANCE = 30.0  # a skin pixel this far from the cheeks' colour is paint (or gems, lettering)


def makeup_cues(rgb: np.ndarray, face: Face) -> dict[str, float]:
    """Raw cues (CIELAB distances from the face's own skin; paint a share) of one face of an HxWx3
    uint8 RGB image."""
    lab, pts = _face_lab(rgb, face)
    shape = (lab.shape[0], lab.shape[1])
    skin = np.median(lab[_discs(shape, pts[list(_CHEEKS)], 0.1 * _IOD_PX)], axis=0)
    eyes = _fill(shape, pts, _EYES)
    around_eyes = _grow(eyes, 0.08 * _IOD_PX)
    lips = _fill(shape, pts, [_LIPS_OUTER]) & ~_fill(shape, pts, [_LIPS_INNER])
    lids = _lid_zone(shape, pts) & ~around_eyes
    brows = _fill(shape, pts, _BROWS)
    features = _grow(lips | around_eyes | lids | brows, 0.05 * _IOD_PX)
    plain_skin = _fill(shape, pts, [_FACE_OVAL]) & ~features
    return {
        "lips": _colour_distance(np.median(lab[lips], axis=0), skin),
        "lids": float(np.median(_distances(lab[lids], skin))),
        "liner": float(skin[0] - np.percentile(lab[around_eyes & ~eyes][:, 0], 10)),
        "paint": float(np.mean(_distances(lab[plain_skin], skin) > _PAINT_DISTANCE)),
    }


def makeup_score(rgb: np.ndarray, face: Face) -> float:
    """0 for a bare face; about 1 per clearly made-up feature (lipstick, eye shadow, liner, paint)."""
    cues = makeup_cues(rgb, face)
    levels = {"lips": _LIPS, "lids": _LID, "liner": _LINER, "paint": _PAINT}
    return float(sum(max(0.0, cues[name] - bare) / span for name, (bare, span) in levels.items()))


def _face_lab(rgb: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
    """The face's box (with a margin) scaled to the scoring size, in CIELAB (L 0-100, a and b
    centred on 0), and the landmarks in its coordinates."""
    x0, y0, x1, y1 = face.bbox
    margin = (x1 - x0) // 8
    h, w = rgb.shape[:2]
    left, top = max(0, x0 - margin), max(0, y0 - margin)
    crop = rgb[top : min(h, y1 + margin), left : min(w, x1 + margin)]
    scale = _IOD_PX / max(face.inter_ocular, 1.0)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    offset = np.array([left, top], np.float32)
    return lab, (face.landmarks - offset) * np.float32(scale)


def _lid_zone(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """From each upper lid up to a third of the way to the brow: where shadow goes."""
    polygons = []
    for lid, brow in _LIDS:
        lid_pts = pts[list(lid)]
        below_brow = lid_pts[np.linspace(0, len(lid) - 1, len(brow)).round().astype(int)]
        upper = pts[list(brow)] + 0.3 * (below_brow - pts[list(brow)])
        polygons.append(np.vstack([lid_pts, upper[::-1]]))
    return _fill_points(shape, polygons)


def _fill(shape: tuple[int, int], pts: np.ndarray, polygons: Sequence[Sequence[int]]) -> np.ndarray:
    return _fill_points(shape, [pts[list(polygon)] for polygon in polygons])


def _fill_points(shape: tuple[int, int], polygons: Sequence[np.ndarray]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polygons], (1,))
    return mask.astype(bool)


def _discs(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for x, y in np.round(centres).astype(int):
        cv2.circle(mask, (int(x), int(y)), max(1, round(radius)), (1,), -1)
    return mask.astype(bool)


def _grow(mask: np.ndarray, radius: float) -> np.ndarray:
    r = max(1, round(radius))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), disk).astype(bool)


def _distances(lab: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Colour distance of each pixel from the skin, lightness weighted half (shading varies it)."""
    d = lab - skin
    return np.sqrt(0.25 * d[:, 0] ** 2 + d[:, 1] ** 2 + d[:, 2] ** 2)


def _colour_distance(colour: np.ndarray, skin: np.ndarray) -> float:
    return float(_distances(colour[None], skin)[0])
