"""The conversation core on the real engine process: real queue, real SQLite storage, the shared photos;
only the chat platform is replaced by a recording `Messenger` (the adapter boundary).

The conversation rules themselves are tested once, fast, against a fake engine in
tests/test_conversation.py. This module keeps what needs the real engine behind the core: its makeup
score ordering a pair, results and re-runs through the engine process (Redis-kept buttons, the re-run
budget, before/after as an engine job) and fifty users at once each getting their own result.

Which photo served as the selfie is read from the result: the engine returns the selfie's size."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image
from redis.asyncio import Redis

from bot.core import Core
from bot.engine_process import EngineProcess
from bot.metrics import Metrics
from bot.queue import JobRunner, LocalJobQueue
from bot.queue_redis import RedisResults
from bot.results import ResultStore
from bot.settings import BotSettings, LimitsSettings, QueueSettings
from engine.api import CompareRequest, EngineRequest, MakeupRequest, MakeupResult
from facelab.settings import Settings
from storage import Storage
from tests.conftest import face_path
from tests.conversation_helpers import size_of, user
from tests.recording_messenger import RecordingMessenger

# Slow: the real engine process on the shared photos.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SELFIE = "sm_source_02.jpg"  # 394x390
SELFIE_2 = "elegant_source_01.png"  # 361x361
REFERENCE = "psgan_ref_01.png"  # 361x361
MADE_UP = "elegant_ref_02.png"  # 361x361: strong lipstick, shadow and liner


def photo(name: str) -> bytes:
    return face_path(name).read_bytes()


@dataclass
class Bot:
    core: Core
    messenger: RecordingMessenger
    queue: LocalJobQueue
    storage: Storage


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine_process() -> AsyncIterator[EngineProcess]:
    process = EngineProcess(Settings().engine)
    await process.start()
    yield process
    await process.close()


@pytest_asyncio.fixture(loop_scope="module")
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}")
    yield storage
    await storage.close()


async def start_bot(
    engine_process: EngineProcess,
    storage: Storage,
    *,
    runner: JobRunner | None = None,
    limits: LimitsSettings | None = None,
    results: ResultStore | None = None,
    metrics: Metrics | None = None,
) -> Bot:
    settings = Settings(
        bot=BotSettings(default_strength=70, default_mode="natural", pending_ttl_s=600, result_cache_s=300),
        queue=QueueSettings(max_size=100, per_user=2),
        limits=limits or LimitsSettings(),
    )
    job_queue = LocalJobQueue(
        runner or engine_process, max_size=settings.queue.max_size, per_user=settings.queue.per_user
    )
    await job_queue.start()
    core = Core(settings, job_queue, storage, album_settle_s=0.2, results=results, metrics=metrics)
    messenger = RecordingMessenger()
    core.add_messenger(messenger)
    return Bot(core, messenger, job_queue, storage)


async def stop_bot(bot: Bot) -> None:
    await bot.queue.close(drain_timeout_s=30)
    await bot.core.close()


@pytest_asyncio.fixture(loop_scope="module")
async def bot(engine_process: EngineProcess, storage: Storage) -> AsyncIterator[Bot]:
    bot = await start_bot(engine_process, storage)
    yield bot
    await stop_bot(bot)


# -- which photo is which -------------------------------------------------------------------------


async def test_the_engines_makeup_score_takes_a_made_up_photo_sent_first_as_the_reference(bot: Bot) -> None:
    # The score the real engine gives the shared photos, not a fake one: the rule itself, with the
    # Swap button, is in tests/test_conversation.py.
    await bot.core.on_photo(user("ann", message="1"), photo(MADE_UP))
    await bot.core.on_photo(user("ann", message="2"), photo(SELFIE))
    await bot.core.on_photos(user("bob"), [photo(MADE_UP), photo(SELFIE_2)])
    # When the makeup confirms the order they came in, nothing needs saying.
    await bot.core.on_photos(user("cid"), [photo(SELFIE), photo(MADE_UP)])
    results = await bot.messenger.wait_for_images(3)
    by_chat = {r.chat_id: r for r in results}
    assert size_of(by_chat["dm-ann"].image) == size_of(photo(SELFIE))
    assert size_of(by_chat["dm-bob"].image) == size_of(photo(SELFIE_2))
    assert "Your first photo looks made up, so I took it as the reference" in by_chat["dm-ann"].text
    assert size_of(by_chat["dm-cid"].image) == size_of(photo(SELFIE))
    assert by_chat["dm-cid"].text == "Makeup from your reference, strength 70."


# -- results and their buttons ------------------------------------------------------------------------


async def test_with_redis_buttons_survive_a_restart_until_forgotten(
    engine_process: EngineProcess, storage: Storage, redis_url: str
) -> None:
    queue_settings = QueueSettings(redis_url=redis_url, redis_prefix=f"test-buttons-{uuid.uuid4().hex}")
    first = RedisResults(queue_settings, keep_s=300)
    bot = await start_bot(engine_process, storage, results=first)
    await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE))
    [result] = await bot.messenger.wait_for_images(1)
    more, less = result.buttons[0].data, result.buttons[1].data
    await stop_bot(bot)
    await first.disconnect()

    second = RedisResults(queue_settings, keep_s=300)
    restarted = await start_bot(engine_process, storage, results=second)
    redis = Redis.from_url(redis_url)
    try:
        [key] = await redis.keys(f"{queue_settings.redis_prefix}:button:*")
        assert 0 < await redis.pttl(key) <= 300_000  # the photos leave Redis with bot.result_cache_s
        assert await restarted.core.on_button(user("bob"), more) == (
            "Only the person who asked for this result can use its buttons."
        )
        assert await restarted.core.on_button(user("ann"), more) == "Making it stronger (90)…"
        [rerun] = await restarted.messenger.wait_for_images(1)
        assert size_of(rerun.image) == size_of(photo(SELFIE)) and rerun.image != result.image
        assert "strength 90" in rerun.text

        await restarted.core.on_command(user("ann"), "forget")
        assert await redis.keys(f"{queue_settings.redis_prefix}:*") == []
        assert (await restarted.core.on_button(user("ann"), less)).startswith("This result has expired")
    finally:
        await redis.aclose()
        await stop_bot(restarted)
        await second.disconnect()


async def test_a_refused_rerun_says_so_and_reruns_have_their_own_budget(
    engine_process: EngineProcess, storage: Storage
) -> None:
    limits = LimitsSettings(user_per_minute=2, user_reruns_per_minute=2)
    bot = await start_bot(engine_process, storage, limits=limits)
    try:
        await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE))
        [first] = await bot.messenger.wait_for_images(1)
        more, less, lips = (b.data for b in first.buttons[:3])
        assert await bot.core.on_button(user("ann"), less) == "Making it softer (50)…"
        assert await bot.core.on_button(user("ann"), lips) == "Putting on the lips only…"
        texts_before = list(bot.messenger.texts())
        notice = await bot.core.on_button(user("ann"), more)
        # The notice tells the truth, with the time the limit lifts; nothing is announced in the chat.
        assert re.fullmatch(
            r"You are re-running your photos faster than I allow \(2 a minute\)\. "
            r"You can go on at \d\d:\d\d:\d\d UTC\.",
            notice,
        )
        assert bot.messenger.texts() == texts_before
        await bot.messenger.wait_for_images(3)
        assert await bot.storage.flush()
        # The re-runs did not use up the try-ons meant for new photos.
        await bot.core.on_pair(user("ann"), photo(SELFIE_2), photo(REFERENCE))
        results = await bot.messenger.wait_for_images(4)
        assert size_of(results[-1].image) == size_of(photo(SELFIE_2))
    finally:
        await stop_bot(bot)


async def test_before_after_is_an_engine_job_queued_limited_and_recorded_like_a_try_on(
    engine_process: EngineProcess, storage: Storage
) -> None:
    runner = WatchingRunner(engine_process)
    metrics = Metrics()
    limits = LimitsSettings(user_reruns_per_minute=1)
    bot = await start_bot(engine_process, storage, runner=runner, limits=limits, metrics=metrics)
    try:
        await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE))
        [first] = await bot.messenger.wait_for_images(1)
        compare = next(b.data for b in first.buttons if b.label == "Before / after")
        assert await bot.core.on_button(user("ann"), compare) == "Before / after…"
        comparison = (await bot.messenger.wait_for_images(2))[1]
        assert comparison.text == "Before / after"
        assert [type(request) for request in runner.requests] == [MakeupRequest, CompareRequest]
        # Counted against the re-run budget like Stronger or Softer: the second one a minute is refused.
        refusal = await bot.core.on_button(user("ann"), compare)
        assert refusal.startswith("You are re-running your photos")
        assert await bot.storage.flush()
        stats = await bot.storage.user_stats("test", "ann")
        assert (stats.jobs_total, stats.jobs_ok) == (2, 2)  # recorded like try-ons: the try-on, the picture
        jobs = {
            status: metrics.registry.get_sample_value(
                "facelab_jobs_total", {"platform": "test", "status": status}
            )
            for status in ("ok", "rejected")
        }
        assert jobs == {"ok": 2.0, "rejected": 1.0}
        assert metrics.registry.get_sample_value("facelab_errors_total", {"kind": "rerun_limit"}) == 1.0
    finally:
        await stop_bot(bot)


class WatchingRunner:
    """The engine process, noting each request it is handed."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self.requests: list[EngineRequest] = []

    async def run(self, request: EngineRequest) -> MakeupResult:
        self.requests.append(request)
        return await self.runner.run(request)


