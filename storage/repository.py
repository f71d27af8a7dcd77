"""`Storage`: the small async API the bot uses to remember preferences, record usage and answer
/stats, /forget and the operator's questions. It knows nothing of chat platforms or images."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, Executable, delete, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from storage.api import AdminStats, StorageUnavailable, UsageRecord, UsageStatus, UserStats, utcnow
from storage.migrate import upgrade_database
from storage.models import Usage, User
from storage.recorder import UsageRecorder, is_outage

log = logging.getLogger(__name__)

T = TypeVar("T")

# Both dialects' INSERT has ON CONFLICT, which makes the user upsert and the idempotent usage insert.
INSERTS: dict[str, Callable[[Any], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
USER_KEY = ["platform", "platform_user_id"]
MODE_MAX_CHARS = 16  # users.mode's width
RETENTION_INTERVAL_S = 3600.0
# After a read finds the database unreachable, gating reads answer their default at once for this
# long (or until a write succeeds) instead of making every try-on wait for a connection attempt.
READ_PAUSE_S = 5.0
# PostgreSQL: give up connecting after this long (asyncpg waits 60 s by default), and on a statement
# after COMMAND_TIMEOUT_S, so a database that stops answering is handled as an outage, not a hang.
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0


def _create_engine(url: str, schema: str | None) -> AsyncEngine:
    backend = make_url(url).get_backend_name()
    if backend not in INSERTS:
        raise ValueError(
            f"unsupported database {backend!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args = {"timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S}
    if schema is not None:
        if backend != "postgresql" or not SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema {schema!r}: PostgreSQL only, lower-case letters, digits and _")
        connect_args["server_settings"] = {"search_path": schema}
    # pre_ping: connections broken by a database restart are replaced instead of failing a query.
    engine = create_async_engine(url, connect_args=connect_args, pool_pre_ping=True)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _enable_sqlite_foreign_keys)
    return engine


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _is_user(platform: str, user_id: str | int) -> tuple[ColumnElement[bool], ...]:
    return (User.platform == platform, User.platform_user_id == str(user_id))


def _counted_jobs() -> ColumnElement[bool]:
    """Rejected requests never ran, so they count neither as jobs nor toward limits."""
    return Usage.status != UsageStatus.REJECTED.value


class Storage:
    """Open with `await Storage.open(url)`, close with `await storage.close()`.

    Reads that gate a try-on (`get_strength`, `get_mode`, `is_banned`, `count_*`) never raise on an
    outage: they log a warning and return the default. `record_usage` never waits: records are
    written behind.
    Everything else raises `StorageUnavailable` when the database cannot be reached."""

    def __init__(
        self, engine: AsyncEngine, schema: str | None, write_buffer: int, retry_max_s: float
    ) -> None:
        self._engine = engine
        self._schema = schema
        self._insert = INSERTS[engine.dialect.name]
        self._migrated = False
        self._migrate_lock = asyncio.Lock()
        # Held while a usage record is written and while a user is forgotten, so a record being
        # written cannot land after the user's rows were deleted.
        self._usage_lock = asyncio.Lock()
        self._recorder = UsageRecorder(self._write_usage, capacity=write_buffer, retry_max_s=retry_max_s)
        self._retention: asyncio.Task[None] | None = None
        self._reads_paused_until = 0.0

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str | None = None,
        retention_days: int = 0,
        write_buffer: int = 1000,
        retry_max_s: float = 30.0,
    ) -> Storage:
        """Connect and migrate to the newest schema. An unreachable database does not stop start-up:
        the storage runs degraded (defaults, buffered usage) and migrates once the database is back.

        `schema` (PostgreSQL only) keeps the tables in that schema, created when missing;
        `retention_days` > 0 deletes older usage rows now (when reachable) and every hour while open;
        `write_buffer` is how many usage records wait in memory for the database at most;
        `retry_max_s` caps the backoff between write attempts while it is unreachable."""
        storage = cls(_create_engine(url, schema), schema, write_buffer, retry_max_s)
        try:
            await storage._ready()
        except StorageUnavailable as error:
            log.warning("database unreachable at start-up, running without it for now: %r", error.__cause__)
        storage._recorder.start()
        if retention_days > 0:
            if storage._migrated:
                await storage._apply_retention(retention_days)
            storage._retention = asyncio.create_task(
                storage._apply_retention_hourly(retention_days), name="usage-retention"
            )
        return storage

    async def close(self, timeout: float = 5.0) -> None:
        """Write waiting usage records (for up to `timeout` seconds; the rest are logged), then disconnect."""
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        await self._recorder.close(timeout)
        await self._engine.dispose()

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every recorded usage is written; False when `timeout` seconds were not enough."""
        return await self._recorder.flush(timeout)

    # -- preferences and bans -------------------------------------------------------------------

    async def get_strength(self, platform: str, user_id: str | int) -> int | None:
        """The user's /strength (0-100), or None when never set or the database is unreachable."""
        return await self._scalar_or(None, select(User.strength).where(*_is_user(platform, user_id)))

    async def set_strength(self, platform: str, user_id: str | int, strength: int | None) -> None:
        """Remember the user's strength (0-100); None goes back to the configured default."""
        if strength is not None and not 0 <= strength <= 100:
            raise ValueError(f"strength must be within 0-100, got {strength}")
        async with self._transaction() as connection:
            await self._upsert_user(connection, platform, user_id, strength=strength)

    async def get_mode(self, platform: str, user_id: str | int) -> str | None:
        """The user's look mode (/mode), or None when never set or the database is unreachable."""
        return await self._scalar_or(None, select(User.mode).where(*_is_user(platform, user_id)))

    async def set_mode(self, platform: str, user_id: str | int, mode: str | None) -> None:
        """Remember the user's look mode (the bot checks the name); None goes back to the default."""
        if mode is not None and not 0 < len(mode) <= MODE_MAX_CHARS:
            raise ValueError(f"mode must be 1-{MODE_MAX_CHARS} characters, got {mode!r}")
        async with self._transaction() as connection:
            await self._upsert_user(connection, platform, user_id, mode=mode)

    async def set_banned(
        self, platform: str, user_id: str | int, banned: bool, reason: str | None = None
    ) -> None:
        """Ban (with an optional reason) or unban a user, including one who never used the bot."""
        async with self._transaction() as connection:
            await self._upsert_user(
                connection, platform, user_id, banned=banned, ban_reason=reason if banned else None
            )

    async def is_banned(self, platform: str, user_id: str | int) -> bool:
        """False for unknown users, and when the database is unreachable (try-ons keep working)."""
        return bool(await self._scalar_or(False, select(User.banned).where(*_is_user(platform, user_id))))

    # -- usage ------------------------------------------------------------------------------------

    def record_usage(self, record: UsageRecord) -> None:
        """Queue one job's record for writing; returns at once and never raises on an outage."""
        self._recorder.submit(record)

    async def count_usage_since(self, platform: str, user_id: str | int, since: datetime) -> int:
        """Jobs (not rejections) the user ran since `since`; 0 when the database is unreachable."""
        statement = (
            select(func.count())
            .select_from(Usage)
            .join(User)
            .where(*_is_user(platform, user_id), Usage.created_at >= since, _counted_jobs())
        )
        return int(await self._scalar_or(0, statement))

    async def count_chat_usage_since(self, platform: str, chat_id: str | int, since: datetime) -> int:
        """Jobs run in one chat (e.g. a group) since `since`; 0 when the database is unreachable."""
        statement = select(func.count()).where(
            Usage.platform == platform,
            Usage.chat_id == str(chat_id),
            Usage.created_at >= since,
            _counted_jobs(),
        )
        return int(await self._scalar_or(0, statement))

    async def delete_usage_older_than(self, days: float) -> int:
        """Retention: delete usage rows older than `days` days; returns how many."""
        cutoff = utcnow() - timedelta(days=days)
        async with self._transaction() as connection:
            return await _deleted(connection, delete(Usage).where(Usage.created_at < cutoff))

    async def _apply_retention(self, days: int) -> None:
        try:
            deleted = await self.delete_usage_older_than(days)
        except StorageUnavailable as error:
            log.warning("retention skipped, database unreachable: %r", error.__cause__)
            return
        if deleted:
            log.info("retention: deleted %d usage rows older than %d days", deleted, days)

    async def _apply_retention_hourly(self, days: int) -> None:
        while True:
            await asyncio.sleep(RETENTION_INTERVAL_S)
            await self._apply_retention(days)

    async def forget_user(self, platform: str, user_id: str | int) -> int:
        """/forget: delete every row about the user in every table (and records still waiting to be
        written); returns how many rows were deleted."""
        async with self._usage_lock:
            self._recorder.discard(lambda r: (r.platform, r.user_id) != (platform, str(user_id)))
            async with self._transaction() as connection:
                user_pk = await connection.scalar(select(User.id).where(*_is_user(platform, user_id)))
                if user_pk is None:
                    return 0
                usage_rows = await _deleted(connection, delete(Usage).where(Usage.user_id == user_pk))
                return usage_rows + await _deleted(connection, delete(User).where(User.id == user_pk))

    # -- statistics -------------------------------------------------------------------------------

    async def user_stats(self, platform: str, user_id: str | int) -> UserStats:
        """What /stats shows: the user's strength and mode, first contact and their jobs."""
        day_ago = utcnow() - timedelta(days=1)
        async with self._transaction() as connection:
            columns = select(User.id, User.strength, User.mode, User.created_at)
            user = (await connection.execute(columns.where(*_is_user(platform, user_id)))).one_or_none()
            if user is None:
                return UserStats(None, None, 0, 0, 0, 0, None)
            jobs = (
                await connection.execute(
                    select(
                        func.count(),
                        func.count().filter(Usage.status == UsageStatus.OK.value),
                        func.count().filter(Usage.status == UsageStatus.ERROR.value),
                        func.count().filter(Usage.created_at >= day_ago),
                        func.max(Usage.created_at),
                    ).where(Usage.user_id == user.id, _counted_jobs())
                )
            ).one()
        return UserStats(
            strength=user.strength,
            first_seen=user.created_at,
            jobs_total=jobs[0],
            jobs_ok=jobs[1],
            jobs_failed=jobs[2],
            jobs_last_24h=jobs[3],
            last_job_at=jobs[4],
            mode=user.mode,
        )

    async def admin_stats(self) -> AdminStats:
        """What `/admin stats` shows: users, jobs by status, errors by kind."""
        day_ago = utcnow() - timedelta(days=1)
        async with self._transaction() as connection:
            users, banned = (
                await connection.execute(select(func.count(), func.count().filter(User.banned)))
            ).one()
            by_status = await connection.execute(select(Usage.status, func.count()).group_by(Usage.status))
            by_error = await connection.execute(
                select(Usage.error_kind, func.count())
                .where(Usage.status == UsageStatus.ERROR.value)
                .group_by(Usage.error_kind)
            )
            last_day = await connection.scalar(
                select(func.count()).where(Usage.created_at >= day_ago, _counted_jobs())
            )
        return AdminStats(
            users=users,
            banned_users=banned,
            jobs_by_status={status: count for status, count in by_status},
            errors_by_kind={kind or "unknown": count for kind, count in by_error},
            jobs_last_24h=int(last_day or 0),
        )

    # -- internals --------------------------------------------------------------------------------

    async def _ready(self) -> None:
        """Migrate first, if that has not happened yet (start-up may have found the database down)."""
        if self._migrated:
            return
        async with self._migrate_lock:
            if not self._migrated:
                try:
                    await upgrade_database(self._engine, self._schema)
                except Exception as error:
                    if is_outage(error):
                        raise StorageUnavailable("database unreachable") from error
                    raise
                self._migrated = True

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        await self._ready()
        try:
            async with self._engine.begin() as connection:
                yield connection
            self._reads_paused_until = 0.0
        except Exception as error:
            if is_outage(error) and not isinstance(error, StorageUnavailable):
                raise StorageUnavailable("database unreachable") from error
            raise

    async def _scalar_or(self, default: T, statement: Executable) -> T:
        if time.monotonic() < self._reads_paused_until:
            return default
        try:
            async with self._transaction() as connection:
                value = await connection.scalar(statement)
        except StorageUnavailable as error:
            self._reads_paused_until = time.monotonic() + READ_PAUSE_S
            log.warning("database unreachable, answering defaults for now: %r", error.__cause__)
            return default
        return default if value is None else cast(T, value)

    async def _upsert_user(
        self, connection: AsyncConnection, platform: str, user_id: str | int, **changes: Any
    ) -> int:
        """The user's row id, creating the row (with `changes` applied) when it does not exist yet."""
        statement = self._insert(User).values(platform=platform, platform_user_id=str(user_id), **changes)
        if changes:
            statement = statement.on_conflict_do_update(
                index_elements=USER_KEY, set_={**changes, "updated_at": utcnow()}
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=USER_KEY)
        await connection.execute(statement)
        return int(await connection.scalar(select(User.id).where(*_is_user(platform, user_id))))

    async def _write_usage(self, record: UsageRecord) -> None:
        async with self._usage_lock, self._transaction() as connection:
            user_pk = await self._upsert_user(connection, record.platform, record.user_id)
            # A job recorded twice (a retried write, an at-least-once queue) is stored once.
            await connection.execute(
                self._insert(Usage)
                .values(
                    job_id=record.job_id,
                    user_id=user_pk,
                    chat_id=record.chat_id,
                    chat_type=record.chat_type,
                    platform=record.platform,
                    status=record.status.value,
                    error_kind=record.error_kind,
                    queue_wait_ms=record.queue_wait_ms,
                    engine_ms=record.engine_ms,
                    created_at=record.created_at,
                )
                .on_conflict_do_nothing(index_elements=["job_id"])
            )


async def _deleted(connection: AsyncConnection, statement: Executable) -> int:
    result = cast(CursorResult[Any], await connection.execute(statement))
    return result.rowcount
