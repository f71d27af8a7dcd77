"""Time the diffusion engine per stage: face detection, encoders, each denoising step, VAE decode and
identity compositing, as medians over several runs after a warm-up.

With every weight file present under --models-dir it measures the real Stable-Makeup networks on
--device. Otherwise it writes tiny random-weight models in the same layout to a temporary folder: on a
CPU those cost next to nothing, so the figures show the overhead around the networks (scheduler,
pre/post-processing, ControlNet/UNet call plumbing, compositing).

    python bench/diffusion.py                                # real weights on cuda, or tiny on cpu
    python bench/diffusion.py --device cuda --steps 20 --denoise 0.6 --runs 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a benchmark never downloads anything
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import torch

from engine.diffusion.engine import DiffusionEngine
from engine.diffusion.layout import ModelLayout
from engine.diffusion.pipeline import StableMakeupPipeline
from engine.embedded import EmbeddedEngine
from engine.images import load_image
from facelab.settings import DiffusionSettings, EngineSettings
from tests.diffusion_models import write_tiny_models

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACELAB_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, help="crop side (default 512 real, 64 tiny)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--denoise", type=float, default=0.6)
    parser.add_argument("--strength", type=float, default=0.7)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenCV CPU threads")
    parser.add_argument("--selfie", type=Path, default=FACES / "source" / "sm_source_01.jpg")
    parser.add_argument("--reference", type=Path, default=FACES / "reference" / "sm_ref_01.jpg")
    return parser.parse_args()


def describe(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))}, float16"
    return f"CPU, {torch.get_num_threads()} torch thread(s), float32"


def print_table(runs: list[dict[str, float]], title: str) -> None:
    print(title)
    stages = list(runs[0])
    for stage in stages:
        print(f"  {stage:<14} {statistics.median(run[stage] for run in runs):9.1f} ms")
    steps = [stage for stage in stages if stage.startswith("step_")]
    per_step = statistics.median(run[stage] for run in runs for stage in steps)
    total = statistics.median(sum(run.values()) for run in runs)
    print(f"  {'per step':<14} {per_step:9.1f} ms  ({len(steps)} steps)")
    print(f"  {'total':<14} {total:9.1f} ms")


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        models_dir, label, size = args.models_dir, "published weights", args.size or 512
        if ModelLayout(args.models_dir).missing():
            models_dir, label, size = Path(scratch), "TINY random models (overhead only)", args.size or 64
            write_tiny_models(models_dir)
        diffusion = DiffusionSettings(
            models_dir=models_dir, device=args.device, size=size, steps=args.steps, denoise=args.denoise
        )
        settings = EngineSettings(backend="diffusion", threads=args.threads, diffusion=diffusion)
        pipeline = StableMakeupPipeline.from_pretrained(models_dir, args.device)
        engine = DiffusionEngine(settings, pipeline, EmbeddedEngine(settings))
        limits = {"max_pixels": settings.max_pixels, "max_bytes": settings.max_bytes}
        selfie = load_image(args.selfie.read_bytes(), **limits)
        reference = load_image(args.reference.read_bytes(), **limits)

        def run_once() -> dict[str, float]:
            return engine.apply_array(selfie, reference, strength=args.strength).timings_ms

        run_once()  # warm-up: kernels, allocator, caches
        runs = [run_once() for _ in range(args.runs)]
    title = (
        f"diffusion engine, {label}, {describe(args.device)}: {size}x{size} crop, {args.steps} steps at "
        f"denoise {args.denoise}, strength {args.strength}, selfie {selfie.shape[1]}x{selfie.shape[0]}, "
        f"median of {args.runs} runs"
    )
    print_table(runs, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
