"""The engine process: one long-lived child process (multiprocessing, spawn) that builds the engine
once and runs jobs one at a time, so heavy image work never blocks the bot's event loop.

The bot side (`EngineProcess`) is a `bot.queue.JobRunner`. When the child dies or does not answer
within `engine.job_timeout_s`, it is killed and started again and the job is retried once; a
second failure becomes a `JobFailed` the user is told about.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bot.queue import JobFailed
from engine.api import MakeupEngine, MakeupRequest, MakeupResult
from engine.errors import EngineError
from facelab.settings import EngineSettings

log = logging.getLogger(__name__)

# Builds the engine inside the child; must be a module-level function so spawn can pickle it.
EngineFactory = Callable[[EngineSettings], MakeupEngine]


def build_engine(settings: EngineSettings) -> MakeupEngine:
    """The engine `settings.backend` names (the default factory)."""
    from engine.backends import create_engine

    return create_engine(settings)


class EngineStartError(RuntimeError):
    """The child could not build its engine (bad config, missing weights) or did not say it was
    ready within the start timeout."""


class _EngineLost(Exception):
    """The child died or hung during a job; it has to be replaced."""

    def __init__(self, kind: str, user_message: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.user_message = user_message


class EngineProcess:
    """Owns the engine child process and exchanges one request/result at a time with it.

    `start()` spawns it and waits until the engine is built (raises `EngineStartError`);
    `run(request)` returns the result or raises the engine's `EngineError` (bad input) or
    `JobFailed` (the engine crashed or hung twice); `close()` stops it. `restarts` counts the
    children killed and replaced after a crash or hang.
    """

    def __init__(
        self,
        settings: EngineSettings,
        *,
        factory: EngineFactory = build_engine,
        start_timeout_s: float = 300.0,
    ) -> None:
        self._settings = settings
        self._factory = factory
        self._start_timeout_s = start_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        # Blocking pipe reads and writes happen on this one thread, in order; closing a pipe is queued
        # behind a read still in progress, so a connection is never closed under its reader.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-io")
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        async with self._lock:
            if self._process is None:
                await self._spawn()

    async def run(self, request: MakeupRequest) -> MakeupResult:
        async with self._lock:
            try:
                return await self._attempt(request)
            except _EngineLost as first:
                log.warning("engine process lost (%s); retrying the job once", first.kind)
            try:
                return await self._attempt(request)
            except _EngineLost as second:
                log.error("engine process lost (%s) again; the job failed", second.kind)
                raise JobFailed(second.user_message, kind=second.kind) from None

    async def close(self) -> None:
        async with self._lock:
            if self._process is not None and self._conn is not None and self._process.is_alive():
                try:
                    await self._on_io(self._conn.send, None)  # asks the child to exit
                    await asyncio.wait_for(asyncio.to_thread(self._process.join, 10.0), 11.0)
                except (OSError, TimeoutError):
                    pass
            self._discard()
        self._io.shutdown(wait=False)

    async def _attempt(self, request: MakeupRequest) -> MakeupResult:
        """One try on a live child; a child lost on the way is killed here, to be replaced next time."""
        try:
            await self._ensure_running()
        except EngineStartError as error:
            log.error("engine process failed to start: %s", error)
            raise _EngineLost(
                "engine_start", "The makeup engine could not start. Please try later."
            ) from None
        try:
            return await self._exchange(request)
        except _EngineLost:
            self._discard()
            self.restarts += 1
            raise

    async def _ensure_running(self) -> None:
        if self._process is not None and not self._process.is_alive():
            log.warning("engine process %d died between jobs; restarting", self._process.pid)
            self._discard()
            self.restarts += 1
        if self._process is None:
            await self._spawn()

    async def _spawn(self) -> None:
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(child_conn, self._settings, self._factory),
            name="facelab-engine",
            daemon=True,
        )
        process.start()
        child_conn.close()  # only the child holds its end, so its death reads as end-of-file here
        self._process, self._conn = process, parent_conn
        try:
            status, detail = await asyncio.wait_for(self._on_io(parent_conn.recv), self._start_timeout_s)
        except (EOFError, OSError, TimeoutError) as error:
            self._discard()
            raise EngineStartError(f"engine process did not become ready ({type(error).__name__})") from None
        if status != "ready":
            self._discard()
            raise EngineStartError(detail)
        log.info("engine process %d ready", process.pid)

    async def _exchange(self, request: MakeupRequest) -> MakeupResult:
        assert self._conn is not None
        conn = self._conn
        timeout = self._settings.job_timeout_s
        try:
            status, payload = await asyncio.wait_for(self._on_io(_send_and_receive, conn, request), timeout)
        except TimeoutError:
            raise _EngineLost(
                "engine_timeout",
                f"The makeup engine took longer than {timeout:g} seconds on this job, even on a second "
                "try, so I stopped it. Please try again later, perhaps with smaller photos.",
            ) from None
        except (EOFError, OSError):
            raise _EngineLost(
                "engine_crash",
                "The makeup engine crashed on this job, even on a second try, so I gave up on it. "
                "Please try again, perhaps with other photos.",
            ) from None
        except asyncio.CancelledError:
            self._discard()  # the child is still busy with a job nobody will read
            raise
        if status == "ok":
            return payload
        if status == "refused":
            raise payload
        log.error("engine raised an unexpected error:\n%s", payload)
        raise JobFailed(
            "Something went wrong on my side while making up this photo. Please try other photos.",
            kind="engine_bug",
        )

    async def _on_io(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, function, *args)

    def _discard(self) -> None:
        """Kill the child (if any) and forget it; its pipe closes once no read is using it."""
        if self._process is not None:
            self._process.kill()
            self._process.join(5.0)  # SIGKILL is immediate; this only reaps it
        if self._conn is not None:
            self._io.submit(self._conn.close)
        self._process, self._conn = None, None


def _send_and_receive(conn: Connection, request: MakeupRequest) -> tuple[str, Any]:
    conn.send(request)
    return conn.recv()


def _serve(conn: Connection, settings: EngineSettings, factory: EngineFactory) -> None:
    """The child's main loop: build the engine, then answer requests until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group; the parent decides
    try:
        engine = factory(settings)
    except Exception as error:
        conn.send(("failed", f"{type(error).__name__}: {error}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
            if request is None:
                return
            conn.send(_apply(engine, request))
        except (EOFError, BrokenPipeError):
            return  # the bot process is gone: nobody is left to answer


def _apply(engine: MakeupEngine, request: MakeupRequest) -> tuple[str, Any]:
    try:
        return ("ok", engine.apply(request))
    except EngineError as error:
        return ("refused", error)
    except Exception:
        return ("bug", traceback.format_exc())
