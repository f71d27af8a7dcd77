"""Prometheus metrics of the try-on service, in a registry of their own (one per process, passed down;
tests make a fresh one). `facelab/ops_server.py` serves them at /metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.queue import JobFailed, JobRunner
from engine.api import EngineRequest, MakeupResult
from engine.errors import EngineError
from storage import UsageRecord, UsageStatus

log = logging.getLogger(__name__)

# Engine time per job: tens of milliseconds to a second or two on a CPU; a diffusion job up to a minute.
ENGINE_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)


class Metrics:
    def __init__(self) -> None:
        self._depth: Callable[[], Awaitable[int]] | None = None
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "facelab_queue_depth", "Try-on jobs waiting for the engine", registry=self.registry
        )
        self.jobs = Counter(
            "facelab_jobs",
            "Try-on jobs by outcome (ok, error, rejected)",
            ["platform", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "facelab_errors",
            "Failed and refused try-ons, and photos refused on arrival, by kind (no_face, rate_limit, ...)",
            ["kind"],
            registry=self.registry,
        )
        self.engine_seconds = Histogram(
            "facelab_engine_seconds", "Engine time per job", buckets=ENGINE_BUCKETS, registry=self.registry
        )
        self.queue_wait_seconds = Histogram(
            "facelab_queue_wait_seconds",
            "Time a job waited for the engine",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )

    def track_queue_depth(self, depth: Callable[[], Awaitable[int]]) -> None:
        """Ask the queue for its depth at each scrape instead of updating it on every change."""
        self._depth = depth

    def observe(self, record: UsageRecord) -> None:
        """Count one finished or refused job, from the same record that storage keeps."""
        self.jobs.labels(record.platform, record.status.value).inc()
        if record.status is not UsageStatus.OK:
            self.errors.labels(record.error_kind or "unknown").inc()
        if record.engine_ms is not None:
            self.engine_seconds.observe(record.engine_ms / 1000)
        if record.queue_wait_ms is not None:
            self.queue_wait_seconds.observe(record.queue_wait_ms / 1000)

    def observe_refused_photo(self, kind: str) -> None:
        """A photo refused as it arrived (not an image, no face, ...): no job, but an error all the same."""
        self.errors.labels(kind).inc()

    async def exposition(self) -> bytes:
        """The Prometheus text format of every metric above, with the queue depth read now."""
        if self._depth is not None:
            try:
                self.queue_depth.set(await self._depth())
            except Exception as error:  # e.g. Redis down: the scrape still answers, with the last depth
                log.warning("queue depth unavailable for /metrics: %r", error)
        return generate_latest(self.registry)


class MeteredRunner:
    """A `bot.queue.JobRunner` that times each job and counts its failures by kind: the metrics of a
    `facelab worker`, which runs jobs but never sees the chats or the usage records."""

    def __init__(self, runner: JobRunner, metrics: Metrics) -> None:
        self._runner = runner
        self._metrics = metrics

    async def run(self, request: EngineRequest) -> MakeupResult:
        started = time.perf_counter()
        try:
            return await self._runner.run(request)
        except (EngineError, JobFailed) as error:
            self._metrics.errors.labels(error.kind).inc()
            raise
        finally:
            self._metrics.engine_seconds.observe(time.perf_counter() - started)
