"""Contact sheet for judging the embedded engine by eye: selfie | reference | s=0.5 | s=1.0 per row.

    python -m bench.contact_sheet [-o artifacts/contact_sheet.png]

Pairs from ../shared/data/faces, chosen for hard cases: dark selfies with light references, open
mouths, glasses, occlusions, turned heads, several faces, extreme face paint, made-up selfies.
Each tile is zoomed on the faces; the output is for local viewing only (artifacts/ is git-ignored).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from engine.embedded import EmbeddedEngine
from engine.faces import Face
from engine.images import load_image
from engine.settings import EngineSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
FACES_DIR = Path(os.environ.get("FACELAB_FACES_DIR", REPO_ROOT.parent / "shared/data/faces"))
PAIRS = [
    ("sm_source_02.jpg", "elegant_ref_02.png"),  # smoky eyes and red lips
    ("fr_source_01.jpg", "elegant_ref_01.png"),  # dark skin, light pink reference, small face
    ("cpm_source_01.png", "shmt_ref_04.jpg"),  # brown skin, turquoise lids on a pale reference
    ("elegant_source_01.png", "scgan_ref_01.png"),  # broad smile; reference half covered
    ("shmt_source_02.jpg", "psgan_ref_01.png"),  # reference in a 3/4 pose
    ("tmw_source_01.jpg", "tmw_ref_01.jpg"),  # glasses and a hat; blue lips, winged liner
    ("csdmt_source_02.jpg", "cpm_ref_03.png"),  # laughing, open mouth; hand on the reference
    ("fr_source_03.jpg", "shmt_ref_02.png"),  # two faces
    ("sm_source_04.jpg", "beautygan_ref_01.png"),  # already wearing red lipstick; bangs on reference
    ("shmt_source_01.jpg", "cpm_ref_02.png"),  # olive skin, darker reference with stickers
    ("tinybeauty_source_01.png", "sm_ref_01.jpg"),  # clown face paint
    ("dlib_source_01.jpg", "look:smoky_eyes"),  # three faces, flash, a preset look
    ("psgan_source_01.png", "sm_ref_02.jpg"),  # rainbow lids on a cropped 3/4-pose reference
]
TILE_W, TILE_H = 320, 340
LIMITS = {"max_pixels": 100_000_000, "max_bytes": 100_000_000}


def read(name: str) -> np.ndarray:
    kind = "source" if "_source_" in name else "reference"
    return load_image((FACES_DIR / kind / name).read_bytes(), **LIMITS)


def zoom(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """The part of the image around its faces, fitted into a tile."""
    h, w = image.shape[:2]
    x0 = min(f.bbox[0] for f in faces)
    y0 = min(f.bbox[1] for f in faces)
    x1 = max(f.bbox[2] for f in faces)
    y1 = max(f.bbox[3] for f in faces)
    mx, my = (x1 - x0) // 4, (y1 - y0) // 4
    part = image[max(0, y0 - my) : min(h, y1 + my), max(0, x0 - mx) : min(w, x1 + mx)]
    scale = min(TILE_H / part.shape[0], TILE_W / part.shape[1])
    size = (round(part.shape[1] * scale), round(part.shape[0] * scale))
    fitted = cv2.resize(part, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    tile = np.zeros((TILE_H, TILE_W, 3), np.uint8)
    top, left = (TILE_H - size[1]) // 2, (TILE_W - size[0]) // 2
    tile[top : top + size[1], left : left + size[0]] = fitted
    return tile


def label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def text_tile(text: str) -> np.ndarray:
    return label(np.full((TILE_H, TILE_W, 3), 60, np.uint8), text)


def sheet_row(engine: EmbeddedEngine, selfie_name: str, reference_name: str) -> np.ndarray:
    selfie = read(selfie_name)
    faces = engine.backend.detect(selfie)[:1]  # zoomed on the largest face; the others are made up too
    if reference_name.startswith("look:"):
        look = reference_name.removeprefix("look:")
        reference_tile = text_tile(f"look: {look}")
        results = [engine.apply_array(selfie, look=look, strength=s).image for s in (0.5, 1.0)]
    else:
        reference_photo = read(reference_name)
        reference = engine.prepare_reference(reference_photo)
        reference_tile = zoom(reference_photo, engine.backend.detect(reference_photo)[:1])
        results = [engine.apply_array(selfie, reference, strength=s).image for s in (0.5, 1.0)]
    tiles = [
        label(zoom(selfie, faces), selfie_name),
        label(reference_tile, reference_name),
        label(zoom(results[0], faces), "s=0.5"),
        label(zoom(results[1], faces), "s=1.0"),
    ]
    return np.hstack(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO_ROOT / "artifacts" / "contact_sheet.png")
    args = parser.parse_args()
    engine = EmbeddedEngine(EngineSettings())
    rows = [sheet_row(engine, selfie, reference) for selfie, reference in PAIRS]
    sheet = np.vstack([np.pad(row, ((0, 4), (0, 0), (0, 0))) for row in rows])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output} ({len(rows)} pairs)")


if __name__ == "__main__":
    main()
