"""`facelab serve` wiring: storage, engine process, queue and core come up, a configured adapter is
started, and on stop the queued jobs are delivered before the adapter is stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.core import Core
from bot.ports import Origin
from bot.settings import QueueSettings
from facelab.commands.serve import Adapter, serve
from facelab.settings import DatabaseSettings, Settings
from tests.conftest import face_path
from tests.recording_messenger import RecordingMessenger


class LoopbackAdapter:
    """Stands in for a chat platform: its users are driven by the test through `core`."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.messenger = RecordingMessenger()
        core.add_messenger(self.messenger)
        self.events: list[str] = []
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.events.append("start")
        self.started.set()

    async def stop(self) -> None:
        self.events.append(f"stop after {len(self.messenger.images())} results")


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"),
        queue=QueueSettings(drain_timeout_s=60),
    )


async def test_serve_drains_queued_jobs_before_stopping_its_adapters(tmp_path: Path) -> None:
    adapters: list[LoopbackAdapter] = []

    def loopback(settings: Settings, core: Core) -> Adapter:
        adapters.append(LoopbackAdapter(core))
        return adapters[-1]

    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings_for(tmp_path), stop, {"loopback": loopback}))
    async with asyncio.timeout(120):
        while not adapters or not adapters[0].started.is_set():
            await asyncio.sleep(0.05)
    adapter = adapters[0]
    selfie = face_path("sm_source_02.jpg").read_bytes()
    reference = face_path("elegant_ref_02.png").read_bytes()
    for name in ("ann", "bob", "cid"):
        await adapter.core.on_pair(Origin("test", name, name), selfie, reference)

    stop.set()  # as SIGTERM would, with all three jobs still queued or running
    assert await asyncio.wait_for(server, 120) == 0
    assert {result.chat_id for result in adapter.messenger.images()} == {"ann", "bob", "cid"}
    assert adapter.events == ["start", "stop after 3 results"]


async def test_serve_without_any_configured_platform_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    status = await serve(settings_for(tmp_path), asyncio.Event(), {"none": lambda settings, core: None})
    assert status == 2
    assert "no chat platform is configured" in caplog.text
