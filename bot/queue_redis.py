"""The Redis-backed job queue (`queue.backend = "redis"`): bot processes submit jobs here and any
number of `facelab worker` processes (bot/queue_redis_worker.py) run them.

Transport is taskiq over a Redis stream (taskiq-redis `RedisStreamBroker`): a job is acknowledged
only after its result is stored, and a job whose worker died is taken over by another worker once it
has been unacknowledged for `queue.reclaim_after_s`. The stream message carries only the job id; the
images live in their own key with a TTL, so nothing large stays in the stream.

Keys, all under `queue.redis_prefix` (<p>):
  <p>:jobs            taskiq stream (consumer group <p>:workers); entries deleted when acknowledged
  <p>:input:<job>     hash: images, parameters, attempt counter; TTL job_ttl_s, deleted on delivery
  <p>:result:<job>    taskiq result, stored only while the input exists; TTL job_ttl_s, deleted when
                      the bot reads it
  <p>:waiting         sorted set of jobs not started yet, by enqueue time: the queue position
  <p>:user:<user>     sorted set of a user's unfinished jobs, scored by deadline: the per-user cap
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage, TaskiqResult
from taskiq.exceptions import SendTaskError
from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker
from taskiq_redis.exceptions import ResultIsMissingError

from bot.queue import Job, JobFailed, QueueClosed, QueueError, QueueFull, Ticket, UserQueueCapReached
from bot.results import StoredResult, decode_stored, encode_stored
from bot.settings import QueueSettings
from engine.api import CompareRequest, EngineRequest, MakeupRequest, MakeupResult
from engine.errors import EngineError

log = logging.getLogger(__name__)

TASK_NAME = "facelab.makeup"
# How long a worker blocks on the stream before it looks for jobs left behind by a dead worker.
MAX_STREAM_BLOCK_S = 2.0
# Pause before a worker or bot retries after losing Redis.
RECONNECT_DELAY_S = 1.0
# How often a bot process checks Redis for finished jobs (one round trip for all of them).
RESULT_POLL_S = 0.05
SOCKET_TIMEOUT_S = 5.0


def connection_options() -> dict[str, Any]:
    """Options for every Redis connection pool of the queue. The retries matter after a Redis
    restart: each pooled connection is then stale and fails once, and is retried on a fresh one."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_TIMEOUT_S,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
    }


def connect(settings: QueueSettings) -> Redis:
    """A client for the queue's own keys (positions, caps, inputs)."""
    return Redis.from_url(settings.redis_url, **connection_options())


