"""`facelab serve`: run the chat bots configured in the settings, with their storage, job queue and
engine process, until SIGINT or SIGTERM; then finish (or report) queued jobs and stop cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path

from bot.core import Core
from bot.engine_process import EngineProcess
from bot.limits import Gatekeeper
from bot.metrics import Metrics
from bot.ports import Adapter
from bot.queue import JobQueue, LocalJobQueue
from bot.results import ResultStore
from facelab.logs import setup_logging
from facelab.ops_server import OpsServer
from facelab.settings import Settings, load_settings
from storage import Storage
from storage.api import utcnow

log = logging.getLogger(__name__)


def adapters_for(settings: Settings, core: Core) -> list[tuple[str, Adapter]]:
    """Every configured platform's adapter (see `Settings.platforms`); the fallback platforms (the
    web playground) run too when they are configured, or when no other platform is."""
    platforms = settings.platforms()
    others_configured = any(p.configured() for p in platforms.values() if not p.fallback)
    return [
        (name, platform.build(settings, core))
        for name, platform in platforms.items()
        if platform.configured() or (platform.fallback and not others_configured)
    ]


@contextlib.asynccontextmanager
async def local_queue(settings: Settings) -> AsyncIterator[JobQueue]:
    """The default: one engine process in this machine, fed by an in-process queue."""
    engine = EngineProcess(settings.engine)
    await engine.start()
    try:
        yield LocalJobQueue(engine, max_size=settings.queue.max_size, per_user=settings.queue.per_user)
    finally:
        await engine.close()


@contextlib.asynccontextmanager
async def redis_queue(settings: Settings) -> AsyncIterator[JobQueue]:
    """Scale-out: jobs go to Redis and `facelab worker` processes run them; no engine here."""
    from bot.queue_redis import RedisJobQueue  # the [redis] extra

    queue = RedisJobQueue(settings.queue)
    try:
        yield queue
    finally:
        await queue.disconnect()


# queue.backend -> how to build that queue.
QUEUES: dict[str, Callable[[Settings], contextlib.AbstractAsyncContextManager[JobQueue]]] = {
    "local": local_queue,
    "redis": redis_queue,
}


@contextlib.asynccontextmanager
async def result_store(settings: Settings) -> AsyncIterator[ResultStore | None]:
    """Where results' buttons find their photos: beside a Redis queue, so they survive a restart;
    else the core's own memory (None)."""
    if settings.queue.backend != "redis":
        yield None
        return
    from bot.queue_redis import RedisResults  # the [redis] extra

    results = RedisResults(settings.queue, settings.bot.result_cache_s)
    try:
        yield results
    finally:
        await results.disconnect()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    parser.add_argument(
        "--web",
        action="store_true",
        help="also serve the web playground (web.host:web.port) next to the bots",
    )
    parser.add_argument(
        "--sync-commands",
        action="store_true",
        help="publish the Discord slash commands at start-up (once, and after upgrades that change them)",
    )


def run(args: argparse.Namespace) -> int:
    settings = with_flags(load_settings(Path(args.config) if args.config else None), args)
    setup_logging(settings, debug=args.verbose)
    return asyncio.run(serve(settings))


def with_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with the command line's switches applied (they only ever turn things on)."""
    if args.web:
        settings = settings.model_copy(update={"web": settings.web.model_copy(update={"enabled": True})})
    if args.sync_commands:
        discord = settings.discord.model_copy(update={"sync_commands": True})
        settings = settings.model_copy(update={"discord": discord})
    return settings


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Run until `stop` is set (by default: on SIGINT or SIGTERM). Returns the exit status.
    `clock` is the UTC time that daily quotas count from (tests move it to tomorrow)."""
    if settings.queue.backend not in QUEUES:
        log.error("queue.backend %r is not available in this version", settings.queue.backend)
        return 2
    stop = stop if stop is not None else stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        storage = await Storage.open(
            settings.database.url,
            schema=settings.database.schema_name,
            write_buffer=settings.database.write_buffer,
            retry_max_s=settings.database.write_retry_max_s,
            retention_days=settings.database.retention_days,
        )
        stack.push_async_callback(storage.close)
        queue = await stack.enter_async_context(QUEUES[settings.queue.backend](settings))
        await queue.start()
        metrics = Metrics()
        metrics.track_queue_depth(queue.waiting)
        gatekeeper = Gatekeeper.from_settings(settings, storage, clock)
        core = Core(
            settings,
            queue,
            storage,
            gatekeeper=gatekeeper,
            metrics=metrics,
            results=await stack.enter_async_context(result_store(settings)),
        )
        if settings.metrics.enabled:
            ops = OpsServer(settings.metrics, metrics, {"serving": _serving_check(stop)})
            await ops.start()
            stack.push_async_callback(ops.close)
        for name, adapter in adapters_for(settings, core):
            await adapter.start()
            stack.push_async_callback(adapter.stop)  # stopped after the queue is drained, below
            log.info("%s adapter started", name)
        await stop.wait()
        log.info("shutting down: finishing queued jobs for up to %g s", settings.queue.drain_timeout_s)
        await queue.close(settings.queue.drain_timeout_s)
        await core.close()
    return 0


def _serving_check(stop: asyncio.Event) -> Callable[[], Awaitable[str | None]]:
    """Healthy until shutdown begins, so a load balancer stops sending updates during the drain."""

    async def check() -> str | None:
        return "shutting down" if stop.is_set() else None

    return check


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def first_signal() -> None:
        stop.set()
        for signum in signals:  # a second Ctrl+C or SIGTERM skips the drain and stops at once
            loop.remove_signal_handler(signum)

    for signum in signals:
        loop.add_signal_handler(signum, first_signal)
    return stop
