"""Shared helpers for the engine tests: decoded shared photos and cached face detections."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from engine.faces import Face, MediapipeBackend
from engine.images import load_image
from engine.regions import region_masks
from engine.settings import EngineSettings
from tests.conftest import face_path

LIMITS = {"max_pixels": 100_000_000, "max_bytes": 100_000_000}


@functools.cache
def backend() -> MediapipeBackend:
    return MediapipeBackend(EngineSettings().working_size)


@functools.cache
def photo(name: str) -> np.ndarray:
    image = load_image(face_path(name).read_bytes(), **LIMITS)
    image.flags.writeable = False  # cached and shared: a test must not change it
    return image


@functools.cache
def faces(name: str) -> tuple[Face, ...]:
    return tuple(backend().detect(photo(name)))


def mask(image: np.ndarray, face: Face, region: str, above: float = 0.5) -> np.ndarray:
    """Where a region's mask, drawn on the full image from a face's landmarks, exceeds `above`
    (0.5: the region's core; 0: everything it may touch)."""
    return region_masks(face.landmarks, image.shape[:2], face.inter_ocular)[region] > above


def lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def mean_lab(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    return lab(image)[where].mean(axis=0)


def makeup_colour(image: np.ndarray, face: Face, region: str) -> np.ndarray:
    """A region's mean Lab colour relative to the face's own bare skin: skin tone is deliberately
    not transferred, so this is what "the makeup's colour" means across skin tones."""
    skin = mask(image, face, "skin") & ~mask(image, face, "blush")
    return mean_lab(image, mask(image, face, region)) - mean_lab(image, skin)


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """CIE76 colour difference."""
    return float(np.linalg.norm(a - b))


HAIR_DARK, HAIR_LIGHT = (70, 50, 35), (140, 105, 70)
STAR_BLUE = (40, 60, 200)
LEFT_CHEEK = 280  # the mesh point on the left cheek where the tests paint a star or a ring


def with_painted_star(name: str) -> np.ndarray:
    """The shared reference photo `name` with a blue five-pointed star painted on its left cheek."""
    reference = photo(name).copy()
    face = faces(name)[0]
    centre = face.landmarks[LEFT_CHEEK] + np.array([0.05, -0.05]) * face.inter_ocular
    angles = np.arange(10) * np.pi / 5
    reach = 0.35 * face.inter_ocular * np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    corners = centre + np.stack([reach * np.sin(angles), -reach * np.cos(angles)], axis=1)
    cv2.fillPoly(reference, [np.round(corners).astype(np.int32)], STAR_BLUE)
    return reference


def with_side_lock(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The shared selfie `name` with a lock of brown hair hanging from beyond its face outline over
    its right cheek (image left): wavy strands, alternately dark and light, each 0.03 of the eye
    distance wide; and where the lock lies (HxW bool)."""
    selfie = photo(name).copy()
    face = faces(name)[0]
    iod = face.inter_ocular
    outline, apple = face.landmarks[234], face.landmarks[50]  # the outline beside the cheek, its apple
    centre = outline + 0.25 * (apple - outline)
    x0, y0 = np.maximum(np.round(centre - np.array([0.6, 0.9]) * iod).astype(int), 0)
    x1, y1 = np.round(centre + np.array([0.3, 0.9]) * iod).astype(int)
    lock = np.zeros(selfie.shape[:2], bool)
    lock[y0:y1, x0:x1] = True
    h, w = lock.shape
    wave = 3.0 * np.sin(np.arange(h)[:, None] * np.pi / (0.3 * iod))
    dark = ((np.arange(w)[None, :] + wave) // max(2, round(0.03 * iod))).astype(int) % 2 == 0
    strands = np.where(dark[..., None], HAIR_DARK, HAIR_LIGHT).astype(np.uint8)
    selfie[lock] = strands[lock]
    return selfie, lock


def with_painted_ring(name: str) -> np.ndarray:
    """The shared reference photo `name` with a blue ring painted around the mesh point LEFT_CHEEK:
    the ring's hole (0.1 of the eye distance across) is bare skin."""
    reference = photo(name).copy()
    face = faces(name)[0]
    centre = tuple(int(v) for v in np.round(face.landmarks[LEFT_CHEEK]))
    width = round(0.07 * face.inter_ocular)
    cv2.circle(reference, centre, round(0.085 * face.inter_ocular), STAR_BLUE, width)
    return reference


def solid_star_share(result: np.ndarray, selfie: np.ndarray) -> float:
    """How much of the star carried onto `selfie` is solid blue rather than a blue-tinged rim, by
    chroma distance to the star's blue: a crisp star is mostly its own blue with a thin rim, a
    blurred one a wide rim of tinted skin around a small core."""
    target = lab(np.array([[STAR_BLUE]], np.uint8))[0, 0, 1:]
    far = np.median(np.linalg.norm(lab(selfie)[..., 1:] - target, axis=2))
    distance = np.linalg.norm(lab(result)[..., 1:] - target, axis=2)
    core = np.count_nonzero(distance < 0.25 * far)
    rim = np.count_nonzero((distance >= 0.25 * far) & (distance < 0.75 * far))
    return core / max(core + rim, 1)


def seam_share(result: np.ndarray, selfie: np.ndarray, face: Face, where: np.ndarray) -> float:
    """The share of `where` in thin seams: lines the makeup changed far less (over 10 CIELAB) than
    the pixels on both sides of them, as where the selfie's bare skin shows between two paints."""
    change = np.linalg.norm(lab(result) - lab(selfie), axis=2)
    across = 2 * round(0.05 * face.inter_ocular) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (across, across))
    closed = cv2.morphologyEx(change, cv2.MORPH_CLOSE, kernel)
    return float(np.mean((closed - change)[where] > 10.0))
