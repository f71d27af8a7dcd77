"""Throughput of the Redis job queue with 1 and then 2 `facelab worker` processes, in one run.

    python bench/scale.py [--jobs 30] [--rounds 5] [--size 1280] [--redis redis://127.0.0.1:6379/15]

Each worker runs the embedded engine pinned to one core (`facelab worker --cpus N`, and
`engine.threads = 1`), so one worker is one core's worth and two workers can use both cores. Two
pools of warm workers (1 and 2 workers, each behind its own queue) take turns: each round, a
bot-side `RedisJobQueue` submits a batch of `--jobs` try-ons at once to one pool and waits for every
result, then the same for the other pool, so both see the same load on a shared machine. Selfies are
shared face photos from ../shared/data/faces at `--size` px, the size Telegram delivers photos at.

Prints jobs/s for each worker count with the CPU time per job spent in the workers (engine processes
included: it should not grow with more workers) and in this bot-side process, the ratio (target:
2 workers >= 1.7x one), and the load average, since a shared machine skews wall-clock figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO_ROOT)  # run as a script: the repository's packages, not bench/'s folder
FACES_DIR = Path(os.environ.get("FACELAB_FACES_DIR", REPO_ROOT.parent / "shared/data/faces"))
SELFIES = ("sm_source_01.jpg", "sm_source_02.jpg", "sm_source_03.jpg", "sm_source_04.jpg")
REFERENCE = "elegant_ref_02.png"

from redis.asyncio import Redis  # noqa: E402

from bot.queue import Job  # noqa: E402
from bot.queue_redis import RedisJobQueue  # noqa: E402
from bot.queue_redis_broker import RedisKeys  # noqa: E402
from engine.api import MakeupRequest  # noqa: E402
from facelab.settings import QueueSettings  # noqa: E402


def photo(kind: str, name: str, size: int) -> bytes:
    image = Image.open(FACES_DIR / kind / name).convert("RGB")
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def start_worker(settings: QueueSettings, name: str, cpu: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        FACELAB_QUEUE__BACKEND="redis",
        FACELAB_QUEUE__REDIS_URL=settings.redis_url,
        FACELAB_QUEUE__REDIS_PREFIX=settings.redis_prefix,
        FACELAB_ENGINE__THREADS="1",
    )
    # One core per worker, as README "Running at scale" advises for CPU-only machines: unpinned, the
    # engine's own threads let a single worker spread over both cores.
    command = [sys.executable, "-m", "facelab", "worker", "--name", name, "--cpus", str(cpu)]
    # Its own session, as a service manager would start it: Linux's autogroup scheduler then shares
    # the CPU between it and other programs, instead of splitting this script's share among workers.
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def run_jobs(queue: RedisJobQueue, requests: list[MakeupRequest]) -> float:
    """Submit every request at once; seconds until the last result is in."""
    started = time.perf_counter()
    tickets = [
        await queue.submit(Job(uuid.uuid4().hex, "bench", "chat", f"user{n}", request))
        for n, request in enumerate(requests)
    ]
    await asyncio.gather(*(ticket.result() for ticket in tickets))
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants (the worker and its engine process), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return own + sum(cpu_seconds(int(child)) for child in children)


class Pool:
    """N warm workers behind their own queue (own key prefix), so pools of different sizes can take
    turns on the same machine without sharing jobs."""

    def __init__(self, redis_url: str, workers: int, max_size: int) -> None:
        self.workers = workers
        self.settings = QueueSettings(
            backend="redis",
            redis_url=redis_url,
            redis_prefix=f"bench-{workers}w-{uuid.uuid4().hex[:8]}",
            max_size=max_size,
        )
        self.processes = [
            start_worker(self.settings, f"bench-{workers}w-{n}", cpu=n % (os.cpu_count() or 1))
            for n in range(workers)
        ]
        self.queue = RedisJobQueue(self.settings)
        self.seconds = self.cpu = self.bot_cpu = 0.0
        self.jobs = 0

    async def start(self, warm_up: list[MakeupRequest]) -> None:
        await self.queue.start()
        await run_jobs(self.queue, warm_up)  # every worker builds its engine and analyses the reference

    async def timed(self, requests: list[MakeupRequest]) -> None:
        cpu_before, bot_cpu_before = self._worker_cpu(), time.process_time()
        self.seconds += await run_jobs(self.queue, requests)
        self.cpu += self._worker_cpu() - cpu_before
        self.bot_cpu += time.process_time() - bot_cpu_before
        self.jobs += len(requests)

    def _worker_cpu(self) -> float:
        return sum(cpu_seconds(process.pid) for process in self.processes)

    async def stop(self) -> None:
        await self.queue.close(drain_timeout_s=0)
        await self.queue.disconnect()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)
        await delete_keys(self.settings.redis_url, self.settings.redis_prefix)


async def delete_keys(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    await redis.delete(RedisKeys(prefix).stream)
    await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=30, help="jobs per batch")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--size", type=int, default=1280, help="selfie size (longest side, px)")
    parser.add_argument("--rounds", type=int, default=5, help="batches per pool, taken in turns")
    args = parser.parse_args()
    reference = photo("reference", REFERENCE, 512)
    selfies = [photo("source", name, args.size) for name in SELFIES]
    requests = [
        MakeupRequest(selfie=selfies[n % len(selfies)], reference=reference, strength=0.7)
        for n in range(args.jobs)
    ]
    print(f"{args.rounds} rounds of {args.jobs} jobs per pool, {args.size}-px selfies, embedded engine")
    print(f"{os.cpu_count()} CPUs; load average before: {load_average()}")
    pools = [Pool(args.redis, workers, max_size=args.jobs + 10) for workers in (1, 2)]
    try:
        for pool in pools:
            await pool.start(requests[: pool.workers * 4])
        # The pools take turns, batch by batch, so both see the same (shared, changing) machine.
        for _ in range(args.rounds):
            for pool in pools:
                await pool.timed(requests)
    finally:
        for pool in pools:
            await pool.stop()
    rates = {}
    for pool in pools:
        rates[pool.workers] = pool.jobs / pool.seconds
        cpu_ms, bot_ms = (seconds / pool.jobs * 1000 for seconds in (pool.cpu, pool.bot_cpu))
        print(
            f"{pool.workers} worker(s): {rates[pool.workers]:.2f} jobs/s; CPU per job: "
            f"{cpu_ms:.0f} ms in workers, {bot_ms:.0f} ms in this bot process"
        )
    print(f"ratio 2/1: {rates[2] / rates[1]:.2f}x (target >= 1.7x)")
    print(f"load average after: {load_average()}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    asyncio.run(main())
