"""Throughput and latency of the whole Telegram path against the engine alone, in one run.

    python bench/bot_load.py [--users 50] [--tryons 4] [--size 1280] [--rounds 3]

N simulated users talk to the real stack (`facelab serve`'s wiring: python-telegram-bot over loopback
HTTP to the fake Bot API of tests/fake_telegram.py, the conversation core, the queue, SQLite storage and
one engine process). Each sends a selfie, waits for the bot's "got your selfie", sends the reference,
and waits for the result, `--tryons` times in a row, so the figure is the steady state rather than the
fill of an empty pipeline. The same engine process also runs the same jobs with no bot in front, fed
as fast as it takes them; the runs alternate, and medians are compared.

The bot runs twice per round. Unpaced (`telegram.messages_per_s = 0`), it shows what the bot itself
keeps up with: it should reach at least 90% of the engine-only throughput, since the engine process is
the bottleneck and the bot must keep it fed. Paced at Telegram's flood limit (30 messages a second
across all chats, the default, as in production), it shows the platform's cap: each try-on needs at
least two messages (the "got your selfie" answer and the result), so no Telegram bot serves more than
about 15 try-ons a second, however fast its engine.

Photos default to 1280 px on the longest side because that is what Telegram delivers: it recompresses
every photo to at most 1280 px, so `--size` only matters for trying others.

CPU per job is printed too: the fake Telegram server and the simulated users share the bot's process,
so on a machine with few cores their CPU competes with the engine's, which a real deployment avoids."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder would come first on sys.path; the repository root must.
sys.path[0] = str(REPO_ROOT)

from PIL import Image  # noqa: E402

from bot.engine_process import EngineProcess  # noqa: E402
from bot.queue import JobQueue, LocalJobQueue  # noqa: E402
from bot.settings import QueueSettings  # noqa: E402
from bot.telegram.settings import TelegramSettings  # noqa: E402
from engine.api import MakeupRequest  # noqa: E402
from facelab.commands import serve as serve_command  # noqa: E402
from facelab.settings import DatabaseSettings, Settings  # noqa: E402
from tests.fake_telegram import TOKEN, Chat, FakeTelegram, User  # noqa: E402

FACES_DIR = Path(os.environ.get("FACELAB_FACES_DIR", REPO_ROOT.parent / "shared/data/faces"))
SELFIES = ["sm_source_01.jpg", "sm_source_02.jpg", "shmt_source_01.jpg", "shmt_source_02.jpg",
           "shmt_source_03.jpg", "elegant_source_01.png", "fr_source_01.jpg", "psgan_source_01.png",
           "sm_source_04.jpg", "tmw_source_01.jpg"]  # fmt: skip
REFERENCE = "elegant_ref_02.png"
# What Telegram counts against a bot's flood limit.
MESSAGES = ("sendMessage", "sendPhoto", "sendDocument", "sendChatAction")


def photo(kind: str, name: str, size: int) -> bytes:
    """A shared face photo as a JPEG whose longest side is `size` px (as a phone would send it)."""
    with Image.open(FACES_DIR / kind / name) as source:
        image = source.convert("RGB")
    scale = size / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@contextlib.asynccontextmanager
async def serving(settings: Settings, fake: FakeTelegram, engine: EngineProcess) -> AsyncIterator[None]:
    """`facelab serve` with its queue over `engine`, until the block ends."""

    @contextlib.asynccontextmanager
    async def queue_over(settings: Settings) -> AsyncIterator[JobQueue]:
        yield LocalJobQueue(engine, max_size=settings.queue.max_size, per_user=settings.queue.per_user)

    original = serve_command.QUEUES["local"]
    serve_command.QUEUES["local"] = queue_over
    stop = asyncio.Event()
    task = asyncio.create_task(serve_command.serve(settings, stop))
    try:
        await fake.next_call("deleteWebhook", timeout=60)  # polling has begun
        yield
    finally:
        stop.set()
        await task
        serve_command.QUEUES["local"] = original


async def simulated_user(
    fake: FakeTelegram, user: User, selfie: bytes, reference: bytes, tryons: int
) -> tuple[float, list[float]]:
    """One person's try-ons, one after another; returns (when they started, seconds from sending each
    reference to its result)."""
    chat = Chat(user.id, "private")
    started = time.monotonic()
    latencies = []
    for _ in range(tryons):
        fake.send_photo(user, chat, selfie)
        await fake.next_call("sendMessage", chat.id, timeout=600)  # "Got your selfie..."
        sent = time.monotonic()
        fake.send_photo(user, chat, reference)
        result = await fake.next_call("sendPhoto", chat.id, timeout=600)
        latencies.append(result.at - sent)
    return started, latencies


@dataclass
class BotRun:
    rate: float  # try-ons per second
    latencies: list[float]  # seconds from sending each reference to its result
    messages: int  # messages the bot sent (texts, photos and chat actions)


async def bot_path(
    engine: EngineProcess, selfies: list[bytes], reference: bytes, tryons: int, messages_per_s: float
) -> BotRun:
    """One run of every user's try-ons through the whole Telegram stack."""
    with tempfile.TemporaryDirectory() as scratch:
        async with FakeTelegram() as fake:
            settings = Settings(
                telegram=TelegramSettings(
                    token=TOKEN,
                    base_url=fake.base_url,
                    base_file_url=fake.base_file_url,
                    messages_per_s=messages_per_s,
                ),
                database=DatabaseSettings(url=f"sqlite+aiosqlite:///{scratch}/bench.db"),
                queue=QueueSettings(max_size=len(selfies) + 1),
            )
            async with serving(settings, fake, engine):
                users = [User(10_000 + index, f"user{index}") for index in range(len(selfies))]
                outcomes = await asyncio.gather(
                    *(
                        simulated_user(fake, user, selfie, reference, tryons)
                        for user, selfie in zip(users, selfies, strict=True)
                    )
                )
                finished = max(call.at for call in fake.calls_to("sendPhoto"))
                messages = sum(len(fake.calls_to(method)) for method in MESSAGES)
    first_start = min(started for started, _ in outcomes)
    latencies = [latency for _, user_latencies in outcomes for latency in user_latencies]
    return BotRun(len(latencies) / (finished - first_start), latencies, messages)


