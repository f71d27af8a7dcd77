"""Peak memory and time of `facelab apply` on the most extreme files the gate sees, on one core.

    python bench/hostile.py

Each file is written to a temporary folder and given as the selfie (the reference is a shared face
photo) to a fresh `facelab apply` pinned to CPU 0; the figures are that process's own: peak resident
memory (getrusage of the child), wall time and CPU time (user + system), model loading included.
The long strips are the issue's; the others are the largest the gate accepts (40 megapixels, at the
10:1 shape limit and square, blank so every face search pass runs, and one with a face).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO_ROOT)  # run as a script: the repository, not bench/, comes first

from tests.hostile_images import grey_png  # noqa: E402

FACES_DIR = Path(os.environ.get("FACELAB_FACES_DIR", REPO_ROOT.parent / "shared/data/faces"))
REFERENCE = FACES_DIR / "reference" / "elegant_ref_02.png"


def face_on_strip(width: int, height: int) -> bytes:
    """A shared selfie scaled to the strip's height, on a grey strip of the given size."""
    face = Image.open(FACES_DIR / "source" / "sm_source_01.jpg").convert("RGB").resize((height, height))
    canvas = np.full((height, width, 3), 128, np.uint8)
    canvas[:, (width - height) // 2 : (width + height) // 2] = np.asarray(face)
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


FILES: dict[str, Callable[[], bytes]] = {
    "1x20000 PNG (refused)": lambda: grey_png(1, 20000),
    "20000x1000 PNG (refused)": lambda: grey_png(20000, 1000),
    "1x100000 PNG (refused)": lambda: grey_png(1, 100000),
    "20000x2000 blank PNG (40 MP, 10:1)": lambda: grey_png(20000, 2000),
    "6324x6324 blank PNG (40 MP)": lambda: grey_png(6324, 6324),
    "20000x2000 PNG with a face (40 MP, 10:1)": lambda: face_on_strip(20000, 2000),
}


def measure(selfie: Path, output: Path) -> tuple[int, float, float, float, str]:
    """Exit status, peak RSS (MB), wall and CPU seconds, and the last line it printed."""
    command = [sys.executable, "-m", "facelab", "apply", str(selfie), str(REFERENCE), "-o", str(output)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=pin_to_cpu0
    )
    assert child.stdout is not None
    said = child.stdout.read().decode(errors="replace").strip().splitlines()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return child.returncode, usage.ru_maxrss / 1024, wall, usage.ru_utime + usage.ru_stime, said[-1]


def pin_to_cpu0() -> None:
    os.sched_setaffinity(0, {0})


def main() -> None:
    print(f"{'file':42} {'exit':>4} {'peak MB':>8} {'wall s':>7} {'cpu s':>6}  answer")
    with tempfile.TemporaryDirectory() as folder:
        for name, build in FILES.items():
            selfie = Path(folder) / "selfie.png"
            selfie.write_bytes(build())
            status, peak, wall, cpu, said = measure(selfie, Path(folder) / "out.jpg")
            print(f"{name:42} {status:>4} {peak:>8.0f} {wall:>7.2f} {cpu:>6.2f}  {said[:90]}")


if __name__ == "__main__":
    main()
