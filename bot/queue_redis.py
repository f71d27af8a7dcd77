"""The Redis-backed job queue (`queue.backend = "redis"`): bot processes submit jobs here and any
number of `facelab worker` processes (bot/queue_redis_worker.py) run them.

Transport is taskiq over a Redis stream (taskiq-redis `RedisStreamBroker`): a job is acknowledged
only after its result is stored, and a job whose worker died is taken over by another worker once it
has been unacknowledged for `queue.reclaim_after_s`. The stream message carries only the job id; the
images live in their own key with a TTL, so nothing large stays in the stream.

Keys, all under `queue.redis_prefix` (<p>):
  <p>:jobs            taskiq stream (consumer group <p>:workers); entries deleted when acknowledged
  <p>:input:<job>     hash: images, parameters, attempt counter; TTL job_ttl_s, deleted on delivery
  <p>:result:<job>    taskiq result; TTL job_ttl_s, deleted when the bot reads it
  <p>:waiting         sorted set of jobs not started yet, by enqueue time: the queue position
  <p>:user:<user>     sorted set of a user's unfinished jobs, scored by deadline: the per-user cap
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage
from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from engine.api import MakeupRequest, MakeupResult
from engine.errors import EngineError
from facelab.settings import QueueSettings

logger = logging.getLogger(__name__)

TASK_NAME = "facelab.makeup"
# How long a worker blocks on the stream before it looks for jobs left behind by a dead worker.
MAX_STREAM_BLOCK_S = 2.0
# Pause before a worker or bot retries after losing Redis.
RECONNECT_DELAY_S = 1.0
# How often a bot process checks Redis for finished jobs (one round trip for all of them).
RESULT_POLL_S = 0.05
SOCKET_TIMEOUT_S = 5.0


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


class JobStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker with the delivery guarantees the queue promises.

    Differences from the stock `listen()` (taskiq-redis 1.2), and why:
    - jobs left unacknowledged by a dead worker are reclaimed before new ones are read, also when no
      new job arrives (the stock loop only looks after a read that returned messages, so the last
      job of a burst could wait forever);
    - one job is read or reclaimed at a time, so an idle worker never finds jobs parked on a busy one;
    - losing Redis or the consumer group (a restarted, empty Redis) is waited out, not fatal;
    - an acknowledged entry is deleted (XACK alone leaves it in the stream forever).
    """

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        while True:
            try:
                async with Redis(connection_pool=self.connection_pool) as redis:
                    async for message in self._deliveries(redis):
                        yield message
            except (RedisConnectionError, RedisTimeoutError) as exc:
                logger.warning("Redis unreachable (%s); retrying in %.0f s", exc, RECONNECT_DELAY_S)
                await asyncio.sleep(RECONNECT_DELAY_S)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning("job stream or consumer group missing (Redis restarted?); recreating")
                await self._declare_consumer_group()

    async def _deliveries(self, redis: Redis) -> AsyncGenerator[AckableMessage, None]:
        while True:
            _next, claimed, _deleted = await redis.xautoclaim(
                self.queue_name,
                self.consumer_group_name,
                self.consumer_name,
                min_idle_time=self.idle_timeout,
                count=1,
            )
            if claimed:
                logger.warning("taking over job message %s from a worker that stopped", claimed[0][0])
            else:
                fetched = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    count=1,
                )
                claimed = [entry for _stream, entries in fetched or [] for entry in entries]
            for message_id, fields in claimed:
                yield AckableMessage(data=fields[b"data"], ack=self._acknowledge(message_id))

    def _acknowledge(self, message_id: bytes) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            async with Redis(connection_pool=self.connection_pool) as redis, redis.pipeline() as pipe:
                pipe.xack(self.queue_name, self.consumer_group_name, message_id)
                pipe.xdel(self.queue_name, message_id)
                await pipe.execute()

        return ack


def build_broker(settings: QueueSettings, consumer_name: str | None = None) -> JobStreamBroker:
    """The broker and result backend both sides use; `consumer_name` names a worker in the group."""
    keys = RedisKeys(settings.redis_prefix)
    connection = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": SOCKET_TIMEOUT_S}
    results: RedisAsyncResultBackend[dict[str, Any]] = RedisAsyncResultBackend(
        settings.redis_url,
        keep_results=False,  # read once, by the bot process that delivers it
        result_ex_time=math.ceil(settings.job_ttl_s),
        prefix_str=keys.results,
        **connection,
    )
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
        **connection,
    )
    return broker.with_result_backend(results)


def encode_request(request: MakeupRequest) -> dict[str, bytes | str]:
    """The input hash of one job: images as raw bytes, the rest as JSON."""
    fields: dict[str, bytes | str] = {
        "selfie": request.selfie,
        "params": json.dumps(
            {
                "look": request.look,
                "strength": request.strength,
                "regions": dict(request.regions) if request.regions is not None else None,
                "output_format": request.output_format,
            }
        ),
    }
    if request.reference is not None:
        fields["reference"] = request.reference
    return fields


def decode_request(fields: dict[bytes, bytes]) -> MakeupRequest:
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
    }


def encode_error(error: EngineError) -> dict[str, Any]:
    return {"error": error.kind, "message": error.user_message, "role": error.role}


def _engine_error_classes(base: type[EngineError] = EngineError) -> Iterator[type[EngineError]]:
    yield base
    for subclass in base.__subclasses__():
        yield from _engine_error_classes(subclass)


