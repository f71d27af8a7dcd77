"""Makeup transfer by example, after Guo & Sim, "Digital Face Makeup by Example" (CVPR 2009).

Per selfie face, at working size inside a crop:
1. align: one dense piecewise-affine map over the mesh triangles and a single `cv2.remap` bring the
   reference face onto the selfie's geometry;
2. layers: CIELAB; lightness split into an edge-preserving structure layer (guided filter) and a
   detail layer; a smooth "base" (quadratic fit over bare skin) models each face's own skin tone and
   lighting;
3. targets: what the makeup adds is the reference's structure relative to its own base (a lightness
   ratio and a chroma offset), re-applied on the selfie's base, so skin tone and light colour never
   travel from the reference to the selfie;
4. blend: per-region feathered masks and strengths; the selfie's detail layer is kept (identity);
5. composite: the colour change is upscaled and added to the full-resolution photo inside the face
   crop only, so every other pixel stays bit-identical.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import cv2
import numpy as np

from engine.faces import Face, shrink
from engine.regions import (
    CHIN,
    FACE_OVAL,
    LEFT_BROW_UPPER,
    LEFT_EYE,
    LIPS_INNER,
    RIGHT_BROW_UPPER,
    RIGHT_EYE,
    blur,
    disk,
    region_masks,
)

CROP_MARGIN = 0.12  # crop = landmark box grown by this fraction per side
N_MESH = 468  # the iris points are not part of the triangulation
MIDLINE_TOP = 168  # between the brows; with the chin it gives the face's midline

# Regions made up with a reference, in the order they are laid on (later ones cover earlier ones).
NATURAL_REGIONS = ("skin", "blush", "brows", "eyes", "lips")
FULL_REGIONS = (*NATURAL_REGIONS, "paint")
# Lips, lids, liner, brows and paint take the reference's own colour (see `pigment_colour`).
PIGMENT_REGIONS = ("lips", "eyes", "brows", "paint")
# Regions relative to each face's own skin: lightness ratio range, then a* and b* offset ranges.
# Blush may only add warmth; on skin the reference adds a small, smooth change only, so hair, hands
# or glasses covering its skin cannot paint the selfie's; eyes use it where the reference lid is bare.
Limits = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
REGION_LIMITS: dict[str, Limits] = {
    "eyes": ((0.6, 1.05), (-15.0, 15.0), (-15.0, 15.0)),
    "blush": ((0.95, 1.02), (0.0, 12.0), (-5.0, 5.0)),
    "skin": ((0.97, 1.03), (-3.0, 3.0), (-3.0, 3.0)),
}
MAX_LIGHTEN = {"eyes": 1.08}
# Regions whose own shading the selfie keeps: the reference's change is blurred and applied on top.
SHEER_REGIONS = ("blush", "skin")
# Opacity of each region at strength 1: foundation and blush stay sheer.
REGION_OPACITY: dict[str, float] = {
    "lips": 1.0,
    "eyes": 1.0,
    "brows": 1.0,
    "blush": 0.8,
    "skin": 0.6,
    "paint": 1.0,
}
# A reference pixel this far (Lab, lightness counted half) from its own bare skin starts to count as
# pigment, and fully so at the second value.
PIGMENT_DISTANCE = (4.0, 12.0)
# Paint's own shading is smoothed away over this fraction of the eye distance (see `_in_selfie_shading`).
PAINT_SMOOTHING = 0.08
# Paint is matte and opaque: it shows the face's form more than the translucent skin it covers, whose
# light scatters under the surface and softens its shading. The selfie's shading is raised to this
# power under paint.
PAINT_SHADING = 1.4
# Paint colours further apart than this (CIELAB) meet at an edge that the smoothing keeps sharp.
PAINT_EDGE = 8.0
# Two paints meet in a blend of both, which can be as skin-like as the reference's base (the
# Joker's white and red make pink): gaps in the paint narrower than twice this (of the eye distance)
# that are such a blend are closed, so no line of the selfie's bare skin shows between two paints.
PAINT_SEAM = 0.06
SOLID_PAINT = (0.7, 0.95)  # paint amounts from which a pixel starts to be, and is, solid paint
# Hair over a reference face is darker than this fraction of its skin's lightness (`hair_over_face`):
# a light stage base or white paint can run past the face outline, hair is a dark lock against it.
# The skin's lighting is taken within this fraction of its median lightness.
OCCLUDER_DARKNESS = 0.6
OCCLUDER_LIGHTING = 0.25
# A glasses frame is a line at least this much darker (CIELAB lightness) than the skin beside it.
OCCLUDER_LINE_DEPTH = 12.0
# Lashes and liner reach past the lids' mask, so hair is not looked for within LASH_MARGIN of it (eye
# distances). Paint, though, looks for it there too within TEMPLE_HAIR of the face outline: an
# outline often runs over hair at the temples, right beside the lashes, and paint would carry it from
# the eyes to the outline as a smoky smear. The lids keep their margin, so a smoky wing running out
# to the outline still reaches the selfie's lids.
LASH_MARGIN = 0.15
TEMPLE_HAIR = 0.15
# Skin at the top of a forehead is compared with the skin within this reach (eye distances) below
# it; it is hair from these colour distances, and from these ratios of its texture to the skin's.
HAIRLINE_REACH = 0.3
HAIR_COLOUR_DISTANCE = (6.0, 12.0)
HAIR_TEXTURE = (1.3, 2.0)
# Hair is duller than this chroma; red or blue paint beside a dark hat, or a clown's painted arcs, are not.
HAIR_CHROMA = 30.0
# A reference's brows are under a fringe where, this far above them (eye distances), it is darker than
# this share of its skin's lightness, and dull.
FRINGE_REACH = 0.12
FRINGE_DARKNESS = 0.55
FRINGE_SHARE = (0.5, 0.8)  # the share of such points from which the fringe starts and is complete
# A reference whose skin area carries at least this share of paint wears a painted face, and with
# this share besides its vivid pieces (below), a painted base. In this share, a colour counts as
# paint from the first chroma departure (CIELAB a*b*) from its own skin and fully from the second,
# or where it is unlike any skin: its lightness alone does not count, since highlighter, contour
# and hard light change bare skin's lightness too.
PAINTED_FACE_SHARE = 0.13
PAINT_CHROMA_DEPARTURE = (8.0, 16.0)
# So does one whose skin area carries at least this share of vivid colour at a hue no skin has
# (blue, green, purple; from the first chroma and fully from the second): butterflies, gems or a
# small painted pattern, where a plain eye shadow reaches past the lids far less.
VIVID_FACE_SHARE = 0.015
VIVID_CHROMA = (20.0, 30.0)
# A face without a painted base wears its makeup, vivid pieces included, on its own skin: its blush,
# bronzer and contour are ordinary makeup, which the selfie takes as a change to its own skin (the
# blush and skin regions); laid on as the reference's own colour they were orange blotches on a
# paler selfie. There, paint is only colour no skin takes: unlike skin (`skin_likeness`), or more
# vivid than its own skin by this chroma range.
VIVID_PAST_SKIN = (12.0, 20.0)
# Glasses on a reference face: frame lines are thinner than twice GLASSES_LINE (of the eye distance)
# and as dark and dull as hair; glasses are worn when such lines are seen in at least GLASSES_RIMS of
# the directions around each eye (GLASSES_REACH from its centre) and cross GLASSES_BRIDGE of the
# nose bridge between the eyes' inner corners (painted rings around the eyes leave the bridge bare).
GLASSES_LINE = 0.06
GLASSES_REACH = (0.22, 0.75)
GLASSES_RIMS = 0.3
GLASSES_BRIDGE = 0.7
INNER_EYE_CORNERS = (133, 362)
# The lipstick's lightness is this percentile of the reference lips' (gloss lifts the median).
LIP_BODY_PERCENTILE = 35
# Lip shading is measured against its mean over this fraction of the eye distance (see `_lips`).
LIP_SMOOTHING = 0.08
# Makeup is never lighter than this many times the face's brightest skin (its highlights show how
# much light the face gets), and its chroma never exceeds this many times its lightness: makeup on
# a dim photo stays dim instead of glowing.
MAX_LIGHT_GAIN = 1.05
MAX_CHROMA_PER_L = 2.0


@dataclass(frozen=True)
class FaceCrop:
    """A face's crop at working size: `box` in full-resolution pixels, `pts`/`iod` in crop pixels."""

    box: tuple[int, int, int, int]
    scale: float
    rgb: np.ndarray
    pts: np.ndarray
    iod: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


