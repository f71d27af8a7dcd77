"""storage/: the repository API, migrations and write-behind, on SQLite and on real PostgreSQL.

PostgreSQL cases each get their own schema in the shared database `test`, dropped afterwards."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateSchema

from storage import Storage, StorageUnavailable, UsageRecord, UsageStatus
from storage.api import utcnow
from storage.migrate import alembic_config
from storage.models import Base, Usage, User

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Database:
    url: str
    schema: str | None = None

    async def open(self, **options: float) -> Storage:
        return await Storage.open(self.url, schema=self.schema, **options)  # type: ignore[arg-type]

    def raw_engine(self) -> AsyncEngine:
        """An engine outside Storage, to look at the tables directly."""
        args = {"server_settings": {"search_path": self.schema}} if self.schema else {}
        return create_async_engine(self.url, connect_args=args)


def unique_schema() -> str:
    return f"test_storage_{uuid.uuid4().hex[:12]}"


async def drop_schema(postgres_url: str, schema: str) -> None:
    engine = create_async_engine(postgres_url)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}")
        return
    postgres_url = request.getfixturevalue("postgres_url")
    schema = unique_schema()
    yield Database(postgres_url, schema)
    await drop_schema(postgres_url, schema)


@pytest.fixture
async def storage(database: Database) -> AsyncIterator[Storage]:
    storage = await database.open()
    yield storage
    await storage.close()


def job(job_id: str, user_id: int = 1, status: str = "ok", **fields: object) -> UsageRecord:
    defaults: dict[str, object] = {"platform": "telegram", "chat_id": -100, "chat_type": "group"}
    return UsageRecord(job_id=job_id, user_id=user_id, status=UsageStatus(status), **{**defaults, **fields})  # type: ignore[arg-type]


async def test_models_match_the_migrations(database: Database, storage: Storage) -> None:
    def differences(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    engine = database.raw_engine()
    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []
        assert await connection.scalar(text("SELECT version_num FROM alembic_version")) == "0002"
    await engine.dispose()


async def test_an_existing_database_gains_the_mode_column_and_keeps_its_users(database: Database) -> None:
    def upgrade_to(connection: Connection, revision: str) -> None:
        if database.schema:
            connection.execute(CreateSchema(database.schema, if_not_exists=True))
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    engine = database.raw_engine()
    async with engine.begin() as connection:  # the schema as deployed before /mode existed
        await connection.run_sync(upgrade_to, "0001")
        now = utcnow()
        await connection.execute(
            text(
                "INSERT INTO users (platform, platform_user_id, strength, banned, created_at, updated_at)"
                " VALUES ('telegram', '7', 35, false, :now, :now)"
            ),
            {"now": now},
        )
    await engine.dispose()

    storage = await database.open()  # migrates to the newest schema at start-up
    assert await storage.get_strength("telegram", 7) == 35
    assert await storage.get_mode("telegram", 7) is None
    await storage.set_mode("telegram", 7, "full")
    assert (await storage.get_mode("telegram", 7), await storage.get_strength("telegram", 7)) == ("full", 35)
    await storage.close()


async def test_mode_persists_beside_strength(database: Database) -> None:
    first = await database.open()
    assert await first.get_mode("telegram", 7) is None
    await first.set_mode("telegram", 7, "full")
    await first.set_strength("telegram", 7, 40)  # one preference never resets the other
    await first.set_mode("discord", 7, "natural")  # same id on another platform is another user
    await first.close()

    second = await database.open()
    assert await second.get_mode("telegram", "7") == "full"
    assert await second.get_mode("discord", 7) == "natural"
    stats = await second.user_stats("telegram", 7)
    assert (stats.mode, stats.strength) == ("full", 40)
    await second.set_mode("telegram", 7, None)
    assert await second.get_mode("telegram", 7) is None
    assert await second.get_strength("telegram", 7) == 40
    with pytest.raises(ValueError):
        await second.set_mode("telegram", 7, "x" * 17)
    await second.forget_user("telegram", 7)
    assert await second.get_mode("telegram", 7) is None
    await second.close()


async def test_strength_persists_across_close_and_reopen(database: Database) -> None:
    first = await database.open()
    assert await first.get_strength("telegram", 7) is None
    await first.set_strength("telegram", 7, 35)
    await first.set_strength("discord", 7, 90)  # same id on another platform is another user
    await first.close()

    second = await database.open()
    assert await second.get_strength("telegram", "7") == 35
    assert await second.get_strength("discord", 7) == 90
    await second.set_strength("telegram", 7, None)
    assert await second.get_strength("telegram", 7) is None
    with pytest.raises(ValueError):
        await second.set_strength("telegram", 7, 101)
    await second.close()


async def test_usage_is_recorded_once_per_job_and_counted(database: Database, storage: Storage) -> None:
    start = utcnow()
    storage.record_usage(job("a", queue_wait_ms=12, engine_ms=340))
    storage.record_usage(job("a", queue_wait_ms=12, engine_ms=340))  # a retried delivery
    storage.record_usage(job("b", status="error", error_kind="no_face"))
    storage.record_usage(job("c", status="rejected", error_kind="rate_limit"))
    storage.record_usage(job("d", user_id=2, chat_id=5, chat_type="private"))
    assert await storage.flush()

    engine = database.raw_engine()
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Usage).order_by(Usage.job_id))).all()
    await engine.dispose()
    assert [(r.job_id, r.status, r.error_kind) for r in rows] == [
        ("a", "ok", None),
        ("b", "error", "no_face"),
        ("c", "rejected", "rate_limit"),
        ("d", "ok", None),
    ]
    assert (rows[0].chat_id, rows[0].chat_type, rows[0].platform) == ("-100", "group", "telegram")
    assert (rows[0].queue_wait_ms, rows[0].engine_ms) == (12, 340)

    # Rejections never ran: they count neither as jobs nor toward limits.
    assert await storage.count_usage_since("telegram", 1, start) == 2
    assert await storage.count_usage_since("telegram", 1, utcnow()) == 0
    assert await storage.count_chat_usage_since("telegram", -100, start) == 2
    assert await storage.count_chat_usage_since("telegram", 5, start) == 1

    stats = await storage.user_stats("telegram", 1)
    assert (stats.jobs_total, stats.jobs_ok, stats.jobs_failed, stats.jobs_last_24h) == (2, 1, 1, 2)
    assert stats.first_seen is not None and stats.last_job_at is not None
    assert start <= stats.first_seen <= utcnow()
    assert start <= stats.last_job_at <= utcnow()
    nobody = await storage.user_stats("telegram", 999)
    assert (nobody.jobs_total, nobody.first_seen, nobody.strength, nobody.mode) == (0, None, None, None)

    admin = await storage.admin_stats()
    assert admin.users == 2
    assert admin.jobs_by_status == {"ok": 2, "error": 1, "rejected": 1}
    assert admin.errors_by_kind == {"no_face": 1}
    assert admin.jobs_last_24h == 3


async def test_bans(storage: Storage) -> None:
    assert not await storage.is_banned("discord", 42)
    await storage.set_banned("discord", 42, True, reason="flooding")  # never used the bot yet
    assert await storage.is_banned("discord", 42)
    assert not await storage.is_banned("telegram", 42)
    assert (await storage.admin_stats()).banned_users == 1
    await storage.set_banned("discord", 42, False)
    assert not await storage.is_banned("discord", 42)
    assert (await storage.admin_stats()).banned_users == 0


async def rows_about(engine: AsyncEngine, user_pk: int) -> dict[str, int | None]:
    """Rows that mention the user, counted in every table of the schema."""
    counts = {}
    async with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table is User.__table__:
                condition = table.c.id == user_pk
            else:
                columns = [
                    c for c in table.c if any(fk.column is User.__table__.c.id for fk in c.foreign_keys)
                ]
                assert columns, f"table {table.name} has no rule for finding a user's rows"
                condition = columns[0] == user_pk
            counts[table.name] = await connection.scalar(
                select(func.count()).select_from(table).where(condition)
            )
    return counts


async def test_forget_user_removes_every_row_table_by_table(database: Database, storage: Storage) -> None:
    await storage.set_strength("telegram", 1, 20)
    await storage.set_strength("telegram", 2, 80)
    for n in range(3):
        storage.record_usage(job(f"mine-{n}", user_id=1))
    storage.record_usage(job("theirs", user_id=2))
    assert await storage.flush()

    engine = database.raw_engine()
    async with engine.connect() as connection:
        mine, theirs = (await connection.scalars(select(User.id).order_by(User.platform_user_id))).all()
    assert await rows_about(engine, mine) == {"users": 1, "usage": 3}

    assert await storage.forget_user("telegram", 1) == 4
    assert await rows_about(engine, mine) == {"users": 0, "usage": 0}
    assert await rows_about(engine, theirs) == {"users": 1, "usage": 1}
    await engine.dispose()
    assert await storage.get_strength("telegram", 1) is None
    assert await storage.get_strength("telegram", 2) == 80
    assert await storage.forget_user("telegram", 1) == 0


async def test_retention_deletes_only_old_usage(storage: Storage) -> None:
    now = utcnow()
    storage.record_usage(job("old", created_at=now - timedelta(days=100)))
    storage.record_usage(job("recent", created_at=now - timedelta(days=10)))
    storage.record_usage(job("today"))
    assert await storage.flush()

    assert await storage.delete_usage_older_than(30) == 1
    assert (await storage.user_stats("telegram", 1)).jobs_total == 2
    assert await storage.delete_usage_older_than(30) == 0
    assert await storage.delete_usage_older_than(5) == 1
    assert await storage.count_usage_since("telegram", 1, now - timedelta(days=365)) == 1


async def test_retention_setting_applies_at_start_up(database: Database) -> None:
    first = await database.open()
    first.record_usage(job("old", created_at=utcnow() - timedelta(days=100)))
    first.record_usage(job("recent"))
    await first.close()

    second = await database.open(retention_days=30)
    assert (await second.admin_stats()).jobs_by_status == {"ok": 1}
    await second.close()


async def test_processes_starting_together_migrate_once(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    schema = unique_schema()
    database = Database(postgres_url, schema)
    caplog.set_level(logging.INFO, logger="alembic.runtime.migration")
    try:
        storages = await asyncio.gather(*(database.open() for _ in range(4)))
        upgrades = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Running upgrade")]
        revisions = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
        assert len(upgrades) == len(set(upgrades)) == len(revisions), upgrades  # each migration ran once
        for n, storage in enumerate(storages):
            await storage.set_strength("telegram", n, n)
        assert [await storages[0].get_strength("telegram", n) for n in range(4)] == [0, 1, 2, 3]
        for storage in storages:
            await storage.close()
    finally:
        await drop_schema(postgres_url, schema)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TcpProxy:
    """Forwards a local port to PostgreSQL; not listening means the database is unreachable."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port, self.target_port = port, target_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones, as a database restart does."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


