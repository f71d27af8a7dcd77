"""`[engine.diffusion]`: where the diffusion engine finds its weights, what it runs on and how it
samples. Torch-free, like `layout.py` and `availability.py`, so the default install can read it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DiffusionSampling(BaseModel):
    """How the diffusion engine samples: scheduler steps, the noise level it starts from (only
    steps x denoise steps run), and classifier-free guidance (makeup intensity) at user strength 0
    and 1, linear between."""

    model_config = ConfigDict(frozen=True)

    steps: int
    denoise: float
    min_guidance: float
    max_guidance: float


DIFFUSION_PRESETS: dict[str, DiffusionSampling] = {
    # img2img from the selfie's latents: 12 of 20 steps run; guidance follows the user's strength.
    "fast": DiffusionSampling(steps=20, denoise=0.6, min_guidance=1.0, max_guidance=2.0),
    # The published Stable-Makeup settings: 30 steps from pure noise at guidance 1.6 whatever the
    # strength (which then sets only how much of the generated look is composited).
    "faithful": DiffusionSampling(steps=30, denoise=1.0, min_guidance=1.6, max_guidance=1.6),
}


class DiffusionSettings(BaseModel):
    models_dir: Path = Path("models")
    device: str = "cuda"
    preset: Literal["fast", "faithful"] = "fast"
    # Each of these, when set, overrides the preset's value (max_guidance: guidance at strength 1).
    steps: int | None = Field(default=None, ge=1, le=200)
    denoise: float | None = Field(default=None, ge=0.0, le=1.0)
    max_guidance: float | None = Field(default=None, ge=1.0, le=10.0)
    # Side of the square face crop the networks run on (Stable-Makeup was trained at 512).
    size: int = Field(default=512, ge=64, le=1024, multiple_of=64)
    # Same inputs give the same picture, so /strength changes only the strength.
    seed: int = 0
    # Refuse to start when weights or GPU are missing instead of falling back to the embedded engine.
    required: bool = False

    @property
    def sampling(self) -> DiffusionSampling:
        """The preset with this file's overrides applied."""
        fields = ("steps", "denoise", "max_guidance")
        overrides = {name: value for name in fields if (value := getattr(self, name)) is not None}
        return DIFFUSION_PRESETS[self.preset].model_copy(update=overrides)
