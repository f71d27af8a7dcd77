"""Discord sharding for scale-out: a `facelab serve` process runs the shard its settings name."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from bot.core import Core
from bot.discord.adapter import DiscordAdapter
from bot.discord.settings import DiscordSettings
from bot.engine_process import EngineProcess
from bot.queue import LocalJobQueue
from facelab.settings import Settings
from storage import Storage
from tests.fake_discord import FakeDiscord


async def test_the_client_identifies_as_the_configured_shard(tmp_path: Path) -> None:
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}"},
        discord={"token": "fake-token", "shard_id": 1, "shard_count": 3},
    )
    storage = await Storage.open(settings.database.url)
    # The engine process is never started: identifying with the gateway runs no job.
    queue = LocalJobQueue(EngineProcess(settings.engine), max_size=1, per_user=1)
    adapter = DiscordAdapter(
        settings.discord, Core(settings, queue, storage), max_bytes=settings.engine.max_bytes
    )
    async with FakeDiscord() as fake:
        with fake.patched():
            await adapter.start()
            try:
                assert fake.identify is not None
                assert fake.identify["shard"] == [1, 3]
            finally:
                await adapter.stop()
    await storage.close()


def test_shard_settings_come_in_pairs_within_range() -> None:
    assert DiscordSettings().shard_id is None
    for bad in ({"shard_id": 0}, {"shard_count": 2}, {"shard_id": 2, "shard_count": 2}):
        with pytest.raises(pydantic.ValidationError):
            DiscordSettings(**bad)