@dataclass(frozen=True)
class RedisKeys:
    """Names of every key the queue uses, derived from one prefix."""

    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def group(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def results(self) -> str:
        return f"{self.prefix}:result"

    @property
    def waiting(self) -> str:
        return f"{self.prefix}:waiting"

    def input(self, job_id: str) -> str:
        return f"{self.prefix}:input:{job_id}"

    def result(self, job_id: str) -> str:
        return f"{self.results}:{job_id}"

    def user(self, user_key: str) -> str:
        return f"{self.prefix}:user:{user_key}"

    def button(self, result_id: str) -> str:
        """What a result's buttons re-run from (`RedisResults`)."""
        return f"{self.prefix}:button:{result_id}"

    def buttons_of(self, user_key: str) -> str:
        """The ids of one person's results with live buttons, for /forget."""
        return f"{self.prefix}:buttons:{user_key}"


class JobStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker with the delivery guarantees the queue promises.

    Differences from the stock `listen()` (taskiq-redis 1.2), and why:
    - jobs left unacknowledged by a dead worker are reclaimed before new ones are read, also when no
      new job arrives (the stock loop only looks after a read that returned messages, so the last
      job of a burst could wait forever);
    - one job is read or reclaimed at a time, so an idle worker never finds jobs parked on a busy one;
    - losing Redis or the consumer group (a restarted, empty Redis) is waited out, not fatal;
    - an acknowledged entry is deleted (XACK alone leaves it in the stream forever);
    - a stop (the receiver cancelling the read) that redis-py drops on Python 3.11 is still honoured,
      so a stopping worker cannot hang in its read loop (`_raise_if_cancelled`);
    - a worker joins the consumer group by name as it starts, so operators (and tests) see it
      before its first job.
    """

    async def _declare_consumer_group(self) -> None:
        await super()._declare_consumer_group()
        async with Redis(connection_pool=self.connection_pool) as redis:
            await redis.xgroup_createconsumer(self.queue_name, self.consumer_group_name, self.consumer_name)

    async def leave_group(self) -> None:
        """Remove this consumer from the group when it stops cleanly, so restarts do not pile up
        names; one still holding a job stays, for another worker to take the job over."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            holding = await redis.xpending_range(
                self.queue_name, self.consumer_group_name, "-", "+", 1, consumername=self.consumer_name
            )
            if not holding:
                await redis.xgroup_delconsumer(self.queue_name, self.consumer_group_name, self.consumer_name)

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        while True:
            try:
                async with Redis(connection_pool=self.connection_pool) as redis:
                    async for message in self._deliveries(redis):
                        yield message
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("Redis unreachable (%s); retrying in %.0f s", exc, RECONNECT_DELAY_S)
                await asyncio.sleep(RECONNECT_DELAY_S)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("job stream or consumer group missing (Redis restarted?); recreating")
                await self._declare_consumer_group()

    async def _deliveries(self, redis: Redis) -> AsyncGenerator[AckableMessage, None]:
        while True:
            entries = await self._take_over(redis)
            if entries:
                log.warning("taking over job message %s from a worker that stopped", entries[0][0])
            else:
                # Nothing in hand, so a stop that redis-py lost on the way is honoured before blocking.
                _raise_if_cancelled()
                entries = await self._read_new(redis)
            for message_id, fields in entries:
                yield AckableMessage(data=fields[b"data"], ack=self._acknowledge(message_id))

    async def _take_over(self, redis: Redis) -> list[Any]:
        """At most one entry left unacknowledged for `idle_timeout` ms by another consumer."""
        # redis-py types stream replies loosely; XAUTOCLAIM answers [next id, entries, deleted ids].
        reply = await redis.xautoclaim(
            self.queue_name,
            self.consumer_group_name,
            self.consumer_name,
            min_idle_time=self.idle_timeout,
            count=1,
        )
        return cast(list[Any], cast(list[Any], reply)[1])

    async def _read_new(self, redis: Redis) -> list[Any]:
        """At most one new entry, waiting up to `block` ms for it."""
        fetched = await redis.xreadgroup(
            self.consumer_group_name, self.consumer_name, {self.queue_name: ">"}, block=self.block, count=1
        )
        return [entry for _stream, entries in cast(list[Any], fetched) or [] for entry in entries]

    def _acknowledge(self, message_id: bytes) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            async with Redis(connection_pool=self.connection_pool) as redis, redis.pipeline() as pipe:
                pipe.xack(self.queue_name, self.consumer_group_name, message_id)
                pipe.xdel(self.queue_name, message_id)
                await pipe.execute()

        return ack


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that was swallowed below it.

    redis-py wraps every socket write in `asyncio.wait_for`, which on Python 3.11 returns the
    write's result, dropping the `CancelledError`, when the cancel arrives just as the write
    completes (CPython gh-86296; fixed in 3.12). The task still counts the request in
    `cancelling()`, so it is not lost for good: re-raised here, before the stream is read again.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# Stores a worker's answer only while its job's input exists. A bot shutting down withdraws its
# unfinished jobs (deletes their inputs) and tells their users to resend: a job that was running
# then must not leave its result (megabytes of image) in Redis until the TTL.
# KEYS: result, input. ARGV: the stored value, its TTL in seconds. Returns 1 if stored, else 0.
_STORE_RESULT_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class JobResultBackend(RedisAsyncResultBackend[dict[str, Any]]):
    """taskiq's Redis result backend, storing a result only if its job was not withdrawn meanwhile
    (checked and stored in one atomic script, so a withdrawal cannot slip in between)."""

    def __init__(self, settings: QueueSettings) -> None:
        self._keys = RedisKeys(settings.redis_prefix)
        self._ttl_s = math.ceil(settings.job_ttl_s)
        super().__init__(
            settings.redis_url,
            keep_results=False,  # read once, by the bot process that delivers it
            result_ex_time=self._ttl_s,
            prefix_str=self._keys.results,
            **connection_options(),
        )

    async def set_result(self, task_id: str, result: TaskiqResult[dict[str, Any]]) -> None:
        value = self.serializer.dumpb(result.model_dump(mode="json"))
        keys = [self._task_name(task_id), self._keys.input(task_id)]
        async with Redis(connection_pool=self.redis_pool) as redis:
            stored = await redis.eval(_STORE_RESULT_SCRIPT, len(keys), *keys, value, self._ttl_s)
        if not stored:
            log.info("job %s was withdrawn while it ran; its result is dropped", task_id)


