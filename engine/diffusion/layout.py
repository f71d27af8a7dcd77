"""Where the diffusion engine's weights live under `models/`, and which of them are present.

Torch-free on purpose: `facelab models check` and the engine's fall-back decision use it on installs
without the `diffusion` extra. The layout follows the published Stable-Makeup release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAKEUP_ENCODER_FILE = "pytorch_model.bin"
CONTENT_CONTROLNET_FILE = "pytorch_model_1.bin"
STRUCTURE_CONTROLNET_FILE = "pytorch_model_2.bin"

STABLE_MAKEUP_SOURCE = "the Stable-Makeup release linked from https://github.com/Xiaojiu-z/Stable-Makeup"
SD15_SOURCE = "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5 (diffusers folder layout)"
CLIP_SOURCE = "https://huggingface.co/openai/clip-vit-large-patch14 (config.json is what is read)"


def _diffusers_weights(subfolder: str) -> tuple[str, ...]:
    return (f"{subfolder}/diffusion_pytorch_model.safetensors", f"{subfolder}/diffusion_pytorch_model.bin")


@dataclass(frozen=True)
class WeightItem:
    """One file the engine reads (any of `paths`, first preferred), what it is, and where to get it."""

    paths: tuple[Path, ...]
    what: str
    source: str

    @property
    def path(self) -> Path:
        return next((p for p in self.paths if p.is_file()), self.paths[0])

    @property
    def present(self) -> bool:
        return any(p.is_file() for p in self.paths)


@dataclass(frozen=True)
class ModelLayout:
    """Paths of the published checkpoints inside one models directory."""

    root: Path

    @property
    def stable_makeup_dir(self) -> Path:
        return self.root / "stablemakeup"

    @property
    def sd15_dir(self) -> Path:
        return self.root / "stable-diffusion-v1-5"

    @property
    def clip_dir(self) -> Path:
        return self.root / "image_encoder_l"

    @property
    def makeup_encoder(self) -> Path:
        return self.stable_makeup_dir / MAKEUP_ENCODER_FILE

    @property
    def content_controlnet(self) -> Path:
        return self.stable_makeup_dir / CONTENT_CONTROLNET_FILE

    @property
    def structure_controlnet(self) -> Path:
        return self.stable_makeup_dir / STRUCTURE_CONTROLNET_FILE

    def items(self) -> list[WeightItem]:
        sd_parts: list[tuple[tuple[str, ...], str]] = [
            (("unet/config.json",), "SD1.5 UNet config"),
            (_diffusers_weights("unet"), "SD1.5 UNet weights"),
            (("vae/config.json",), "SD1.5 VAE config"),
            (_diffusers_weights("vae"), "SD1.5 VAE weights"),
            (("text_encoder/config.json",), "SD1.5 text encoder config (empty-prompt embedding)"),
            (
                ("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),
                "SD1.5 text encoder weights",
            ),
            (("tokenizer/vocab.json",), "SD1.5 tokenizer vocabulary"),
            (("tokenizer/merges.txt",), "SD1.5 tokenizer merges"),
            (("scheduler/scheduler_config.json",), "SD1.5 noise schedule"),
        ]
        makeup = "makeup encoder (CLIP tower, resampler, UNet makeup key/value projections)"
        return [
            WeightItem((self.makeup_encoder,), makeup, STABLE_MAKEUP_SOURCE),
            WeightItem(
                (self.content_controlnet,), "content ControlNet (fed the selfie)", STABLE_MAKEUP_SOURCE
            ),
            WeightItem(
                (self.structure_controlnet,),
                "structure ControlNet (fed the landmark drawing)",
                STABLE_MAKEUP_SOURCE,
            ),
            *(
                WeightItem(tuple(self.sd15_dir / rel for rel in rels), what, SD15_SOURCE)
                for rels, what in sd_parts
            ),
            WeightItem((self.clip_dir / "config.json",), "CLIP ViT-L/14 vision config", CLIP_SOURCE),
        ]

    def missing(self) -> list[WeightItem]:
        return [item for item in self.items() if not item.present]
