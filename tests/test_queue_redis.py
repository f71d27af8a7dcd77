"""The Redis-backed job queue (`queue.backend = "redis"`) against a real Redis, real `facelab worker`
processes running the embedded engine, and real bot processes (`facelab serve`'s assembly).

Each test uses its own key prefix; the Redis restart test runs its own redis-server on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq.kicker import AsyncKicker

from bot.queue import Job, JobFailed, QueueClosed, QueueFull, Ticket, UserQueueCapReached
from bot.queue_redis import QueueUnavailable, RedisJobQueue
from bot.queue_redis_broker import TASK_NAME, RedisKeys, build_broker
from bot.queue_redis_codec import decode_outcome, decode_request, encode_request, encode_result
from bot.queue_redis_worker import run_worker
from bot.settings import QueueSettings
from engine.api import CompareRequest, MakeupRequest, MakeupResult
from storage import Storage
from storage.migrate import alembic_config
from tests.conftest import REPO_ROOT
from tests.redis_bot_process import selfie_width, small_photo
from tests.test_storage import drop_schema

WORKER_START_S = 120.0  # a worker spawns its engine process first; the machine may be busy


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    redis = Redis.from_url(redis_url)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def settings_for(redis_url: str, prefix: str, **overrides: float) -> QueueSettings:
    return QueueSettings(backend="redis", redis_url=redis_url, redis_prefix=prefix, **overrides)  # type: ignore[arg-type]


def environment(settings: QueueSettings, **extra: str) -> dict[str, str]:
    """FACELAB_* variables that give a subprocess these queue settings."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **extra)
    for name in ("backend", "redis_url", "redis_prefix", "reclaim_after_s", "per_user", "max_size"):
        env[f"FACELAB_QUEUE__{name.upper()}"] = str(getattr(settings, name))
    return env