@dataclass(frozen=True)
class SelfieLayers:
    crop: FaceCrop
    lab: np.ndarray  # HxWx3 float32 CIELAB
    structure: np.ndarray  # HxWx3: structure lightness, smoothed a and b
    base: np.ndarray  # HxWx3: bare-skin tone and lighting
    masks: dict[str, np.ndarray]
    boxes: dict[str, Box]  # where each mask is non-zero: the only pixels its region touches


Box = tuple[slice, slice]


class Makeup(Protocol):
    """A source of makeup (a reference photo or a preset look) for one selfie face."""

    regions: tuple[str, ...]

    def target(self, region: str, box: Box, current: np.ndarray) -> np.ndarray:
        """The selfie's structure layers (Lab) wearing this makeup, inside `box`; `current` is the
        face as made up by the regions laid on before this one."""
        ...


@dataclass(frozen=True)
class ReferenceFace:
    """The reference's face crop in CIELAB, with eyeballs and mouth interior filled from around them
    (so an open mouth or wider eyes cannot paint teeth or sclera onto the selfie).

    A turned head shows one half of the face foreshortened, half hidden, with background beside it;
    `mirrored` is then the same face from the horizontally flipped photo, whose well-seen half
    stands in for the far one (makeup is nearly always symmetric).
    """

    lab: np.ndarray
    pts: np.ndarray
    iod: float
    yaw_deg: float
    mirrored: ReferenceFace | None = None
    paint_share: float = 0.0  # share of its bare-skin area that carries paint, 0 to 1
    vivid_share: float = 0.0  # share of its bare-skin area in vivid colours no skin has, 0 to 1
    lip_colour: tuple[float, float, float] | None = None  # median Lab of its lips; None: not seen
    hidden: np.ndarray | None = None  # HxW float32, 1 where hair or glasses hide its face
    # HxW float32: where paint never takes the reference: `hidden` and hair at its temples
    # (TEMPLE_HAIR), less the hair filled in with the face around it (`_under_cover`).
    paint_hidden: np.ndarray | None = None
    fringe: float = 0.0  # 0 to 1: how much of its brows a fringe hides (`fringe_over_brows`)
    outline: np.ndarray | None = None  # HxW float32, 1 where its outline band is not face (`outline_band`)

    @property
    def has_paint(self) -> bool:
        """Face paint or a stage base: more than lips and lids, carried only by the full look."""
        return self.paint_share >= PAINTED_FACE_SHARE or self.vivid_share >= VIVID_FACE_SHARE

    @property
    def painted_base(self) -> bool:
        """A painted face (the Joker's white, bruise effects, a pattern): paint enough besides its
        vivid pieces, which may be worn on bare skin (butterflies, gems)."""
        return self.paint_share - self.vivid_share >= PAINTED_FACE_SHARE


def crop_face(rgb: np.ndarray, face: Face, working_size: int) -> FaceCrop:
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = face.bbox
    mx, my = CROP_MARGIN * (x1 - x0), CROP_MARGIN * (y1 - y0)
    box = (max(0, int(x0 - mx)), max(0, int(y0 - my)), min(w, int(x1 + mx) + 1), min(h, int(y1 + my) + 1))
    crop = rgb[box[1] : box[3], box[0] : box[2]]
    small = shrink(crop, working_size)
    ratio = np.array([small.shape[1] / crop.shape[1], small.shape[0] / crop.shape[0]], np.float32)
    # Pixel centres map as cv2.resize maps them.
    pts = ((face.landmarks - np.array(box[:2], np.float32) + 0.5) * ratio - 0.5).astype(np.float32)
    return FaceCrop(box, float(ratio[0]), small, pts, face.inter_ocular * float(ratio[0]))


def to_lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2LAB)


