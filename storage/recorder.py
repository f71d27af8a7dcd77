"""Write-behind for usage records: try-ons never wait for (or fail on) the database.

Records go into a bounded in-memory buffer that one asyncio task writes, oldest first, retrying
with exponential backoff while the database is unreachable. A record that cannot be kept (buffer
full, rejected by the database, still unwritten at shutdown) is logged as structured data instead,
so nothing is lost silently."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from asyncpg import exceptions as pg_errors
from sqlalchemy import exc as sa_exc

from storage.api import StorageUnavailable, UsageRecord

log = logging.getLogger(__name__)

# asyncpg raises its own errors while connecting (SQLAlchemy wraps them only once connected).
OUTAGES: tuple[type[BaseException], ...] = (
    StorageUnavailable,
    OSError,  # refused, reset, timed out; also SQLite's unreadable paths from aiosqlite
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    pg_errors.PostgresConnectionError,
    pg_errors.OperatorInterventionError,  # shutting down, starting up
)


def is_outage(error: BaseException) -> bool:
    """True when the database is unreachable or restarting, i.e. retrying later can succeed."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OUTAGES)


def log_lost(record: UsageRecord, reason: str) -> None:
    fields = record.as_log()
    log.error("usage record not stored (%s): %s", reason, json.dumps(fields), extra={"usage_record": fields})


class UsageRecorder:
    def __init__(
        self,
        write: Callable[[UsageRecord], Awaitable[None]],
        *,
        capacity: int = 1000,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
    ) -> None:
        self._write = write
        self._capacity = capacity
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._buffer: deque[UsageRecord] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    def submit(self, record: UsageRecord) -> None:
        if len(self._buffer) >= self._capacity:
            log_lost(record, f"write buffer full ({self._capacity} records waiting for the database)")
            return
        self._buffer.append(record)
        self._idle.clear()
        self._wakeup.set()

    def discard(self, keep: Callable[[UsageRecord], bool]) -> None:
        """Drop waiting records for which `keep` is false (e.g. a user who asked to be forgotten)."""
        self._buffer = deque(record for record in self._buffer if keep(record))

    async def flush(self, timeout: float) -> bool:
        """Wait until every submitted record is written; False when `timeout` seconds were not enough."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float) -> None:
        """Write what is waiting (up to `timeout` seconds), then stop; log whatever is left."""
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._buffer:
            log_lost(self._buffer.popleft(), "database still unreachable at shutdown")
        self._idle.set()

    async def _run(self) -> None:
        delay = self._retry_initial_s
        while True:
            if not self._buffer:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            record = self._buffer.popleft()
            try:
                await self._write(record)
            except asyncio.CancelledError:
                self._buffer.appendleft(record)
                raise
            except Exception as error:
                if not is_outage(error):
                    log_lost(record, f"refused by the database: {error!r}")
                    continue
                self._buffer.appendleft(record)
                log.warning("database unreachable, retrying usage write in %.1f s: %r", delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            delay = self._retry_initial_s
