"""The engine process: one long-lived child process (multiprocessing, spawn) that builds the engine
once and runs jobs one at a time, in order, so heavy image work never blocks the bot's event loop.

The bot side (`EngineProcess`) is a `bot.queue.JobRunner` that may be handed the next job while one
runs: up to `PIPELINE_DEPTH` requests are in the child at once, so the engine starts the next job the
moment it finishes one instead of idling until a busy event loop has read the result and sent more.
When the child dies, or does not answer within `engine.job_timeout_s` of starting a job, it is killed
and started again: the job it was running is retried once (a second failure becomes a `JobFailed` the
user is told about); the jobs queued behind it are sent again without using up their retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bot.queue import JobFailed, QueueClosed
from engine.api import CompareRequest, EngineRequest, MakeupEngine, MakeupResult
from engine.compare import compare
from engine.errors import EngineError
from engine.settings import EngineSettings

log = logging.getLogger(__name__)

# The job the child is running and the next one, already received by the child. More would only add
# memory (each request holds two photos) and jobs to send again when a child is lost.
PIPELINE_DEPTH = 2

# Builds the engine inside the child; must be a module-level function so spawn can pickle it.
EngineFactory = Callable[[EngineSettings], MakeupEngine]

# What the child answers a request with: ("ok", MakeupResult), ("refused", EngineError) or
# ("bug", traceback text).
Reply = tuple[str, Any]


def build_engine(settings: EngineSettings) -> MakeupEngine:
    """The engine `settings.backend` names (the default factory)."""
    from engine.backends import create_engine

    return create_engine(settings)


class EngineStartError(RuntimeError):
    """The child could not build its engine (bad config, missing weights) or did not say it was
    ready within the start timeout."""


class _EngineLost(Exception):
    """The child died or hung while running this job (or could not start for it): one attempt used."""

    def __init__(self, kind: str, user_message: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.user_message = user_message


class _Bumped(Exception):
    """The child was lost while this job waited behind the one it was running: send it again."""


def _crashed() -> _EngineLost:
    return _EngineLost(
        "engine_crash",
        "The makeup engine crashed on this job, even on a second try, so I gave up on it. "
        "Please try again, perhaps with other photos.",
    )


def _could_not_start() -> _EngineLost:
    return _EngineLost("engine_start", "The makeup engine could not start. Please try later.")


def _timed_out(timeout_s: float) -> _EngineLost:
    return _EngineLost(
        "engine_timeout",
        f"The makeup engine took longer than {timeout_s:g} seconds on this job, even on a second "
        "try, so I stopped it. Please try again later, perhaps with smaller photos.",
    )


class EngineProcess:
    """Owns the engine child process and keeps it fed.

    `start()` spawns it and waits until the engine is built (raises `EngineStartError`);
    `run(request)` returns the result or raises the engine's `EngineError` (bad input) or
    `JobFailed` (the engine crashed or hung twice); concurrent calls run in the order they were made.
    `close()` stops it. `restarts` counts the children killed and replaced after a crash or hang.
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
        self._child: _Child | None = None
        self._spawning = asyncio.Lock()
        self._slots = asyncio.Semaphore(PIPELINE_DEPTH)
        self._closed = False
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running child's; None while there is none (a lost one is replaced by the next job)."""
        return self._child.process.pid if self._child is not None and self._child.usable else None

    async def start(self) -> None:
        async with self._spawning:
            if self._child is None:
                self._child = await self._spawn()

    async def run(self, request: EngineRequest) -> MakeupResult:
        async with self._slots:
            lost_before = False
            while True:
                try:
                    child = await self._live_child()
                    return _unpack(await child.submit(request))
                except _Bumped:
                    continue
                except _EngineLost as lost:
                    if lost_before:
                        log.error("engine process lost (%s) again; the job failed", lost.kind)
                        raise JobFailed(lost.user_message, kind=lost.kind) from None
                    log.warning("engine process lost (%s); retrying the job once", lost.kind)
                    lost_before = True

    async def close(self) -> None:
        async with self._spawning:
            self._closed = True
            if self._child is not None:
                await self._child.stop()
                self._child = None

    async def _live_child(self) -> _Child:
        """The running child, or a new one in place of one that was lost or died while idle."""
        async with self._spawning:
            if self._closed:
                raise JobFailed(QueueClosed.default_message, kind=QueueClosed.kind)
            child = self._child
            if child is not None and not child.usable:
                if not child.lost:
                    log.warning("engine process %d died between jobs; restarting", child.process.pid)
                    self.restarts += 1
                child.discard()
                self._child = None
            if self._child is None:
                try:
                    self._child = await self._spawn()
                except EngineStartError as error:
                    log.error("engine process failed to start: %s", error)
                    raise _could_not_start() from None
            return self._child

    async def _spawn(self) -> _Child:
        request_reader, request_writer = self._context.Pipe(duplex=False)
        reply_reader, reply_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_serve,
            args=(request_reader, reply_writer, self._settings, self._factory),
            name="facelab-engine",
            daemon=True,
        )
        process.start()
        # Only the child holds its ends, so its death reads as end-of-file (or a broken pipe) here.
        request_reader.close()
        reply_writer.close()
        child = _Child(process, request_writer, reply_reader, self._settings.job_timeout_s, self._lost)
        try:
            status, detail = await asyncio.wait_for(child.receive_greeting(), self._start_timeout_s)
        except (EOFError, OSError, TimeoutError) as error:
            child.discard()
            raise EngineStartError(f"engine process did not become ready ({type(error).__name__})") from None
        if status != "ready":
            child.discard()
            raise EngineStartError(detail)
        child.begin_collecting()
        log.info("engine process %d ready", process.pid)
        return child

    def _lost(self) -> None:
        self.restarts += 1


