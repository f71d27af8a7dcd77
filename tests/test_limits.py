"""bot/limits.py against real storage (SQLite) and real Redis: what survives a restart, what two bot
processes sharing Redis see, quotas at midnight, and that an unreachable Redis does not stop try-ons.
The same limits through the Telegram path are in tests/test_hardening_e2e.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from limits.aio.storage import MemoryStorage

from bot.limits import Gatekeeper, Requester, rate_storage_for
from bot.settings import AccessSettings, LimitsSettings, QueueSettings
from storage import Storage, UsageRecord, UsageStatus

ALICE = Requester("telegram", "1", "1", group=False)
BOB = Requester("telegram", "2", "2", group=False)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}")
    yield storage
    await storage.close()


def redis_settings(redis_url: str, prefix: str) -> QueueSettings:
    return QueueSettings(backend="redis", redis_url=redis_url, redis_prefix=prefix)


def record(requester: Requester, at: datetime, status: UsageStatus = UsageStatus.OK) -> UsageRecord:
    return UsageRecord(
        job_id=uuid.uuid4().hex,
        platform=requester.platform,
        user_id=requester.user_id,
        chat_id=requester.chat_id,
        chat_type="group" if requester.group else "private",
        status=status,
        created_at=at,
    )


async def admitted(gatekeeper: Gatekeeper, requester: Requester, times: int) -> list[str | None]:
    """The refusal kind of each of `times` consecutive requests (None: admitted)."""
    kinds = []
    for _ in range(times):
        refusal = await gatekeeper.admit(requester)
        kinds.append(refusal.kind if refusal else None)
    return kinds


async def test_rate_window_is_shared_by_bot_processes_through_redis(storage: Storage, redis_url: str) -> None:
    limits = LimitsSettings(user_per_minute=3, user_per_day=0)
    prefix = f"test-limits-{uuid.uuid4().hex}"
    # Two bot processes: each has its own Gatekeeper and Redis client, one Redis.
    first, second = (
        Gatekeeper(limits, AccessSettings(), storage, rate_storage_for(redis_settings(redis_url, prefix)))
        for _ in range(2)
    )
    kinds = [
        *await admitted(first, ALICE, 2),
        *await admitted(second, ALICE, 2),
        *await admitted(first, ALICE, 1),
    ]
    assert kinds == [None, None, None, "rate_limit", "rate_limit"]
    assert await admitted(second, BOB, 3) == [None, None, None]


async def test_stored_usage_keeps_the_rate_limit_across_a_restart(storage: Storage) -> None:
    limits = LimitsSettings(user_per_minute=2, user_per_day=0)
    now = datetime.now(UTC)
    for _ in range(2):
        storage.record_usage(record(ALICE, now - timedelta(seconds=20)))
    assert await storage.flush()
    # A fresh process: its in-memory window is empty, the stored last minute is not.
    restarted = Gatekeeper(limits, AccessSettings(), storage, MemoryStorage())
    refusal = await restarted.admit(ALICE)
    assert refusal is not None and refusal.kind == "rate_limit"
    assert await restarted.admit(BOB) is None


async def test_daily_quota_resets_at_midnight_utc(storage: Storage) -> None:
    now = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    clock = [now]
    gatekeeper = Gatekeeper(
        LimitsSettings(user_per_minute=0, user_per_day=2),
        AccessSettings(),
        storage,
        MemoryStorage(),
        lambda: clock[0],
    )
    for minutes_ago in (5, 50):  # two jobs this evening
        storage.record_usage(record(ALICE, now - timedelta(minutes=minutes_ago)))
    storage.record_usage(record(ALICE, now - timedelta(days=1)))  # yesterday: does not count
    storage.record_usage(record(ALICE, now - timedelta(minutes=1), UsageStatus.REJECTED))  # never counts
    assert await storage.flush()

    refusal = await gatekeeper.admit(ALICE)
    assert refusal is not None and refusal.kind == "daily_quota"
    assert "midnight UTC, in 30 min" in refusal.user_message
    clock[0] = now + timedelta(minutes=31)  # 00:01 the next day
    assert await gatekeeper.admit(ALICE) is None


async def test_group_limits_count_the_whole_chat(storage: Storage) -> None:
    limits = LimitsSettings(user_per_minute=0, user_per_day=0, chat_per_minute=2, chat_per_day=0)
    gatekeeper = Gatekeeper(limits, AccessSettings(), storage, MemoryStorage())
    members = [Requester("telegram", str(user), "-100", group=True) for user in (1, 2, 3)]
    kinds = [(await gatekeeper.admit(member)) for member in members]
    assert [refusal.kind if refusal else None for refusal in kinds] == [None, None, "chat_rate_limit"]
    # The same users in private chats are not limited by the group's window.
    assert await gatekeeper.admit(Requester("telegram", "3", "3", group=False)) is None


async def test_group_daily_quota_is_counted_from_storage(storage: Storage) -> None:
    limits = LimitsSettings(user_per_minute=0, user_per_day=0, chat_per_minute=0, chat_per_day=2)
    gatekeeper = Gatekeeper(limits, AccessSettings(), storage, MemoryStorage())
    members = [Requester("telegram", str(user), "-100", group=True) for user in (1, 2)]
    for member in members:
        storage.record_usage(record(member, datetime.now(UTC)))
    assert await storage.flush()
    refusal = await gatekeeper.admit(Requester("telegram", "3", "-100", group=True))
    assert refusal is not None and refusal.kind == "chat_daily_quota"
    assert "this group's 2 try-ons" in refusal.user_message


async def test_unreachable_redis_admits_and_keeps_stored_quotas(storage: Storage) -> None:
    dead = QueueSettings(backend="redis", redis_url="redis://127.0.0.1:1/0")
    gatekeeper = Gatekeeper(
        LimitsSettings(user_per_minute=1, user_per_day=1), AccessSettings(), storage, rate_storage_for(dead)
    )
    assert await admitted(gatekeeper, ALICE, 2) == [None, None]  # no per-minute window without Redis
    storage.record_usage(record(ALICE, datetime.now(UTC)))
    assert await storage.flush()
    refusal = await gatekeeper.admit(ALICE)
    assert refusal is not None and refusal.kind == "daily_quota"


async def test_access_lists_and_bans(storage: Storage) -> None:
    access = AccessSettings(allow=["telegram:1", "telegram:2"], deny=["telegram:2"])
    gatekeeper = Gatekeeper(LimitsSettings(), access, storage, MemoryStorage())
    outsider = Requester("telegram", "3", "3", group=False)
    same_id_elsewhere = Requester("discord", "1", "1", group=False)
    assert await gatekeeper.admit(ALICE) is None
    for requester in (BOB, outsider, same_id_elsewhere):
        refusal = await gatekeeper.admit(requester)
        assert refusal is not None and refusal.kind == "not_allowed"

    await storage.set_banned("telegram", "1", True, "spam")
    refusal = await gatekeeper.admit(ALICE)
    assert refusal is not None and refusal.kind == "banned"
    await storage.set_banned("telegram", "1", False)
    assert await gatekeeper.admit(ALICE) is None
