"""`[engine]`: the makeup engine's own settings (image limits, working size, threads, which backend),
read by engine/ and handed to it by its callers; `facelab.settings` places them in the config."""

from __future__ import annotations

from pydantic import BaseModel, field_validator

from engine.backends import BACKENDS
from engine.diffusion.settings import DiffusionSettings


class EngineSettings(BaseModel):
    # A name in engine.backends.BACKENDS.
    backend: str = "embedded"
    max_pixels: int = 40_000_000
    max_bytes: int = 25 * 1024 * 1024
    working_size: int = 192
    job_timeout_s: float = 60.0
    threads: int = 1
    diffusion: DiffusionSettings = DiffusionSettings()

    @field_validator("backend")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in BACKENDS:
            raise ValueError(f"unknown engine backend {name!r}; known: {', '.join(BACKENDS)}")
        return name
