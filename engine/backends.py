"""Build the engine named by `settings.engine.backend`, falling back to the embedded one when the
diffusion engine cannot run here (unless `engine.diffusion.required` is set)."""

from __future__ import annotations

import logging

from engine.api import MakeupEngine
from engine.diffusion.availability import unavailable_reason
from engine.embedded import EmbeddedEngine
from engine.settings import EngineSettings

log = logging.getLogger(__name__)


class EngineUnavailableError(RuntimeError):
    """The configured engine cannot start here and falling back is not allowed."""


def create_engine(settings: EngineSettings) -> MakeupEngine:
    embedded = EmbeddedEngine(settings)
    if settings.backend == "embedded":
        return embedded
    reason = unavailable_reason(settings.diffusion)
    if reason is not None:
        if settings.diffusion.required:
            raise EngineUnavailableError(
                f"diffusion engine required (engine.diffusion.required) but {reason}"
            )
        log.warning("diffusion engine unavailable: %s; falling back to the embedded CPU engine", reason)
        return embedded
    from engine.diffusion.engine import DiffusionEngine  # imports torch: only on this path

    return DiffusionEngine.from_settings(settings, compositor=embedded)
