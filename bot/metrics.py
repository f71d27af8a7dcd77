"""Prometheus metrics of the try-on service, in a registry of their own (one per process, passed down;
tests make a fresh one). `facelab/ops_server.py` serves them at /metrics."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from storage import UsageRecord, UsageStatus

# Engine time per job on a CPU is ~0.1-2 s; a GPU diffusion job up to a minute.
ENGINE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)


class Metrics:
    def __init__(self) -> None:
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
            "Failed and refused try-ons by kind (no_face, rate_limit, engine_timeout, ...)",
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

    def track_queue_depth(self, depth: Callable[[], int]) -> None:
        """Read the queue's depth at each scrape instead of updating it on every change."""
        self.queue_depth.set_function(depth)

    def observe(self, record: UsageRecord) -> None:
        """Count one finished or refused job, from the same record that storage keeps."""
        self.jobs.labels(record.platform, record.status.value).inc()
        if record.status is not UsageStatus.OK:
            self.errors.labels(record.error_kind or "unknown").inc()
        if record.engine_ms is not None:
            self.engine_seconds.observe(record.engine_ms / 1000)
        if record.queue_wait_ms is not None:
            self.queue_wait_seconds.observe(record.queue_wait_ms / 1000)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric above."""
        return generate_latest(self.registry)
