"""The Redis-backed job queue (`queue.backend = "redis"`), bot side: bot processes submit jobs here
and any number of `facelab worker` processes (bot/queue_redis_worker.py) run them. Admission (the
queue's size, the per-user cap) is one atomic script across every bot process; results are polled
for all waiting jobs in one round trip. `RedisResults` keeps results' button inputs beside the queue.

The transport and the keys are in bot/queue_redis_broker.py, the wire format in
bot/queue_redis_codec.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from redis.exceptions import RedisError
from taskiq.exceptions import SendTaskError
from taskiq.kicker import AsyncKicker
from taskiq_redis.exceptions import ResultIsMissingError

from bot.queue import Job, JobFailed, QueueClosed, QueueError, QueueFull, Ticket, UserQueueCapReached
from bot.queue_redis_broker import (
    RECONNECT_DELAY_S,
    TASK_NAME,
    RedisKeys,
    build_broker,
    connect,
)
from bot.queue_redis_codec import decode_outcome, encode_request
from bot.results import StoredResult, decode_stored, encode_stored
from bot.settings import QueueSettings
from engine.api import MakeupResult
from engine.errors import EngineError

log = logging.getLogger(__name__)

# How often a bot process checks Redis for finished jobs (one round trip for all of them).
RESULT_POLL_S = 0.05


# Admits a job atomically across bot processes: per-user cap, then queue size; then stores its
# input. Returns how many jobs wait ahead of it, or -1 (queue full) / -2 (user at the cap).
# KEYS: waiting, the user's set, input hash. ARGV: job id, max waiting, per-user cap, ttl ms, then the
# input's field/value pairs. Entries older than the TTL belong to jobs that can no longer run (their
# bot process died, or Redis lost the stream) and are dropped before counting.
_ADMIT_SCRIPT = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl_ms = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_us - ttl_ms * 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_us)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -2 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('ZADD', KEYS[1], now_us, ARGV[1])
redis.call('ZADD', KEYS[2], now_us + ttl_ms * 1000, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl_ms)
redis.call('HSET', KEYS[3], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[3], ttl_ms)
return redis.call('ZRANK', KEYS[1], ARGV[1])
"""
QUEUE_FULL = -1
USER_AT_CAP = -2


class QueueUnavailable(QueueError):
    """Redis could not be reached, so the job was not queued."""

    kind = "queue_unavailable"
    default_message = "I can't reach my job queue right now. Please send your photos again in a minute."


JOB_LOST_MESSAGE = (
    "Your try-on was lost before it could run (my job queue restarted, or it waited too long). "
    "Please send your photos again."
)


def _flatten(fields: dict[str, bytes | str]) -> list[bytes | str]:
    return [item for pair in fields.items() for item in pair]


def _user_key(job: Job) -> str:
    platform, user_id = job.owner
    return f"{platform}:{user_id}"


class RedisResults:
    """`bot.results.ResultStore` in Redis, beside the job queue: a result's inputs and output live
    `keep_s` seconds in their own key, so its buttons work in a restarted bot process, or another
    one. Redis unreachable: the buttons say the result has expired, and nothing else fails."""

    survives_restart = True
    held_images = 0  # nothing in this process's memory

    def __init__(self, settings: QueueSettings, keep_s: float) -> None:
        self._keys = RedisKeys(settings.redis_prefix)
        self._redis = connect(settings)
        self._keep_ms = max(1, int(keep_s * 1000))

    async def put(self, result_id: str, result: StoredResult) -> None:
        person = self._keys.buttons_of(":".join(result.person))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._keys.button(result_id), mapping=encode_stored(result))  # type: ignore[arg-type]
                pipe.pexpire(self._keys.button(result_id), self._keep_ms)
                pipe.sadd(person, result_id)
                pipe.pexpire(person, self._keep_ms)
                await pipe.execute()
        except RedisError as error:
            log.warning("result %s not kept for its buttons, Redis is unreachable: %s", result_id, error)

    async def get(self, result_id: str) -> StoredResult | None:
        try:
            # Raw bytes in and out: the client decodes nothing (the images are binary).
            fields = cast(dict[bytes, bytes], await self._redis.hgetall(self._keys.button(result_id)))
        except RedisError as error:
            log.warning("result %s unreadable, Redis is unreachable: %s", result_id, error)
            return None
        return decode_stored(fields) if fields else None

    async def forget(self, person: tuple[str, str]) -> None:
        key = self._keys.buttons_of(":".join(person))
        try:
            ids = cast(set[bytes], await self._redis.smembers(key))
            await self._redis.delete(key, *(self._keys.button(rid.decode()) for rid in ids))
        except RedisError as error:  # they expire by themselves within keep_s
            log.warning("results not forgotten, Redis is unreachable: %s", error)

    async def disconnect(self) -> None:
        await self._redis.aclose()