def build_broker(settings: QueueSettings, consumer_name: str | None = None) -> JobStreamBroker:
    """The broker and result backend both sides use; `consumer_name` names a worker in the group."""
    keys = RedisKeys(settings.redis_prefix)
    results = JobResultBackend(settings)
    block_s = min(MAX_STREAM_BLOCK_S, settings.reclaim_after_s / 2)
    broker = JobStreamBroker(
        settings.redis_url,
        queue_name=keys.stream,
        consumer_group_name=keys.group,
        consumer_name=consumer_name,
        # "0", not "$": a group recreated after a Redis restart must still see jobs queued before it.
        consumer_id="0",
        idle_timeout=int(settings.reclaim_after_s * 1000),
        xread_block=int(block_s * 1000),
        **connection_options(),
    )
    return broker.with_result_backend(results)


def encode_request(request: EngineRequest) -> dict[str, bytes | str]:
    """The input hash of one job: images as raw bytes, the rest as JSON."""
    if isinstance(request, CompareRequest):
        return {"before": request.before, "after": request.after}
    fields: dict[str, bytes | str] = {
        "selfie": request.selfie,
        "params": json.dumps(
            {
                "look": request.look,
                "strength": request.strength,
                "regions": dict(request.regions) if request.regions is not None else None,
                "output_format": request.output_format,
                "mode": request.mode,
            }
        ),
    }
    if request.reference is not None:
        fields["reference"] = request.reference
    return fields


def decode_request(fields: dict[bytes, bytes]) -> EngineRequest:
    if b"before" in fields:
        return CompareRequest(before=fields[b"before"], after=fields[b"after"])
    params = json.loads(fields[b"params"])
    return MakeupRequest(selfie=fields[b"selfie"], reference=fields.get(b"reference"), **params)


def encode_result(result: MakeupResult) -> dict[str, Any]:
    """A worker's answer, as JSON the taskiq result backend can store."""
    return {
        "image": base64.b64encode(result.image).decode("ascii"),
        "width": result.width,
        "height": result.height,
        "faces": result.faces,
        "timings_ms": result.timings_ms,
        "paint_left_out": result.paint_left_out,
    }


def encode_error(error: EngineError | JobFailed) -> dict[str, Any]:
    """A refusal (bad input, an `EngineError`) or a failure (a `JobFailed`), by kind and user text."""
    refused = isinstance(error, EngineError)
    role = error.role if isinstance(error, EngineError) else None
    return {"error": error.kind, "message": error.user_message, "role": role, "refused": refused}


def _engine_error_classes(base: type[EngineError] = EngineError) -> Iterator[type[EngineError]]:
    yield base
    for subclass in base.__subclasses__():
        yield from _engine_error_classes(subclass)


def decode_outcome(outcome: dict[str, Any]) -> MakeupResult:
    """A worker's answer back into the result, or into the error it stands for (same type, same
    text), so the core cannot tell a Redis worker from the local engine process."""
    if "error" in outcome:
        if not outcome["refused"]:
            raise JobFailed(outcome["message"], kind=outcome["error"])
        error_class = next((c for c in _engine_error_classes() if c.kind == outcome["error"]), EngineError)
        raise error_class(outcome["message"], role=outcome["role"])
    return MakeupResult(
        image=base64.b64decode(outcome["image"]),
        width=outcome["width"],
        height=outcome["height"],
        faces=outcome["faces"],
        timings_ms=outcome["timings_ms"],
        # Absent in answers from workers older than look modes.
        paint_left_out=outcome.get("paint_left_out", False),
    )


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
        # in the middle of a Redis call can be lost on the way (see `_raise_if_cancelled`).
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
