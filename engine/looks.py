"""Preset looks (engine/looks.toml) that make up a selfie without a reference photo."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.api import REGIONS
from engine.errors import UnknownLookError
from engine.transfer import Box, SelfieLayers, to_lab

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


class LookMakeup:
    """A preset look on one selfie face: per region, the look's chroma, with lightness scaled so the
    region's mean matches the colour while the selfie's own shading stays."""

    def __init__(self, selfie: SelfieLayers, look: Look) -> None:
        self.selfie = selfie
        self.look = look
        self.regions = tuple(look.regions)

    def target(self, region: str, box: Box, current: np.ndarray) -> np.ndarray:
        colour = self.look.regions[region]
        structure = self.selfie.structure[box]
        core = self.selfie.masks[region][box] > 0.3
        mean_l = float(structure[:, :, 0][core].mean()) if core.any() else colour.lab[0]
        target = np.empty_like(structure)
        target[:, :, 0] = structure[:, :, 0] * np.clip(colour.lab[0] / max(mean_l, 1.0), 0.3, 1.6)
        target[:, :, 1] = colour.lab[1]
        target[:, :, 2] = colour.lab[2]
        return structure + colour.opacity * (target - structure)
