"""Worker side of the Redis job queue: what one `facelab worker` process runs.

A worker takes one job at a time off the stream and runs it through a `bot.queue.JobRunner` (the
engine process, which restarts a crashed or hung engine and retries once). The job is acknowledged
only after its result is stored; a worker killed mid-job leaves it unacknowledged, and another
worker takes it over after `queue.reclaim_after_s`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from taskiq import NoResultError
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from bot.queue import JobFailed, JobRunner
from bot.queue_redis_broker import TASK_NAME, RedisKeys, build_broker, connect
from bot.queue_redis_codec import decode_request, encode_error, encode_result
from bot.settings import QueueSettings
from engine.errors import EngineError

log = logging.getLogger(__name__)

# A job taken this many times without an acknowledged result (its workers died on it) is answered
# with an error instead of being tried again, so one poison image cannot take every worker down.
MAX_ATTEMPTS = 2

# Starts a job atomically: takes it off the waiting list and returns its input with the attempt
# counter raised, or nil when there is nothing to do: a result is already stored, or the input is
# gone because the job was delivered, withdrawn or expired.
# KEYS: waiting, input hash, result. ARGV: job id.
_START_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then return false end
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
return redis.call('HGETALL', KEYS[2])
"""


class JobConsumer:
    """The taskiq task body: one job id in, the encoded result (or refusal, or failure) out."""

    def __init__(self, runner: JobRunner, settings: QueueSettings) -> None:
        self._runner = runner
        self._keys = RedisKeys(settings.redis_prefix)
        self._redis = connect(settings)
        self._start = self._redis.register_script(_START_SCRIPT)

    async def run(self, job_id: str) -> dict[str, Any]:
        keys = [self._keys.waiting, self._keys.input(job_id), self._keys.result(job_id)]
        flat = await self._start(keys=keys, args=[job_id])
        if not flat:
            # Idempotence: a second delivery of a finished job stores nothing, so its user gets one reply.
            log.info("job %s is already finished, withdrawn or expired; skipping it", job_id)
            raise NoResultError
        fields = dict(zip(flat[0::2], flat[1::2], strict=True))
        if int(fields[b"attempts"]) > MAX_ATTEMPTS:
            log.error("job %s was taken %d times by workers that died; giving up", job_id, MAX_ATTEMPTS)
            return encode_error(
                JobFailed(
                    "Something went wrong on my side with these photos. Please try others.", "worker_lost"
                )
            )
        try:
            result = await self._runner.run(decode_request(fields))
        except (EngineError, JobFailed) as error:
            return encode_error(error)
        return encode_result(result)

    async def close(self) -> None:
        await self._redis.aclose()


async def run_worker(runner: JobRunner, settings: QueueSettings, name: str, stop: asyncio.Event) -> None:
    """Run jobs as consumer `name` until `stop` is set; then finish the job in hand and return.
    Raises `redis.exceptions.RedisError` when Redis cannot be reached at start."""
    broker = build_broker(settings, consumer_name=name)
    broker.is_worker_process = True
    consumer = JobConsumer(runner, settings)

    async def run_job(job_id: str) -> dict[str, Any]:  # taskiq registers functions, not bound methods
        return await consumer.run(job_id)

    broker.register_task(run_job, task_name=TASK_NAME)
    receiver = Receiver(
        broker,
        max_async_tasks=1,  # one job at a time: the engine is the bottleneck, and a job in hand is
        max_prefetch=0,  # the only one another worker must wait for if this worker dies
        ack_type=AcknowledgeType.WHEN_SAVED,
        run_startup=False,
    )
    try:
        await broker.startup()
        log.info("worker %s listening on %s", name, broker.queue_name)
        await receiver.listen(stop)
        await broker.leave_group()
    finally:
        await broker.shutdown()
        await consumer.close()
