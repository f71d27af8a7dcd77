"""The operator's HTTP endpoint (aiohttp), on loopback by default: Prometheus `/metrics` and
`/healthz`, which runs the process's health checks and answers 200 when all pass, 503 otherwise."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.metrics import Metrics
from facelab.settings import MetricsSettings

log = logging.getLogger(__name__)

# A check returns None when healthy, else what is wrong, in words.
HealthCheck = Callable[[], Awaitable[str | None]]
CHECK_TIMEOUT_S = 5.0


class OpsServer:
    """`await start()` binds `settings.host:settings.port` (port 0 picks a free one: see `.port`);
    when it cannot, it logs why and the process goes on without the endpoint."""

    def __init__(
        self, settings: MetricsSettings, metrics: Metrics, checks: Mapping[str, HealthCheck]
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._checks = dict(checks)
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        try:
            await site.start()
        except OSError as error:
            # The bot's job is answering users: a taken port costs the metrics, not the service.
            log.error("metrics and health endpoint not started on port %d: %s", self._settings.port, error)
            return
        sockets = site._server.sockets if site._server is not None else ()  # type: ignore[attr-defined]
        self.port = sockets[0].getsockname()[1] if sockets else self._settings.port
        log.info("metrics and health on http://%s:%d", self._settings.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=await self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _serve_health(self, _request: web.Request) -> web.Response:
        names = list(self._checks)
        problems = await asyncio.gather(*(_run_check(self._checks[name]) for name in names))
        results = {name: problem or "ok" for name, problem in zip(names, problems, strict=True)}
        healthy = not any(problems)
        return web.json_response(
            {"status": "ok" if healthy else "failing", "checks": results}, status=200 if healthy else 503
        )


async def _run_check(check: HealthCheck) -> str | None:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as error:
        log.exception("health check raised")
        return f"check raised {type(error).__name__}"
