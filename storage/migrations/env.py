"""Alembic environment. At start-up storage.migrate hands over an open connection (already holding
the migration lock); run by hand (`alembic -c storage/alembic.ini ...`) it opens its own async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from storage.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")

given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    asyncio.run(run_with_own_engine(url or context.config.get_main_option("sqlalchemy.url") or ""))
