"""Try-on jobs and the queue that feeds them to the engine, one at a time.

`JobQueue` is what the conversation core uses; `LocalJobQueue` is the default in-process
implementation (a bounded asyncio queue and one dispatcher task driving a `JobRunner`, normally the
engine process). A Redis-backed implementation can replace it without the core or the adapters
noticing: it only has to hand out the same `Ticket`s and raise the same errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from engine.api import EngineRequest, MakeupResult
from engine.errors import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One try-on asked for by one user in one chat. Ids are the platform's, as text."""

    id: str
    platform: str
    chat_id: str
    user_id: str
    request: EngineRequest  # a try-on, or a before/after picture of one
    enqueued_at: float = field(default_factory=time.time)  # wall clock, seconds since the epoch

    @property
    def owner(self) -> tuple[str, str]:
        """(platform, user id): whose per-user cap the job counts against."""
        return (self.platform, self.user_id)


class QueueError(Exception):
    """A job the queue refused or could not finish. `user_message` is ready to show in a chat;
    `kind` is a short machine word to record (usage.error_kind)."""

    kind: str = "queue"
    default_message: ClassVar[str] = "Something went wrong on my side. Please try again."

    def __init__(self, user_message: str | None = None, kind: str | None = None) -> None:
        self.user_message = user_message or self.default_message
        self.kind = kind or self.kind
        super().__init__(self.user_message)


class QueueFull(QueueError):
    kind = "queue_full"
    default_message = "I'm very busy right now and my queue is full. Please try again in a few minutes."


class UserQueueCapReached(QueueError):
    kind = "user_cap"
    default_message = (
        "You already have the most try-ons I can hold for one person waiting. "
        "I'll send those first; try again when they arrive."
    )


class QueueClosed(QueueError):
    kind = "shutdown"
    default_message = "I'm restarting right now. Please send your photos again in a minute."


class JobFailed(QueueError):
    """The job was accepted but could not be run to the end (engine crashed twice, hung, or the bot
    shut down before its turn). The engine's own refusals arrive as `engine.errors.EngineError`."""

    kind = "job_failed"


class Ticket:
    """A submitted job: where it stood when submitted, and its outcome once it has one.

    Queue implementations create tickets and report progress through `mark_started`, `resolve`
    and `fail`; callers read `position` and await `started()` / `result()`.
    """

    def __init__(self, job: Job, position: int) -> None:
        self.job = job
        self.position = position  # jobs that run before this one (queued ahead, plus a running one)
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._started = asyncio.Event()
        self._outcome: asyncio.Future[MakeupResult] = asyncio.get_running_loop().create_future()

    async def started(self) -> None:
        """Return once the engine has begun this job (or the job ended without starting)."""
        await self._started.wait()

    async def result(self) -> MakeupResult:
        """The engine's result. Raises `engine.errors.EngineError` when the engine refused the
        input (no face, bad image, ...) and `JobFailed` when the job could not be run."""
        return await asyncio.shield(self._outcome)

    @property
    def done(self) -> bool:
        return self._outcome.done()

    def mark_started(self) -> None:
        self.started_at = time.monotonic()
        self._started.set()

    def resolve(self, result: MakeupResult) -> None:
        self._finish()
        self._outcome.set_result(result)

    def fail(self, error: EngineError | JobFailed) -> None:
        self._finish()
        self._outcome.set_exception(error)

    def _finish(self) -> None:
        self.finished_at = time.monotonic()
        self._started.set()  # nobody waits for a start that will never come


class JobRunner(Protocol):
    """Runs requests to the end, in the order they are handed over; the engine process is the real
    one. It may be handed the next request while one runs (see `LocalJobQueue`)."""

    async def run(self, request: EngineRequest) -> MakeupResult: ...


class JobQueue(Protocol):
    """What the conversation core needs from a queue, whatever runs the jobs behind it."""

    async def waiting(self) -> int:
        """Jobs waiting to run now, not counting running ones, across every bot process."""
        ...

    async def start(self) -> None:
        """Begin running jobs. Call once, before the first `submit`."""
        ...

    async def submit(self, job: Job) -> Ticket:
        """Accept `job` or refuse it at once: raises `QueueFull`, `UserQueueCapReached` or
        `QueueClosed`. Returns without waiting for the job to run."""
        ...

    async def position(self, job_id: str) -> int | None:
        """Jobs that will run before `job_id` now (0: it is next or running); None once it is done
        or unknown."""
        ...

    async def close(self, drain_timeout_s: float) -> list[Job]:
        """Stop accepting jobs, let queued ones run for up to `drain_timeout_s`, then fail every
        job still waiting or running with `JobFailed(kind="shutdown")` so its user is told. Returns
        the jobs that were failed that way."""
        ...


