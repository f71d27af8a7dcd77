"""Median milliseconds per image of the embedded engine on one CPU core, split by stage.

    python bench/engine.py [--runs 15] [--selfie NAME] [--reference NAME] [--mode natural|full]

Two selfies: a 512x512 one and a 12-megapixel one, both made by upscaling a shared face photo from
../shared/data/faces. The reference is analysed once (the engine caches it per reference), so the
figures are per selfie; the reference's own analysis is printed separately.
"""

from __future__ import annotations

import argparse
import os

# Before numpy loads: one BLAS thread, as on the single core the engine is given.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would hide the `engine`
# package; the repository root must come first instead.
sys.path[0] = str(REPO_ROOT)
FACES_DIR = Path(os.environ.get("FACELAB_FACES_DIR", REPO_ROOT.parent / "shared/data/faces"))
STAGES = ("detect", "align", "transfer", "composite")
COLUMNS = (*STAGES, "total")
# Each image is timed twice: by the wall clock, and by the process's CPU time (mediapipe's own
# threads included, all pinned to the one core). On a busy shared machine the CPU time is the
# steadier figure for what one free core would take.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def pin_to_one_core() -> None:
    """One core for everything: OpenCV, numpy and mediapipe's TFLite threads alike."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)


def read(kind: str, name: str) -> np.ndarray:
    from engine.images import load_image

    return load_image((FACES_DIR / kind / name).read_bytes(), max_pixels=10**8, max_bytes=10**8)


def median_timings(engine, clock, selfie: np.ndarray, reference, runs: int, mode: str) -> dict[str, float]:
    """`engine` times its stages with `clock`, the same clock that times the whole call here."""
    for _ in range(3):  # warm-up: first calls build TFLite interpreters and caches
        engine.apply_array(selfie, reference, mode=mode)
    samples: dict[str, list[float]] = {stage: [] for stage in COLUMNS}
    for _ in range(runs):
        start = clock()
        result = engine.apply_array(selfie, reference, mode=mode)
        samples["total"].append((clock() - start) * 1000.0)
        for stage in STAGES:
            samples[stage].append(result.timings_ms.get(stage, 0.0))
    return {stage: statistics.median(values) for stage, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--selfie", default="sm_source_02.jpg")
    parser.add_argument("--reference", default="elegant_ref_02.png")
    parser.add_argument("--mode", default="natural", choices=("natural", "full"))
    args = parser.parse_args()
    pin_to_one_core()

    from engine.embedded import EmbeddedEngine
    from engine.settings import EngineSettings

    settings = EngineSettings(threads=1)
    engine = EmbeddedEngine(settings)
    engines = {name: EmbeddedEngine(settings, engine.backend, clock) for name, clock in CLOCKS.items()}
    face = read("source", args.selfie)
    reference_photo = read("reference", args.reference)
    engine.prepare_reference(reference_photo)  # warm-up
    start = time.perf_counter()
    reference = engine.prepare_reference(reference_photo)
    reference_ms = (time.perf_counter() - start) * 1000.0

    selfies = {
        "512x512": cv2.resize(face, (512, 512), interpolation=cv2.INTER_CUBIC),
        "12 MP (4000x3000)": cv2.resize(face, (4000, 3000), interpolation=cv2.INTER_CUBIC),
    }
    print(f"selfie {args.selfie}, reference {args.reference}, {args.mode} mode, one core, median of", end=" ")
    print(f"{args.runs} runs (ms)")
    print(f"reference analysis (once per reference): {reference_ms:.1f}")
    print(f"{'image':<25}" + "".join(f"{s:>11}" for s in COLUMNS))
    for label, selfie in selfies.items():
        for clock_name, clock in CLOCKS.items():
            figures = median_timings(engines[clock_name], clock, selfie, reference, args.runs, args.mode)
            print(f"{label + ' ' + clock_name:<25}" + "".join(f"{figures[s]:>11.1f}" for s in COLUMNS))


if __name__ == "__main__":
    main()
