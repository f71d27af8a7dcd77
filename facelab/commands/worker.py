"""`facelab worker`: run jobs from the Redis queue (queue.backend = "redis") with this machine's engine,
until SIGINT or SIGTERM; then finish the job in hand and exit. Start one per GPU (or per CPU core
for the embedded engine), on any machine that reaches Redis."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.engine_process import EngineProcess, EngineStartError
from bot.metrics import MeteredRunner, Metrics
from facelab.commands.serve import stop_on_signals
from facelab.logs import setup_logging
from facelab.ops_server import OpsServer
from facelab.settings import Settings, load_settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name", help="this worker's name among the queue's consumers (default: HOSTNAME-PID)"
    )
    parser.add_argument(
        "--cpus",
        type=cpu_list,
        help="run this worker and its engine on these CPU cores only, e.g. 0 or 2-3 (Linux): for "
        "CPU-only machines, one worker per core, since the engine's libraries start threads of their own",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")


def cpu_list(text: str) -> set[int]:
    """'0,2-3' -> {0, 2, 3}"""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def run(args: argparse.Namespace) -> int:
    if args.cpus:
        os.sched_setaffinity(0, args.cpus)  # inherited by the engine process it spawns
    settings = load_settings(Path(args.config) if args.config else None)
    setup_logging(settings, debug=args.verbose)
    return asyncio.run(work(settings, args.name or f"{socket.gethostname()}-{os.getpid()}"))


async def work(settings: Settings, name: str, stop: asyncio.Event | None = None) -> int:
    """Serve jobs until `stop` is set (by default: on SIGINT or SIGTERM). Returns the exit status."""
    if settings.queue.backend != "redis":
        log.error('facelab worker needs queue.backend = "redis" (it is %r)', settings.queue.backend)
        return 2
    from redis.exceptions import RedisError

    from bot.queue_redis_worker import run_worker  # the [redis] extra

    stop = stop if stop is not None else stop_on_signals()
    engine = EngineProcess(settings.engine)
    try:
        await engine.start()
    except EngineStartError as error:
        log.error("the engine could not start: %s", error)
        return 1
    metrics = Metrics()
    ops = OpsServer(settings.metrics, metrics, {"engine": _engine_check(engine)})
    if settings.metrics.enabled:
        await ops.start()
    try:
        await run_worker(MeteredRunner(engine, metrics), settings.queue, name, stop)
    except RedisError as error:
        log.error("cannot reach Redis: %s", error)
        return 1
    finally:
        await ops.close()
        await engine.close()
    return 0


def _engine_check(engine: EngineProcess) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        return None if engine.pid is not None else "the engine process is not running"

    return check