# -- many users at once ----------------------------------------------------------------------------


async def test_fifty_concurrent_users_each_get_exactly_their_own_result(bot: Bot) -> None:
    # Every user's selfie has its own width, and the result keeps the selfie's size.
    with Image.open(face_path(SELFIE)) as original:
        selfies = []
        for index in range(50):
            buffer = io.BytesIO()
            original.resize((300 + 3 * index, 300)).save(buffer, "JPEG")
            selfies.append(buffer.getvalue())
    reference = photo(REFERENCE)

    async def one_user(index: int) -> None:
        person = user(f"user{index}", chat=f"group{index % 5}", message=f"ref-{index}", group=True)
        await bot.core.on_photo(
            user(f"user{index}", chat=person.chat_id, message=f"selfie-{index}"), selfies[index]
        )
        await bot.core.on_photo(person, reference)

    await asyncio.gather(*(one_user(index) for index in range(50)))
    results = await bot.messenger.wait_for_images(50)
    await asyncio.sleep(0.2)

    assert len(bot.messenger.images()) == 50
    delivered = sorted((r.reply_to or "", r.chat_id, size_of(r.image)) for r in results)
    expected = sorted((f"ref-{i}", f"group{i % 5}", (300 + 3 * i, 300)) for i in range(50))
    assert delivered == expected
