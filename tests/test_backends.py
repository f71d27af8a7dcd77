"""The engine backend registry: `engine.backend` accepts exactly its names, and `create_engine` builds
the named backend, falls back to the embedded one when it cannot run here, or refuses when required."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.api import MakeupEngine
from engine.backends import BACKENDS, Backend, EngineUnavailableError, create_engine
from engine.embedded import EmbeddedEngine
from engine.settings import EngineSettings


class ProbeEngine(EmbeddedEngine):
    """What the probe backend builds, told apart from the embedded fallback by its type."""


def probe_backend(reason: str | None, *, required: bool) -> Backend:
    def build(settings: EngineSettings) -> MakeupEngine:
        return ProbeEngine(settings)

    return Backend(
        build=build,
        unavailable_reason=lambda _settings: reason,
        ready=lambda _settings: "ready",
        required=lambda _settings: required,
    )


def test_unknown_backend_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValidationError, match="unknown engine backend 'gpu'; known: embedded, diffusion"):
        EngineSettings(backend="gpu")


def test_every_registered_name_is_accepted() -> None:
    assert [EngineSettings(backend=name).backend for name in BACKENDS] == list(BACKENDS)


def test_a_backend_that_can_run_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "probe", probe_backend(None, required=True))
    assert isinstance(create_engine(EngineSettings(backend="probe")), ProbeEngine)


def test_a_backend_that_cannot_run_falls_back_to_the_embedded_engine(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(BACKENDS, "probe", probe_backend("no probe card", required=False))
    with caplog.at_level("WARNING", logger="engine.backends"):
        engine = create_engine(EngineSettings(backend="probe"))
    assert type(engine) is EmbeddedEngine
    assert "probe engine unavailable: no probe card; falling back to the embedded CPU engine" in caplog.text


def test_a_required_backend_that_cannot_run_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "probe", probe_backend("no probe card", required=True))
    with pytest.raises(EngineUnavailableError, match=r"probe engine required .* but no probe card"):
        create_engine(EngineSettings(backend="probe"))
