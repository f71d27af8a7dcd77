"""Worker side of the Redis job queue: what one `facelab worker` process runs.

One job at a time per worker (one worker per GPU, or per CPU core for the embedded engine). A job
is acknowledged only after its result is stored; a worker killed mid-job leaves its job
unacknowledged, and another worker takes it over after `queue.reclaim_after_s`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from taskiq import NoResultError
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from bot.queue_redis import (
    SOCKET_TIMEOUT_S,
    TASK_NAME,
    RedisKeys,
    build_broker,
    decode_request,
    encode_error,
    encode_result,
)
from engine.api import MakeupEngine
from engine.errors import EngineError
from facelab.settings import QueueSettings

logger = logging.getLogger(__name__)

# A job that was started this many times without an acknowledged result (its workers died on it)
# is answered with an error instead of being tried again, so one poison image cannot kill them all.
MAX_ATTEMPTS = 2

# Starts a job atomically: takes it off the waiting list, and returns its input with the attempt
# counter raised, or nil when there is nothing to do (result already stored, or input gone because
# the job was delivered or expired).
# KEYS: waiting, input hash, result. ARGV: job id.
_START_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then return false end
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
return redis.call('HGETALL', KEYS[2])
"""


class EngineCrashedError(EngineError):
    kind = "engine_crashed"


class JobRunner:
    """The taskiq task: one job id in, the encoded result (or engine error) out."""

    def __init__(self, engine: MakeupEngine, settings: QueueSettings) -> None:
        self._engine = engine
        self._keys = RedisKeys(settings.redis_prefix)
        self._redis: Redis = Redis.from_url(
            settings.redis_url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        self._start = self._redis.register_script(_START_SCRIPT)

    async def run(self, job_id: str) -> dict[str, Any]:
        keys = [self._keys.waiting, self._keys.input(job_id), self._keys.result(job_id)]
        flat = await self._start(keys=keys, args=[job_id])
        if not flat:
            # Idempotence: a second delivery of a finished job stores nothing, so one reply only.
            logger.info("job %s already finished or expired; skipping", job_id)
            raise NoResultError
        fields = dict(zip(flat[0::2], flat[1::2], strict=True))
        if int(fields[b"attempts"]) > MAX_ATTEMPTS:
            logger.error("job %s stopped its workers %d times; giving up", job_id, MAX_ATTEMPTS)
            return encode_error(EngineCrashedError("Sorry, this photo could not be processed."))
        request = decode_request(fields)
        try:
            # The engine is synchronous; a thread keeps the event loop (and the broker) responsive.
            result = await asyncio.to_thread(self._engine.apply, request)
        except EngineError as exc:
            return encode_error(exc)
        return encode_result(result)

    async def close(self) -> None:
        await self._redis.aclose()


async def run_worker(
    engine: MakeupEngine, settings: QueueSettings, consumer_name: str, stop: asyncio.Event
) -> None:
    """Run jobs until `stop` is set, then finish the job in hand and return."""
    broker = build_broker(settings, consumer_name=consumer_name)
    broker.is_worker_process = True
    runner = JobRunner(engine, settings)

    async def run_job(job_id: str) -> dict[str, Any]:  # taskiq registers functions, not bound methods
        return await runner.run(job_id)

    broker.register_task(run_job, task_name=TASK_NAME)
    receiver = Receiver(
        broker,
        max_async_tasks=1,
        max_prefetch=0,
        ack_type=AcknowledgeType.WHEN_SAVED,
        run_startup=True,
    )
    try:
        await receiver.listen(stop)
    finally:
        await broker.shutdown()
        await runner.close()
