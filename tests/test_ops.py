"""facelab/ops_server.py and bot/metrics.py over real loopback HTTP: /healthz answers 200 or 503 with
what is wrong, /metrics is Prometheus text with the counts of the jobs observed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics
from facelab.ops_server import HealthCheck, OpsServer
from facelab.settings import MetricsSettings
from storage import UsageRecord, UsageStatus

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
