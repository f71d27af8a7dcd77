"""`facelab serve` wiring: storage, engine process, queue and core come up, the configured platforms
(the registry: the platform sections of the settings) are started, and on stop the queued jobs are
delivered before the adapters are stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pydantic
import pytest
from pydantic import ConfigDict, Field, SecretStr

from bot.core import Core
from bot.ports import Adapter, Origin, PlatformSettings
from bot.queue import LocalJobQueue
from bot.settings import AccessSettings, BotConfig, QueueSettings
from bot.telegram.settings import TelegramSettings
from bot.web.settings import WebSettings
from engine.api import MakeupRequest, MakeupResult
from facelab.commands.serve import adapters_for, serve
from facelab.settings import DatabaseSettings, Settings
from storage import Storage
from tests.conftest import face_path
from tests.fake_telegram import TOKEN
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


class LoopbackSettings(PlatformSettings):
    """A platform of the test's own: its section, configured or not, is all serve needs to know."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    enabled: bool = True
    built: list[LoopbackAdapter] = Field(default_factory=list)  # every adapter serve had it build

    def configured(self) -> bool:
        return self.enabled

    def build(self, config: BotConfig, core: Core) -> Adapter:
        self.built.append(LoopbackAdapter(core))
        return self.built[-1]


class WithLoopback(Settings):
    """Adding a platform: its section, in one line."""

    loopback: LoopbackSettings = LoopbackSettings()


def settings_for(tmp_path: Path, **loopback: bool) -> WithLoopback:
    return WithLoopback(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"),
        queue=QueueSettings(drain_timeout_s=60),
        loopback=LoopbackSettings(**loopback),
    )


@pytest.mark.slow  # the real engine process on the shared photos
async def test_serve_drains_queued_jobs_before_stopping_its_adapters(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    adapters = settings.loopback.built
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop))
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
    assert adapters == [adapter]  # and no web playground: a configured platform leaves it out


def test_the_platform_registry_is_the_settings_platform_sections() -> None:
    settings = WithLoopback(access=AccessSettings(admins=["loopback:7", "telegram:12"]))
    assert list(settings.platforms()) == ["telegram", "discord", "web", "loopback"]
    # access ids name a registered platform, the added one included
    with pytest.raises(pydantic.ValidationError, match="is not one of telegram, discord, web"):
        Settings(access=AccessSettings(deny=["telegrm:12"]))


@pytest.mark.parametrize(
    ("loopback", "telegram", "web", "running"),
    [
        (False, False, False, ["web"]),  # nothing configured: the playground, to try something
        (True, False, False, ["loopback"]),
        (True, True, False, ["telegram", "loopback"]),
        (True, False, True, ["web", "loopback"]),  # asked for (--web): next to the others
    ],
)
async def test_serve_runs_the_configured_platforms_or_else_the_web_playground(
    tmp_path: Path, loopback: bool, telegram: bool, web: bool, running: list[str]
) -> None:
    settings = settings_for(tmp_path, enabled=loopback).model_copy(
        update={
            "telegram": TelegramSettings(token=SecretStr(TOKEN) if telegram else None),
            "web": WebSettings(enabled=web),
        }
    )
    storage = await Storage.open(settings.database.url)
    try:
        core = Core(settings, LocalJobQueue(NeverRuns(), max_size=1, per_user=1), storage)
        assert [name for name, _ in adapters_for(settings, core)] == running
    finally:
        await storage.close()


class NeverRuns:
    async def run(self, request: MakeupRequest) -> MakeupResult:
        raise AssertionError("no job is submitted")
