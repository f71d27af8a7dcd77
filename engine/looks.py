"""Preset looks (engine/looks.toml) that make up a selfie without a reference photo."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.api import REGIONS
from engine.errors import UnknownLookError
from engine.transfer import SelfieLayers, to_lab

LOOKS_FILE = Path(__file__).with_name("looks.toml")


@dataclass(frozen=True)
class RegionColour:
    lab: tuple[float, float, float]
    opacity: float


@dataclass(frozen=True)
class Look:
    name: str
    description: str
    regions: dict[str, RegionColour]


@functools.cache
def load_looks() -> dict[str, Look]:
    with LOOKS_FILE.open("rb") as f:
        table = tomllib.load(f)
    return {name: _parse_look(name, spec) for name, spec in table.items()}


def _parse_look(name: str, spec: dict) -> Look:
    regions = {}
    for region in REGIONS:
        if region in spec:
            colour = spec[region]["color"].lstrip("#")
            rgb = np.array([[[int(colour[i : i + 2], 16) for i in (0, 2, 4)]]], np.uint8)
            lab = to_lab(rgb)[0, 0]
            regions[region] = RegionColour(
                (float(lab[0]), float(lab[1]), float(lab[2])), spec[region]["opacity"]
            )
    return Look(name, spec.get("description", ""), regions)


def get_look(name: str) -> Look:
    looks = load_looks()
    if name not in looks:
        raise UnknownLookError(f"I don't know the look '{name}'. Try one of: {', '.join(sorted(looks))}.")
    return looks[name]


def look_targets(selfie: SelfieLayers, look: Look) -> dict[str, np.ndarray]:
    """Per region, the selfie's structure tinted with the look's colour: chroma is the colour's, and
    lightness is scaled so the region's mean matches it while the selfie's shading stays."""
    targets = {}
    for region, colour in look.regions.items():
        mask = selfie.masks[region] > 0.3
        structure = selfie.structure
        mean_l = float(structure[:, :, 0][mask].mean()) if mask.any() else colour.lab[0]
        target = np.empty_like(structure)
        target[:, :, 0] = structure[:, :, 0] * np.clip(colour.lab[0] / max(mean_l, 1.0), 0.3, 1.6)
        target[:, :, 1] = colour.lab[1]
        target[:, :, 2] = colour.lab[2]
        targets[region] = structure + colour.opacity * (target - structure)
    return targets