class CpuMeter:
    """CPU seconds used, over every `measuring()` block, by this process (bot, fake Telegram server and
    simulated users together) and by the engine child (Linux: the child's figures come from /proc)."""

    def __init__(self, engine: EngineProcess) -> None:
        self._engine = engine
        self.bot_s = self.engine_s = 0.0

    def _now(self) -> tuple[float, float]:
        with open(f"/proc/{self._engine.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return time.process_time(), (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        bot, engine = self._now()
        yield
        bot_end, engine_end = self._now()
        self.bot_s += bot_end - bot
        self.engine_s += engine_end - engine


async def engine_only(engine: EngineProcess, selfies: list[bytes], reference: bytes, strength: int) -> float:
    """Jobs per second of the same engine process given every job at once (it keeps the next one in
    its child while one runs), with no bot in front."""
    requests = [MakeupRequest(selfie, reference, strength=strength / 100) for selfie in selfies]
    started = time.monotonic()
    await asyncio.gather(*(engine.run(request) for request in requests))
    return len(selfies) / (time.monotonic() - started)


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


async def main(users: int, tryons: int, size: int, rounds: int) -> None:
    settings = Settings()
    strength = settings.bot.default_strength
    flood_limit = settings.telegram.messages_per_s
    selfies = [photo("source", SELFIES[index % len(SELFIES)], size) for index in range(users)]
    reference = photo("reference", REFERENCE, size)
    engine = EngineProcess(settings.engine)
    await engine.start()
    alone, unpaced, paced = CpuMeter(engine), CpuMeter(engine), CpuMeter(engine)
    engine_rates: list[float] = []
    runs: dict[CpuMeter, list[BotRun]] = {unpaced: [], paced: []}
    try:
        await engine_only(engine, selfies[:3], reference, strength)  # warm-up
        # Alternate the runs, engine first and last, so a change in the machine's load hits all alike.
        for _ in range(rounds):
            with alone.measuring():
                engine_rates.append(await engine_only(engine, selfies * tryons, reference, strength))
            for meter, messages_per_s in ((unpaced, 0.0), (paced, flood_limit)):
                with meter.measuring():
                    runs[meter].append(await bot_path(engine, selfies, reference, tryons, messages_per_s))
        with alone.measuring():
            engine_rates.append(await engine_only(engine, selfies * tryons, reference, strength))
    finally:
        await engine.close()
    jobs = users * tryons
    engine_rate = statistics.median(engine_rates)
    print(f"{users} users x {tryons} try-ons x {rounds} rounds, photos {size} px, one engine process")
    print(f"engine only          : {engine_rate:6.2f} jobs/s   median of {_listed(engine_rates)}")
    for meter, label in ((unpaced, "bot path, unpaced"), (paced, f"bot path, {flood_limit:g} msg/s")):
        rates = [run.rate for run in runs[meter]]
        print(f"{label:<21}: {statistics.median(rates):6.2f} jobs/s   median of {_listed(rates)}")
    for meter, label in ((unpaced, "unpaced"), (paced, f"{flood_limit:g} msg/s")):
        latencies = [latency for run in runs[meter] for latency in run.latencies]
        print(f"latency, {label:<12}: p50 {percentile(latencies, 0.5):.2f} s, "
              f"p95 {percentile(latencies, 0.95):.2f} s (reference sent -> result received)")  # fmt: skip
    ratio = statistics.median(run.rate for run in runs[unpaced]) / engine_rate
    print(f"ratio, unpaced       : {ratio:6.2f}   (target >= 0.90: the bot keeps the engine fed)")
    per_tryon = statistics.median(run.messages / jobs for run in runs[paced])
    paced_ratio = statistics.median(run.rate for run in runs[paced]) / engine_rate
    print(
        f"ratio, {flood_limit:g} msg/s     : {paced_ratio:6.2f}   ({per_tryon:.2f} messages per try-on: "
        f"Telegram's flood limit allows {flood_limit / per_tryon:.1f} try-ons/s after its first burst)"
    )
    alone_ms = alone.engine_s * 1000 / (jobs * (rounds + 1))
    engine_ms = unpaced.engine_s * 1000 / (jobs * rounds)
    bot_ms = unpaced.bot_s * 1000 / (jobs * rounds)
    paced_bot_ms = paced.bot_s * 1000 / (jobs * rounds)
    print(
        f"CPU per job          : engine {engine_ms:.0f} ms (alone {alone_ms:.0f} ms); bot process with "
        f"the fake Telegram and the users {bot_ms:.0f} ms unpaced, {paced_bot_ms:.0f} ms paced"
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine              : {len(os.sched_getaffinity(0))} cores, load average {load}")


def _listed(rates: list[float]) -> str:
    return ", ".join(f"{rate:.2f}" for rate in rates)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50, help="simulated users")
    parser.add_argument(
        "--tryons", type=int, default=4, help="try-ons per user, one after another (steady state)"
    )
    parser.add_argument("--size", type=int, default=1280, help="photos' longest side, px (Telegram's)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="bot runs (unpaced, paced), each between engine-only runs"
    )
    arguments = parser.parse_args()
    per_minute = Settings().limits.user_per_minute
    if per_minute and arguments.tryons > per_minute:
        # Each user's try-ons run within a minute; past the limit the bot refuses them, as it should.
        parser.error(f"--tryons above limits.user_per_minute ({per_minute}) would be refused by the bot")
    asyncio.run(main(arguments.users, arguments.tryons, arguments.size, arguments.rounds))
