"""Time the diffusion engine per image for each sampling preset (fast img2img, faithful from noise),
with per-stage medians: face detection, encoders, denoising steps, VAE decode, compositing.

Which networks it runs:
- every weight file present under --models-dir: the real Stable-Makeup networks on --device;
- --real-size: random weights at the published sizes (SD1.5 UNet and VAE, two ControlNets shaped
  after the UNet, a CLIP ViT-L/14 makeup encoder), built in memory, nothing read or downloaded: the
  true cost of the networks without the weights (float16 and SDPA on a GPU);
- otherwise tiny random-weight models in the published layout, written to a temporary folder and
  loaded by the real loader: on a CPU they cost next to nothing, so the figures show the overhead
  around the networks (scheduler, pre/post-processing, call plumbing, compositing).

    python bench/diffusion.py                           # both presets: real weights, or tiny on cpu
    python bench/diffusion.py --real-size --runs 3      # on a GPU: seconds per 512x512 image
    python bench/diffusion.py --real-size --device cpu --steps 1 --runs 1 --presets fast
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a benchmark never downloads anything
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    MultiControlNetModel,
    UNet2DConditionModel,
)
from transformers import CLIPVisionConfig

from engine.diffusion.engine import DiffusionEngine
from engine.diffusion.layout import ModelLayout
from engine.diffusion.modules import MakeupEncoder, install_makeup_processors
from engine.diffusion.pipeline import StableMakeupPipeline, place
from engine.diffusion.settings import DIFFUSION_PRESETS, DiffusionSettings
from engine.embedded import EmbeddedEngine
from engine.images import load_image
from engine.settings import EngineSettings
from tests.diffusion_models import write_tiny_models

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACELAB_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--real-size", action="store_true", help="random weights at the published sizes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, help="crop side (default 512, tiny models 64)")
    parser.add_argument("--presets", default="fast,faithful", help="comma-separated preset names")
    parser.add_argument("--steps", type=int, help="override the presets' scheduler steps")
    parser.add_argument("--denoise", type=float, help="override the presets' denoise")
    parser.add_argument("--mode", default="natural", choices=("natural", "full"))
    parser.add_argument("--strength", type=float, default=0.7)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenCV CPU threads")
    parser.add_argument("--selfie", type=Path, default=FACES / "source" / "sm_source_01.jpg")
    parser.add_argument("--reference", type=Path, default=FACES / "reference" / "sm_ref_01.jpg")
    args = parser.parse_args()
    unknown = set(args.presets.split(",")) - DIFFUSION_PRESETS.keys()
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(sorted(unknown))}; known: {', '.join(DIFFUSION_PRESETS)}")
    return args


def random_published_pipeline(device: str) -> StableMakeupPipeline:
    """Random weights at the published Stable-Makeup sizes, built directly on `device`."""
    torch_device = torch.device(device)
    dtype = torch.float16 if torch_device.type == "cuda" else torch.float32
    with torch_device:  # initialising 2 billion weights on the GPU takes seconds, on a CPU minutes
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # SD1.5; the rest are defaults
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            sample_size=512,
        )
        controlnet = MultiControlNetModel([ControlNetModel.from_unet(unet) for _ in range(2)])
        clip_l14 = CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
        )
        encoder = MakeupEncoder(clip_l14)
        install_makeup_processors(unet, token_dim=clip_l14.hidden_size)
        empty_text = torch.randn(1, 77, 768)  # the SD1.5 text encoder's output shape for ""
    for module in (unet, vae, controlnet, encoder):
        place(module, torch_device, dtype)
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        set_alpha_to_one=False,
        clip_sample=False,
    )
    return StableMakeupPipeline(vae, unet, controlnet, encoder, scheduler, empty_text)


def describe(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))}, float16, SDPA attention"
    return f"CPU, {torch.get_num_threads()} torch thread(s), float32"


def print_table(runs: list[dict[str, float]], wall_ms: list[float], title: str) -> None:
    print(title)
    stages = list(runs[0])
    steps = [stage for stage in stages if stage.startswith("step_")]
    for stage in stages:
        if stage not in steps[1:-1]:  # first and last step shown; the rest are in "per step"
            print(f"  {stage:<14} {statistics.median(run[stage] for run in runs):9.1f} ms")
    if steps:
        per_step = statistics.median(run[stage] for run in runs for stage in steps)
        print(f"  {'per step':<14} {per_step:9.1f} ms  ({len(steps)} steps)")
    print(f"  {'per image':<14} {statistics.median(wall_ms):9.1f} ms  (wall clock, median)")


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        models_dir, size = args.models_dir, args.size or 512
        if args.real_size:
            label = "RANDOM weights at the published sizes"
            build_start = time.perf_counter()
            pipeline = random_published_pipeline(args.device)
            print(f"built random published-size networks in {time.perf_counter() - build_start:.1f} s")
        else:
            label = "published weights"
            if ModelLayout(args.models_dir).missing():
                models_dir, label, size = Path(scratch), "TINY random models (overhead only)", args.size or 64
                write_tiny_models(models_dir)
            pipeline = StableMakeupPipeline.from_pretrained(models_dir, args.device)
        base = EngineSettings(backend="diffusion", threads=args.threads)
        compositor = EmbeddedEngine(base)
        limits = {"max_pixels": base.max_pixels, "max_bytes": base.max_bytes}
        selfie = load_image(args.selfie.read_bytes(), **limits)
        reference = load_image(args.reference.read_bytes(), **limits)

        for preset in args.presets.split(","):
            diffusion = DiffusionSettings(
                models_dir=models_dir,
                device=args.device,
                size=size,
                preset=preset,
                steps=args.steps,
                denoise=args.denoise,
            )
            settings = base.model_copy(update={"diffusion": diffusion})
            engine = DiffusionEngine(settings, pipeline, compositor)
            runs: list[dict[str, float]] = []
            wall_ms: list[float] = []
            for run in range(args.runs + 1):  # the first is a warm-up: kernels, allocator, caches
                start = time.perf_counter()
                timings = engine.apply_array(
                    selfie, reference, strength=args.strength, mode=args.mode
                ).timings_ms
                if run:
                    wall_ms.append((time.perf_counter() - start) * 1000.0)
                    runs.append(timings)
            sampling = diffusion.sampling
            print_table(
                runs,
                wall_ms,
                f"preset {preset}, {label}, {describe(args.device)}: {size}x{size} crop, "
                f"{sampling.steps} steps at denoise {sampling.denoise}, {args.mode} mode, strength "
                f"{args.strength}, selfie {selfie.shape[1]}x{selfie.shape[0]}, median of {args.runs} runs",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