class Workers:
    """`facelab worker` subprocesses, each logging to its own file."""

    def __init__(self, settings: QueueSettings, log_dir: Path) -> None:
        self.settings, self.log_dir = settings, log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        with open(self.log(name), "wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "facelab", "worker", "--name", name],
                cwd=REPO_ROOT,
                env=environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> Path:
        return self.log_dir / f"worker-{name}.log"

    async def wait_listening(self, redis: Redis, *names: str) -> None:
        """Until each named worker has joined the consumer group (it does once its engine is up)."""
        keys = RedisKeys(self.settings.redis_prefix)
        async with asyncio.timeout(WORKER_START_S):
            while True:
                for name, process in self.processes.items():
                    assert process.poll() is None, self.log(name).read_text()
                if await redis.exists(keys.stream):
                    consumers = await redis.xinfo_consumers(keys.stream, keys.group)
                    if set(names) <= {c["name"].decode() for c in consumers}:
                        return
                await asyncio.sleep(0.1)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def workers_for(tmp_path: Path) -> Iterator[list[Workers]]:
    """Call `Workers(...)` through this list so every started worker is stopped after the test."""
    made: list[Workers] = []
    yield made
    for workers in made:
        workers.stop_all()


def request_of_width(width: int) -> MakeupRequest:
    return MakeupRequest(
        selfie=small_photo("sm_source_01.jpg", width),
        reference=small_photo("elegant_ref_02.png", 256),
        strength=0.7,
    )


LOOK_REQUEST = MakeupRequest(selfie=b"never decoded", look="natural")


def job(user: str, width: int) -> Job:
    return Job(uuid.uuid4().hex, "test", f"chat-{user}", user, request_of_width(width))


async def keys_left(redis: Redis, prefix: str, kind: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{prefix}:{kind}:*")]


# -- admission: positions and caps are shared by every bot process -------------------------------------


async def test_a_jobs_mode_and_its_results_paint_flag_survive_the_trip_through_redis(
    redis_url: str, prefix: str
) -> None:
    request = MakeupRequest(b"selfie", b"ref", strength=0.4, regions={"lips": 1}, mode="full")
    redis = Redis.from_url(redis_url)
    try:
        await redis.hset(f"{prefix}:input", mapping=encode_request(request))  # as the bot stores a job
        assert decode_request(await redis.hgetall(f"{prefix}:input")) == request
    finally:
        await redis.aclose()
    result = MakeupResult(b"jpeg", width=3, height=2, faces=1, timings_ms={"total": 5.0}, paint_left_out=True)
    stored = json.loads(json.dumps(encode_result(result)))  # the result backend keeps JSON
    assert decode_outcome(stored) == result
    # A worker that predates look modes answers without the flag: nothing was left out that it knew of.
    del stored["paint_left_out"]
    assert decode_outcome(stored).paint_left_out is False


async def test_a_before_after_job_survives_the_trip_through_redis(redis_url: str, prefix: str) -> None:
    request = CompareRequest(before=b"selfie", after=b"result")
    redis = Redis.from_url(redis_url)
    try:
        await redis.hset(f"{prefix}:input", mapping=encode_request(request))
        assert decode_request(await redis.hgetall(f"{prefix}:input")) == request
    finally:
        await redis.aclose()


async def test_positions_and_caps_hold_across_bot_processes(redis_url: str, prefix: str) -> None:
    settings = settings_for(redis_url, prefix, max_size=3, per_user=2)
    # Two queues with their own connections: to Redis, two bot processes. No worker runs, so jobs wait.
    first, second = RedisJobQueue(settings), RedisJobQueue(settings)
    await first.start()
    await second.start()
    redis = Redis.from_url(redis_url)
    try:
        ann_1 = await first.submit(job("ann", 200))
        ann_2 = await second.submit(job("ann", 201))
        with pytest.raises(UserQueueCapReached):
            await first.submit(job("ann", 202))
        bob = await second.submit(job("bob", 203))
        with pytest.raises(QueueFull):
            await first.submit(job("cid", 204))
        assert [ann_1.position, ann_2.position, bob.position] == [0, 1, 2]
        assert await second.position(bob.job.id) == 2
        assert await first.position(bob.job.id) is None  # not this process's job

        # Inputs sit in Redis with a TTL no longer than queue.job_ttl_s.
        ttl_ms = await redis.pttl(RedisKeys(prefix).input(bob.job.id))
        assert 0 < ttl_ms <= settings.job_ttl_s * 1000

        # Closing withdraws the process's unfinished jobs: users told, inputs deleted, caps freed.
        assert [j.id for j in await first.close(drain_timeout_s=0)] == [ann_1.job.id]
        with pytest.raises(JobFailed) as failed:
            await ann_1.result()
        assert failed.value.kind == QueueClosed.kind
        with pytest.raises(QueueClosed):
            await first.submit(job("dan", 205))
        cid = await second.submit(job("cid", 206))
        assert cid.position == 2  # ann's withdrawn job no longer counts ahead
        assert await second.position(ann_2.job.id) == 0
        assert len(await second.close(drain_timeout_s=0)) == 3
        outcomes = await asyncio.gather(*(t.result() for t in (ann_2, bob, cid)), return_exceptions=True)
        assert [getattr(o, "kind", o) for o in outcomes] == [QueueClosed.kind] * 3
        assert await keys_left(redis, prefix, "input") == []
        assert await keys_left(redis, prefix, "user") == []
        assert not await redis.exists(RedisKeys(prefix).waiting)
    finally:
        await first.disconnect()
        await second.disconnect()
        await redis.aclose()


# -- two workers, two bot processes ------------------------------------------------------------------


@pytest.mark.slow  # two `facelab serve` and two `facelab worker` processes with real engines
async def test_two_bots_and_two_workers_deliver_100_jobs_each_to_its_own_user_once(
    redis_url: str, postgres_url: str, prefix: str, tmp_path: Path, workers_for: list[Workers]
) -> None:
    settings = settings_for(redis_url, prefix, per_user=2, reclaim_after_s=60)
    workers = Workers(settings, tmp_path)
    workers_for.append(workers)
    for name in ("w1", "w2"):
        workers.start(name)
    schema = f"test_redis_{uuid.uuid4().hex[:10]}"
    env = environment(settings, FACELAB_DATABASE__URL=postgres_url, FACELAB_DATABASE__SCHEMA=schema)
    # 50 users with 2 try-ons each, split over two bot processes sharing Redis and one PostgreSQL
    # schema that neither has created yet: they start together, so both migrate at once.
    bots = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.redis_bot_process", str(first), "25", "2",
            cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for first in (0, 25)
    ]  # fmt: skip
    outputs = await asyncio.wait_for(asyncio.gather(*(bot.communicate() for bot in bots)), 600)
    logs = "".join(err.decode() for _, err in outputs)
    assert [bot.returncode for bot in bots] == [0, 0], logs[-5000:]
    received = [json.loads(line) for out, _ in outputs for line in out.decode().splitlines()]

    images = [r for r in received if r["kind"] == "image"]
    failures = [r for r in received if r["kind"] == "text" and "ahead of yours" not in r["text"]]
    assert failures == []
    assert len(images) == 100
    # Job n of user u replies to message "job{n}" in chat u with the selfie of width selfie_width(n).
    assert Counter(image["reply_to"] for image in images) == Counter(f"job{n}" for n in range(100))
    for image in images:
        n = int(image["reply_to"].removeprefix("job"))
        assert image["chat"] == f"chat{n // 2}"
        assert image["width"] == selfie_width(n)

    # Each migration ran exactly once, and each job was recorded once in PostgreSQL.
    revisions = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
    assert logs.count("Running upgrade") == len(revisions), logs
    storage = await Storage.open(postgres_url, schema=schema)
    try:
        assert (await storage.admin_stats()).jobs_by_status == {"ok": 100}
    finally:
        await storage.close()
        await drop_schema(postgres_url, schema)

    redis = Redis.from_url(redis_url)
    try:
        assert await keys_left(redis, prefix, "input") == []
        assert await keys_left(redis, prefix, "result") == []
        assert await redis.xlen(RedisKeys(prefix).stream) == 0  # acknowledged entries are deleted
    finally:
        await redis.aclose()


# -- a worker killed mid-job ---------------------------------------------------------------------------


async def wait_for_job_in_hand(redis: Redis, keys: RedisKeys, consumer: str) -> None:
    async with asyncio.timeout(WORKER_START_S):
        while not await redis.xpending_range(keys.stream, keys.group, "-", "+", 1, consumername=consumer):
            await asyncio.sleep(0.002)


@pytest.mark.slow  # `facelab worker` processes with real engines, one killed
async def test_a_job_of_a_worker_killed_mid_job_completes_on_the_other_once(
    redis_url: str, prefix: str, tmp_path: Path, workers_for: list[Workers]
) -> None:
    settings = settings_for(redis_url, prefix, per_user=10, reclaim_after_s=3)
    keys = RedisKeys(prefix)
    workers = Workers(settings, tmp_path)
    workers_for.append(workers)
    queue = RedisJobQueue(settings)
    await queue.start()
    redis = Redis.from_url(redis_url)
    try:
        workers.start("doomed")
        workers.start("survivor")
        await workers.wait_listening(redis, "doomed", "survivor")
        # Large selfies, so a job lasts long enough to be caught in the middle.
        tickets = [await queue.submit(job(f"user{n % 3}", 900 + n)) for n in range(6)]
        await wait_for_job_in_hand(redis, keys, "doomed")
        workers.processes["doomed"].send_signal(signal.SIGKILL)
        workers.processes["doomed"].wait()
        # Killed before acknowledging: the job is still pending on the dead worker.
        orphaned = await redis.xpending_range(keys.stream, keys.group, "-", "+", 10, consumername="doomed")
        assert len(orphaned) == 1

        results = await asyncio.wait_for(asyncio.gather(*(t.result() for t in tickets)), 300)
        assert [r.width for r in results] == [900 + n for n in range(6)]
        assert all(ticket.started_at is not None for ticket in tickets)
        assert "taking over job message" in workers.log("survivor").read_text()
        assert (await redis.xpending(keys.stream, keys.group))["pending"] == 0

        # A second delivery of a finished job (as when a slow worker's job is taken over) is skipped:
        # nothing is stored for it, so nobody could be answered twice.
        await redeliver(settings, tickets[0])
        async with asyncio.timeout(60):
            while await redis.xlen(keys.stream):
                await asyncio.sleep(0.05)
        assert await keys_left(redis, prefix, "result") == []
        assert await keys_left(redis, prefix, "input") == []

        # A worker that stops cleanly leaves the consumer group; the killed one is still listed.
        workers.stop_all()
        assert workers.processes["survivor"].returncode == 0
        consumers = await redis.xinfo_consumers(keys.stream, keys.group)
        assert [c["name"] for c in consumers] == [b"doomed"]
    finally:
        await queue.close(drain_timeout_s=0)
        await queue.disconnect()
        await redis.aclose()


async def redeliver(settings: QueueSettings, ticket: Ticket) -> None:
    broker = build_broker(settings)
    await AsyncKicker(TASK_NAME, broker, labels={}).with_task_id(ticket.job.id).kiq(ticket.job.id)
    await broker.shutdown()


# -- a job withdrawn while it runs -----------------------------------------------------------------------


class HeldRunner:
    """A `bot.queue.JobRunner` whose jobs run until the test releases them; 2 MB results."""

    def __init__(self) -> None:
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def run(self, request: MakeupRequest) -> MakeupResult:
        self.started.set()
        await self.release.wait()
        return MakeupResult(b"\xff" * 2_000_000, 1, 1, 1)


async def test_a_job_withdrawn_while_it_runs_leaves_no_result_in_redis(redis_url: str, prefix: str) -> None:
    settings = settings_for(redis_url, prefix)
    keys = RedisKeys(prefix)
    queue = RedisJobQueue(settings)
    await queue.start()
    runner, stop = HeldRunner(), asyncio.Event()
    worker = asyncio.create_task(run_worker(runner, settings, "held", stop))
    redis = Redis.from_url(redis_url)
    try:
        # Control: a job nobody withdraws is stored and delivered as before.
        runner.release.set()
        delivered = await queue.submit(Job(uuid.uuid4().hex, "test", "chat", "alice", LOOK_REQUEST))
        assert (await asyncio.wait_for(delivered.result(), 60)).width == 1

        runner.started.clear()
        runner.release.clear()
        ticket = await queue.submit(Job(uuid.uuid4().hex, "test", "chat", "bob", LOOK_REQUEST))
        await asyncio.wait_for(runner.started.wait(), 60)
        # The bot shuts down (SIGTERM) while the worker runs it: the user is told to resend.
        assert [job.id for job in await queue.close(drain_timeout_s=0)] == [ticket.job.id]
        with pytest.raises(JobFailed):
            await ticket.result()
        runner.release.set()
        # The worker finishes the job and acknowledges it, storing nothing.
        async with asyncio.timeout(60):
            while await redis.xlen(keys.stream):
                await asyncio.sleep(0.05)
        assert await keys_left(redis, prefix, "result") == []
        assert await keys_left(redis, prefix, "input") == []
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
        await queue.disconnect()
        await redis.aclose()


async def test_a_worker_stops_although_redis_py_drops_the_cancel_of_its_read(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How the test above hung about one run in three: taskiq stops a worker by cancelling its read
    # of the stream, and Python 3.11's asyncio.wait_for inside redis-py drops a cancel that arrives
    # just as a write completes. The broker then went on reading an idle stream forever.
    broker = build_broker(settings_for(redis_url, prefix), consumer_name="stopping")
    await broker.startup()
    xautoclaim, dropped = Redis.xautoclaim, asyncio.Event()

    async def xautoclaim_dropping_a_cancel(redis: Redis, *args: object, **kwargs: object) -> object:
        if not dropped.is_set():
            dropped.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)
        return await xautoclaim(redis, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Redis, "xautoclaim", xautoclaim_dropping_a_cancel)
    deliveries = broker.listen()
    reading = asyncio.create_task(anext(deliveries))
    try:
        await dropped.wait()
        reading.cancel()
        await asyncio.wait({reading}, timeout=5)  # far less than the test above allowed
        assert reading.cancelled()
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await deliveries.aclose()
        await broker.shutdown()


# -- Redis restarted during a run ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A throw-away redis-server without persistence: a restart loses everything, as in a crash."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = subprocess.Popen([*command, "--daemonize", "no"], stdout=subprocess.DEVNULL)
        async with asyncio.timeout(30):
            while True:
                try:
                    redis = Redis.from_url(self.url)
                    await redis.ping()
                    await redis.aclose()
                    return
                except RedisError:
                    await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis()
    await server.start()
    yield server
    server.stop()


@pytest.mark.slow  # a `facelab worker` with a real engine, and a Redis server restarted
async def test_redis_restart_mid_run_is_reported_and_recovered_from(
    own_redis: OwnRedis, tmp_path: Path, workers_for: list[Workers]
) -> None:
    settings = settings_for(own_redis.url, "restart", per_user=10, reclaim_after_s=3)
    workers = Workers(settings, tmp_path)
    workers_for.append(workers)
    workers.start("w1")
    queue = RedisJobQueue(settings)
    await queue.start()
    redis = Redis.from_url(own_redis.url)
    try:
        await workers.wait_listening(redis, "w1")
        assert (await (await queue.submit(job("ann", 300))).result()).width == 300

        # A job queued while the worker is paused, then Redis dies and comes back empty.
        workers.processes["w1"].send_signal(signal.SIGSTOP)
        stranded = await queue.submit(job("bob", 301))
        own_redis.stop()
        with pytest.raises(QueueUnavailable) as refused:
            await queue.submit(job("cid", 302))
        assert "can't reach my job queue" in refused.value.user_message
        await own_redis.start()
        workers.processes["w1"].send_signal(signal.SIGCONT)

        # The stranded job is reported, not left hanging; new jobs run again.
        with pytest.raises(JobFailed) as lost:
            await asyncio.wait_for(stranded.result(), 60)
        assert lost.value.kind == "job_lost"
        assert "send your photos again" in lost.value.user_message
        recovered = await queue.submit(job("cid", 303))
        assert (await asyncio.wait_for(recovered.result(), 120)).width == 303
    finally:
        await queue.close(drain_timeout_s=0)
        await queue.disconnect()
        await redis.aclose()
