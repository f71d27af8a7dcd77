"""Abuse limits: who may start a try-on, and how often. The conversation core asks `Gatekeeper.admit`
once per try-on, right before it queues the job; a `Refusal` carries what to tell the user.

Where each limit is counted, so it holds across restarts and across bot processes:
- access lists come from the settings; bans from storage (`/admin ban`);
- daily quotas count stored usage rows since midnight UTC (the database is shared by every process);
- per-minute rates use the `limits` library's moving window: in memory with the local queue, in Redis
  (atomic Lua scripts) with the Redis queue, so every bot process sees the same window. Stored usage
  of the last minute is checked as well, so a restart does not reset the window either.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.storage import Storage as RateStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from bot.settings import AccessSettings, BotConfig, LimitsSettings, QueueSettings
from storage import Storage
from storage.api import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requester:
    """Who asks for a try-on, and where. Ids are the platform's, as text."""

    platform: str
    user_id: str
    chat_id: str
    group: bool

    @property
    def key(self) -> str:
        """The "platform:user id" form the access settings use."""
        return f"{self.platform}:{self.user_id}"

    @property
    def user_key(self) -> tuple[str, str]:
        return (self.platform, self.user_id)

    @property
    def chat_key(self) -> tuple[str, str]:
        return (self.platform, self.chat_id)


@dataclass(frozen=True)
class Refusal:
    """A try-on that is not admitted. `kind` is recorded as usage.error_kind of a rejected row."""

    kind: str
    user_message: str


def rate_storage_for(queue: QueueSettings) -> RateStorage:
    """Where per-minute windows live: Redis when bot processes share a Redis queue (under the queue's
    key prefix, so deployments sharing a Redis keep apart), else memory."""
    if queue.backend == "redis":
        # redis-py's asyncio client is already a dependency of the Redis queue; no second client.
        return RedisStorage(
            f"async+{queue.redis_url}",  # limits' name for redis:// and rediss:// used from asyncio
            implementation="redispy",
            key_prefix=f"{queue.redis_prefix}:rate",
            wrap_exceptions=True,
        )
    return MemoryStorage()


class Gatekeeper:
    """Admits or refuses try-ons. `clock` gives the current UTC time (tests move it to tomorrow)."""

    def __init__(
        self,
        limits: LimitsSettings,
        access: AccessSettings,
        storage: Storage,
        rate_storage: RateStorage,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._limits = limits
        self._allow = frozenset(access.allow)
        self._deny = frozenset(access.deny)
        self._storage = storage
        self._rates = MovingWindowRateLimiter(rate_storage)
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: BotConfig, storage: Storage, clock: Callable[[], datetime] = utcnow
    ) -> Gatekeeper:
        return cls(settings.limits, settings.access, storage, rate_storage_for(settings.queue), clock)

    async def admit(self, requester: Requester, *, rerun: bool = False) -> Refusal | None:
        """None when the try-on may run (and then it counts toward the per-minute windows).
        `rerun`: the same photos again, counted in the re-run window instead of the try-on one."""
        return (
            self._check_access(requester)
            or await self._check_banned(requester)
            or await self._check_quotas(requester, rerun)
            or await self._take_rate_slots(requester, rerun)
        )

    def _check_access(self, requester: Requester) -> Refusal | None:
        if requester.key in self._deny or (self._allow and requester.key not in self._allow):
            return Refusal("not_allowed", "Sorry, this bot is not available to you.")
        return None

    async def _check_banned(self, requester: Requester) -> Refusal | None:
        if await self._storage.is_banned(requester.platform, requester.user_id):
            return Refusal("banned", "Sorry, you have been blocked from using this bot.")
        return None

    async def _check_quotas(self, requester: Requester, rerun: bool) -> Refusal | None:
        now = self._clock()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        limits, (platform, user_id) = self._limits, requester.user_key
        if limits.user_per_day:
            used = await self._storage.count_usage_since(platform, user_id, midnight)
            if used >= limits.user_per_day:
                return _quota_refusal("daily_quota", f"your {limits.user_per_day} try-ons", now)
        if requester.group and limits.chat_per_day:
            used = await self._storage.count_chat_usage_since(platform, requester.chat_id, midnight)
            if used >= limits.chat_per_day:
                return _quota_refusal("chat_daily_quota", f"this group's {limits.chat_per_day} try-ons", now)
        if limits.user_per_minute and not rerun:
            # The stored last minute: what an in-memory window forgets in a restart. Re-runs are
            # stored too; those the re-run window still holds are not new try-ons (after a restart
            # that window is empty, and the stored minute caps both kinds together).
            used = await self._storage.count_usage_since(platform, user_id, now - timedelta(minutes=1))
            if used - await self._reruns_in_window(requester) >= limits.user_per_minute:
                return _rate_refusal("rate_limit", limits.user_per_minute, now + timedelta(minutes=1))
        return None

    async def _reruns_in_window(self, requester: Requester) -> int:
        amount = self._limits.user_reruns_per_minute
        if not amount:
            return 0
        try:
            stats = await self._rates.get_window_stats(
                RateLimitItemPerMinute(amount), "rerun", *requester.user_key
            )
        except StorageError:
            return 0
        return amount - stats.remaining

    async def _take_rate_slots(self, requester: Requester, rerun: bool) -> Refusal | None:
        """Count this try-on in the user's try-on or re-run window, then the group's. Each hit is one
        atomic acquire in the store, so concurrent bot processes cannot both take the last slot."""
        windows: list[tuple[str, int, tuple[str, ...]]] = []
        if rerun and self._limits.user_reruns_per_minute:
            windows.append(
                ("rerun_limit", self._limits.user_reruns_per_minute, ("rerun", *requester.user_key))
            )
        elif not rerun and self._limits.user_per_minute:
            windows.append(("rate_limit", self._limits.user_per_minute, ("user", *requester.user_key)))
        if requester.group and self._limits.chat_per_minute:
            windows.append(("chat_rate_limit", self._limits.chat_per_minute, ("chat", *requester.chat_key)))
        try:
            for kind, amount, identifiers in windows:
                item = RateLimitItemPerMinute(amount)
                if not await self._rates.hit(item, *identifiers):
                    # The moving window's own clock is the wall clock, not self._clock.
                    reset_at = (await self._rates.get_window_stats(item, *identifiers)).reset_time
                    return _rate_refusal(kind, amount, datetime.fromtimestamp(math.ceil(reset_at), UTC))
        except StorageError as error:
            # Like the database: an unreachable Redis must not stop try-ons; the daily quotas still hold.
            log.warning("rate-limit store unreachable, admitting without the per-minute window: %r", error)
        return None


def _quota_refusal(kind: str, what: str, now: datetime) -> Refusal:
    reset = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return Refusal(
        kind,
        f"You have used {what} for today. The quota resets at midnight UTC, "
        f"in {_duration((reset - now).total_seconds())}.",
    )


_RATE_SUBJECTS = {
    "rate_limit": "You are sending try-ons",
    "rerun_limit": "You are re-running your photos",
    "chat_rate_limit": "This group is sending try-ons",
}


def _rate_refusal(kind: str, amount: int, lifts_at: datetime) -> Refusal:
    # A clock time rather than "wait 1 min": it stays true however late the message is read.
    return Refusal(
        kind,
        f"{_RATE_SUBJECTS[kind]} faster than I allow ({amount} a minute). "
        f"You can go on at {lifts_at:%H:%M:%S} UTC.",
    )


def _duration(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