class _Child:
    """One engine child: its process, a pipe each way, and the replies it owes, in order.

    Requests are written on one thread and replies read on another, so neither direction waits for
    the event loop; a collector task hands each reply to the request at the head of the line and
    watches that request's time.
    """

    def __init__(
        self,
        process: BaseProcess,
        requests: Connection,
        replies: Connection,
        timeout_s: float,
        on_lost: Callable[[], None],
    ) -> None:
        self.process = process
        self.lost = False
        self._requests = requests
        self._replies = replies
        self._timeout_s = timeout_s
        self._on_lost = on_lost
        self._owed: deque[asyncio.Future[Reply]] = deque()
        self._head_since = 0.0  # when the request at the head of the line reached the engine
        self._has_work = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        # One thread per direction: blocking writes and reads happen there, each in order; closing a
        # pipe is queued behind an operation still in progress, so a pipe is never closed under it.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-send")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-receive")

    @property
    def usable(self) -> bool:
        return not self.lost and self.process.is_alive()

    async def receive_greeting(self) -> Reply:
        reply: Reply = await self._on(self._reader, self._replies.recv)
        return reply

    def begin_collecting(self) -> None:
        self._collector = asyncio.create_task(self._collect(), name=f"engine-{self.process.pid}-replies")

    async def submit(self, request: EngineRequest) -> Reply:
        """Queue `request` in the child and return its reply. Raises `_EngineLost` when the child
        is lost while running it and `_Bumped` when it is lost while this request waits."""
        if self.lost:
            raise _Bumped()
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if not self._owed:
            self._head_since = time.monotonic()
            self._has_work.set()
        self._owed.append(reply)
        # A failed write means the child is gone; the collector sees it too and fails `reply` with why.
        with contextlib.suppress(OSError):
            await self._on(self._writer, self._requests.send, request)
        return await reply

    async def stop(self) -> None:
        """Ask the child to finish the requests it holds and exit; kill it if it does not."""
        if self.usable:
            try:
                await self._on(self._writer, self._requests.send, None)
                await asyncio.wait_for(asyncio.to_thread(self.process.join, 10.0), 11.0)
            except (OSError, TimeoutError):
                pass
        self.discard()
        for reply in self._owed:
            if not reply.done():
                reply.set_exception(JobFailed(QueueClosed.default_message, kind=QueueClosed.kind))
        self._owed.clear()

    def discard(self) -> None:
        """Kill the process (if still alive) and let go of its pipes and threads."""
        if self._collector is not None:
            self._collector.cancel()
        self.process.kill()
        self.process.join(5.0)  # SIGKILL is immediate; this only reaps it
        self._writer.submit(self._requests.close)
        self._reader.submit(self._replies.close)
        self._writer.shutdown(wait=False)
        self._reader.shutdown(wait=False)

    async def _collect(self) -> None:
        while True:
            await self._has_work.wait()
            remaining = max(self._head_since + self._timeout_s - time.monotonic(), 0.0)
            try:
                reply = await asyncio.wait_for(self._on(self._reader, self._replies.recv), remaining)
            except TimeoutError:
                self._lose(_timed_out(self._timeout_s))
                return
            except (EOFError, OSError):
                self._lose(_crashed())
                return
            head = self._owed.popleft()
            self._head_since = time.monotonic()  # the child went straight on to the next one
            if not self._owed:
                self._has_work.clear()
            if not head.done():  # its caller may have been cancelled
                head.set_result(reply)

    def _lose(self, reason: _EngineLost) -> None:
        """The child crashed or hung: kill it, fail the request it was running with `reason` and
        bump the rest."""
        self.lost = True
        self._on_lost()
        self.process.kill()
        for index, reply in enumerate(self._owed):
            if not reply.done():
                reply.set_exception(reason if index == 0 else _Bumped())
        self._owed.clear()

    @staticmethod
    async def _on(thread: ThreadPoolExecutor, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(thread, function, *args)


def _unpack(reply: Reply) -> MakeupResult:
    status, payload = reply
    if status == "ok":
        result: MakeupResult = payload
        return result
    if status == "refused":
        raise payload
    log.error("engine raised an unexpected error:\n%s", payload)
    raise JobFailed(
        "Something went wrong on my side while making up this photo. Please try other photos.",
        kind="engine_bug",
    )


def _serve(
    requests: Connection, replies: Connection, settings: EngineSettings, factory: EngineFactory
) -> None:
    """The child's main loop: build the engine, then answer requests in order until told to stop.

    Requests are received on a thread of their own, so the engine goes from one job to the next
    without waiting for the bot process to write. Each reply is sent before the next job starts: a
    job that kills the process (a segfault) must not take an answer already made down with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group; the parent decides
    try:
        engine = factory(settings)
    except Exception as error:
        replies.send(("failed", f"{type(error).__name__}: {error}"))
        return
    replies.send(("ready", None))
    inbox: queue.SimpleQueue[EngineRequest | None] = queue.SimpleQueue()
    threading.Thread(target=_receive_requests, args=(requests, inbox), daemon=True).start()
    while (request := inbox.get()) is not None:
        try:
            replies.send(_apply(engine, request, settings))
        except OSError:
            return  # the bot process is gone


def _receive_requests(requests: Connection, inbox: queue.SimpleQueue[EngineRequest | None]) -> None:
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            request = None  # the bot process is gone: nobody is left to answer
        inbox.put(request)
        if request is None:
            return


def _apply(engine: MakeupEngine, request: EngineRequest, settings: EngineSettings) -> Reply:
    try:
        if isinstance(request, CompareRequest):
            return ("ok", compare(request, settings))
        return ("ok", engine.apply(request))
    except EngineError as error:
        return ("refused", error)
    except Exception:
        return ("bug", traceback.format_exc())