def decode_outcome(outcome: dict[str, Any]) -> MakeupResult:
    """The worker's answer back into a result, or the engine error it raised (same type and text)."""
    if "error" in outcome:
        error_class = next((c for c in _engine_error_classes() if c.kind == outcome["error"]), EngineError)
        raise error_class(outcome["message"], role=outcome["role"])
    return MakeupResult(
        image=base64.b64decode(outcome["image"]),
        width=outcome["width"],
        height=outcome["height"],
        faces=outcome["faces"],
        timings_ms=outcome["timings_ms"],
    )


# Admits a job atomically across bot processes: per-user cap, then queue size, then stores its
# input. Returns the 1-based queue position, -1 when the queue is full, -2 when the user is at the cap.
# KEYS: waiting, user set, input hash. ARGV: job id, max waiting, per-user cap, ttl ms, input fields.
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
return redis.call('ZRANK', KEYS[1], ARGV[1]) + 1
"""
QUEUE_FULL = -1
USER_AT_CAP = -2


class QueueUnavailableError(Exception):
    """Redis cannot be reached: the job was not queued."""


class QueueFullError(Exception):
    pass


class UserQueueFullError(Exception):
    pass


class JobLostError(Exception):
    """The job vanished from Redis (expired, or Redis restarted without persistence)."""


@dataclass
class _Pending:
    user_key: str
    future: asyncio.Future[MakeupResult]


def _flatten(fields: dict[str, bytes | str]) -> list[bytes | str]:
    return [item for pair in fields.items() for item in pair]


class RedisJobQueue:
    """Bot-process side: admits and enqueues jobs, and resolves each job's future exactly once."""

    def __init__(self, settings: QueueSettings) -> None:
        self._settings = settings
        self._keys = RedisKeys(settings.redis_prefix)
        self._broker = build_broker(settings)
        self._redis: Redis = Redis.from_url(
            settings.redis_url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        self._admit = self._redis.register_script(_ADMIT_SCRIPT)
        self._kicker: AsyncKicker[Any, Any] = AsyncKicker(TASK_NAME, self._broker, labels={})
        self._pending: dict[str, _Pending] = {}
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Only the result backend needs starting here: the stream and its group belong to the workers.
        await self._broker.result_backend.startup()
        self._poller = asyncio.create_task(self._deliver_results_forever(), name="redis-queue-results")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self._broker.shutdown()
        await self._redis.aclose()

    async def submit(
        self, job_id: str, user_key: str, request: MakeupRequest
    ) -> tuple[int, asyncio.Future[MakeupResult]]:
        """Queue one job; returns its 1-based position and a future for its result."""
        ttl_ms = int(self._settings.job_ttl_s * 1000)
        keys = [self._keys.waiting, self._keys.user(user_key), self._keys.input(job_id)]
        limits = [self._settings.max_size, self._settings.per_user, ttl_ms]
        try:
            position = await self._admit(
                keys=keys, args=[job_id, *limits, *_flatten(encode_request(request))]
            )
            if position == QUEUE_FULL:
                raise QueueFullError
            if position == USER_AT_CAP:
                raise UserQueueFullError
            await self._kicker.with_task_id(job_id).kiq(job_id)
        except RedisError as exc:
            await self._forget(job_id, user_key)
            raise QueueUnavailableError(str(exc)) from exc
        future: asyncio.Future[MakeupResult] = asyncio.get_running_loop().create_future()
        self._pending[job_id] = _Pending(user_key, future)
        return position, future

    async def position(self, job_id: str) -> int | None:
        """1-based place among jobs not started yet; None once a worker has started it."""
        rank = await self._redis.zrank(self._keys.waiting, job_id)
        return None if rank is None else rank + 1

    async def _deliver_results_forever(self) -> None:
        while True:
            await asyncio.sleep(RESULT_POLL_S)
            if not self._pending:
                continue
            try:
                await self._deliver_finished()
            except RedisError as exc:
                # Jobs stay pending: when Redis is back they complete, or turn out lost and say so.
                logger.warning("cannot fetch results from Redis (%s); retrying", exc)
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def _deliver_finished(self) -> None:
        job_ids = list(self._pending)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self._keys.result(job_id))
                pipe.exists(self._keys.input(job_id))
            flags = await pipe.execute()
        for job_id, has_result, has_input in zip(job_ids, flags[0::2], flags[1::2], strict=True):
            if has_result:
                await self._deliver(job_id)
            elif not has_input:
                # Only delivery deletes an input before its TTL, so no input and no result means lost.
                await self._finish(job_id, error=JobLostError(job_id))

    async def _deliver(self, job_id: str) -> None:
        taskiq_result = await self._broker.result_backend.get_result(job_id)
        if taskiq_result.is_err:
            await self._finish(job_id, error=RuntimeError(f"worker failed: {taskiq_result.error}"))
            return
        try:
            result = decode_outcome(taskiq_result.return_value)
        except EngineError as exc:
            await self._finish(job_id, error=exc)
        else:
            await self._finish(job_id, result=result)

    async def _finish(
        self, job_id: str, result: MakeupResult | None = None, error: BaseException | None = None
    ) -> None:
        """Resolve a job's future (once: it leaves `_pending` here), then delete what it left in Redis."""
        pending = self._pending.pop(job_id)
        if not pending.future.done():  # done means the waiter gave up (cancelled)
            if error is not None:
                pending.future.set_exception(error)
            else:
                pending.future.set_result(result)  # type: ignore[arg-type]
        await self._forget(job_id, pending.user_key)

    async def _forget(self, job_id: str, user_key: str) -> None:
        """Best effort: whatever cannot be deleted now expires with its TTL."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._keys.input(job_id), self._keys.result(job_id))
                pipe.zrem(self._keys.waiting, job_id)
                pipe.zrem(self._keys.user(user_key), job_id)
                await pipe.execute()
        except RedisError as exc:
            logger.warning("could not delete job %s from Redis (%s); it expires on its own", job_id, exc)