class LocalJobQueue:
    """In-process `JobQueue`: a bounded asyncio queue and one dispatcher feeding `runner` in order.

    The dispatcher hands the runner the next job while one runs (`HANDED_AHEAD`), so the engine can
    start it without waiting for this event loop; a handed-over job counts as started only when the
    one before it has finished. `max_size` bounds the jobs not started yet; `per_user` bounds the
    jobs one user has waiting or running.
    """

    # The running job and the next, already with the runner (bot.engine_process.PIPELINE_DEPTH).
    HANDED_AHEAD = 2

    def __init__(self, runner: JobRunner, *, max_size: int, per_user: int) -> None:
        self._runner = runner
        self._max_size = max_size
        self._per_user = per_user
        self._queue: asyncio.Queue[Ticket] = asyncio.Queue()
        self._waiting: OrderedDict[str, Ticket] = OrderedDict()  # mirrors _queue, for positions
        self._handed: deque[Ticket] = deque()  # with the runner, in order; the first one is running
        self._slots = asyncio.Semaphore(self.HANDED_AHEAD)
        self._runs: set[asyncio.Task[None]] = set()
        self._per_owner: Counter[tuple[str, str]] = Counter()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Jobs not started yet: waiting here, or handed to the runner behind the running one."""
        return len(self._waiting) + max(len(self._handed) - 1, 0)

    async def waiting(self) -> int:
        return self.depth

    async def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="job-dispatcher")

    async def submit(self, job: Job) -> Ticket:
        if self._closed:
            raise QueueClosed()
        if self._per_owner[job.owner] >= self._per_user:
            raise UserQueueCapReached()
        if self.depth >= self._max_size:
            raise QueueFull()
        ticket = Ticket(job, position=len(self._handed) + len(self._waiting))
        self._queue.put_nowait(ticket)
        self._waiting[job.id] = ticket
        self._per_owner[job.owner] += 1
        return ticket

    async def position(self, job_id: str) -> int | None:
        for index, ticket in enumerate((*self._handed, *self._waiting.values())):
            if ticket.job.id == job_id:
                return index
        return None

    async def close(self, drain_timeout_s: float) -> list[Job]:
        self._closed = True
        if self._dispatcher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_timeout_s)
            for task in (self._dispatcher, *self._runs):
                task.cancel()
            await asyncio.gather(self._dispatcher, *self._runs, return_exceptions=True)
        unfinished = [*self._handed, *self._waiting.values()]
        for ticket in unfinished:
            self._finish(ticket, JobFailed(QueueClosed.default_message, kind=QueueClosed.kind))
        self._waiting.clear()
        if unfinished:
            log.warning(
                "shut down with %d unfinished job(s), their users are told: %s",
                len(unfinished),
                ", ".join(ticket.job.id for ticket in unfinished),
            )
        return [ticket.job for ticket in unfinished]

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            ticket = await self._queue.get()
            self._waiting.pop(ticket.job.id, None)
            self._handed.append(ticket)
            if len(self._handed) == 1:
                ticket.mark_started()
            run = asyncio.create_task(self._run(ticket), name=f"job-{ticket.job.id}")
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)

    async def _run(self, ticket: Ticket) -> None:
        try:
            self._finish(ticket, await self._runner.run(ticket.job.request))
        except (EngineError, JobFailed) as error:
            self._finish(ticket, error)
        except Exception:
            log.exception("job %s failed unexpectedly", ticket.job.id)
            self._finish(ticket, JobFailed(kind="internal"))
        finally:
            self._slots.release()
            self._queue.task_done()

    def _finish(self, ticket: Ticket, outcome: MakeupResult | EngineError | JobFailed) -> None:
        if not ticket.done:
            owner = ticket.job.owner
            self._per_owner[owner] -= 1
            if self._per_owner[owner] <= 0:
                del self._per_owner[owner]
            if isinstance(outcome, MakeupResult):
                ticket.resolve(outcome)
            else:
                ticket.fail(outcome)
        if ticket in self._handed:
            self._handed.remove(ticket)
            if self._handed and self._handed[0].started_at is None:
                self._handed[0].mark_started()  # the runner went on to it