class RedisJobQueue:
    """`bot.queue.JobQueue` on Redis: the bot-process side.

    `submit` admits a job (atomically, across every bot process) and puts it on the stream; one
    poller task per process then watches all of this process's jobs in a single round trip, marks
    them started when a worker takes them, and settles each ticket exactly once: with the result,
    the engine's refusal, or `JobFailed` (the worker failed, or the job vanished from Redis).
    """

    def __init__(self, settings: QueueSettings) -> None:
        self._settings = settings
        self._keys = RedisKeys(settings.redis_prefix)
        self._broker = build_broker(settings)
        self._redis = connect(settings)
        self._admit = self._redis.register_script(_ADMIT_SCRIPT)
        self._kicker: AsyncKicker[Any, Any] = AsyncKicker(TASK_NAME, self._broker, labels={})
        self._tickets: dict[str, Ticket] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        # Only the result backend starts here: the stream and its consumer group belong to workers.
        await self._broker.result_backend.startup()
        self._poller = asyncio.create_task(self._poll_forever(), name="redis-queue-poller")

    async def submit(self, job: Job) -> Ticket:
        if self._closed:
            raise QueueClosed()
        keys = [self._keys.waiting, self._keys.user(_user_key(job)), self._keys.input(job.id)]
        limits = [self._settings.max_size, self._settings.per_user, int(self._settings.job_ttl_s * 1000)]
        try:
            ahead = await self._admit(
                keys=keys, args=[job.id, *limits, *_flatten(encode_request(job.request))]
            )
            if ahead == QUEUE_FULL:
                raise QueueFull()
            if ahead == USER_AT_CAP:
                raise UserQueueCapReached()
            await self._kicker.with_task_id(job.id).kiq(job.id)
        except (RedisError, SendTaskError) as error:  # taskiq wraps the broker's RedisError
            log.warning("job %s not queued, Redis is unreachable: %s", job.id, error.__cause__ or error)
            await self._forget(job)
            raise QueueUnavailable() from error
        ticket = Ticket(job, position=ahead)
        self._tickets[job.id] = ticket
        return ticket

    async def waiting(self) -> int:
        return int(await self._redis.zcard(self._keys.waiting))

    async def position(self, job_id: str) -> int | None:
        """Jobs waiting ahead of `job_id`, across all bot processes (0: next, or running)."""
        if job_id not in self._tickets:
            return None
        rank = cast(int | None, await self._redis.zrank(self._keys.waiting, job_id))
        return 0 if rank is None else rank

    async def close(self, drain_timeout_s: float) -> list[Job]:
        """Stop taking jobs, give this process's jobs `drain_timeout_s` to finish, then fail the rest
        and withdraw them from Redis (a worker that takes one later finds nothing to do)."""
        self._closed = True
        deadline = time.monotonic() + drain_timeout_s
        while self._tickets and time.monotonic() < deadline:
            await asyncio.sleep(RESULT_POLL_S)
        unfinished = list(self._tickets.values())
        for ticket in unfinished:
            await self._settle(ticket, JobFailed(QueueClosed.default_message, kind=QueueClosed.kind))
        if self._poller is not None:
            await self._poller  # returns once closed with no ticket left
        if unfinished:
            log.warning("shut down with %d unfinished job(s), their users are told", len(unfinished))
        return [ticket.job for ticket in unfinished]

    async def disconnect(self) -> None:
        """Release the Redis connections; after `close`."""
        await self._broker.shutdown()
        await self._redis.aclose()

    async def _poll_forever(self) -> None:
        # Ends by itself once the queue is closed and settled, not by cancellation: a cancel arriving
        # in the middle of a Redis call can be lost on the way (see `_raise_if_cancelled` in
        # bot/queue_redis_broker.py).
        while not (self._closed and not self._tickets):
            await asyncio.sleep(RESULT_POLL_S)
            if not self._tickets:
                continue
            try:
                await self._poll()
            except RedisError as error:
                # Tickets stay open: once Redis is back they finish, or turn out lost and say so.
                log.warning("cannot poll Redis for results (%s); retrying", error)
                await asyncio.sleep(RECONNECT_DELAY_S)
            except Exception:
                # Every waiting user depends on this loop: a bug on one result must not end it.
                log.exception("unexpected error while polling Redis for results")
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def _poll(self) -> None:
        tickets = list(self._tickets.values())
        async with self._redis.pipeline(transaction=False) as pipe:
            for ticket in tickets:
                pipe.exists(self._keys.result(ticket.job.id))
                pipe.exists(self._keys.input(ticket.job.id))
                pipe.zscore(self._keys.waiting, ticket.job.id)
            replies = await pipe.execute()
        for ticket, has_result, has_input, waiting in zip(
            tickets, replies[0::3], replies[1::3], replies[2::3], strict=True
        ):
            if not has_result and not has_input:
                # Only delivery deletes an input before its TTL: no input and no result means lost.
                await self._settle(ticket, JobFailed(JOB_LOST_MESSAGE, kind="job_lost"))
                continue
            if waiting is None and ticket.started_at is None:
                ticket.mark_started()  # also when it finished within one poll: its wait is recorded
            if has_result:
                await self._deliver(ticket)

    async def _deliver(self, ticket: Ticket) -> None:
        try:
            stored = await self._broker.result_backend.get_result(ticket.job.id)  # deletes it
        except ResultIsMissingError:  # expired between the check and the read
            await self._settle(ticket, JobFailed(JOB_LOST_MESSAGE, kind="job_lost"))
            return
        if stored.is_err:
            log.error("worker failed on job %s: %s", ticket.job.id, stored.error)
            await self._settle(ticket, JobFailed(kind="internal"))
            return
        try:
            outcome: MakeupResult | EngineError | JobFailed = decode_outcome(
                cast(dict[str, Any], stored.return_value)
            )
        except (EngineError, JobFailed) as error:
            outcome = error
        await self._settle(ticket, outcome)

    async def _settle(self, ticket: Ticket, outcome: MakeupResult | EngineError | JobFailed) -> None:
        """Settle a ticket once (it leaves `_tickets` here), then delete what its job left in Redis."""
        if self._tickets.pop(ticket.job.id, None) is None:
            return
        if isinstance(outcome, MakeupResult):
            ticket.resolve(outcome)
        else:
            ticket.fail(outcome)
        await self._forget(ticket.job)

    async def _forget(self, job: Job) -> None:
        """Best effort: what cannot be deleted now expires with its TTL."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._keys.input(job.id), self._keys.result(job.id))
                pipe.zrem(self._keys.waiting, job.id)
                pipe.zrem(self._keys.user(_user_key(job)), job.id)
                await pipe.execute()
        except RedisError as error:
            log.warning("could not delete job %s from Redis (%s); it expires on its own", job.id, error)
