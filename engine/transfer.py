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

import cv2
import numpy as np

from engine.faces import Face
from engine.regions import LEFT_EYE, LIPS_INNER, RIGHT_EYE, region_masks

CROP_MARGIN = 0.12  # crop = landmark box grown by this fraction per side
N_MESH = 468  # the iris points are not part of the triangulation

# How far the reference may move each region: lightness ratio range, then a* and b* offset ranges.
# Lips and eyes take the reference's look; blush may only add warmth; on skin the reference adds a
# small, smooth change only, so hair, hands or glasses covering its skin cannot paint the selfie's.
Limits = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
REGION_LIMITS: dict[str, Limits] = {
    "lips": ((0.3, 1.6), (-60.0, 60.0), (-60.0, 60.0)),
    "eyes": ((0.25, 1.05), (-40.0, 40.0), (-40.0, 40.0)),
    "brows": ((0.3, 1.0), (-10.0, 10.0), (-10.0, 10.0)),
    "blush": ((0.95, 1.02), (0.0, 12.0), (-5.0, 5.0)),
    "skin": ((0.97, 1.03), (-3.0, 3.0), (-3.0, 3.0)),
}
MAX_LIGHTEN = {"eyes": 1.08, "brows": 1.0}
# Regions whose own shading the selfie keeps: the reference's change is blurred and applied on top.
SHEER_REGIONS = ("blush", "skin")
# Opacity of each region at strength 1: foundation and blush stay sheer.
REGION_OPACITY: dict[str, float] = {"lips": 1.0, "eyes": 1.0, "brows": 0.8, "blush": 0.8, "skin": 0.6}


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


@dataclass(frozen=True)
class ReferenceFace:
    """The reference's face crop in CIELAB, with eyeballs and mouth interior filled from around them
    (so an open mouth or wider eyes cannot paint teeth or sclera onto the selfie)."""

    lab: np.ndarray
    pts: np.ndarray
    iod: float


def crop_face(rgb: np.ndarray, face: Face, working_size: int) -> FaceCrop:
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = face.bbox
    mx, my = CROP_MARGIN * (x1 - x0), CROP_MARGIN * (y1 - y0)
    box = (max(0, int(x0 - mx)), max(0, int(y0 - my)), min(w, int(x1 + mx) + 1), min(h, int(y1 + my) + 1))
    crop = rgb[box[1] : box[3], box[0] : box[2]]
    scale = min(1.0, working_size / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    pts = np.asarray((face.landmarks - np.array(box[:2], np.float32)) * scale, np.float32)
    return FaceCrop(box, scale, np.ascontiguousarray(crop), pts, face.inter_ocular * scale)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2LAB)


