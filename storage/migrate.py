"""Bring a database to the newest schema from code, with no alembic.ini: Face Lab calls this at
start-up. On PostgreSQL a transaction-scoped advisory lock makes processes that start together
migrate one after the other, so the first one upgrades and the rest find nothing to do."""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateSchema

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migration_lock_key(schema: str | None) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock, one per schema."""
    digest = hashlib.blake2b(f"facelab-migrations:{schema or ''}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _upgrade(connection: Connection, schema: str | None) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the commit below; the DDL is transactional, so a crash leaves nothing half-done.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": migration_lock_key(schema)})
        if schema:
            connection.execute(CreateSchema(schema, if_not_exists=True))
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_database(engine: AsyncEngine, schema: str | None = None) -> None:
    """Apply every pending migration. `schema` (PostgreSQL) must match the engine's search_path."""
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade, schema)
        await connection.commit()