@dataclass
class Outage:
    """A database that is down until `end()` is called."""

    database: Database
    proxy: TcpProxy | None = None
    missing_dir: Path | None = None

    async def end(self) -> None:
        if self.proxy is not None:
            await self.proxy.start()
        if self.missing_dir is not None:
            self.missing_dir.mkdir()


@pytest.fixture(params=BACKENDS)
async def outage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outage]:
    if request.param == "sqlite":
        missing = tmp_path / "not-yet"  # SQLite cannot create a file in a missing directory
        yield Outage(Database(f"sqlite+aiosqlite:///{missing / 'facelab.db'}"), missing_dir=missing)
        return
    postgres_url = request.getfixturevalue("postgres_url")
    proxy = TcpProxy(free_port(), 5432)
    schema = unique_schema()
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    yield Outage(Database(url, schema), proxy=proxy)
    await proxy.stop()
    await drop_schema(postgres_url, schema)


async def test_try_ons_keep_working_while_the_database_is_down(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    storage = await outage.database.open(retry_max_s=0.2)  # starts although the database is down

    with caplog.at_level(logging.WARNING, logger="storage"):
        assert await storage.get_strength("telegram", 1) is None
        assert not await storage.is_banned("telegram", 1)
        assert await storage.count_usage_since("telegram", 1, utcnow() - timedelta(days=1)) == 0
    assert any("database unreachable" in r.getMessage() for r in caplog.records)
    with pytest.raises(StorageUnavailable):
        await storage.set_strength("telegram", 1, 50)
    with pytest.raises(StorageUnavailable):
        await storage.forget_user("telegram", 1)

    for n in range(3):
        storage.record_usage(job(f"during-outage-{n}"))
    assert not await storage.flush(timeout=0.5)  # buffered, retrying

    await outage.end()
    assert await storage.flush(timeout=30)  # migrated and written once the database is back
    assert (await storage.user_stats("telegram", 1)).jobs_total == 3
    await storage.set_strength("telegram", 1, 50)
    assert await storage.get_strength("telegram", 1) == 50
    await storage.close()


async def test_records_that_cannot_be_written_are_logged(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    storage = await outage.database.open(write_buffer=2, retry_max_s=0.2)
    caplog.set_level(logging.ERROR, logger="storage")
    for n in range(3):
        storage.record_usage(job(f"lost-{n}", engine_ms=100 + n))

    lost_now = [r.usage_record for r in caplog.records if hasattr(r, "usage_record")]  # buffer full
    assert [record["job_id"] for record in lost_now] == ["lost-2"]
    await storage.close(timeout=0.3)  # still down at shutdown
    lost = [r.usage_record for r in caplog.records if hasattr(r, "usage_record")]
    assert sorted(record["job_id"] for record in lost) == ["lost-0", "lost-1", "lost-2"]
    assert lost[0] == {**job("lost-2", engine_ms=102).as_log(), "created_at": lost[0]["created_at"]}
    assert all("lost-" in r.getMessage() for r in caplog.records if hasattr(r, "usage_record"))


async def test_forgetting_during_an_outage_drops_the_users_waiting_records(outage: Outage) -> None:
    storage = await outage.database.open(retry_max_s=0.2)
    storage.record_usage(job("mine", user_id=1))
    storage.record_usage(job("theirs", user_id=2))
    with pytest.raises(StorageUnavailable):  # the bot tells the user to try again later
        await storage.forget_user("telegram", 1)

    await outage.end()
    assert await storage.flush(timeout=30)
    assert (await storage.user_stats("telegram", 1)).jobs_total == 0
    assert (await storage.user_stats("telegram", 2)).jobs_total == 1
    await storage.close()


async def test_postgresql_restart_mid_run_loses_nothing(postgres_url: str) -> None:
    proxy = TcpProxy(free_port(), 5432)
    schema = unique_schema()
    database = Database(postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), schema)
    await proxy.start()
    storage = await database.open(retry_max_s=0.2)
    try:
        storage.record_usage(job("before"))
        assert await storage.flush()

        await proxy.stop()  # pooled connections are now dead
        storage.record_usage(job("during"))
        assert not await storage.flush(timeout=0.5)
        assert await storage.get_strength("telegram", 1) is None

        await proxy.start()
        storage.record_usage(job("after"))
        assert await storage.flush(timeout=30)
        assert (await storage.user_stats("telegram", 1)).jobs_total == 3
    finally:
        await storage.close()
        await proxy.stop()
        await drop_schema(postgres_url, schema)


async def test_a_record_the_database_refuses_is_logged_and_the_next_one_written(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    schema = unique_schema()
    storage = await Database(postgres_url, schema).open()
    caplog.set_level(logging.ERROR, logger="storage")
    try:
        storage.record_usage(job("refused", chat_type="x" * 100))  # longer than the column allows
        storage.record_usage(job("fine"))
        assert await storage.flush()
        assert (await storage.admin_stats()).jobs_by_status == {"ok": 1}
        [refused] = [r for r in caplog.records if hasattr(r, "usage_record")]
        assert refused.usage_record["job_id"] == "refused"
        assert "refused by the database" in refused.getMessage()
    finally:
        await storage.close()
        await drop_schema(postgres_url, schema)