def to_rgb(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0


def prepare_reference(rgb: np.ndarray, face: Face, working_size: int) -> ReferenceFace:
    crop = crop_face(rgb, face, working_size)
    holes = np.zeros(crop.rgb.shape[:2], np.uint8)
    for poly in (LIPS_INNER, RIGHT_EYE, LEFT_EYE):
        cv2.fillPoly(holes, [np.round(crop.pts[list(poly)]).astype(np.int32)], (255,))
    grown = cv2.dilate(holes, np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(crop.rgb, grown, max(3.0, 0.03 * crop.iod), cv2.INPAINT_TELEA)
    return ReferenceFace(to_lab(filled), crop.pts, crop.iod)


def analyse_selfie(crop: FaceCrop) -> SelfieLayers:
    lab = to_lab(crop.rgb)
    masks = region_masks(crop.pts, crop.shape, crop.iod)
    structure = structure_layers(lab, crop.iod)
    base = skin_base(structure, masks["skin"] > 0.5, crop.pts)
    return SelfieLayers(crop, lab, structure, base, masks)


def structure_layers(lab: np.ndarray, iod: float) -> np.ndarray:
    """Edge-preserving structure of lightness (the detail layer is what it leaves out) and lightly
    smoothed chroma, so skin texture and JPEG noise are not treated as makeup."""
    lightness = np.ascontiguousarray(lab[:, :, 0])
    radius = max(2, round(0.04 * iod))
    structure_l = cv2.ximgproc.guidedFilter(lightness, lightness, radius, 16.0)
    chroma = cv2.GaussianBlur(lab[:, :, 1:], (0, 0), max(0.8, 0.01 * iod))
    return np.dstack([structure_l, chroma])


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
    coef, *_ = np.linalg.lstsq(design, samples, rcond=None)
    residual = np.abs(samples[:, 0] - design @ coef[:, 0])
    inliers = residual < 2.5 * np.median(residual) + 1e-3
    coef, *_ = np.linalg.lstsq(design[inliers], samples[inliers], rcond=None)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    full = _quadratic_terms((gx.ravel() - center[0]) / span, (gy.ravel() - center[1]) / span)
    return (full @ coef.astype(np.float32)).reshape(h, w, 3).astype(np.float32)


def _quadratic_terms(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = u.astype(np.float32)
    v = v.astype(np.float32)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


@functools.cache
def mesh_triangles() -> np.ndarray:
    """The face mesh's triangles (T, 3), recovered from mediapipe's tessellation edges."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    neighbours: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    triangles = {
        tuple(sorted((a, b, c))) for a, near in neighbours.items() for b in near for c in near & neighbours[b]
    }
    return np.array(sorted(triangles), dtype=np.int32)


def warp_reference(
    ref: ReferenceFace, dst_pts: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The reference warped onto the selfie crop (HxWx3 Lab) and where the warp is defined (HxW bool).

    Each destination pixel looks up its triangle in a rasterised index image; all the triangles'
    affine maps are solved at once, and one `cv2.remap` samples the reference.
    """
    triangles = mesh_triangles()
    index = np.zeros(shape, np.int32)
    fixed = np.round(dst_pts[triangles] * 16).astype(np.int32)
    for i, tri in enumerate(fixed):
        cv2.fillConvexPoly(index, tri, (i + 1,), cv2.LINE_8, 4)
    ys, xs = np.nonzero(index)
    valid = index > 0
    maps = _triangle_affines(dst_pts[triangles], ref.pts[triangles])[index[ys, xs] - 1]
    map_x = np.full(shape, -1.0, np.float32)
    map_y = np.full(shape, -1.0, np.float32)
    fx, fy = xs.astype(np.float32), ys.astype(np.float32)
    map_x[ys, xs] = maps[:, 0, 0] * fx + maps[:, 0, 1] * fy + maps[:, 0, 2]
    map_y[ys, xs] = maps[:, 1, 0] * fx + maps[:, 1, 1] * fy + maps[:, 1, 2]
    warped = cv2.remap(ref.lab, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, valid


def _triangle_affines(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affine maps taking each destination triangle onto its source triangle."""
    ones = np.ones((*dst.shape[:2], 1), np.float64)
    dst_h = np.concatenate([dst.astype(np.float64), ones], axis=2)  # (T, 3, 3): rows are vertices
    det = np.linalg.det(dst_h)
    dst_h[np.abs(det) < 1e-6] = np.eye(3)  # degenerate triangles cover no pixel
    solved = np.linalg.solve(dst_h, src.astype(np.float64))  # (T, 3, 2)
    return np.transpose(solved, (0, 2, 1)).astype(np.float32)


def reference_targets(selfie: SelfieLayers, warped: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Per region, the selfie's structure with the reference's makeup on it."""
    ref_structure = structure_layers(warped, selfie.crop.iod)
    ref_base = skin_base(ref_structure, (selfie.masks["skin"] > 0.5) & valid, selfie.crop.pts)
    ratio = ref_structure[:, :, 0] / np.maximum(ref_base[:, :, 0], 1.0)
    offset = ref_structure[:, :, 1:] - ref_base[:, :, 1:]
    sigma = 0.15 * selfie.crop.iod
    smooth_ratio = cv2.GaussianBlur(ratio, (0, 0), sigma)
    smooth_offset = cv2.GaussianBlur(offset, (0, 0), sigma)
    targets = {}
    for region, (lightness, a_range, b_range) in REGION_LIMITS.items():
        if region in SHEER_REGIONS:
            # Contour, bronzer or blush on top of the selfie's own skin, never a skin swap.
            target_l = selfie.structure[:, :, 0] * np.clip(smooth_ratio, *lightness)
            target_ab = selfie.structure[:, :, 1:] + _clip_ab(smooth_offset, a_range, b_range)
        else:
            target_l = selfie.base[:, :, 0] * np.clip(ratio, *lightness)
            target_ab = selfie.base[:, :, 1:] + _clip_ab(offset, a_range, b_range)
        # Brows are filled and darkened, never erased; lids lighten only a little, so a pale
        # reference lid cannot paint a light patch on a darker selfie.
        target_l = np.minimum(target_l, selfie.structure[:, :, 0] * MAX_LIGHTEN.get(region, np.inf))
        targets[region] = np.dstack([target_l, target_ab])
    return targets


def _clip_ab(offset: np.ndarray, a_range: tuple[float, float], b_range: tuple[float, float]) -> np.ndarray:
    return np.dstack([np.clip(offset[:, :, 0], *a_range), np.clip(offset[:, :, 1], *b_range)])


def blend(
    selfie: SelfieLayers,
    targets: Mapping[str, np.ndarray],
    strengths: Mapping[str, float],
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """The RGB change (HxWx3 float32, 0 where nothing changes) for the crop."""
    change: np.ndarray = np.zeros_like(selfie.lab)
    coverage = np.zeros(selfie.lab.shape[:2], np.float32)
    for region, target in targets.items():
        weight = strengths.get(region, 0.0) * REGION_OPACITY[region] * selfie.masks[region]
        if not weight.any():
            continue
        change += weight[:, :, None] * (target - selfie.structure)
        coverage += weight
    if valid is not None:
        change *= valid[:, :, None]
        coverage *= valid
    made_up = to_rgb(selfie.lab + change)
    delta: np.ndarray = made_up - selfie.crop.rgb.astype(np.float32)
    delta[coverage <= 0] = 0.0  # the Lab round trip is not exact: untouched pixels get exactly 0
    return delta


def composite(image: np.ndarray, crop: FaceCrop, delta: np.ndarray) -> None:
    """Add the crop's colour change to the full-resolution image in place, inside the crop only."""
    x0, y0, x1, y1 = crop.box
    if crop.scale < 1.0:
        delta = cv2.resize(delta, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    region = image[y0:y1, x0:x1]
    changed = np.any(delta != 0.0, axis=2)
    made_up = np.clip(region.astype(np.float32) + delta + 0.5, 0, 255).astype(np.uint8)
    region[changed] = made_up[changed]
