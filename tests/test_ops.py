"""facelab/ops_server.py and bot/metrics.py over real loopback HTTP: /healthz answers 200 or 503 with
what is wrong, /metrics is Prometheus text with the counts of the jobs observed; and a real
`facelab worker` (Redis queue) serving both after a job. The bot's endpoint after a run through
Telegram is in test_hardening_e2e.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bot.metrics import MeteredRunner, Metrics
from bot.queue import Job
from bot.queue_redis import RedisJobQueue
from bot.settings import QueueSettings
from engine.api import MakeupRequest, MakeupResult
from engine.errors import NoFaceError
from facelab.ops_server import HealthCheck, OpsServer
from facelab.settings import MetricsSettings
from storage import UsageRecord, UsageStatus
from tests.conftest import REPO_ROOT, free_port
from tests.redis_bot_process import small_photo

SELFIE = "sm_source_01.jpg"

# serve(checks, metrics=None) -> base URL of a started OpsServer
Serve = Callable[..., Awaitable[str]]


async def healthy() -> str | None:
    return None


async def database_down() -> str | None:
    return "database unreachable"


async def broken() -> str | None:
    raise RuntimeError("bug in a check")


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[OpsServer] = []

    async def start(checks: Mapping[str, HealthCheck], metrics: Metrics | None = None) -> str:
        server = OpsServer(MetricsSettings(port=0), metrics or Metrics(), checks)
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.close()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def job(status: UsageStatus, error_kind: str | None = None, engine_ms: int | None = None) -> UsageRecord:
    return UsageRecord(
        job_id=f"{status}-{error_kind}-{engine_ms}",
        platform="telegram",
        user_id=1,
        chat_id=1,
        chat_type="private",
        status=status,
        error_kind=error_kind,
        engine_ms=engine_ms,
        queue_wait_ms=5 if engine_ms else None,
    )


def test_defaults_bind_loopback_only() -> None:
    assert MetricsSettings().host == "127.0.0.1"


async def test_a_taken_port_is_logged_not_fatal(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    base = await serve({})
    taken = int(base.rsplit(":", 1)[1])
    second = OpsServer(MetricsSettings(port=taken), Metrics(), {})
    await second.start()  # does not raise
    await second.close()
    assert f"not started on port {taken}" in caplog.text
    assert (await get(f"{base}/healthz"))[0] == 200  # the first one still answers


async def test_health_is_ok_when_every_check_passes(serve: Serve) -> None:
    base = await serve({"queue": healthy, "engine": healthy})
    status, content_type, body = await get(f"{base}/healthz")
    assert status == 200 and content_type.startswith("application/json")
    assert body == '{"status": "ok", "checks": {"queue": "ok", "engine": "ok"}}'


async def test_health_says_what_fails_with_503(serve: Serve) -> None:
    base = await serve({"queue": healthy, "database": database_down, "broken": broken})
    status, _, body = await get(f"{base}/healthz")
    assert status == 503
    assert '"status": "failing"' in body
    assert '"database": "database unreachable"' in body and '"broken": "check raised RuntimeError"' in body
    assert '"queue": "ok"' in body


async def test_metrics_count_jobs_by_status_errors_by_kind_and_engine_time(
    serve: Serve,
) -> None:
    metrics = Metrics()
    depth = [3]

    async def waiting() -> int:
        return depth[0]

    metrics.track_queue_depth(waiting)
    for record in (
        job(UsageStatus.OK, engine_ms=300),
        job(UsageStatus.OK, engine_ms=1500),
        job(UsageStatus.ERROR, "no_face", engine_ms=80),
        job(UsageStatus.REJECTED, "rate_limit"),
    ):
        metrics.observe(record)
    base = await serve({}, metrics)
    status, content_type, body = await get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    found = samples(body)
    telegram = ("platform", "telegram")
    assert found["facelab_jobs_total", frozenset({telegram, ("status", "ok")})] == 2
    assert found["facelab_jobs_total", frozenset({telegram, ("status", "error")})] == 1
    assert found["facelab_jobs_total", frozenset({telegram, ("status", "rejected")})] == 1
    assert found["facelab_errors_total", frozenset({("kind", "no_face")})] == 1
    assert found["facelab_errors_total", frozenset({("kind", "rate_limit")})] == 1
    assert found["facelab_engine_seconds_count", frozenset()] == 3
    assert found["facelab_engine_seconds_sum", frozenset()] == pytest.approx(1.88)
    assert found["facelab_engine_seconds_bucket", frozenset({("le", "0.5")})] == 2
    assert found["facelab_queue_depth", frozenset()] == 3
    depth[0] = 0  # read at scrape time
    assert samples((await get(f"{base}/metrics"))[2])["facelab_queue_depth", frozenset()] == 0


class Refusing:
    """An engine double that refuses every other job, for counting outcomes."""

    def __init__(self) -> None:
        self.calls = 0

    async def run(self, request: MakeupRequest) -> MakeupResult:
        self.calls += 1
        if self.calls % 2 == 0:
            raise NoFaceError("no face", "selfie")
        return MakeupResult(image=b"", width=1, height=1, faces=1)


async def test_a_metered_runner_times_every_job_and_counts_refusals_by_kind() -> None:
    metrics = Metrics()
    runner = MeteredRunner(Refusing(), metrics)
    request = MakeupRequest(selfie=b"", look="natural")
    for _ in range(3):
        with contextlib.suppress(NoFaceError):
            await runner.run(request)
    found = samples((await metrics.exposition()).decode())
    assert found["facelab_engine_seconds_count", frozenset()] == 3
    assert found["facelab_errors_total", frozenset({("kind", "no_face")})] == 1


@pytest.mark.slow  # a real `facelab worker` process, engine and all
async def test_a_worker_serves_metrics_and_health_after_running_a_job(redis_url: str, tmp_path: Path) -> None:
    """A real `facelab worker` on the Redis queue runs one job; its endpoint then shows it."""
    prefix, port = f"test-ops-{uuid.uuid4().hex[:10]}", free_port()
    queue_settings = QueueSettings(backend="redis", redis_url=redis_url, redis_prefix=prefix)
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        FACELAB_QUEUE__BACKEND="redis",
        FACELAB_QUEUE__REDIS_URL=redis_url,
        FACELAB_QUEUE__REDIS_PREFIX=prefix,
        FACELAB_METRICS__PORT=str(port),
    )
    with open(tmp_path / "worker.log", "wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "facelab", "worker", "--name", "ops"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    queue = RedisJobQueue(queue_settings)
    await queue.start()
    try:
        tryon = Job(
            uuid.uuid4().hex,
            "test",
            "chat",
            "user",
            MakeupRequest(selfie=small_photo(SELFIE, 200), look="natural"),
        )
        ticket = await queue.submit(tryon)
        result = await asyncio.wait_for(ticket.result(), 180)
        assert result.faces == 1
        status, _, exposition = await get(f"http://127.0.0.1:{port}/metrics")
        health_status, _, health = await get(f"http://127.0.0.1:{port}/healthz")
    finally:
        await queue.close(drain_timeout_s=0)
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        redis = Redis.from_url(redis_url)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    assert status == 200 and samples(exposition)["facelab_engine_seconds_count", frozenset()] == 1
    assert health_status == 200 and json.loads(health)["checks"] == {"engine": "ok"}
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