def to_rgb(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0


# From this head turn (degrees) the far half of the reference is replaced by the mirrored near half,
# fully so from twice this.
MIRROR_FROM_YAW = 12.0
# A reference's face runs into its hair and background over this band inside its outline (eye
# distances). A selfie turned further than the reference (by the second range, in degrees) shows
# the side of its face squarely where the reference saw it foreshortened: that band is then
# stretched over its near cheek, and paint does not take it there where it is unlike the face
# just inside it (hair, background); paint or blush running on to the outline is kept.
OUTLINE_BAND = 0.1
TURN_STRETCHES_OUTLINE = (5.0, 20.0)
# Hair over a reference's face (as paint sees it) is filled in with what the face shows around it,
# within this reach (eye distances), where at least the first and fully from the second share of
# that surrounding is face (see `_under_cover`).
COVER_FILL_REACH = 0.3
COVER_FILL_SUPPORT = (0.02, 0.1)


def prepare_reference(
    rgb: np.ndarray, face: Face, working_size: int, mirrored_face: Face | None = None
) -> ReferenceFace:
    """`mirrored_face`: the face found in `rgb[:, ::-1]`, used when the head is turned."""
    mirrored = None
    if mirrored_face is not None and abs(face.yaw_deg) > MIRROR_FROM_YAW:
        mirrored = prepare_reference(np.ascontiguousarray(rgb[:, ::-1]), mirrored_face, working_size)
    crop = crop_face(rgb, face, working_size)
    masks = region_masks(crop.pts, crop.shape, crop.iod)
    holes = _filled(crop, (LIPS_INNER, RIGHT_EYE, LEFT_EYE))
    # Grown well past the mesh's outlines: sclera or teeth left beside a hole would be smeared into it
    # and painted on the selfie's lids or lips as a pale patch.
    grown = cv2.dilate(holes, disk(0.04 * crop.iod))
    filled = cv2.inpaint(crop.rgb, grown, max(3.0, 0.03 * crop.iod), cv2.INPAINT_TELEA)
    lab = to_lab(filled)
    # Its layers and skin lightness, worked out once for the paint, hair, fringe and glasses tests.
    structure = structure_layers(lab, crop.iod)
    base = skin_base(structure, masks["skin"] > 0.5, crop.pts)
    skin_l = skin_lightness(structure, masks["skin"])
    fringe = fringe_over_brows(structure, crop, skin_l)
    glasses = glasses_over_face(lab, crop, masks, skin_l)
    hair, hair_to_temples = hair_over_face(structure, base, crop, masks, skin_l, fringe)
    paint_hidden = np.maximum(hair_to_temples, glasses)
    outline = outline_band(structure, crop)
    lab, filled = _under_cover(lab, base, crop, masks, paint_hidden, outline)
    return ReferenceFace(
        lab,
        crop.pts,
        crop.iod,
        face.yaw_deg,
        mirrored,
        _paint_share(structure, base, masks["skin"]),
        _vivid_share(structure, masks["skin"]),
        _lip_colour(lab, masks["lips"]),
        np.maximum(hair, glasses),
        paint_hidden * (1.0 - filled),
        fringe,
        outline,
    )


def _under_cover(
    lab: np.ndarray,
    base: np.ndarray,
    crop: FaceCrop,
    masks: Mapping[str, np.ndarray],
    hair: np.ndarray,
    outline: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's Lab with what `hair` (HxW, 0 to 1: hair and glasses frames) hides filled in,
    and how far each pixel was filled (HxW float32, 0 to 1), from the face around it: neither hair
    nor its `outline` band where that is unlike the face (`outline_band`).

    A selfie turned further than the reference stretches hair beside its face over the near cheek,
    and paint left a wide strip of the selfie's bare skin there, beside the Joker's white. Filled,
    paint runs on to the outline. The fill is what the face shows around it, as a departure from
    its skin surface `base`: bare skin fills as bare skin, a painted base as that paint. Lids, lips
    and brows (with their lash margin) are neither filled nor looked at: a smoky wing or an eye
    shadow beside the hair would spread over the temple. The outline band is not filled: blush
    running on to it is the reference's, and a fill there washed it out."""
    features = np.maximum.reduce([masks["lips"], masks["eyes"], masks["brows"]]) > 0.1
    away = cv2.dilate(features.view(np.uint8), disk(LASH_MARGIN * crop.iod)) == 0
    around = (1.0 - np.maximum(hair, outline)) * (_filled(crop, (FACE_OVAL,)) * away)
    reach = COVER_FILL_REACH * crop.iod
    shown_face = base + _local_mean(lab - base, around, reach)
    filled = (_smoothstep(blur(around, reach), *COVER_FILL_SUPPORT) * away).astype(np.float32)
    fill = hair * filled
    return lab + cv2.merge([fill, fill, fill]) * (shown_face - lab), filled


def outline_band(structure: np.ndarray, crop: FaceCrop) -> np.ndarray:
    """HxW float32: 1 on the face outline, falling to 0 at OUTLINE_BAND inside it, where the band is
    unlike the face just inside it (hair or background rather than skin, paint or blush running on
    to the outline). `structure` is the crop's structure layer (`structure_layers`)."""
    reach = OUTLINE_BAND * crop.iod
    inside = cv2.distanceTransform(_filled(crop, (FACE_OVAL,)), cv2.DIST_L2, 3)
    band = 1.0 - _smoothstep(inside, 0.0, reach)
    interior = (inside > reach).astype(np.float32)
    distance = colour_distance(structure - _local_mean(structure, interior, reach))
    return (band * _smoothstep(distance, PAINT_EDGE, 2.0 * PAINT_EDGE)).astype(np.float32)


def _filled(crop: FaceCrop, polygons: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """HxW uint8, 1 inside the mesh outlines `polygons` (landmark indices) of the crop's face."""
    mask = np.zeros(crop.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(crop.pts[list(polygon)]).astype(np.int32) for polygon in polygons], (1,))
    return mask


def _local_mean(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """`values` (HxW or HxWxC) averaged around each pixel over where `weight` (HxW) lies, by a
    Gaussian of `sigma` pixels."""
    total = np.maximum(blur(weight, sigma), 1e-3)
    if values.ndim == 3:
        # Merged planes: numpy's broadcast over a trailing axis of 3 costs several times more.
        return blur(values * cv2.merge([weight] * 3), sigma) / cv2.merge([total] * 3)
    return blur(values * weight, sigma) / total


def hair_over_face(
    structure: np.ndarray,
    base: np.ndarray,
    crop: FaceCrop,
    masks: Mapping[str, np.ndarray],
    skin_l: float,
    fringe: float,
) -> tuple[np.ndarray, np.ndarray]:
    """HxW float32 masks, 1 where hair (or a dark hat or background) lies over the face: a dull patch
    much darker than the skin that reaches the face from outside, most of it beyond the face outline.
    Face paint is drawn inside the outline and is mostly vivid; lips and lids (and a liner's wing)
    are never taken for hair, nor are brows unless a fringe hides them (`fringe_over_brows`). The
    first mask keeps LASH_MARGIN around them everywhere, the second (for paint) not at the temples
    (TEMPLE_HAIR). `structure` and `base` are the crop's layers (`structure_layers`, `skin_base`),
    `skin_l` its skin's lightness (`skin_lightness`)."""
    features = (
        np.maximum.reduce([masks["lips"], masks["eyes"]] + ([] if fringe >= 0.5 else [masks["brows"]])) > 0.1
    )
    margin = cv2.dilate(features.view(np.uint8), disk(LASH_MARGIN * crop.iod)) > 0
    oval = _filled(crop, (FACE_OVAL,))
    temples = cv2.distanceTransform(oval, cv2.DIST_L2, 3) <= TEMPLE_HAIR * crop.iod
    # The base is a quadratic fit to the skin: away from the skin it was fitted to (a forehead under
    # a fringe) it can run wild, so it is held near the skin's own lightness.
    lighting = _clip(base[:, :, 0], (1.0 - OCCLUDER_LIGHTING) * skin_l, (1.0 + OCCLUDER_LIGHTING) * skin_l)
    dark = structure[:, :, 0] < OCCLUDER_DARKNESS * lighting
    dull = np.hypot(structure[:, :, 1], structure[:, :, 2]) < HAIR_CHROMA
    cover = dark & dull & ~features
    return (
        _reaching_in(cover & ~margin, oval, crop.iod),
        _reaching_in(cover & ~(margin & ~temples), oval, crop.iod),
    )


def _reaching_in(cover: np.ndarray, oval: np.ndarray, iod: float, grow: float = 0.1) -> np.ndarray:
    """HxW float32, 1 on the face (`oval`) where a patch of `cover` lies that is mostly beyond it,
    grown by `grow` eye distances."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cover.view(np.uint8), connectivity=8)
    inside = np.bincount(labels[oval > 0], minlength=count)
    hair = stats[:, cv2.CC_STAT_AREA] - inside > inside
    hair[0] = False  # label 0: all that is not `cover`
    # Grown: the makeup's smoothing would otherwise carry the lock's dark edge onto the selfie.
    grown = cv2.dilate(hair.view(np.uint8)[labels], disk(grow * iod))
    return ((grown > 0) & (oval > 0)).astype(np.float32)


def glasses_over_face(
    lab: np.ndarray, crop: FaceCrop, masks: Mapping[str, np.ndarray], skin_l: float
) -> np.ndarray:
    """HxW float32, 1 on the frames of glasses the reference wears (0 everywhere when it wears none):
    thin lines as dark and dull as hair that ring both eyes and cross the nose bridge. Their rims
    would otherwise be painted on the selfie as dark goggles in full mode."""
    lightness = np.ascontiguousarray(lab[:, :, 0])
    line = disk(GLASSES_LINE * crop.iod)
    thin = cv2.morphologyEx(lightness, cv2.MORPH_CLOSE, line) - lightness > OCCLUDER_LINE_DEPTH
    dark = lightness < OCCLUDER_DARKNESS * skin_l
    dull = np.hypot(lab[:, :, 1], lab[:, :, 2]) < HAIR_CHROMA
    # Lashes, liner, brows and lips are thin and dark too; frames are looked for on the rest.
    lashes = cv2.dilate(_filled(crop, (RIGHT_EYE, LEFT_EYE)), disk(0.08 * crop.iod)) > 0
    features = lashes | (masks["brows"] > 0.3) | (masks["lips"] > 0.1)
    lines = thin & dark & dull & ~features & (masks["paint"] > 0.05)
    centres = [crop.pts[list(eye)].mean(axis=0) for eye in (RIGHT_EYE, LEFT_EYE)]
    rims = [_seen_around(lines, centre, crop.iod) for centre in centres]
    if min(rims) < GLASSES_RIMS or _bridge_crossed(lines, crop) < GLASSES_BRIDGE:
        return np.zeros(crop.shape, np.float32)
    h, w = crop.shape
    ys, xs = np.mgrid[0:h, 0:w]
    near = np.zeros(crop.shape, bool)
    for cx, cy in centres:
        near |= np.hypot(xs - cx, ys - cy) <= GLASSES_REACH[1] * crop.iod
    return (cv2.dilate((lines & near).view(np.uint8), disk(0.04 * crop.iod)) > 0).astype(np.float32)


def _seen_around(lines: np.ndarray, centre: np.ndarray, iod: float) -> float:
    """The share of directions from `centre` in which `lines` is met within GLASSES_REACH."""
    angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)[:, None]
    radii = np.linspace(*GLASSES_REACH, 24)[None, :] * iod
    met = _at_points(lines, centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles))
    return float(np.mean(met.any(axis=1)))


def _bridge_crossed(lines: np.ndarray, crop: FaceCrop) -> float:
    """The share of the nose bridge (the middle of the span between the eyes' inner corners) where
    `lines` is met going up from just below the corners to well above them."""
    inner_right, inner_left = (crop.pts[i] for i in INNER_EYE_CORNERS)
    across = inner_left - inner_right
    up = np.array([across[1], -across[0]]) / max(float(np.linalg.norm(across)), 1e-6)
    starts = inner_right + np.linspace(0.2, 0.8, 20)[:, None] * across
    rise = np.linspace(-0.1, 0.45, 30)[None, :] * crop.iod
    met = _at_points(lines, starts[:, :1] + rise * up[0], starts[:, 1:] + rise * up[1])
    return float(np.mean(met.any(axis=1)))


def _at_points(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`image` at the nearest pixels to points (xs, ys), those off the image taken at its edge."""
    h, w = image.shape[:2]
    return image[np.clip(np.round(ys).astype(int), 0, h - 1), np.clip(np.round(xs).astype(int), 0, w - 1)]


def fringe_over_brows(structure: np.ndarray, crop: FaceCrop, skin_l: float) -> float:
    """0 to 1: how surely a fringe hides the reference's brows (their colour is then the hair's),
    from the points just above them (FRINGE_REACH of the eye distance, up the face) that show hair:
    as dark against its skin (lightness `skin_l`, `skin_lightness`) and as dull."""
    chin, top = crop.pts[CHIN], crop.pts[MIDLINE_TOP]
    up = (top - chin) / max(float(np.linalg.norm(top - chin)), 1e-6)
    points = crop.pts[list(RIGHT_BROW_UPPER + LEFT_BROW_UPPER)] + FRINGE_REACH * crop.iod * up
    seen = _at_points(structure, points[:, 0], points[:, 1])
    dark = seen[:, 0] < FRINGE_DARKNESS * skin_l
    dull = np.hypot(seen[:, 1], seen[:, 2]) < HAIR_CHROMA
    # Most of the points, not a few: a brow's tail or a low hairline at the temples is no fringe.
    return float(_smoothstep(np.array(np.mean(dark & dull)), *FRINGE_SHARE))


def skin_lightness(structure: np.ndarray, skin: np.ndarray) -> float:
    """The median structure lightness of a face's skin (its mask `skin` over one half)."""
    core = skin > 0.5
    return float(np.median(structure[:, :, 0][core])) if core.any() else 50.0


def _paint_share(structure: np.ndarray, base: np.ndarray, skin: np.ndarray) -> float:
    """How much of the face's skin area (lips, lids and brows left out) carries paint: colour that
    departs from its own skin's chroma, or that no skin takes (see PAINTED_FACE_SHARE)."""
    gap = structure[:, :, 1:] - base[:, :, 1:]
    departure = _smoothstep(np.sqrt((gap**2).sum(axis=2)), *PAINT_CHROMA_DEPARTURE)
    return _share_of(np.maximum(departure, 1.0 - skin_likeness(structure)), skin)


def _vivid_share(structure: np.ndarray, skin: np.ndarray) -> float:
    """How much of the face's skin area is in vivid colours no skin has (see VIVID_FACE_SHARE)."""
    return _share_of(vivid_colour(structure[:, :, 1], structure[:, :, 2]), skin)


def vivid_colour(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, 0 to 1: how far CIELAB chroma (a*, b*) is a vivid colour no skin has (blue, green,
    purple; from the first chroma of VIVID_CHROMA, fully from the second)."""
    return (1.0 - skin_hue(a, b)) * _smoothstep(np.sqrt(a**2 + b**2), *VIVID_CHROMA)


def _share_of(amount: np.ndarray, skin: np.ndarray) -> float:
    """The mean of `amount` (HxW, 0 to 1) over the skin mask `skin`."""
    return float((amount * skin).sum() / max(float(skin.sum()), 1.0))


def _lip_colour(lab: np.ndarray, lips: np.ndarray) -> tuple[float, float, float] | None:
    """The lipstick's body colour over the lips' core: median chroma, and lightness a little below
    the median, since gloss highlights lift the upper part of the lips' lightness and not the lower."""
    core = lips > 0.5
    if core.sum() < 20:
        return None
    _, a, b = np.median(lab[core], axis=0)
    lightness = np.percentile(lab[core][:, 0], LIP_BODY_PERCENTILE)
    return float(lightness), float(a), float(b)


def analyse_selfie(crop: FaceCrop) -> SelfieLayers:
    lab = to_lab(crop.rgb)
    masks = region_masks(crop.pts, crop.shape, crop.iod)
    structure = structure_layers(lab, crop.iod)
    base = skin_base(structure, masks["skin"] > 0.5, crop.pts)
    _paint_hairline(masks, lab, structure, crop.iod)
    return SelfieLayers(crop, lab, structure, base, masks, {r: _nonzero_box(m) for r, m in masks.items()})


def _paint_hairline(masks: dict[str, np.ndarray], lab: np.ndarray, structure: np.ndarray, iod: float) -> None:
    """Paint takes the hairline band (`region_masks`) where it shows bare skin: worked out over the
    band's box, reaching down to the skin it is compared with."""
    hairline = masks.pop("hairline")
    rows, cols = _nonzero_box(hairline)
    if rows.start == rows.stop:
        return
    box = slice(rows.start, rows.stop + round(2.0 * HAIRLINE_REACH * iod)), cols
    masks["paint"][box] += hairline[box] * bare_skin(lab[box], structure[box], masks["skin"][box], iod)


def bare_skin(lab: np.ndarray, structure: np.ndarray, skin: np.ndarray, iod: float) -> np.ndarray:
    """HxW float32, 1 where a face shows skin like that of its `skin` mask nearby: that colour, and
    as smooth; falling to 0 for hair, whose strands give it texture even where its colour is near
    the skin's (a blond fringe)."""
    nearby = _local_mean(structure, skin, HAIRLINE_REACH * iod)
    colour = 1.0 - _smoothstep(colour_distance(structure - nearby), *HAIR_COLOUR_DISTANCE)
    smooth = 1.0 - _smoothstep(_texture_against_skin(lab, structure, skin, iod), *HAIR_TEXTURE)
    return (colour * smooth).astype(np.float32)


def _texture_against_skin(lab: np.ndarray, structure: np.ndarray, skin: np.ndarray, iod: float) -> np.ndarray:
    """HxW: the local strength of the detail layer, as a multiple of its median over the `skin` mask."""
    detail = lab[:, :, 0] - structure[:, :, 0]
    texture = np.sqrt(blur(detail * detail, 0.05 * iod))
    on_skin = texture[skin > 0.5]
    return texture / (max(float(np.median(on_skin)), 0.3) if on_skin.size else 1.0)


def hair_over_selfie(selfie: SelfieLayers) -> np.ndarray:
    """HxW float32, 1 where the selfie's own hair (a side lock, the ends of a fringe) or a hat brim
    lies over its face: strands as textured as hair (HAIR_TEXTURE against its skin) in a patch that
    reaches the face from outside, most of it beyond the outline. Paint goes under hair, never on it:
    the Joker's white laid over a blonde lock was a grey streak through the hair. Texture alone, not
    colour: shading at the face's sides differs from the skin nearby as much as a lock does, and ran
    all round the outline."""
    crop, masks = selfie.crop, selfie.masks
    texture = _texture_against_skin(selfie.lab, selfie.structure, masks["skin"], crop.iod)
    features = np.maximum.reduce([masks["lips"], masks["eyes"], masks["brows"]]) > 0.1
    strands = (texture > HAIR_TEXTURE[0]) & ~features
    # Grown less than a reference's hair: the selfie's own skin beside a lock is not smeared into.
    return _reaching_in(strands, _filled(crop, (FACE_OVAL,)), crop.iod, grow=0.03)


def _nonzero_box(mask: np.ndarray) -> Box:
    x, y, w, h = cv2.boundingRect((mask > 0).astype(np.uint8))
    return slice(y, y + h), slice(x, x + w)


def _overlap(box: Box, other: Box) -> tuple[Box, Box]:
    """Where `other` overlaps `box`: in crop pixels, and in pixels of `box` (empty where it does not)."""
    spans = []
    for outer, inner in zip(box, other, strict=True):
        start = max(outer.start, inner.start)
        stop = max(min(outer.stop, inner.stop), start)
        spans.append((slice(start, stop), slice(start - outer.start, stop - outer.start)))
    (rows, rows_within), (cols, cols_within) = spans
    return (rows, cols), (rows_within, cols_within)


def structure_layers(lab: np.ndarray, iod: float) -> np.ndarray:
    """Edge-preserving structure of lightness (the detail layer is what it leaves out) and lightly
    smoothed chroma, so skin texture and JPEG noise are not treated as makeup."""
    lightness = np.ascontiguousarray(lab[:, :, 0])
    radius = max(2, round(0.04 * iod))
    structure_l = cv2.ximgproc.guidedFilter(lightness, lightness, radius, 16.0)
    # All three channels blurred at once, then lightness replaced: OpenCV's contiguous 3-channel
    # path is several times faster than blurring the strided a/b pair, with the same a/b values.
    structure = cv2.GaussianBlur(lab, (0, 0), max(0.8, 0.01 * iod))
    structure[:, :, 0] = structure_l
    return structure


def skin_base(structure: np.ndarray, skin: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """A quadratic surface per channel fitted to the bare-skin pixels: skin tone plus smooth lighting.

    Low order on purpose: it cannot follow blush, contour or eye shadow, so what the makeup adds stays
    out of it. One refit without outliers (hair, hands, shadows) makes it robust.
    """
    h, w = skin.shape
    center = pts[:N_MESH].mean(axis=0)
    span = max(float(np.ptp(pts[:, 0])), 1.0)
    ys, xs = np.nonzero(skin[::3, ::3])
    samples = structure[ys * 3, xs * 3]
    if len(samples) < 12:
        return np.broadcast_to(np.median(structure.reshape(-1, 3), axis=0), structure.shape).copy()
    design = _quadratic_terms((xs * 3 - center[0]) / span, (ys * 3 - center[1]) / span)
    coef = _least_squares(design, samples)
    residual = np.abs(samples[:, 0] - design @ coef[:, 0])
    inliers = residual < 2.5 * np.median(residual) + 1e-3
    c = _least_squares(design[inliers], samples[inliers]).astype(np.float32)
    u = ((np.arange(w, dtype=np.float32) - center[0]) / span)[None, :]
    v = ((np.arange(h, dtype=np.float32) - center[1]) / span)[:, None]
    base = np.empty((h, w, 3), np.float32)
    for ch in range(3):  # 2-D broadcasting per channel: far faster than over a trailing axis of 3
        base[:, :, ch] = (c[0, ch] + u * (c[1, ch] + u * c[3, ch])) + v * (
            c[2, ch] + v * c[5, ch] + u * c[4, ch]
        )
    return base


def _least_squares(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Normal equations with a whisker of ridge: 6 unknowns, so this is exact enough and avoids
    LAPACK's threaded least-squares driver."""
    gram = design.T @ design + 1e-6 * np.eye(design.shape[1], dtype=design.dtype)
    return np.linalg.solve(gram, design.T @ values)


def _quadratic_terms(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = u.astype(np.float32)
    v = v.astype(np.float32)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


@functools.cache
def mesh_triangles() -> np.ndarray:
    """The face mesh's triangles (T, 3), recovered from mediapipe's tessellation edges, and fans
    closing its eye and mouth holes: warped, the reference then covers the whole face (its own
    eyes and mouth are filled in, see `prepare_reference`), so no filter of the warped face ever
    mixes in what lies off it."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    neighbours: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    triangles = {
        tuple(sorted((a, b, c))) for a, near in neighbours.items() for b in near for c in near & neighbours[b]
    }
    fans = {(ring[0], a, b) for ring in (RIGHT_EYE, LEFT_EYE, LIPS_INNER) for a, b in pairwise(ring[1:])}
    return np.array(sorted(triangles) + sorted(fans), dtype=np.int32)


@dataclass(frozen=True)
class WarpedReference:
    """The reference on a selfie crop: its Lab (HxWx3) and how far to trust it (HxW float32, 0 where
    the warp is undefined or hair hides the reference's face, 1 where it shows); for paint, which
    carries whatever the reference shows, less again where hair lies at its temples (TEMPLE_HAIR)
    and over its outline band where a turned selfie stretches it (see OUTLINE_BAND)."""

    lab: np.ndarray
    shown: np.ndarray
    paint_shown: np.ndarray


def warp_reference(ref: ReferenceFace, crop: FaceCrop, yaw_deg: float) -> WarpedReference:
    """The reference warped onto the selfie crop, whose face is turned `yaw_deg`.

    Each destination pixel looks up its triangle in a rasterised index image; all the triangles'
    affine maps are solved at once, and one `cv2.remap` samples the reference.
    """
    index = _triangle_index(crop.pts, crop.shape)
    nearest = _nearest_triangle(index)
    stretched = float(_smoothstep(np.array(abs(yaw_deg) - abs(ref.yaw_deg)), *TURN_STRETCHES_OUTLINE))
    warped, masks = _sample(_at_scale(ref, crop.iod), crop.pts, nearest)
    if ref.mirrored is not None:
        far = _far_half(crop, ref.yaw_deg)
        mirrored, mirrored_masks = _sample(_at_scale(ref.mirrored, crop.iod), crop.pts, nearest)
        warped = warped + cv2.merge([far, far, far]) * (mirrored - warped)
        masks = masks + cv2.merge([far, far, far]) * (mirrored_masks - masks)
    hidden, paint_hidden, outline = cv2.split(masks)
    # Where hair hides the reference's face the selfie keeps its own, fading in softly around it.
    shown = (index > 0) * (1.0 - np.minimum(blur(hidden, 0.05 * crop.iod), 1.0))
    paint_shown = (index > 0) * (1.0 - np.minimum(blur(paint_hidden, 0.05 * crop.iod), 1.0))
    if stretched > 0.0:
        paint_shown *= 1.0 - np.minimum(blur(stretched * outline, 0.05 * crop.iod), 1.0)
    return WarpedReference(warped, shown, paint_shown)


def _at_scale(ref: ReferenceFace, iod: float) -> ReferenceFace:
    """The reference shrunk to about the selfie face's size: sampling it point-wise at a fraction of
    its size would alias (glossy highlights and lashes scattered as speckles on a small face)."""
    factor = iod / max(ref.iod, 1.0)
    if factor > 0.7:
        return ref
    h, w = ref.lab.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    lab = cv2.resize(ref.lab, size, interpolation=cv2.INTER_AREA)
    ratio = np.array([size[0] / w, size[1] / h], np.float32)
    hidden, paint_hidden, outline = (
        None if mask is None else cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
        for mask in (ref.hidden, ref.paint_hidden, ref.outline)
    )
    pts = (ref.pts + 0.5) * ratio - 0.5
    return ReferenceFace(
        lab,
        pts,
        ref.iod * float(ratio[0]),
        ref.yaw_deg,
        hidden=hidden,
        paint_hidden=paint_hidden,
        outline=outline,
    )


def _triangle_index(dst_pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per pixel, 1 + the index of the mesh triangle covering it (0: outside the mesh)."""
    index = np.zeros(shape, np.int32)
    fixed = np.round(dst_pts[mesh_triangles()] * 16).astype(np.int32)
    for i, tri in enumerate(fixed):
        cv2.fillConvexPoly(index, tri, (i + 1,), cv2.LINE_8, 4)
    return index


def _nearest_triangle(index: np.ndarray) -> np.ndarray:
    """`index` with every pixel off the mesh given its nearest triangle: the warp carries on past the
    face outline, so what lies beyond it is the reference's own surroundings there, which every
    filter of the warped face (and so the makeup along the outline) blends in, not one arbitrary
    colour."""
    _, labels = cv2.distanceTransformWithLabels(
        (index == 0).view(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    # Labels number the mesh's pixels in raster order, the order boolean indexing takes them in.
    return index[index > 0][labels - 1]


def _sample(ref: ReferenceFace, dst_pts: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's Lab, and its `hidden`, `paint_hidden` and `outline` masks as the planes of one
    image (zeros for a mask it has none of), warped onto the pixels of `index`, each by the map of
    its triangle (1 + its index in `mesh_triangles`; see `_nearest_triangle`)."""
    triangles = mesh_triangles()
    affines = _triangle_affines(dst_pts[triangles], ref.pts[triangles]).reshape(-1, 6)
    # Looking each coefficient up by the index image is far cheaper than gathering 2x3 matrices per
    # pixel; its numbers start at 1, so row 0 only pads the table.
    table = np.vstack([np.zeros((1, 6), np.float32), affines])
    a, b, c, d, e, f = (np.take(table[:, k], index) for k in range(6))
    h, w = index.shape
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    map_x = a * xs + b * ys + c
    map_y = d * xs + e * ys + f
    lab = cv2.remap(ref.lab, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    none = np.zeros(ref.lab.shape[:2], np.float32)
    planes = [none if mask is None else mask for mask in (ref.hidden, ref.paint_hidden, ref.outline)]
    masks = cv2.remap(cv2.merge(planes), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return lab, masks


def _far_half(crop: FaceCrop, yaw_deg: float) -> np.ndarray:
    """How much of the mirrored reference each selfie pixel takes: the half of the selfie's face
    that matches the reference's far side (image right for a positive yaw), with a soft midline."""
    top, chin = crop.pts[MIDLINE_TOP], crop.pts[CHIN]
    axis = (chin - top) / max(float(np.linalg.norm(chin - top)), 1e-6)
    towards_right = np.array([axis[1], -axis[0]], np.float32)  # image right for an upright face
    h, w = crop.shape
    xs = np.arange(w, dtype=np.float32)[None, :] - top[0]
    ys = np.arange(h, dtype=np.float32)[:, None] - top[1]
    side = np.clip((xs * towards_right[0] + ys * towards_right[1]) / (0.15 * crop.iod), -1.0, 1.0)
    right = 0.5 + 0.75 * side - 0.25 * side**3  # smooth step from 0 (left) to 1 (right)
    amount = float(np.clip(abs(yaw_deg) / MIRROR_FROM_YAW - 1.0, 0.0, 1.0))
    return (amount * (right if yaw_deg > 0 else 1.0 - right)).astype(np.float32)


def _triangle_affines(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affine maps taking each destination triangle onto its source triangle.

    Closed form (the map sends the destination's edge vectors to the source's): the same numbers
    as a batched 3x3 determinant and solve, at a fraction of their cost.
    """
    dst, src = dst.astype(np.float64), src.astype(np.float64)
    e1, e2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]
    f1, f2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    degenerate = np.abs(det) < 1e-6  # covers no pixel; sent to its first source vertex
    inv = np.where(degenerate, 0.0, 1.0 / np.where(degenerate, 1.0, det))[:, None]
    # Linear part A = [f1 f2] @ inverse([e1 e2]), as columns of the 2x2 matrix.
    col_x = (f1 * e2[:, 1:] - f2 * e1[:, 1:]) * inv
    col_y = (f2 * e1[:, :1] - f1 * e2[:, :1]) * inv
    shift = src[:, 0] - col_x * dst[:, 0, :1] - col_y * dst[:, 0, 1:]
    return np.stack([col_x, col_y, shift], axis=2).astype(np.float32)


class ReferenceMakeup:
    """The reference's makeup aligned to one selfie face.

    Pigments (lipstick, eye shadow, liner, brow colour, paint) are the reference's own colour, not a
    change relative to its skin, so a nude shade on a dark selfie looks as that shade looks on that
    person; the reference's shading stays behind (lips take their median colour, paint its smoothed
    colour) and the selfie's own shading and detail carry it. How much pigment a pixel carries comes
    from the reference itself: how far it is from the reference's bare skin (`paint_amount`), so bare
    reference skin never paints the selfie's. Foundation and blush stay relative to each face's own
    skin (see SHEER_REGIONS): skin tone never travels.
    """

    def __init__(
        self,
        selfie: SelfieLayers,
        warped: WarpedReference,
        lip_colour: tuple[float, float, float] | None = None,
        mode: str = "natural",
        fringe: float = 0.0,
        painted_base: bool = True,
    ) -> None:
        """`fringe`: how much of the reference's brows a fringe hides (`ReferenceFace.fringe`);
        `painted_base`: whether its skin-like colours can be paint (`ReferenceFace.painted_base`)."""
        self.selfie = selfie
        ref_structure = structure_layers(warped.lab, selfie.crop.iod)
        skin = (selfie.masks["skin"] > 0.5) & (warped.shown > 0.5)
        ref_base = skin_base(ref_structure, skin, selfie.crop.pts)
        # Kept as separate planes, like the selfie's layers below: every per-region step then runs
        # on contiguous rows instead of strided channels, several times faster.
        (ref_l, ref_a, ref_b), (base_l, base_a, base_b) = cv2.split(ref_structure), cv2.split(ref_base)
        self.change = (ref_l / np.maximum(base_l, 1.0), ref_a - base_a, ref_b - base_b)
        # Skin and cheeks only take the reference's broad strokes (see SHEER_REGIONS).
        smooth = blur(cv2.merge(self.change), 0.15 * selfie.crop.iod)
        self.smooth_change = tuple(cv2.split(smooth))
        self.structure = tuple(cv2.split(selfie.structure))
        self.base = tuple(cv2.split(selfie.base))
        self.light_cap = white_point(selfie.structure, selfie.masks["paint"] > 0.3) * MAX_LIGHT_GAIN
        # Pigment and paint are worked out per region box, when a region asks: in natural mode only
        # the lids and brows need them, a small part of the crop.
        self.ref_structure, self.ref_base = ref_structure, ref_base
        self.lip_colour = lip_colour
        self.fringe = fringe
        self.painted_base = painted_base
        self.shown_skin = skin
        self.shown, self.paint_shown = warped.shown, warped.paint_shown
        if mode == "full":
            hair = blur(hair_over_selfie(selfie), 0.05 * selfie.crop.iod)
            self.paint_shown = self.paint_shown * (1.0 - np.minimum(hair, 1.0))
        self.regions: tuple[str, ...] = FULL_REGIONS if mode == "full" else NATURAL_REGIONS

    def target(self, region: str, box: Box, current: np.ndarray) -> np.ndarray:
        if region in PIGMENT_REGIONS:
            target = self._pigment_target(region, box, current)
        else:
            target = self._relative_target(region, box)
        # Where the warp is undefined (or hair hides the reference) the selfie keeps its layers.
        shown = (self.paint_shown if region == "paint" else self.shown)[box]
        return current + cv2.merge([shown, shown, shown]) * (target - current)

    def _relative_target(self, region: str, box: Box) -> np.ndarray:
        """The reference's change against its own skin, re-applied on the selfie's skin."""
        (l_min, l_max), (a_min, a_max), (b_min, b_max) = REGION_LIMITS[region]
        if region in SHEER_REGIONS:
            # Contour, bronzer or blush on top of the selfie's own skin, never a skin swap.
            (start_l, start_a, start_b), (ratio, offset_a, offset_b) = self.structure, self.smooth_change
        else:
            (start_l, start_a, start_b), (ratio, offset_a, offset_b) = self.base, self.change
        target_l = start_l[box] * _clip(ratio[box], l_min, l_max)
        target_a = start_a[box] + _clip(offset_a[box], a_min, a_max)
        target_b = start_b[box] + _clip(offset_b[box], b_min, b_max)
        if region in MAX_LIGHTEN:
            # Lids lighten only a little where the reference shows bare skin, so a pale reference
            # lid cannot paint a light patch on a darker selfie.
            target_l = np.minimum(target_l, self.structure[0][box] * MAX_LIGHTEN[region])
        return cv2.merge([target_l, target_a, target_b])

    def _pigment_target(self, region: str, box: Box, current: np.ndarray) -> np.ndarray:
        if region == "lips":
            return self._lips(box)
        pigment = self._pigment(box)
        if region == "brows":
            # Brows are filled and darkened, never erased; brows under a fringe are the reference's
            # hair, and the selfie keeps its own.
            pigment[:, :, 0] = np.minimum(pigment[:, :, 0], self.structure[0][box])
            return pigment + self.fringe * (current - pigment)
        if region == "eyes":
            # A lid lightens only as much as the reference's lid is lighter than its own skin (a
            # highlighter or white liner), never because the reference's skin is lighter.
            lighten = np.maximum(self.change[0][box], MAX_LIGHTEN["eyes"])
            pigment[:, :, 0] = np.minimum(pigment[:, :, 0], self.structure[0][box] * lighten)
        if region == "paint":
            pigment = self._in_selfie_shading(pigment, box, PAINT_SMOOTHING)
            pigment[:, :, 0] = np.minimum(pigment[:, :, 0], self.light_cap)
            # Paint covers the brows without erasing them, as the brows region never lightens them:
            # they carry much of the face's identity.
            brows = self.selfie.masks["brows"][box]
            pigment[:, :, 0] -= brows * np.maximum(pigment[:, :, 0] - self.structure[0][box], 0.0)
        # Eyes and paint: pigment where the reference carries some; elsewhere lids take the relative
        # change and the rest of the face stays as made up so far.
        skin_chroma = None if region != "paint" or self.painted_base else self._ref_skin_chroma()
        amount = paint_amount(self.ref_structure[box], self.ref_base[box], skin_chroma)
        if region == "paint":
            amount = self._without_seams(amount, box) * (1.0 - self._lipstick(box))
        fallback = self._relative_target("eyes", box) if region == "eyes" else current
        return fallback + cv2.merge([amount, amount, amount]) * (pigment - fallback)

    def _ref_skin_chroma(self) -> float:
        """The chroma of the reference's skin tone where it shows over the selfie's skin."""
        tone = self.ref_base[self.shown_skin]
        return float(np.median(np.hypot(tone[:, 1], tone[:, 2]))) if tone.size else 0.0

    def _without_seams(self, amount: np.ndarray, box: Box) -> np.ndarray:
        """`amount` (the paint's, inside `box`) with the thin gaps between two paints closed: a gap
        whose colour is the blend of the solid paint around it. A gap of another colour (the bare
        skin in a letter's hole or between a star's points) stays."""
        radius = PAINT_SEAM * self.selfie.crop.iod
        closed = cv2.morphologyEx(amount, cv2.MORPH_CLOSE, disk(radius))
        solid = _smoothstep(amount, *SOLID_PAINT)
        colour = self.ref_structure[box]
        distance = colour_distance(colour - _local_mean(colour, solid, radius))
        mixed = 1.0 - _smoothstep(distance, 1.5 * PAINT_EDGE, 3.0 * PAINT_EDGE)
        return amount + mixed * (closed - amount)

    def _lipstick(self, box: Box) -> np.ndarray:
        """0 to 1 over the selfie's lips where the reference there wears its lipstick: the lips
        region has laid it already, in the selfie's own lip shading, and paint's smoothing would only
        blend it with the colours around the mouth."""
        lipstick = np.zeros(self.selfie.masks["lips"][box].shape, np.float32)
        # Worked out over the lips' own box only (a tenth of the paint's): outside it the lips mask,
        # and so the lipstick, is 0.
        lips, within = _overlap(box, self.selfie.boxes["lips"])
        if self.lip_colour is None or lipstick[within].size == 0:
            return lipstick
        distance = colour_distance(self.ref_structure[lips] - np.array(self.lip_colour, np.float32))
        lipstick[within] = self.selfie.masks["lips"][lips] * (
            1.0 - _smoothstep(distance, PAINT_EDGE, 2.0 * PAINT_EDGE)
        )
        return lipstick

    def _pigment(self, box: Box) -> np.ndarray:
        return in_light(self.ref_structure[box], self.light_cap)

    def _lips(self, box: Box) -> np.ndarray:
        """Lips are all pigment: the reference's lip colour, whatever it is, within the selfie's light
        and shaded by the selfie's own lips, so their lines and highlights stay where they are."""
        if self.lip_colour is None:  # reference lips unseen: their warped colours, smoothed
            colour = blur(self._pigment(box), LIP_SMOOTHING * self.selfie.crop.iod)
        else:
            colour = np.empty(self.selfie.structure[box].shape, np.float32)
            colour[:] = self.lip_colour
            colour = in_light(colour, self.light_cap)
        inside = (self.selfie.masks["lips"][box] > 0.3).astype(np.float32)
        sigma = LIP_SMOOTHING * self.selfie.crop.iod
        own = self.structure[0][box]
        mean_own = _local_mean(own, inside, sigma)
        colour[:, :, 0] *= _clip(own / np.maximum(mean_own, 1.0), 0.6, 1.4)
        return colour

    def _in_selfie_shading(self, pigment: np.ndarray, box: Box, smoothing: float) -> np.ndarray:
        """Paint is drawn on the selfie's face, not the reference's: the reference's colours lose
        their finer shading (its nose, sockets and wrinkles) and take the selfie's own, which carries
        the face's shape and so its identity. The paint's own edges (a star's points, a gem, a
        painted line) stay sharp: its colours are smoothed by a filter that keeps edges, guided by
        the paint itself; its lightness, which carries the shading, is smoothed through them, except
        in vivid strokes thinner than the smoothing (`thin_vivid_strokes`), which keep their own."""
        sigma = smoothing * self.selfie.crop.iod
        strokes = thin_vivid_strokes(pigment, sigma)
        colour = paint_low_pass(pigment, sigma, self.paint_shown[box] * (1.0 - strokes))
        colour[:, :, 0] += strokes * (pigment[:, :, 0] - colour[:, :, 0])
        own = self.structure[0][box]
        colour[:, :, 0] *= _clip(own / np.maximum(blur(own, sigma), 1.0), 0.5, 1.5) ** PAINT_SHADING
        return colour


def thin_vivid_strokes(lab: np.ndarray, sigma: float) -> np.ndarray:
    """HxW float32, 0 to 1: paint (HxWx3 Lab) in vivid colours no skin has (`vivid_colour`) drawn in
    strokes thinner than `sigma` pixels: a painted crescent, a letter, a butterfly's wing. Their
    lightness is their colour: smoothed with the skin around them, cpm_ref_01's dark-blue crescent
    became a pale lavender blur. Wide areas of such paint (a lid of green shadow) are left to the
    smoothing, their own shading being the reference's face."""
    _, a, b = cv2.split(lab)
    vivid = vivid_colour(a, b).astype(np.float32)
    return vivid * (1.0 - np.minimum(blur(vivid, sigma), 1.0))


def paint_low_pass(lab: np.ndarray, sigma: float, weight: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 Lab without its detail finer than `sigma` pixels, but with paint's edges kept sharp:
    lightness, which carries the shading, through a Gaussian; colour through a guided filter led by
    the image itself, which keeps edges between colours more than PAINT_EDGE apart. `weight` (HxW,
    0 to 1): how far each pixel's lightness counts, so that none spreads from where the reference
    is hidden (hair over it) or off its face."""
    lab = np.ascontiguousarray(lab)
    chroma = np.ascontiguousarray(lab[:, :, 1:])
    a, b = cv2.split(cv2.ximgproc.guidedFilter(lab, chroma, max(1, round(sigma)), PAINT_EDGE**2))
    lightness = np.ascontiguousarray(lab[:, :, 0])
    smooth = blur(lightness, sigma) if weight is None else _local_mean(lightness, weight, sigma)
    return cv2.merge([smooth, a, b])


def white_point(structure: np.ndarray, where: np.ndarray) -> float:
    """The lightness of a face's highlights: the light it gets, whatever its skin tone."""
    values = structure[:, :, 0][where]
    return max(float(np.percentile(values, 99)), 1.0) if values.size else 100.0


def in_light(lab: np.ndarray, light_cap: float) -> np.ndarray:
    """Reference colours (HxWx3 Lab) on the selfie: never lighter than `light_cap` and with no more
    chroma than their lightness can carry, so an underexposed photo never glows."""
    lightness, a, b = cv2.split(lab)  # planes: strided channel arithmetic costs more than the split
    lightness = np.minimum(lightness, light_cap)
    chroma = np.sqrt(a**2 + b**2)
    fade = np.minimum(1.0, MAX_CHROMA_PER_L * lightness / np.maximum(chroma, 1e-3))
    return cv2.merge([lightness, a * fade, b * fade])


def paint_amount(
    ref_structure: np.ndarray, ref_base: np.ndarray, skin_chroma: float | None = None
) -> np.ndarray:
    """Per pixel, 0 (the reference's bare skin) to 1 (pigment): how far the reference is from its own
    skin base, or from any skin colour at all (a white or blue painted face has a painted base).

    `skin_chroma`: the chroma of the skin of a reference without a painted base; there the colours of
    skin and of the makeup worn on it (blush, bronzer, contour) are no pigment however far from its
    base, only colours no skin takes or far more vivid than its skin (VIVID_PAST_SKIN)."""
    likeness = skin_likeness(ref_structure)
    departure = _smoothstep(colour_distance(ref_structure - ref_base), *PIGMENT_DISTANCE)
    amount = np.maximum(departure, 1.0 - likeness).astype(np.float32)
    if skin_chroma is not None:
        _, a, b = cv2.split(ref_structure)
        vivid = _smoothstep(np.sqrt(a**2 + b**2) - skin_chroma, *VIVID_PAST_SKIN)
        amount *= 1.0 - likeness * (1.0 - vivid)
    return amount


def colour_distance(gap: np.ndarray) -> np.ndarray:
    """HxW: the size of an HxWx3 CIELAB difference, its lightness counted half (shading, and the
    crease of a bare lid, change skin's lightness too)."""
    # Split planes: numpy's sum over a trailing axis of 2 costs ten times the whole of this.
    lightness, a, b = cv2.split(gap)
    return np.sqrt(0.25 * lightness**2 + (a**2 + b**2))


def skin_likeness(lab: np.ndarray) -> np.ndarray:
    """1 for colours human skin takes under ordinary light (any tone), falling to 0 for grey, white,
    black, blue, green or purple: warm hues at moderate chroma."""
    _, a, b = cv2.split(lab)  # contiguous planes: strided channel arithmetic costs more than the split
    return skin_hue(a, b) * _smoothstep(np.sqrt(a**2 + b**2), 3.0, 9.0)


def skin_hue(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 for the warm hues of skin (CIELAB hue 20 to 80 degrees), falling to 0 by -5 and 100."""
    hue = np.degrees(np.arctan2(b, a))
    return _smoothstep(hue, -5.0, 20.0) * (1.0 - _smoothstep(hue, 80.0, 100.0))


def _smoothstep(x: np.ndarray, low: float, high: float) -> np.ndarray:
    t = _clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _clip(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """np.clip's result at half its cost (numpy 1.x's clip has a slow generic path)."""
    return np.minimum(np.maximum(values, low), high)


def blend(selfie: SelfieLayers, makeup: Makeup, strengths: Mapping[str, float]) -> np.ndarray:
    """The RGB change (HxWx3 float32, exactly 0 where nothing changes) for the crop.

    Regions are laid on in `makeup.regions` order, each over what the earlier ones made, so
    overlapping soft edges (and paint over lipstick) never add up twice."""
    made = selfie.structure.copy()
    touched = np.zeros(selfie.lab.shape[:2], bool)
    for region in makeup.regions:
        amount = strengths.get(region, 0.0) * REGION_OPACITY[region]
        box = selfie.boxes[region]
        if amount <= 0.0 or box[0].start == box[0].stop:
            continue
        weight = amount * selfie.masks[region][box]
        current = made[box]
        current += cv2.merge([weight, weight, weight]) * (makeup.target(region, box, current) - current)
        touched[box] |= weight > 0
    delta = np.zeros_like(selfie.lab)
    x, y, w, h = cv2.boundingRect(touched.view(np.uint8))
    if w == 0:
        return delta
    # Convert back to RGB only where something changed; the Lab round trip is not exact, so every
    # untouched pixel gets a change of exactly 0 (the mask keeps them out of the subtraction).
    box = slice(y, y + h), slice(x, x + w)
    made_up = to_rgb(selfie.lab[box] + made[box] - selfie.structure[box])
    keep = touched[box].view(np.uint8)
    cv2.subtract(made_up, selfie.crop.rgb[box], dst=delta[box], mask=keep, dtype=cv2.CV_32F)
    return delta


def composite(image: np.ndarray, crop: FaceCrop, delta: np.ndarray) -> None:
    """Add the crop's colour change to the full-resolution image in place.

    The change, rounded to int16, is upscaled inside its own bounding box only and added with
    uint8 saturation: fast at 12 megapixels, and exactly 0 (so bit-identical pixels) wherever
    nothing changes.
    """
    h, w = delta.shape[:2]
    # Non-zero channel values seen as one HxW*3 plane: its bounding box, in pixels, is the changed
    # box (a reduction over the trailing axis of 3 would cost 30 times more).
    x, y, bw, bh = cv2.boundingRect((delta.reshape(h, w * 3) != 0.0).view(np.uint8))
    if bw == 0:
        return
    # The changed box at working size, a pixel wider for the interpolation, and at full resolution
    # (rounded outwards: the upscaled change lands within a full-resolution pixel of its place).
    y0, y1 = max(y - 1, 0), min(y + bh + 1, h)
    x0, x1 = max(x // 3 - 1, 0), min((x + bw + 2) // 3 + 1, w)
    bx0, by0, bx1, by1 = crop.box
    rx, ry = delta.shape[1] / (bx1 - bx0), delta.shape[0] / (by1 - by0)
    fx0, fy0 = bx0 + int(x0 / rx), by0 + int(y0 / ry)
    fx1, fy1 = min(bx1, bx0 + int(np.ceil(x1 / rx))), min(by1, by0 + int(np.ceil(y1 / ry)))
    change = np.rint(delta[y0:y1, x0:x1]).astype(np.int16)
    if (fx1 - fx0, fy1 - fy0) != (x1 - x0, y1 - y0):
        change = cv2.resize(change, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_LINEAR)
    region = image[fy0:fy1, fx0:fx1]
    cv2.add(region, change, dst=region, dtype=cv2.CV_8U)
