"""The conversation core end to end: real engine process, real queue, real SQLite storage; only the
chat platform is replaced by a recording `Messenger` (the adapter boundary).

Which photo served as the selfie is read from the result: the engine returns the selfie's size."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image
from redis.asyncio import Redis

from bot.commands import COMMANDS
from bot.core import Core
from bot.engine_process import EngineProcess
from bot.metrics import Metrics
from bot.ports import Origin
from bot.queue import JobRunner, LocalJobQueue
from bot.queue_redis import RedisResults
from bot.results import ResultStore
from bot.settings import BotSettings, LimitsSettings, QueueSettings
from engine.api import CompareRequest, EngineRequest, MakeupRequest, MakeupResult
from facelab.settings import Settings
from storage import Storage
from tests.conftest import face_path
from tests.conversation_helpers import Clock, size_of, user
from tests.paint_spotter import PaintSpotter
from tests.recording_messenger import RecordingMessenger

# Slow: the real engine process on the shared photos (tests/test_conversation.py: the same rules, fast).
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SELFIE = "sm_source_02.jpg"  # 394x390
SELFIE_2 = "elegant_source_01.png"  # 361x361
REFERENCE = "psgan_ref_01.png"  # 361x361
REFERENCE_2 = "sm_ref_03.jpg"  # 768x768
NO_FACE = "dlib_source_02.jpg"
PAINTED = "sm_ref_01.jpg"  # a Joker: white base, red mouth, painted eyes
MADE_UP = "elegant_ref_02.png"  # 361x361: strong lipstick, shadow and liner


def photo(name: str) -> bytes:
    return face_path(name).read_bytes()


@dataclass
class Bot:
    core: Core
    messenger: RecordingMessenger
    queue: LocalJobQueue
    storage: Storage
    clock: Clock


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
    announce_wait_s: float = 3.0,
    default_mode: str = "natural",
    runner: JobRunner | None = None,
    limits: LimitsSettings | None = None,
    results: ResultStore | None = None,
    metrics: Metrics | None = None,
    **queue: int,
) -> Bot:
    settings = Settings(
        bot=BotSettings(
            default_strength=70,
            default_mode=default_mode,  # type: ignore[arg-type]
            pending_ttl_s=600,
            result_cache_s=300,
            announce_wait_s=announce_wait_s,
        ),
        queue=QueueSettings(**{"max_size": 100, "per_user": 2, **queue}),
        limits=limits or LimitsSettings(),
    )
    job_queue = LocalJobQueue(
        runner or engine_process, max_size=settings.queue.max_size, per_user=settings.queue.per_user
    )
    await job_queue.start()
    clock = Clock()
    core = Core(
        settings, job_queue, storage, clock=clock, album_settle_s=0.2, results=results, metrics=metrics
    )
    messenger = RecordingMessenger()
    core.add_messenger(messenger)
    return Bot(core, messenger, job_queue, storage, clock)


@contextlib.contextmanager
def engine_frozen(engine: EngineProcess) -> Iterator[None]:
    """Stop the engine child (SIGSTOP) until the block ends, as if it were busy with a long job."""
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(engine.pid, signal.SIGCONT)


async def stop_bot(bot: Bot) -> None:
    await bot.queue.close(drain_timeout_s=30)
    await bot.core.close()


@pytest_asyncio.fixture(loop_scope="module")
async def bot(engine_process: EngineProcess, storage: Storage) -> AsyncIterator[Bot]:
    bot = await start_bot(engine_process, storage)
    yield bot
    await stop_bot(bot)


# -- which photo is which -------------------------------------------------------------------------


async def test_first_photo_is_the_selfie_and_the_second_the_reference(bot: Bot) -> None:
    await bot.core.on_photo(user("ann", message="1"), photo(SELFIE))
    assert "Got your selfie" in bot.messenger.texts(reply_to="1")[0]
    await bot.core.on_photo(user("ann", message="2"), photo(REFERENCE))

    [result] = await bot.messenger.wait_for_images(1)
    assert size_of(result.image) == size_of(photo(SELFIE))
    assert (result.chat_id, result.reply_to) == ("dm-ann", "2")  # answers the completing message
    assert "strength 70" in result.text
    assert [b.label for b in result.buttons] == [
        "Stronger",
        "Softer",
        "Lips only",
        "Before / after",
        "Swap photos",
        "Full look",
        "Full resolution",
    ]
    assert "Taken in order: your first photo as the selfie" in result.text


async def test_a_caption_says_which_photo_is_which(bot: Bot) -> None:
    await bot.core.on_photo(user("ann"), photo(REFERENCE_2), caption="this is my ref")
    assert "Got the reference" in bot.messenger.texts()[0]
    await bot.core.on_photo(user("ann"), photo(SELFIE_2))
    [result] = await bot.messenger.wait_for_images(1)
    assert size_of(result.image) == size_of(photo(SELFIE_2))

    # "me" marks the selfie even when it comes second.
    await bot.core.on_photo(user("bob"), photo(REFERENCE_2))
    await bot.core.on_photo(user("bob"), photo(SELFIE), caption="Me")
    results = await bot.messenger.wait_for_images(2)
    assert size_of(results[1].image) == size_of(photo(SELFIE))


async def test_an_album_of_two_photos_is_both_at_once(bot: Bot) -> None:
    await bot.core.on_photo(user("ann", message="10"), photo(SELFIE), album_id="g1")
    await bot.core.on_photo(user("ann", message="11"), photo(REFERENCE), album_id="g1")
    # A second album whose first photo is captioned as the reference.
    await bot.core.on_photo(user("bob"), photo(REFERENCE_2), album_id="g2", caption="ref")
    await bot.core.on_photo(user("bob"), photo(SELFIE_2), album_id="g2")

    results = await bot.messenger.wait_for_images(2)
    by_chat = {r.chat_id: size_of(r.image) for r in results}
    assert by_chat == {"dm-ann": size_of(photo(SELFIE)), "dm-bob": size_of(photo(SELFIE_2))}
    assert not [text for text in bot.messenger.texts() if text.startswith("Got")]  # no "Got your selfie"


async def test_an_album_of_three_photos_is_refused_clearly(bot: Bot) -> None:
    for name in (SELFIE, REFERENCE, REFERENCE_2):
        await bot.core.on_photo(user("ann"), photo(name), album_id="g3")
    await bot.messenger.wait_for(lambda: bool(bot.messenger.texts()))
    assert "I got 3 photos at once, but I need exactly two" in bot.messenger.texts()[0]


async def test_several_attachments_in_one_message_are_selfie_then_reference(bot: Bot) -> None:
    await bot.core.on_photos(user("ann"), [photo(SELFIE_2), photo(REFERENCE)])
    [result] = await bot.messenger.wait_for_images(1)
    assert size_of(result.image) == size_of(photo(SELFIE_2))


async def test_a_photo_replying_to_a_photo_borrows_its_makeup(bot: Bot) -> None:
    await bot.core.on_photo(
        user("ann", chat="g", message="5"), photo(SELFIE), replied_photo=photo(REFERENCE_2)
    )
    [result] = await bot.messenger.wait_for_images(1)
    assert size_of(result.image) == size_of(photo(SELFIE))
    assert result.reply_to == "5"


async def test_an_explicit_pair_runs_at_once_with_its_own_strength(bot: Bot) -> None:
    await bot.core.on_pair(user("ann"), photo(SELFIE), look="red_lips", strength=35)
    [result] = await bot.messenger.wait_for_images(1)
    assert result.text == "Look: red_lips, strength 35."
    await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE), look="red_lips")
    assert "either a reference photo or a look" in bot.messenger.texts()[-1]


async def test_each_photo_is_checked_on_arrival_and_a_bad_one_does_not_cost_the_other(bot: Bot) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    await bot.core.on_photo(user("ann", message="1"), photo(NO_FACE))
    # Answered before any try-on is queued, naming the photo's role.
    assert bot.messenger.texts(reply_to="1") == [
        "I couldn't find a face in your selfie. Please send a clear, well-lit photo."
    ]
    await bot.core.on_photo(user("ann", message="2"), photo(SELFIE))
    assert "Got your selfie" in bot.messenger.texts(reply_to="2")[0]
    for message, bad in (("3", pdf), ("4", b""), ("5", photo(NO_FACE))):
        await bot.core.on_photo(user("ann", message=message), bad)
    assert "looks like a PDF" in bot.messenger.texts(reply_to="3")[0]
    assert "arrived empty" in bot.messenger.texts(reply_to="4")[0]
    assert "couldn't find a face in your reference photo" in bot.messenger.texts(reply_to="5")[0]
    # The selfie is still there: the next good photo completes the pair.
    await bot.core.on_photo(user("ann", message="6"), photo(REFERENCE))
    [result] = await bot.messenger.wait_for_images(1)
    assert size_of(result.image) == size_of(photo(SELFIE))
    assert not bot.messenger.images()[1:]

    # In a two-photo message, the bad one is explained and the good one waits for a partner.
    await bot.core.on_photos(user("bob", message="7"), [photo(SELFIE_2), pdf])
    texts = bot.messenger.texts(reply_to="7")
    assert "looks like a PDF" in texts[0] and "Got your selfie" in texts[1]


async def test_a_made_up_photo_sent_first_is_taken_as_the_reference(bot: Bot) -> None:
    await bot.core.on_photo(user("ann", message="1"), photo(MADE_UP))
    await bot.core.on_photo(user("ann", message="2"), photo(SELFIE))
    # The same in one message (or an album).
    await bot.core.on_photos(user("bob"), [photo(MADE_UP), photo(SELFIE_2)])
    results = await bot.messenger.wait_for_images(2)
    by_chat = {r.chat_id: r for r in results}
    assert size_of(by_chat["dm-ann"].image) == size_of(photo(SELFIE))
    assert size_of(by_chat["dm-bob"].image) == size_of(photo(SELFIE_2))
    assert "Your first photo looks made up, so I took it as the reference" in by_chat["dm-ann"].text

    # Swap puts them the other way round, should the guess be wrong.
    swap = next(b.data for b in by_chat["dm-ann"].buttons if b.label == "Swap photos")
    assert await bot.core.on_button(user("ann", message="3"), swap) == (
        "Swapping: the other photo as your selfie…"
    )
    swapped = (await bot.messenger.wait_for_images(3))[-1]
    assert size_of(swapped.image) == size_of(photo(MADE_UP))
    assert "looks made up" not in swapped.text

    # When the makeup confirms the order they came in, nothing needs saying.
    await bot.core.on_photos(user("cid"), [photo(SELFIE), photo(MADE_UP)])
    confirmed = (await bot.messenger.wait_for_images(4))[-1]
    assert size_of(confirmed.image) == size_of(photo(SELFIE))
    assert confirmed.text == "Makeup from your reference, strength 70."


async def test_after_a_restart_buttons_say_the_photos_are_gone(
    engine_process: EngineProcess, storage: Storage
) -> None:
    bot = await start_bot(engine_process, storage)
    await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE))
    [result] = await bot.messenger.wait_for_images(1)
    await stop_bot(bot)

    restarted = await start_bot(engine_process, storage)
    try:
        assert await restarted.core.on_button(user("ann"), result.buttons[0].data) == (
            "I was restarted and no longer have these photos. Please send them again."
        )
    finally:
        await stop_bot(restarted)


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


# -- pending photos ---------------------------------------------------------------------------------


async def test_a_lone_photo_expires_after_the_configured_time(bot: Bot) -> None:
    await bot.core.on_photo(user("ann"), photo(SELFIE))
    bot.clock.now += 599  # bot.pending_ttl_s is 600
    await bot.core.on_command(user("ann"), "strength", "50")  # still waiting
    bot.clock.now += 599
    await bot.core.on_photo(user("ann"), photo(SELFIE_2))  # 1198 s after the first: that one expired

    assert "Got your selfie" in bot.messenger.texts()[-1]
    await bot.core.on_photo(user("ann"), photo(REFERENCE))
    [result] = await bot.messenger.wait_for_images(1)
    assert size_of(result.image) == size_of(photo(SELFIE_2))


async def test_expired_photos_leave_memory_without_any_further_message(
    engine_process: EngineProcess, storage: Storage
) -> None:
    settings = Settings(bot=BotSettings(pending_ttl_s=0.1, result_cache_s=0.2))
    queue = LocalJobQueue(engine_process, max_size=10, per_user=2)
    await queue.start()
    core = Core(settings, queue, storage)  # the real clock
    messenger = RecordingMessenger()
    core.add_messenger(messenger)
    await core.on_photo(user("ann"), photo(SELFIE))
    await core.on_pair(user("bob"), photo(SELFIE), photo(REFERENCE))
    await messenger.wait_for_images(1)
    assert core.held_images == 4  # ann's selfie; bob's selfie, reference and result

    await asyncio.sleep(1.5)  # past both lifetimes and the timers' one-second margin
    assert core.held_images == 0
    await queue.close(drain_timeout_s=1)
    await core.close()


async def test_reset_starts_over(bot: Bot) -> None:
    await bot.core.on_photo(user("ann"), photo(SELFIE))
    await bot.core.on_command(user("ann"), "reset")
    assert "Started over" in bot.messenger.texts()[-1]
    await bot.core.on_photo(user("ann"), photo(SELFIE_2))
    assert "Got your selfie" in bot.messenger.texts()[-1]
    assert not bot.messenger.images()


async def test_people_in_one_group_never_share_photos(bot: Bot) -> None:
    def ann(message: str) -> Origin:
        return user("ann", chat="group", message=message, group=True)

    def bob(message: str) -> Origin:
        return user("bob", chat="group", message=message, group=True)

    await bot.core.on_photo(ann("a1"), photo(SELFIE))
    await bot.core.on_photo(bob("b1"), photo(SELFIE_2))
    await bot.core.on_photo(bob("b2"), photo(REFERENCE))
    await bot.core.on_photo(ann("a2"), photo(REFERENCE_2))

    results = await bot.messenger.wait_for_images(2)
    by_message = {r.reply_to: size_of(r.image) for r in results}
    assert by_message == {"a2": size_of(photo(SELFIE)), "b2": size_of(photo(SELFIE_2))}
    # Bob's reset in the group does not touch Ann's selfie; Ann's selfie in her private chat stays there.
    await bot.core.on_photo(user("ann", message="d1"), photo(SELFIE_2))
    await bot.core.on_photo(ann("a3"), photo(SELFIE))
    await bot.core.on_command(bob("b3"), "reset")
    await bot.core.on_photo(ann("a4"), photo(REFERENCE))
    await bot.core.on_photo(user("ann", message="d2"), photo(REFERENCE))
    results = await bot.messenger.wait_for_images(4)
    by_message = {r.reply_to: (r.chat_id, size_of(r.image)) for r in results[2:]}
    assert by_message == {"a4": ("group", size_of(photo(SELFIE))), "d2": ("dm-ann", size_of(photo(SELFIE_2)))}


# -- strength, looks, commands ----------------------------------------------------------------------


async def test_strength_is_remembered_across_a_restart(engine_process: EngineProcess, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    storage = await Storage.open(url)
    bot = await start_bot(engine_process, storage)
    await bot.core.on_command(user("ann"), "/strength@facelab_bot", "35")
    assert bot.messenger.texts()[-1] == "Strength set to 35. It applies to your next try-on."
    await stop_bot(bot)
    await storage.close()

    storage = await Storage.open(url)
    bot = await start_bot(engine_process, storage)
    try:
        await bot.core.on_command(user("ann"), "strength")
        assert bot.messenger.texts()[-1].startswith("Your makeup strength is 35")
        await bot.core.on_photo(user("ann"), photo(SELFIE))
        await bot.core.on_photo(user("ann"), photo(REFERENCE))
        [result] = await bot.messenger.wait_for_images(1)
        assert "strength 35" in result.text
        await bot.core.on_command(user("bob"), "strength")  # someone else still has the default
        assert bot.messenger.texts()[-1].startswith("Your makeup strength is 70")
    finally:
        await stop_bot(bot)
        await storage.close()


async def test_strength_buttons_and_bad_values(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "strength")
    sent = bot.messenger.sent[-1]
    assert [b.label for b in sent.buttons] == ["20", "40", "60", "80", "100"]
    assert await bot.core.on_button(user("ann"), sent.buttons[1].data) == (
        "Strength set to 40. It applies to your next try-on."
    )
    assert await bot.storage.get_strength("test", "ann") == 40
    for bad in ("101", "-1", "strong"):
        await bot.core.on_command(user("ann"), "strength", bad)
        assert bot.messenger.texts()[-1] == "Strength is a number from 0 to 100, e.g. /strength 60."
    assert await bot.storage.get_strength("test", "ann") == 40
    # "/strength N" as a photo caption sets it before the photo is taken.
    await bot.core.on_photo(user("ann"), photo(SELFIE), caption="/strength 55")
    assert await bot.storage.get_strength("test", "ann") == 55


async def test_look_replaces_the_reference(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "look")
    assert "natural" in bot.messenger.texts()[-1] and "red_lips" in bot.messenger.texts()[-1]
    await bot.core.on_command(user("ann"), "look", "glitter")
    assert bot.messenger.texts()[-1].startswith("I don't know the look 'glitter'.")

    await bot.core.on_command(user("ann"), "look", "Smoky_Eyes")
    assert bot.messenger.texts()[-1] == "Look 'smoky_eyes' it is. Now send your selfie."
    await bot.core.on_photo(user("ann"), photo(SELFIE))
    # A selfie captioned with a look runs at once.
    await bot.core.on_photo(user("bob"), photo(SELFIE_2), caption="/look@facelab_bot red_lips")
    results = await bot.messenger.wait_for_images(2)
    captions = {r.chat_id: r.text for r in results}
    assert captions == {
        "dm-ann": "Look: smoky_eyes, strength 70.",
        "dm-bob": "Look: red_lips, strength 70.",
    }


async def test_help_privacy_and_unknown_commands(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "start")
    assert "Send your selfie" in bot.messenger.texts()[-1]
    await bot.core.on_command(user("ann"), "privacy")
    assert "Never an image" in bot.messenger.texts()[-1] and "5 minutes" in bot.messenger.texts()[-1]
    await bot.core.on_command(user("ann"), "dance")
    assert bot.messenger.texts()[-1] == "I don't know /dance. Send /help to see what I can do."


async def test_help_lists_exactly_the_command_tables_commands_for_everyone(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "help")
    listed = re.findall(r"^/(\w+)", bot.messenger.texts()[-1], flags=re.MULTILINE)
    assert listed == [command.name for command in COMMANDS if command.audience == "everyone"]
    assert "admin" not in listed and "strength" in listed
    assert "strength is 70 and the look mode natural" in bot.messenger.texts()[-1]


async def test_stats_count_jobs_and_forget_deletes_everything(
    bot: Bot, engine_process: EngineProcess
) -> None:
    await bot.core.on_command(user("ann"), "strength", "50")
    with engine_frozen(engine_process):  # the first job is still running when the second is queued
        await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE))
        await bot.core.on_pair(user("ann"), photo(NO_FACE), photo(REFERENCE))
    # Replies: strength set and the no-face explanation (the second job's short wait is not announced).
    await bot.messenger.wait_for(lambda: len(bot.messenger.images()) == 1 and len(bot.messenger.texts()) == 2)
    assert await bot.storage.flush()

    await bot.core.on_command(user("ann"), "stats")
    assert bot.messenger.texts()[-1].startswith("Try-ons: 2 (1 done, 1 failed), 2 in the last 24 hours.")
    assert "Strength: 50." in bot.messenger.texts()[-1]

    await bot.core.on_photo(user("ann"), photo(SELFIE))  # pending, dropped by /forget too
    assert bot.core.held_images == 4  # the pending selfie, and the first result's three images
    await bot.core.on_command(user("ann"), "forget")
    assert bot.core.held_images == 0
    assert (
        bot.messenger.texts()[-1]
        == "Done: I deleted everything I stored about you (3 records) and your photos."
    )
    stats = await bot.storage.user_stats("test", "ann")
    assert (stats.jobs_total, stats.strength) == (0, None)
    await bot.core.on_photo(user("ann"), photo(REFERENCE))
    assert "Got your selfie" in bot.messenger.texts()[-1]  # the earlier selfie is gone


# -- results and their buttons ------------------------------------------------------------------------


async def test_result_buttons_rerun_for_the_requester_only(bot: Bot) -> None:
    await bot.core.on_pair(user("ann", chat="g", message="7"), photo(SELFIE), photo(REFERENCE))
    [first] = await bot.messenger.wait_for_images(1)
    more, less, lips, compare, _swap, _switch, full = (b.data for b in first.buttons)

    presser = user("bob", chat="g", message="r1")
    assert await bot.core.on_button(presser, more) == (
        "Only the person who asked for this result can use its buttons."
    )
    ann = user("ann", chat="g", message="r1")
    assert await bot.core.on_button(ann, more) == "Making it stronger (90)…"
    assert await bot.core.on_button(ann, lips) == "Putting on the lips only…"
    await bot.messenger.wait_for_images(3)  # before/after is a job too: within the per-user cap of 2
    assert await bot.core.on_button(ann, compare) == "Before / after…"
    assert await bot.core.on_button(ann, full) == "Sending the full-resolution file…"

    results = await bot.messenger.wait_for_images(5)
    by_caption = {r.text: r for r in results[1:]}
    assert set(by_caption) == {
        "Makeup from your reference, strength 90.",
        "Makeup from your reference, strength 70, lips only.",
        "Before / after",
        "Full resolution",
    }
    selfie_width, selfie_height = size_of(photo(SELFIE))
    assert size_of(by_caption["Before / after"].image) == (2 * selfie_width, selfie_height)
    assert by_caption["Full resolution"].as_file and by_caption["Full resolution"].image == first.image
    assert all(r.reply_to == "r1" for r in results[1:])
    assert by_caption["Makeup from your reference, strength 90."].image != first.image

    stronger = by_caption["Makeup from your reference, strength 90."].buttons[0].data
    assert await bot.core.on_button(ann, stronger) == "Making it stronger (100)…"
    strongest = (await bot.messenger.wait_for_images(6))[-1].buttons[0].data
    assert await bot.core.on_button(ann, strongest) == "It is already at 100."

    bot.clock.now += 301  # bot.result_cache_s is 300
    assert (await bot.core.on_button(ann, less)).startswith("This result has expired")


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


# -- look mode ----------------------------------------------------------------------------------------


async def test_mode_is_remembered_and_carried_by_every_job(
    engine_process: EngineProcess, storage: Storage
) -> None:
    spotter = PaintSpotter(engine_process, photo(PAINTED))
    bot = await start_bot(engine_process, storage, runner=spotter)
    try:
        await bot.core.on_command(user("ann"), "mode")
        sent = bot.messenger.sent[-1]
        assert sent.text.startswith("Your look mode is natural: makeup on your own skin")
        assert [b.label for b in sent.buttons] == ["Natural look", "Full look"]
        assert await bot.core.on_button(user("ann"), sent.buttons[1].data) == (
            "Look mode set to full: the whole look of the reference face, face paint and patterns "
            "too. It applies to your next try-on."
        )
        for bad in ("paint", "natural!"):
            await bot.core.on_command(user("bob"), "mode", bad)
            assert bot.messenger.texts()[-1] == "The look mode is natural or full, e.g. /mode full."
        assert await storage.get_mode("test", "bob") is None

        await bot.core.on_photo(user("ann"), photo(SELFIE))
        await bot.core.on_photo(user("ann"), photo(REFERENCE))
        [result] = await bot.messenger.wait_for_images(1)
        assert result.text.splitlines()[0] == "Makeup from your reference, strength 70, full look."
        assert [b.label for b in result.buttons][-2:] == ["Natural look", "Full resolution"]
        # One try-on in the other mode leaves the remembered one alone; a preset look has no switch.
        await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE), mode="natural")
        await bot.core.on_pair(user("ann"), photo(SELFIE), look="red_lips")
        await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE), mode="paint")
        assert bot.messenger.texts()[-1] == "The look mode is natural or full, e.g. /mode full."
        results = await bot.messenger.wait_for_images(3)
        assert [r.text for r in results[1:]] == [
            "Makeup from your reference, strength 70.",
            "Look: red_lips, strength 70.",
        ]
        assert "Natural look" not in [b.label for b in results[2].buttons]
        assert spotter.modes == ["full", "natural", "full"]

        await bot.core.on_command(user("ann"), "stats")
        assert "Look mode: full." in bot.messenger.texts()[-1]
        await bot.core.on_command(user("ann"), "help")
        assert "/mode" in bot.messenger.texts()[-1]
    finally:
        await stop_bot(bot)


async def test_the_configured_default_mode_applies_until_a_user_chooses(
    engine_process: EngineProcess, storage: Storage
) -> None:
    spotter = PaintSpotter(engine_process, photo(PAINTED))
    bot = await start_bot(engine_process, storage, default_mode="full", runner=spotter)
    try:
        await bot.core.on_command(user("ann"), "mode")
        assert bot.messenger.texts()[-1].startswith("Your look mode is full")
        await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE))
        await bot.messenger.wait_for_images(1)
        await bot.core.on_command(user("ann"), "mode", "Natural")
        await bot.core.on_pair(user("ann"), photo(SELFIE), photo(REFERENCE))
        await bot.messenger.wait_for_images(2)
        assert spotter.modes == ["full", "natural"]
    finally:
        await stop_bot(bot)


async def test_paint_left_out_is_said_and_the_full_look_offered_first(
    engine_process: EngineProcess, storage: Storage
) -> None:
    spotter = PaintSpotter(engine_process, photo(PAINTED))
    bot = await start_bot(engine_process, storage, runner=spotter)
    try:
        await bot.core.on_pair(user("ann", message="1"), photo(SELFIE), photo(PAINTED))
        [natural] = await bot.messenger.wait_for_images(1)
        assert natural.text == (
            "Makeup from your reference, strength 70.\nYour reference wears face paint that natural "
            "mode leaves out. Press “Full look” to put it on too, or send /mode full to always get "
            "the whole look."
        )
        assert [b.label for b in natural.buttons] == [
            "Full look",
            "Stronger",
            "Softer",
            "Lips only",
            "Before / after",
            "Swap photos",
            "Full resolution",
        ]
        switch = natural.buttons[0].data
        assert await bot.core.on_button(user("bob", message="2"), switch) == (
            "Only the person who asked for this result can use its buttons."
        )
        assert await bot.core.on_button(user("ann", message="2"), switch) == "Trying the full look…"
        full = (await bot.messenger.wait_for_images(2))[-1]
        assert full.text == "Makeup from your reference, strength 70, full look."
        assert full.reply_to == "2"
        assert full.buttons[0].label == "Stronger"  # nothing left out: no nudge
        assert spotter.modes == ["natural", "full"]
        assert await bot.storage.get_mode("test", "ann") is None  # the button is for this result only

        # Its buttons keep the mode: "Stronger" on the full look is a stronger full look.
        assert await bot.core.on_button(user("ann"), full.buttons[0].data) == "Making it stronger (90)…"
        stronger = (await bot.messenger.wait_for_images(3))[-1]
        assert stronger.text == "Makeup from your reference, strength 90, full look."
        assert spotter.modes[-1] == "full"
    finally:
        await stop_bot(bot)


# -- the queue as users see it ------------------------------------------------------------------------


async def test_a_noticeable_wait_is_announced_and_a_long_job_shows_an_action(
    engine_process: EngineProcess, storage: Storage
) -> None:
    bot = await start_bot(engine_process, storage, announce_wait_s=0.5)
    try:
        with engine_frozen(engine_process):  # ann's job runs until bob has waited past the threshold
            for name in ("ann", "bob"):
                await bot.core.on_pair(user(name), photo(SELFIE), photo(REFERENCE), strength=50)
            await bot.messenger.wait_for(lambda: bool(bot.messenger.texts()))
            await bot.messenger.wait_for(lambda: any(s.kind == "action" for s in bot.messenger.sent))
        await bot.messenger.wait_for_images(2)
    finally:
        await stop_bot(bot)

    texts = {s.chat_id: s.text for s in bot.messenger.sent if s.kind == "text"}
    assert texts == {"dm-bob": "There is 1 try-on ahead of yours; I'll reply here when it's ready."}
    kinds = [s.kind for s in bot.messenger.sent if s.chat_id == "dm-ann"]
    assert kinds[0] == "action" and kinds[-1] == "image"  # ann saw the bot at work, then her result


async def test_a_short_wait_behind_fast_jobs_is_not_announced(bot: Bot) -> None:
    for name in ("ann", "bob", "cid"):
        await bot.core.on_pair(user(name), photo(SELFIE), photo(REFERENCE), strength=50)
    await bot.messenger.wait_for_images(3)

    # The last waits for two fast jobs, well under the 3 s threshold: nobody is told to wait.
    assert bot.messenger.texts() == []


async def test_a_full_queue_and_the_per_user_cap_give_clear_replies(
    engine_process: EngineProcess, storage: Storage
) -> None:
    bot = await start_bot(engine_process, storage, max_size=2, per_user=1)
    try:
        # The engine is frozen while they ask, so ann's job stays running whatever the machine's speed;
        # admission awaits the limits (database reads), so the dispatcher has taken it by bob's turn.
        with engine_frozen(engine_process):
            await bot.core.on_pair(user("ann"), photo(SELFIE), look="natural", strength=50)
            await bot.core.on_pair(user("ann"), photo(SELFIE), look="natural", strength=50)
            assert "You already have" in bot.messenger.texts()[-1]
            for name in ("bob", "cid", "dan"):  # bob's and cid's jobs fill the two waiting places
                await bot.core.on_pair(user(name), photo(SELFIE), look="natural", strength=50)
            assert "my queue is full" in bot.messenger.texts()[-1]
        await bot.messenger.wait_for_images(3)  # the accepted ones still arrive
        assert await storage.flush()
        stats = await storage.user_stats("test", "dan")
        assert stats.jobs_total == 0  # refusals are recorded but never count as try-ons
    finally:
        await stop_bot(bot)


async def test_the_engine_refusing_a_photo_is_explained(bot: Bot) -> None:
    # An explicit pair (a slash command, the web form) goes to the engine unchecked.
    await bot.core.on_pair(user("ann"), photo(NO_FACE), photo(REFERENCE))
    await bot.messenger.wait_for(lambda: len(bot.messenger.texts()) == 1)
    reply = bot.messenger.texts()[-1]
    assert "face" in reply.lower() and "selfie" in reply.lower()
    assert not bot.messenger.images()
    assert await bot.storage.flush()
    assert (await bot.storage.user_stats("test", "ann")).jobs_failed == 1


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


class NeverFinishing:
    """A job runner whose jobs run until they are cancelled."""

    async def run(self, request: MakeupRequest) -> MakeupResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_shutdown_tells_waiting_users_to_send_again(
    engine_process: EngineProcess, storage: Storage
) -> None:
    # An engine that never finishes: every job is still waiting or running when the bot shuts down
    # (with the real engine, a fast machine finishes the first one before `close` and the test flakes).
    bot = await start_bot(engine_process, storage, runner=NeverFinishing())
    for name in ("ann", "bob", "cid"):
        await bot.core.on_pair(user(name), photo(SELFIE), photo(REFERENCE), strength=50)

    left = await bot.queue.close(drain_timeout_s=0)
    await bot.core.close()

    assert {job.user_id for job in left} == {"ann", "bob", "cid"}
    notices = [s for s in bot.messenger.sent if "restarting" in s.text]
    assert {s.chat_id for s in notices} == {"dm-ann", "dm-bob", "dm-cid"}
    await bot.core.on_photo(user("dan"), photo(SELFIE))
    await bot.core.on_photo(user("dan"), photo(REFERENCE))
    assert "restarting" in bot.messenger.texts()[-1]
    assert await storage.flush()
    assert (await storage.user_stats("test", "ann")).jobs_failed == 1
