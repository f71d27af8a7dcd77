"""The Redis queue's transport, shared by bot processes (bot/queue_redis.py) and workers
(bot/queue_redis_worker.py): connections, the names of its keys, and taskiq over a Redis stream
(taskiq-redis `RedisStreamBroker`), where a job is acknowledged only after its result is stored and a
job whose worker died is taken over by another worker once it has been unacknowledged for
`queue.reclaim_after_s`. The stream message carries only the job id; the images live in their own key
with a TTL, so nothing large stays in the stream.

Keys, all under `queue.redis_prefix` (<p>):
  <p>:jobs            taskiq stream (consumer group <p>:workers); entries deleted when acknowledged
  <p>:input:<job>     hash: images, parameters, attempt counter; TTL job_ttl_s, deleted on delivery
  <p>:result:<job>    taskiq result, stored only while the input exists; TTL job_ttl_s, deleted when
                      the bot reads it
  <p>:waiting         sorted set of jobs not started yet, by enqueue time: the queue position
  <p>:user:<user>     sorted set of a user's unfinished jobs, scored by deadline: the per-user cap
  <p>:button:<id>     what a result's buttons re-run from (bot.queue_redis.RedisResults)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage, TaskiqResult
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from bot.settings import QueueSettings

log = logging.getLogger(__name__)

TASK_NAME = "facelab.makeup"
# How long a worker blocks on the stream before it looks for jobs left behind by a dead worker.
MAX_STREAM_BLOCK_S = 2.0
# Pause before a worker or bot retries after losing Redis.
RECONNECT_DELAY_S = 1.0
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
