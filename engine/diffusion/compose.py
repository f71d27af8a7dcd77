"""Full-look compositing: the diffusion output's colour inside the face, the selfie's detail and shape.

The generated image carries the reference's whole look (face paint, a stage base, drawn patterns) but
also the diffusion's drift (a changed nose, eyes, skin texture). Per selfie face, at working size:

1. the generated image, analysed once as a reference on the diffused face, is warped onto the face's
   crop by the mesh: the identity for the diffused face itself, its look carried onto the others of a
   group photo;
2. both it and the selfie (eyeballs and mouth interior filled from around them in both, so the
   sclera never bleeds into the lids) are split into low frequencies and the detail they leave out
   (`paint_low_pass`: lightness through a Gaussian, colour through an edge-keeping filter, so a
   painted pattern keeps its edges); the face takes the generated low frequencies over its own
   detail layer;
3. a soft face-oval mask, 0 over the eyeballs and inside the mouth, limits the change (with
   `regions`, the union of those regions' masks instead);
4. the embedded compositor adds the change at full resolution: pixels outside the face stay
   bit-identical to the selfie's.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from engine.faces import Face
from engine.regions import FACE_OVAL, LEFT_EYE, LIPS_INNER, RIGHT_EYE, blur, region_masks
from engine.transfer import (
    ReferenceFace,
    composite,
    crop_face,
    paint_low_pass,
    prepare_reference,
    to_lab,
    to_rgb,
    warp_reference,
)

# Low-pass width, as a fraction of the eye distance: wide enough to drop the generated skin texture,
# lashes and small shape drift (the colour's edges are kept by `paint_low_pass` whatever the width).
# Chosen with the evaluator in ../shared/eval, the reference itself standing in for a perfect
# generator (54 pairs: 9 shared selfies x 6 creative references, strength 1, medians): 0.085 gives
# face_gain 0.50, id_dist 0.47, skin detail SSIM 0.94; 0.1 gives 0.49, 0.45, 0.94. A plain Gaussian
# over all of Lab, as before, gave 0.50, 0.49, 0.92 at 0.065.
LOW_PASS_SIGMA = 0.085
# Grain (a generator's texture, sensor noise) is what is finer than this fraction of the low pass.
GRAIN_SIGMA = 0.25
# How far the mask rises from 0 on the face outline (and on the eye and mouth openings) to 1 inside.
OVAL_FEATHER = 0.06
OPENING_FEATHER = 0.015


def compose_full(
    selfie: np.ndarray,
    generated: ReferenceFace,
    faces: list[Face],
    *,
    working_size: int,
    strength: float,
    regions: Mapping[str, float] | None = None,
) -> np.ndarray:
    """The H×W×3 uint8 RGB `selfie` with every face wearing the generated look at `strength`.

    `generated` is the diffusion output prepared as a reference on the diffused face; `regions`
    optionally limits the look to named regions (engine.api.REGIONS) at their own strengths.
    """
    output = selfie.copy()
    for face in faces:
        crop = crop_face(selfie, face, working_size)
        own = prepare_reference(selfie, face, working_size)  # the same crop, openings filled
        warped = warp_reference(generated, crop, face.yaw_deg)
        sigma = LOW_PASS_SIGMA * crop.iod
        mask = strength * face_mask(crop.pts, crop.shape, crop.iod, regions) * warped.shown
        keep = (mask > 0).view(np.uint8)
        if not keep.any():
            continue
        # The generator's own grain is blurred away first: to the edge-keeping filter it would be edges.
        grain = GRAIN_SIGMA * sigma
        look = paint_low_pass(blur(warped.lab, grain), sigma) - paint_low_pass(blur(own.lab, grain), sigma)
        change = cv2.merge([mask, mask, mask]) * look
        made_up = to_rgb(to_lab(crop.rgb) + change)
        # Only masked pixels get a change: the Lab round trip is not exact, so the others stay 0.
        delta = np.zeros_like(made_up)
        cv2.subtract(made_up, crop.rgb, dst=delta, mask=keep, dtype=cv2.CV_32F)
        composite(output, crop, delta)
    return output


def face_mask(
    pts: np.ndarray, shape: tuple[int, int], iod: float, regions: Mapping[str, float] | None = None
) -> np.ndarray:
    """H×W float32 in [0, 1]: 0 on and outside the face outline, over the eyeballs and inside the
    mouth, rising smoothly to 1 inside the face. With `regions`, the strength-weighted union of
    those region masks."""
    if regions is not None:
        masks = region_masks(pts, shape, iod)
        weighted = [weight * masks[name] for name, weight in regions.items() if weight > 0]
        return np.maximum.reduce(weighted).astype(np.float32) if weighted else np.zeros(shape, np.float32)
    oval = _polygons(pts, shape, [FACE_OVAL])
    # A blurred filled outline is 1/2 on the outline: doubled and shifted it is 0 there and outside.
    inside = np.clip(2.0 * blur(oval, OVAL_FEATHER * iod) - 1.0, 0.0, 1.0)
    openings = _polygons(pts, shape, [RIGHT_EYE, LEFT_EYE, LIPS_INNER])
    covered = np.maximum(openings, np.clip(2.0 * blur(openings, OPENING_FEATHER * iod), 0.0, 1.0))
    return (inside * (1.0 - covered)).astype(np.float32)


def _polygons(pts: np.ndarray, shape: tuple[int, int], polygons: list[tuple[int, ...]]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(pts[list(p)]).astype(np.int32) for p in polygons], (1,))
    return mask.astype(np.float32)
