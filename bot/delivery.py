"""A try-on's life after its photos are paired: admitted (limits, then the queue), watched (place in
the queue, chat actions), answered (the result with its buttons, or what went wrong), recorded
(storage and metrics) and kept for its buttons (the result cache) until `bot.result_cache_s` is up.

Only the result's requester may use its buttons; re-runs (Stronger, Softer, Lips only, Swap, the
other mode) go through `enqueue` like any try-on, counted against their own per-minute budget.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from functools import partial
from typing import Any

from bot.limits import Gatekeeper, Requester
from bot.metrics import Metrics
from bot.ports import Button, Messengers, Origin
from bot.queue import Job, JobQueue, QueueError, Ticket
from bot.results import Inputs, ResultStore, StoredResult
from bot.settings import BotSettings
from bot.texts import (
    EXPIRED_NOTICE,
    MODE_NAMES,
    NOT_YOUR_RESULT,
    PAINT_LEFT_OUT,
    QUEUE_PLACE,
    RESTARTED_NOTICE,
    minutes,
)
from engine.api import MODES, CompareRequest, EngineRequest, MakeupResult
from engine.errors import EngineError
from storage import Storage, UsageRecord, UsageStatus

log = logging.getLogger(__name__)

STRENGTH_STEP = 20  # the "stronger" / "softer" buttons
ACTION_EVERY_S = 4.0  # chat actions ("sending a photo...") fade after about 5 s on Telegram
# A job that ends this soon after it starts needs no chat action: its result is the feedback. Skipping
# it matters because Telegram caps a bot's messages at about 30 a second, chat actions included.
FIRST_ACTION_AFTER_S = 1.0

# What becomes of a job's result once it has run: sent to the chat (and kept, for a try-on).
Send = Callable[[MakeupResult], Awaitable[None]]


class Delivery:
    """Runs try-ons to the user and keeps their results for the buttons. `spawn` runs background
    work (deliveries, albums settling) that `close` waits for."""

    def __init__(
        self,
        settings: BotSettings,
        *,
        queue: JobQueue,
        storage: Storage,
        gatekeeper: Gatekeeper,
        metrics: Metrics,
        messengers: Messengers,
        results: ResultStore,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._storage = storage
        self._gatekeeper = gatekeeper
        self._metrics = metrics
        self._messengers = messengers
        self._results = results
        # Part of every result id: a button whose result id names another run was made before a
        # restart, which a memory store does not survive.
        self._run = secrets.token_hex(3)
        self._tasks: set[asyncio.Task[None]] = set()
        # Jobs queued or running, by person; those whose person sent /forget meanwhile are not recorded.
        self._in_flight: dict[str, tuple[str, str]] = {}
        self._forgotten_jobs: set[str] = set()

    @property
    def held_images(self) -> int:
        """Images this process holds for results' buttons (inputs and outputs)."""
        return self._results.held_images

    def jobs_in_flight(self, person: tuple[str, str]) -> int:
        """The person's try-ons queued or running now (their answers not sent yet)."""
        return sum(1 for owner in self._in_flight.values() if owner == person)

    async def forget(self, person: tuple[str, str]) -> None:
        """/forget: drop the person's results now, and record none of their jobs still running."""
        self._forgotten_jobs.update(job for job, owner in self._in_flight.items() if owner == person)
        await self._results.forget(person)

    async def enqueue(
        self, origin: Origin, inputs: Inputs, *, rerun: bool = False, note: str = ""
    ) -> str | None:
        """A try-on: admitted, run, and its result sent with its buttons. Returns what to tell the
        user when it is refused. `rerun`: the same photos again (a result's button), which count
        against their own, larger per-minute budget. `note` goes under the result's caption."""
        send = partial(self._send_result, origin, inputs, note=note)
        return await self._submit(origin, inputs.request(), send, rerun=rerun)

    async def _submit(self, origin: Origin, request: EngineRequest, send: Send, *, rerun: bool) -> str | None:
        """The one place an engine job is admitted: the limits first, then the queue. Returns what
        to tell the user when it is refused; else `send` gets the result once the job has run."""
        job = Job(uuid.uuid4().hex, origin.platform, origin.chat_id, origin.user_id, request)
        requester = Requester(
            origin.platform, origin.user_id, origin.chat_id, group=origin.chat_type == "group"
        )
        refusal = await self._gatekeeper.admit(requester, rerun=rerun)
        if refusal is not None:
            self._record(origin, job.id, UsageStatus.REJECTED, error_kind=refusal.kind)
            return refusal.user_message
        try:
            ticket = await self._queue.submit(job)
        except QueueError as error:
            self._record(origin, job.id, UsageStatus.REJECTED, error_kind=error.kind)
            return error.user_message
        self._in_flight[job.id] = origin.person
        self.spawn(self._deliver(origin, ticket, send))
        return None

    async def on_button(self, origin: Origin, action: str, result_id: str) -> str:
        """A result's button: re-run it with one thing changed, or send something back. Returns the
        notice for the presser."""
        result = await self._results.get(result_id)
        if result is None:
            if not self._results.survives_restart and not result_id.startswith(f"{self._run}."):
                return RESTARTED_NOTICE
            return EXPIRED_NOTICE.format(kept=minutes(self._settings.result_cache_s))
        if result.person != origin.person:
            return NOT_YOUR_RESULT
        return await self._result_action(origin, action, result)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def close(self, timeout_s: float) -> None:
        """Wait (up to `timeout_s`) for every spawned task: results and failure notices sent."""
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("gave up delivering %d answer(s) at shutdown", len(late))

    # -- one job --------------------------------------------------------------------------------------

    async def _deliver(self, origin: Origin, ticket: Ticket, send: Send) -> None:
        working = asyncio.create_task(self._show_progress(origin, ticket))
        try:
            result = await ticket.result()
        except (EngineError, QueueError) as error:
            self._record_ticket(origin, ticket, UsageStatus.ERROR, error_kind=error.kind)
            await self._messengers.reply(origin, error.user_message)
            return
        finally:
            working.cancel()
        self._record_ticket(origin, ticket, UsageStatus.OK)
        await send(result)

    async def _send_result(self, origin: Origin, inputs: Inputs, result: MakeupResult, *, note: str) -> None:
        """A try-on's result, kept for its buttons, and sent with them."""
        result_id = f"{self._run}.{secrets.token_urlsafe(6)}"
        await self._results.put(result_id, StoredResult(origin.person, inputs, result.image))
        await self._messengers.send_image(
            origin,
            result.image,
            caption="\n".join(filter(None, [_describe(inputs, result), note])),
            buttons=self._result_buttons(origin, result_id, inputs, result),
        )

    async def _show_progress(self, origin: Origin, ticket: Ticket) -> None:
        """Tell the user their place in the queue once their job has waited `bot.announce_wait_s`
        without starting, then show a chat action while it runs (if it runs more than a moment)."""
        try:
            await asyncio.wait_for(ticket.started(), self._settings.announce_wait_s)
        except TimeoutError:
            await self._announce_place(origin, ticket)
            await ticket.started()
        await asyncio.sleep(FIRST_ACTION_AFTER_S)
        while not ticket.done:
            await self._messengers.show_action(origin)
            await asyncio.sleep(ACTION_EVERY_S)

    async def _announce_place(self, origin: Origin, ticket: Ticket) -> None:
        ahead = await self._queue.position(ticket.job.id)
        if not ahead:  # next in line, or already done: nothing worth a message
            return
        jobs = "is 1 try-on" if ahead == 1 else f"are {ahead} try-ons"
        await self._messengers.reply(origin, QUEUE_PLACE.format(jobs=jobs))

    # -- results' buttons -----------------------------------------------------------------------------

    def _result_buttons(
        self, origin: Origin, result_id: str, inputs: Inputs, result: MakeupResult
    ) -> list[Button]:
        buttons = [
            Button("Stronger", f"more:{result_id}"),
            Button("Softer", f"less:{result_id}"),
            Button("Lips only", f"lips:{result_id}"),
            Button("Before / after", f"compare:{result_id}"),
        ]
        if inputs.reference is not None:  # a preset look is the same in either mode
            # The photos may have been taken the wrong way round.
            buttons.append(Button("Swap photos", f"swap:{result_id}"))
            other = next(mode for mode in MODES if mode != inputs.mode)
            switch = Button(MODE_NAMES[other].capitalize(), f"{other}:{result_id}")
            # The paint left out is what the user most likely wants next: its button comes first.
            buttons.insert(0 if result.paint_left_out else len(buttons), switch)
        if self._messengers.of(origin).compresses_images:
            buttons.append(Button("Full resolution", f"file:{result_id}"))
        return buttons

    async def _result_action(self, origin: Origin, action: str, result: StoredResult) -> str:
        inputs = result.inputs
        if action in ("more", "less"):
            step = STRENGTH_STEP if action == "more" else -STRENGTH_STEP
            strength = min(100, max(0, inputs.strength + step))
            if strength == inputs.strength:
                return f"It is already at {strength}."
            rerun = replace(inputs, strength=strength)
            working = f"Making it {'stronger' if step > 0 else 'softer'} ({strength})…"
        elif action == "lips":
            rerun, working = replace(inputs, regions={"lips": 1.0}), "Putting on the lips only…"
        elif action in MODES and inputs.reference is not None:
            rerun, working = replace(inputs, mode=action), f"Trying the {MODE_NAMES[action]}…"
        elif action == "swap" and inputs.reference is not None:
            rerun = replace(inputs, selfie=inputs.reference, reference=inputs.selfie)
            working = "Swapping: the other photo as your selfie…"
        else:
            return await self._result_reply(origin, action, result)
        # A refused re-run is said in the presser's notice, instead of announcing work that won't happen.
        return await self.enqueue(origin, rerun, rerun=True) or working

    async def _result_reply(self, origin: Origin, action: str, result: StoredResult) -> str:
        """The buttons that send something back without a new try-on."""
        inputs = result.inputs
        if action == "file":
            await self._messengers.send_image(origin, result.image, caption="Full resolution", as_file=True)
            return "Sending the full-resolution file…"
        if action == "compare":
            # An engine job like a try-on (queued, limited as a re-run, counted), not work in this process.
            comparison = CompareRequest(before=inputs.selfie, after=result.image)
            refusal = await self._submit(
                origin, comparison, partial(self._send_comparison, origin), rerun=True
            )
            return refusal or "Before / after…"
        return "That button is no longer supported."

    async def _send_comparison(self, origin: Origin, comparison: MakeupResult) -> None:
        await self._messengers.send_image(origin, comparison.image, caption="Before / after")

    # -- records --------------------------------------------------------------------------------------

    def _record(
        self,
        origin: Origin,
        job_id: str,
        status: UsageStatus,
        *,
        error_kind: str | None = None,
        queue_wait_ms: int | None = None,
        engine_ms: int | None = None,
        store: bool = True,
    ) -> None:
        record = UsageRecord(
            job_id=job_id,
            platform=origin.platform,
            user_id=origin.user_id,
            chat_id=origin.chat_id,
            chat_type=origin.chat_type,
            status=status,
            error_kind=error_kind,
            queue_wait_ms=queue_wait_ms,
            engine_ms=engine_ms,
        )
        if store:
            self._storage.record_usage(record)
        self._metrics.observe(record)
        log.info("job %s", status.value, extra=_job_log_fields(record))

    def _record_ticket(
        self, origin: Origin, ticket: Ticket, status: UsageStatus, *, error_kind: str | None = None
    ) -> None:
        del self._in_flight[ticket.job.id]
        # Asked for before a /forget: storing it would bring the person's rows back (counted all the same).
        forgotten = ticket.job.id in self._forgotten_jobs
        self._forgotten_jobs.discard(ticket.job.id)
        started = ticket.started_at if ticket.started_at is not None else ticket.finished_at
        finished = ticket.finished_at
        self._record(
            origin,
            ticket.job.id,
            status,
            error_kind=error_kind,
            queue_wait_ms=_ms(started - ticket.submitted_at) if started is not None else None,
            engine_ms=_ms(finished - started) if started is not None and finished is not None else None,
            store=not forgotten,
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())


def _describe(inputs: Inputs, result: MakeupResult) -> str:
    """A result's caption: what it was made from, and what was left out."""
    parts = [f"Look: {inputs.look}" if inputs.look else "Makeup from your reference"]
    parts.append(f"strength {inputs.strength}")
    if inputs.reference is not None and inputs.mode != "natural":
        parts.append(MODE_NAMES[inputs.mode])
    if inputs.regions is not None:
        parts.append("lips only")
    if result.faces > 1:
        parts.append(f"{result.faces} faces")
    caption = ", ".join(parts) + "."
    if result.paint_left_out:
        caption += "\n" + PAINT_LEFT_OUT
    return caption


def _job_log_fields(record: UsageRecord) -> dict[str, Any]:
    """What a job's log line carries: ids of the job, not of the person; outcome and timings."""
    fields = {
        "job_id": record.job_id,
        "platform": record.platform,
        "chat_type": record.chat_type,
        "status": record.status.value,
        "error_kind": record.error_kind,
        "queue_wait_ms": record.queue_wait_ms,
        "engine_ms": record.engine_ms,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
