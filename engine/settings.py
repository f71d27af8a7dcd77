"""`[engine]`: the makeup engine's own settings (image limits, working size, threads, which backend),
read by engine/ and handed to it by its callers; `facelab.settings` places them in the config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from engine.diffusion.settings import DiffusionSettings


class EngineSettings(BaseModel):
    backend: Literal["embedded", "diffusion"] = "embedded"
    max_pixels: int = 40_000_000
    max_bytes: int = 25 * 1024 * 1024
    working_size: int = 192
    job_timeout_s: float = 60.0
    threads: int = 1
    diffusion: DiffusionSettings = DiffusionSettings()
