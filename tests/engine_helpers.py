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


def mean_lab(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return lab[where].mean(axis=0)


def makeup_colour(image: np.ndarray, face: Face, region: str) -> np.ndarray:
    """A region's mean Lab colour relative to the face's own bare skin: skin tone is deliberately
    not transferred, so this is what "the makeup's colour" means across skin tones."""
    skin = mask(image, face, "skin") & ~mask(image, face, "blush")
    return mean_lab(image, mask(image, face, region)) - mean_lab(image, skin)


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """CIE76 colour difference."""
    return float(np.linalg.norm(a - b))
