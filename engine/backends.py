"""The makeup engines `engine.backend` can name, as a name → `Backend` registry: how to build each, why
it cannot run here, and what `facelab doctor` says of it. A new backend is its own folder plus one
entry in `BACKENDS`; the setting's allowed names and doctor's lines follow from it.

Light on purpose: `engine.settings` reads the names, so each factory imports its engine (cv2, torch)
only when called."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.diffusion.availability import unavailable_reason as diffusion_unavailable_reason

if TYPE_CHECKING:
    from engine.api import MakeupEngine
    from engine.settings import EngineSettings

log = logging.getLogger(__name__)

FALLBACK = "embedded"  # runs anywhere: stands in for a backend that cannot run here


class EngineUnavailableError(RuntimeError):
    """The configured engine cannot start here and falling back is not allowed."""


@dataclass(frozen=True)
class Backend:
    """A makeup engine `engine.backend` can name."""

    build: Callable[[EngineSettings], MakeupEngine]
    # None when it can run here; otherwise one sentence saying what is missing and how to fix it.
    unavailable_reason: Callable[[EngineSettings], str | None]
    # `facelab doctor`'s line when it can run: what was found ready.
    ready: Callable[[EngineSettings], str]
    # True: refuse to start when it cannot run, instead of falling back to the embedded engine.
    required: Callable[[EngineSettings], bool]
    # Where doctor sends an operator whose backend cannot run.
    doctor_hint: str = ""


def _build_embedded(settings: EngineSettings) -> MakeupEngine:
    from engine.embedded import EmbeddedEngine

    return EmbeddedEngine(settings)


def _build_diffusion(settings: EngineSettings) -> MakeupEngine:
    from engine.diffusion.engine import DiffusionEngine  # imports torch: only on this path
    from engine.embedded import EmbeddedEngine

    return DiffusionEngine.from_settings(settings, compositor=EmbeddedEngine(settings))


BACKENDS: dict[str, Backend] = {
    "embedded": Backend(
        build=_build_embedded,
        unavailable_reason=lambda _settings: None,
        ready=lambda _settings: "needs no downloaded weights",
        required=lambda _settings: False,
    ),
    "diffusion": Backend(
        build=_build_diffusion,
        unavailable_reason=lambda settings: diffusion_unavailable_reason(settings.diffusion),
        ready=lambda settings: f"{settings.diffusion.models_dir}: every weight file present, device ready",
        required=lambda settings: settings.diffusion.required,
        doctor_hint="see `facelab models check`",
    ),
}


def create_engine(settings: EngineSettings) -> MakeupEngine:
    """The engine `settings.backend` names, or the embedded one when that cannot run here (unless the
    backend is required, which raises `EngineUnavailableError`)."""
    name = settings.backend
    backend = BACKENDS[name]
    reason = backend.unavailable_reason(settings)
    if reason is None:
        return backend.build(settings)
    if backend.required(settings):
        raise EngineUnavailableError(f"{name} engine required (engine.{name}.required) but {reason}")
    log.warning("%s engine unavailable: %s; falling back to the embedded CPU engine", name, reason)
    return BACKENDS[FALLBACK].build(settings)
