"""CPU milliseconds per 512x512 pair of `facelab batch`, as a user runs it (full mode by default).

    python bench/batch.py [--mode natural|full] [--rows 60] [--repeat 3]

The selfies are 512x512 JPEG crops around the faces of the shared selfies in ../shared/data/faces,
the references three creative ones (a Joker's white face, a painted pattern, bruise effects). Each
run is a real `facelab batch` process pinned to one core; the CPU time of a `--rows` batch minus
that of a 3-row batch, over the rows between, leaves out the start-up (imports, model loading, the
references' own analysis) and keeps everything a row costs: reading, decoding, detection, the
makeup, encoding and writing. Target for the full look: 30 ms or less per pair.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would hide the `engine`
# package; the repository root must come first instead.
sys.path[0] = str(REPO_ROOT)
FACES_DIR = Path(os.environ.get("FACELAB_FACES_DIR", REPO_ROOT.parent / "shared/data/faces"))
REFERENCES = ("sm_ref_01.jpg", "cpm_ref_01.png", "sm_ref_03.jpg")
SHORT_BATCH = 3


def write_selfies(folder: Path) -> list[Path]:
    """512x512 crops, twice the face's size, of every shared selfie with a usable face."""
    from engine.faces import MediapipeBackend, square_crop
    from engine.images import load_image

    backend = MediapipeBackend()
    selfies = []
    for path in sorted((FACES_DIR / "source").glob("*.*")):
        rgb = load_image(path.read_bytes(), max_pixels=10**8, max_bytes=10**8)
        faces = backend.detect(rgb)
        if not faces:
            continue
        out = folder / f"{path.stem}.jpg"
        crop = square_crop(rgb, faces[0].bbox, 2.0, 512)
        cv2.imwrite(str(out), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        selfies.append(out)
    return selfies


def write_pairs(path: Path, selfies: list[Path], rows: int) -> None:
    pairs = itertools.islice(itertools.cycle(itertools.product(selfies, REFERENCES)), rows)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["selfie", "reference", "strength", "output"])
        for number, (selfie, reference) in enumerate(pairs):
            writer.writerow([selfie, FACES_DIR / "reference" / reference, 1, f"{number:04d}.jpg"])


def batch_cpu_seconds(pairs: Path, out_dir: Path, mode: str) -> float:
    """CPU seconds (user + system) of one `facelab batch` process on one core."""
    core = min(os.sched_getaffinity(0))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "facelab", "batch", str(pairs), "--out-dir", str(out_dir), "--mode", mode],
        check=True,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="full", choices=("natural", "full"))
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.rows <= SHORT_BATCH:
        parser.error(f"--rows must exceed the {SHORT_BATCH} rows of the start-up batch subtracted from it")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        selfies = write_selfies(folder)
        long, short = folder / "long.csv", folder / "short.csv"
        write_pairs(long, selfies, args.rows)
        write_pairs(short, selfies, SHORT_BATCH)
        print(f"facelab batch --mode {args.mode}: {len(selfies)} selfies (512x512), {len(REFERENCES)} refs")
        for run in range(1, args.repeat + 1):
            cpu_long = batch_cpu_seconds(long, folder / "out", args.mode)
            cpu_short = batch_cpu_seconds(short, folder / "out", args.mode)
            per_row = (cpu_long - cpu_short) / (args.rows - SHORT_BATCH) * 1000.0
            print(f"run {run}: {per_row:.1f} ms of CPU per pair")


if __name__ == "__main__":
    main()
