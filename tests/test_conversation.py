"""The conversation rules, fast: the real core, queue and SQLite storage, with the engine replaced by
`FakeEngine` (tests/fake_engine.py: no face detector, no shared photos) and the chat platform by a
recording `Messenger`. Each rule is tested here once; tests/test_core.py keeps what only the real
engine process behind the core can show.

Which photo served as the selfie is read from what the engine was asked (`engine.requests`) and
from the result, which has the selfie's size."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.commands import COMMANDS
from bot.core import Core
from bot.ports import Origin
from bot.queue import LocalJobQueue
from bot.settings import BotSettings, LimitsSettings
from facelab.settings import Settings
from storage import Storage
from tests.conversation_helpers import Clock, size_of, user
from tests.fake_engine import FakeEngine
from tests.recording_messenger import RecordingMessenger, Sent

RESULT_BUTTONS = [
    "Stronger",
    "Softer",
    "Lips only",
    "Before / after",
    "Swap photos",
    "Full look",
    "Full resolution",
]
MADE_UP = 3.0  # makeup score of a clearly made-up face (about 1 per made-up feature)


@dataclass
class Bot:
    core: Core
    engine: FakeEngine
    queue: LocalJobQueue
    messenger: RecordingMessenger
    storage: Storage
    clock: Clock

    async def stop(self) -> None:
        await self.queue.close(drain_timeout_s=5)
        await self.core.close()

    async def result(self, count: int = 1) -> Sent:
        """The `count`-th result image sent, once it is there."""
        return (await self.messenger.wait_for_images(count))[count - 1]


def button(sent: Sent, label: str) -> str:
    return next(b.data for b in sent.buttons if b.label == label)


@pytest_asyncio.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}")
    yield storage
    await storage.close()


async def start_bot(storage: Storage, *, max_size: int = 100, per_user: int = 10, **bot: object) -> Bot:
    settings = Settings(
        bot=BotSettings(**{"pending_ttl_s": 600, "result_cache_s": 300, **bot}),  # type: ignore[arg-type]
        # Generous limits: the abuse limits have their own tests (tests/test_limits.py).
        limits=LimitsSettings(user_per_minute=100, user_reruns_per_minute=100),
    )
    engine = FakeEngine()
    queue = LocalJobQueue(engine, max_size=max_size, per_user=per_user)
    await queue.start()
    clock = Clock()
    core = Core(settings, queue, storage, clock=clock, album_settle_s=0.05, inspector=engine)
    messenger = RecordingMessenger()
    core.add_messenger(messenger)
    return Bot(core, engine, queue, messenger, storage, clock)


@pytest_asyncio.fixture
async def bot(storage: Storage) -> AsyncIterator[Bot]:
    bot = await start_bot(storage)
    yield bot
    await bot.stop()


# -- which photo is which -------------------------------------------------------------------------


async def test_first_photo_is_the_selfie_and_the_second_the_reference(bot: Bot) -> None:
    selfie, reference = bot.engine.photo(394), bot.engine.photo(361)
    await bot.core.on_photo(user("ann", message="1"), selfie)
    assert "Got your selfie" in bot.messenger.texts(reply_to="1")[0]
    await bot.core.on_photo(user("ann", message="2"), reference)

    result = await bot.result()
    [request] = bot.engine.requests
    assert (request.selfie, request.reference, request.strength, request.mode) == (
        selfie,
        reference,
        0.7,
        "natural",
    )
    assert size_of(result.image) == (394, 300)
    assert (result.chat_id, result.reply_to) == ("dm-ann", "2")  # answers the completing message
    assert [b.label for b in result.buttons] == RESULT_BUTTONS
    # Two bare faces: the makeup cannot confirm the order, so the caption says which was taken for which.
    assert result.text.startswith("Makeup from your reference, strength 70.\n")
    assert "Taken in order: your first photo as the selfie" in result.text


async def test_the_more_made_up_of_two_uncaptioned_photos_is_the_reference(bot: Bot) -> None:
    bare, made_up = bot.engine.photo(394), bot.engine.photo(361, makeup=MADE_UP)
    # Confirmed by the makeup: nothing needs saying.
    await bot.core.on_photo(user("ann"), bare)
    await bot.core.on_photo(user("ann"), made_up)
    assert (await bot.result(1)).text == "Makeup from your reference, strength 70."

    # The made-up photo first: taken the other way round, and said so.
    await bot.core.on_photo(user("bob", message="1"), made_up)
    await bot.core.on_photo(user("bob", message="2"), bare)
    swapped = await bot.result(2)
    assert bot.engine.requests[-1].selfie == bare and bot.engine.requests[-1].reference == made_up
    assert "Your first photo looks made up, so I took it as the reference" in swapped.text

    # Swap puts them the other way round, should the guess be wrong.
    notice = await bot.core.on_button(user("bob", message="3"), button(swapped, "Swap photos"))
    assert notice == "Swapping: the other photo as your selfie…"
    again = await bot.result(3)
    assert bot.engine.requests[-1].selfie == made_up and bot.engine.requests[-1].reference == bare
    assert size_of(again.image) == (361, 300) and "looks made up" not in again.text

    # The same in one message (or an album).
    await bot.core.on_photos(user("cid"), [made_up, bare])
    together = await bot.result(4)
    assert bot.engine.requests[-1].selfie == bare and bot.engine.requests[-1].reference == made_up
    assert "Your first photo looks made up, so I took it as the reference" in together.text


async def test_a_caption_says_which_photo_is_which(bot: Bot) -> None:
    selfie, reference = bot.engine.photo(394), bot.engine.photo(768, makeup=MADE_UP)
    await bot.core.on_photo(user("ann"), reference, caption="this is my ref")
    assert "Got the reference" in bot.messenger.texts()[0]
    await bot.core.on_photo(user("ann"), selfie)
    await bot.result(1)
    assert bot.engine.requests[-1].selfie == selfie

    # "me" marks the selfie even when it comes second, whatever the makeup says.
    await bot.core.on_photo(user("bob"), selfie)
    await bot.core.on_photo(user("bob"), reference, caption="Me")
    await bot.result(2)
    assert bot.engine.requests[-1].selfie == reference and bot.engine.requests[-1].reference == selfie


async def test_an_album_of_two_photos_is_both_at_once(bot: Bot) -> None:
    selfie, reference, selfie_2 = bot.engine.photo(394), bot.engine.photo(361), bot.engine.photo(400)
    await bot.core.on_photo(user("ann", message="10"), selfie, album_id="g1")
    await bot.core.on_photo(user("ann", message="11"), reference, album_id="g1")
    # A second album whose first photo is captioned as the reference.
    await bot.core.on_photo(user("bob"), reference, album_id="g2", caption="ref")
    await bot.core.on_photo(user("bob"), selfie_2, album_id="g2")

    results = await bot.messenger.wait_for_images(2)
    assert {r.chat_id: size_of(r.image) for r in results} == {"dm-ann": (394, 300), "dm-bob": (400, 300)}
    assert not [text for text in bot.messenger.texts() if text.startswith("Got")]  # no "Got your selfie"


async def test_an_album_of_three_photos_is_refused_clearly(bot: Bot) -> None:
    for width in (394, 361, 768):
        await bot.core.on_photo(user("ann"), bot.engine.photo(width), album_id="g3")
    await bot.messenger.wait_for(lambda: bool(bot.messenger.texts()))
    assert "I got 3 photos at once, but I need exactly two" in bot.messenger.texts()[0]
    assert bot.engine.requests == []


async def test_several_images_in_one_message_are_selfie_then_reference(bot: Bot) -> None:
    selfie, reference = bot.engine.photo(400), bot.engine.photo(361)
    await bot.core.on_photos(user("ann"), [selfie, reference])
    await bot.result()
    assert bot.engine.requests[0].selfie == selfie and bot.engine.requests[0].reference == reference


async def test_a_photo_replying_to_a_photo_borrows_its_makeup(bot: Bot) -> None:
    selfie, theirs = bot.engine.photo(394), bot.engine.photo(768)
    await bot.core.on_photo(user("ann", chat="g", message="5", group=True), selfie, replied_photo=theirs)
    result = await bot.result()
    assert bot.engine.requests[0].selfie == selfie and bot.engine.requests[0].reference == theirs
    assert (result.chat_id, result.reply_to) == ("g", "5")


async def test_each_photo_is_checked_on_arrival_and_a_bad_one_does_not_cost_the_other(bot: Bot) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    no_face = bot.engine.photo(300, face=False)
    selfie, reference = bot.engine.photo(394), bot.engine.photo(361)
    await bot.core.on_photo(user("ann", message="1"), no_face)
    # Answered before any try-on is queued, naming the photo's role.
    assert bot.messenger.texts(reply_to="1") == [
        "I couldn't find a face in your selfie. Please send a clear, well-lit photo."
    ]
    await bot.core.on_photo(user("ann", message="2"), selfie)
    assert "Got your selfie" in bot.messenger.texts(reply_to="2")[0]
    for message, bad in (("3", pdf), ("4", b""), ("5", no_face)):
        await bot.core.on_photo(user("ann", message=message), bad)
    assert "looks like a PDF" in bot.messenger.texts(reply_to="3")[0]
    assert "arrived empty" in bot.messenger.texts(reply_to="4")[0]
    assert "couldn't find a face in your reference photo" in bot.messenger.texts(reply_to="5")[0]
    assert bot.engine.requests == []
    # The selfie is still there: the next good photo completes the pair.
    await bot.core.on_photo(user("ann", message="6"), reference)
    await bot.result()
    [request] = bot.engine.requests
    assert request.selfie == selfie

    # In a two-photo message, the bad one is explained and the good one waits for a partner.
    await bot.core.on_photos(user("bob", message="7"), [selfie, pdf])
    texts = bot.messenger.texts(reply_to="7")
    assert "looks like a PDF" in texts[0] and "Got your selfie" in texts[1]


async def test_people_in_one_group_never_share_photos(bot: Bot) -> None:
    ann_selfie, bob_selfie, reference = bot.engine.photo(394), bot.engine.photo(400), bot.engine.photo(361)
    ann_private = bot.engine.photo(410)

    def ann(message: str) -> Origin:
        return user("ann", chat="group", message=message, group=True)

    def bob(message: str) -> Origin:
        return user("bob", chat="group", message=message, group=True)

    await bot.core.on_photo(ann("a1"), ann_selfie)
    await bot.core.on_photo(bob("b1"), bob_selfie)
    await bot.core.on_photo(bob("b2"), reference)  # completes bob's pair, not ann's
    await bot.core.on_photo(bob("b3"), bob_selfie)
    await bot.core.on_command(bob("b4"), "reset")  # bob's reset leaves ann's selfie alone
    await bot.core.on_photo(user("ann", message="d1"), ann_private)  # her private chat is its own
    await bot.core.on_photo(ann("a2"), reference)
    await bot.core.on_photo(user("ann", message="d2"), reference)
    results = await bot.messenger.wait_for_images(3)
    by_message = {r.reply_to: (r.chat_id, size_of(r.image)) for r in results}
    assert by_message == {
        "b2": ("group", (400, 300)),
        "a2": ("group", (394, 300)),
        "d2": ("dm-ann", (410, 300)),
    }
    await bot.core.on_photo(bob("b5"), reference)
    assert "Got your selfie" in bot.messenger.texts(reply_to="b5")[0]


# -- pending photos ---------------------------------------------------------------------------------


async def test_a_lone_photo_expires_after_the_configured_time(bot: Bot) -> None:
    first, second, reference = bot.engine.photo(394), bot.engine.photo(400), bot.engine.photo(361)
    await bot.core.on_photo(user("ann"), first)
    bot.clock.now += 599  # bot.pending_ttl_s is 600
    await bot.core.on_command(user("ann"), "strength", "50")  # still waiting
    bot.clock.now += 599
    await bot.core.on_photo(user("ann"), second)  # 1198 s after the first: that one expired
    assert "Got your selfie" in bot.messenger.texts()[-1]
    await bot.core.on_photo(user("ann"), reference)
    await bot.result()
    assert bot.engine.requests[0].selfie == second


async def test_reset_starts_over(bot: Bot) -> None:
    await bot.core.on_photo(user("ann"), bot.engine.photo(394))
    await bot.core.on_command(user("ann"), "reset")
    assert "Started over" in bot.messenger.texts()[-1]
    await bot.core.on_photo(user("ann"), bot.engine.photo(400))
    assert "Got your selfie" in bot.messenger.texts()[-1]
    assert not bot.messenger.images() and bot.engine.requests == []


async def test_expired_photos_leave_memory_without_any_further_message(storage: Storage) -> None:
    bot = await start_bot(storage, pending_ttl_s=0.1, result_cache_s=0.2)
    try:
        await bot.core.on_photo(user("ann"), bot.engine.photo(394))
        await bot.core.on_pair(user("bob"), bot.engine.photo(400), bot.engine.photo(361))
        await bot.result()
        assert bot.core.held_images == 4  # ann's selfie; bob's selfie, reference and result
        sent = list(bot.messenger.sent)

        bot.clock.now += 1  # past both lifetimes
        await asyncio.sleep(1.3)  # the expiry timers fire one second after the deadline
        assert bot.core.held_images == 0
        assert bot.messenger.sent == sent
    finally:
        await bot.stop()


# -- strength, looks, modes -------------------------------------------------------------------------


async def test_strength_is_remembered_across_a_restart_and_carried_by_the_next_try_on(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    storage = await Storage.open(url)
    bot = await start_bot(storage)
    await bot.core.on_command(user("ann"), "/strength@facelab_bot", "35")
    assert bot.messenger.texts()[-1] == "Strength set to 35. It applies to your next try-on."
    await bot.stop()
    await storage.close()

    storage = await Storage.open(url)
    bot = await start_bot(storage)
    try:
        await bot.core.on_command(user("ann"), "strength")
        sent = bot.messenger.sent[-1]
        assert sent.text.startswith("Your makeup strength is 35")
        assert [b.label for b in sent.buttons] == ["20", "40", "60", "80", "100"]

        await bot.core.on_photo(user("ann"), bot.engine.photo(394))
        await bot.core.on_photo(user("ann"), bot.engine.photo(361))
        assert "strength 35" in (await bot.result()).text
        assert bot.engine.requests[-1].strength == 0.35
        await bot.core.on_command(user("bob"), "strength")  # someone else still has the default
        assert bot.messenger.texts()[-1].startswith("Your makeup strength is 70")
    finally:
        await bot.stop()
        await storage.close()


async def test_strength_buttons_captions_and_bad_values(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "strength")
    forty = bot.messenger.sent[-1].buttons[1].data
    assert await bot.core.on_button(user("ann"), forty) == (
        "Strength set to 40. It applies to your next try-on."
    )
    assert await bot.storage.get_strength("test", "ann") == 40
    for bad in ("101", "-1", "strong"):
        await bot.core.on_command(user("ann"), "strength", bad)
        assert bot.messenger.texts()[-1] == "Strength is a number from 0 to 100, e.g. /strength 60."
    assert await bot.storage.get_strength("test", "ann") == 40
    # "/strength N" as a photo caption sets it before the photo is taken.
    await bot.core.on_photo(user("ann"), bot.engine.photo(394), caption="/strength 55")
    assert await bot.storage.get_strength("test", "ann") == 55


async def test_an_explicit_pair_runs_at_once_with_its_own_strength(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "strength", "55")
    await bot.core.on_pair(user("ann"), bot.engine.photo(400), look="red_lips", strength=20)
    assert (await bot.result()).text == "Look: red_lips, strength 20."
    assert await bot.storage.get_strength("test", "ann") == 55  # for that job only
    await bot.core.on_pair(user("ann"), bot.engine.photo(394), bot.engine.photo(361), look="red_lips")
    assert "either a reference photo or a look" in bot.messenger.texts()[-1]
    assert len(bot.engine.requests) == 1


async def test_look_replaces_the_reference(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "look")
    assert "natural" in bot.messenger.texts()[-1] and "red_lips" in bot.messenger.texts()[-1]
    await bot.core.on_command(user("ann"), "look", "glitter")
    assert bot.messenger.texts()[-1].startswith("I don't know the look 'glitter'.")

    await bot.core.on_command(user("ann"), "look", "Smoky_Eyes")
    assert bot.messenger.texts()[-1] == "Look 'smoky_eyes' it is. Now send your selfie."
    await bot.core.on_photo(user("ann"), bot.engine.photo(394))
    ann = await bot.result(1)
    # A selfie captioned with a look runs at once.
    await bot.core.on_photo(user("bob"), bot.engine.photo(400), caption="/look@facelab_bot red_lips")
    bob = await bot.result(2)
    assert (ann.text, bob.text) == ("Look: smoky_eyes, strength 70.", "Look: red_lips, strength 70.")
    assert [(r.look, r.reference) for r in bot.engine.requests] == [("smoky_eyes", None), ("red_lips", None)]
    # A preset look has no photo to swap and no other look mode.
    assert "Swap photos" not in [b.label for b in bob.buttons]
    assert "Full look" not in [b.label for b in bob.buttons]


async def test_mode_is_remembered_and_carried_by_every_job(bot: Bot) -> None:
    selfie, reference = bot.engine.photo(394), bot.engine.photo(361)
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
    assert await bot.storage.get_mode("test", "bob") is None

    # A pair of photos and an explicit pair both take the remembered mode.
    await bot.core.on_photo(user("ann"), selfie)
    await bot.core.on_photo(user("ann"), reference)
    from_photos = await bot.result(1)
    assert from_photos.text.splitlines()[0] == "Makeup from your reference, strength 70, full look."
    assert [b.label for b in from_photos.buttons][-2:] == ["Natural look", "Full resolution"]
    # One try-on in the other mode leaves the remembered one alone; a preset look has no switch.
    await bot.core.on_pair(user("ann"), selfie, reference, mode="natural")
    assert (await bot.result(2)).text == "Makeup from your reference, strength 70."
    await bot.core.on_pair(user("ann"), selfie, look="red_lips")
    preset = await bot.result(3)
    assert preset.text == "Look: red_lips, strength 70."
    assert "Natural look" not in [b.label for b in preset.buttons]
    await bot.core.on_pair(user("ann"), selfie, reference, mode="paint")
    assert bot.messenger.texts()[-1] == "The look mode is natural or full, e.g. /mode full."
    await bot.core.on_pair(user("ann"), selfie, reference)
    result = await bot.result(4)
    assert result.text == "Makeup from your reference, strength 70, full look."
    assert [b.label for b in result.buttons][-2:] == ["Natural look", "Full resolution"]
    assert [r.mode for r in bot.engine.requests] == ["full", "natural", "full", "full"]

    await bot.core.on_command(user("ann"), "stats")
    assert "Look mode: full." in bot.messenger.texts()[-1]


async def test_the_configured_default_mode_applies_until_a_user_chooses(storage: Storage) -> None:
    bot = await start_bot(storage, default_mode="full")
    try:
        selfie, reference = bot.engine.photo(394), bot.engine.photo(361)
        await bot.core.on_command(user("ann"), "mode")
        assert bot.messenger.texts()[-1].startswith("Your look mode is full")
        await bot.core.on_pair(user("ann"), selfie, reference)
        await bot.result(1)
        await bot.core.on_command(user("ann"), "mode", "Natural")
        await bot.core.on_pair(user("ann"), selfie, reference)
        await bot.result(2)
        assert [r.mode for r in bot.engine.requests] == ["full", "natural"]
    finally:
        await bot.stop()


async def test_paint_left_out_is_said_and_the_full_look_offered_first(bot: Bot) -> None:
    selfie, painted = bot.engine.photo(394), bot.engine.photo(361, painted=True)
    await bot.core.on_pair(user("ann", message="1"), selfie, painted)
    natural = await bot.result(1)
    assert natural.text == (
        "Makeup from your reference, strength 70.\nYour reference wears face paint that natural "
        "mode leaves out. Press “Full look” to put it on too, or send /mode full to always get "
        "the whole look."
    )
    assert [b.label for b in natural.buttons] == ["Full look", *RESULT_BUTTONS[:5], "Full resolution"]
    switch = natural.buttons[0].data
    assert await bot.core.on_button(user("bob", message="2"), switch) == (
        "Only the person who asked for this result can use its buttons."
    )
    assert await bot.core.on_button(user("ann", message="2"), switch) == "Trying the full look…"
    full = await bot.result(2)
    assert full.text == "Makeup from your reference, strength 70, full look."
    assert full.reply_to == "2"
    assert full.buttons[0].label == "Stronger"  # nothing left out: no nudge
    assert await bot.storage.get_mode("test", "ann") is None  # the button is for this result only
    # Its buttons keep the mode: "Stronger" on the full look is a stronger full look.
    assert await bot.core.on_button(user("ann"), full.buttons[0].data) == "Making it stronger (90)…"
    assert (await bot.result(3)).text == "Makeup from your reference, strength 90, full look."
    assert [r.mode for r in bot.engine.requests] == ["natural", "full", "full"]


# -- the queue as users see it ----------------------------------------------------------------------


async def test_a_noticeable_wait_is_announced_and_a_long_job_shows_an_action(storage: Storage) -> None:
    bot = await start_bot(storage, announce_wait_s=0.2)
    try:
        bot.engine.busy_until = asyncio.Event()  # ann's job runs until bob has waited past 0.2 s
        for name in ("ann", "bob"):
            await bot.core.on_pair(user(name), bot.engine.photo(394), bot.engine.photo(361))
        await bot.messenger.wait_for(lambda: any(s.kind == "action" for s in bot.messenger.sent))
        await bot.messenger.wait_for(lambda: bool(bot.messenger.texts()))
        bot.engine.busy_until.set()
        await bot.result(2)
    finally:
        await bot.stop()

    texts = {s.chat_id: s.text for s in bot.messenger.sent if s.kind == "text"}
    assert texts == {"dm-bob": "There is 1 try-on ahead of yours; I'll reply here when it's ready."}
    kinds = [s.kind for s in bot.messenger.sent if s.chat_id == "dm-ann"]
    assert kinds[0] == "action" and kinds[-1] == "image"  # ann saw the bot at work, then her result


async def test_a_short_wait_is_not_announced(bot: Bot) -> None:
    for name in ("ann", "bob", "cid"):
        await bot.core.on_pair(user(name), bot.engine.photo(394), bot.engine.photo(361))
    await bot.result(3)
    assert bot.messenger.texts() == []  # bot.announce_wait_s is 3 s: nobody is told to wait


async def test_a_full_queue_and_the_per_user_cap_give_clear_replies(storage: Storage) -> None:
    bot = await start_bot(storage, max_size=2, per_user=1)
    try:
        bot.engine.busy_until = asyncio.Event()  # ann's job stays running while the others ask
        selfie, look = bot.engine.photo(394), "natural"
        await bot.core.on_pair(user("ann"), selfie, look=look)
        await bot.core.on_pair(user("ann"), selfie, look=look)
        assert "You already have" in bot.messenger.texts()[-1]
        for name in ("bob", "cid", "dan"):  # bob's and cid's jobs fill the two waiting places
            await bot.core.on_pair(user(name), selfie, look=look)
        assert "my queue is full" in bot.messenger.texts()[-1]
        bot.engine.busy_until.set()
        await bot.result(3)  # the accepted ones still arrive
        assert await bot.storage.flush()
        assert (await bot.storage.user_stats("test", "dan")).jobs_total == 0  # refusals never count
    finally:
        await bot.stop()


async def test_shutdown_tells_waiting_users_to_send_again(storage: Storage) -> None:
    bot = await start_bot(storage)
    bot.engine.busy_until = asyncio.Event()  # never set: every job is still waiting or running at shutdown
    for name in ("ann", "bob", "cid"):
        await bot.core.on_pair(user(name), bot.engine.photo(394), bot.engine.photo(361))

    left = await bot.queue.close(drain_timeout_s=0)
    await bot.core.close()

    assert {job.user_id for job in left} == {"ann", "bob", "cid"}
    notices = [s for s in bot.messenger.sent if "restarting" in s.text]
    assert {s.chat_id for s in notices} == {"dm-ann", "dm-bob", "dm-cid"}
    await bot.core.on_photo(user("dan"), bot.engine.photo(400))
    await bot.core.on_photo(user("dan"), bot.engine.photo(361))
    assert "restarting" in bot.messenger.texts()[-1]
    assert await bot.storage.flush()
    assert (await bot.storage.user_stats("test", "ann")).jobs_failed == 1


async def test_the_engine_refusing_a_photo_is_explained_and_counted(bot: Bot) -> None:
    # An explicit pair (a slash command, the web form) goes to the engine unchecked.
    await bot.core.on_pair(user("ann"), bot.engine.photo(300, face=False), bot.engine.photo(361))
    await bot.messenger.wait_for(lambda: bool(bot.messenger.texts()))
    assert bot.messenger.texts() == [
        "I couldn't find a face in your selfie. Please send a clear, well-lit photo."
    ]
    assert not bot.messenger.images()
    assert await bot.storage.flush()
    assert (await bot.storage.user_stats("test", "ann")).jobs_failed == 1
    await bot.core.on_command(user("ann"), "stats")
    assert bot.messenger.texts()[-1].startswith("Try-ons: 1 (0 done, 1 failed)")


# -- results and their buttons ------------------------------------------------------------------------


async def test_result_buttons_rerun_for_the_requester_only(bot: Bot) -> None:
    selfie, reference = bot.engine.photo(394), bot.engine.photo(361)
    await bot.core.on_pair(user("ann", chat="g", message="7", group=True), selfie, reference)
    first = await bot.result(1)
    bob = user("bob", chat="g", message="r1", group=True)
    assert await bot.core.on_button(bob, button(first, "Stronger")) == (
        "Only the person who asked for this result can use its buttons."
    )
    ann = user("ann", chat="g", message="r1", group=True)
    assert await bot.core.on_button(ann, button(first, "Stronger")) == "Making it stronger (90)…"
    await bot.result(2)
    assert await bot.core.on_button(ann, button(first, "Softer")) == "Making it softer (50)…"
    await bot.result(3)
    assert await bot.core.on_button(ann, button(first, "Lips only")) == "Putting on the lips only…"
    await bot.result(4)
    assert await bot.core.on_button(ann, button(first, "Before / after")) == "Before / after…"
    await bot.result(5)
    assert await bot.core.on_button(ann, button(first, "Full resolution")) == (
        "Sending the full-resolution file…"
    )
    results = await bot.messenger.wait_for_images(6)

    assert [r.text for r in results[1:]] == [
        "Makeup from your reference, strength 90.",
        "Makeup from your reference, strength 50.",
        "Makeup from your reference, strength 70, lips only.",
        "Before / after",
        "Full resolution",
    ]
    assert all(r.reply_to == "r1" for r in results[1:])
    assert [(r.strength, r.regions) for r in bot.engine.requests[1:]] == [
        (0.9, None),
        (0.5, None),
        (0.7, {"lips": 1.0}),
    ]
    assert results[1].image != first.image  # a re-run is a new picture
    assert size_of(results[4].image) == (2 * 394, 300)  # before | after, side by side
    assert results[5].as_file and results[5].image == first.image


async def test_stronger_stops_at_100_and_buttons_expire_with_the_result(bot: Bot) -> None:
    await bot.core.on_pair(user("ann"), bot.engine.photo(394), bot.engine.photo(361), strength=90)
    first = await bot.result(1)
    assert await bot.core.on_button(user("ann"), button(first, "Stronger")) == "Making it stronger (100)…"
    strongest = await bot.result(2)
    assert await bot.core.on_button(user("ann"), button(strongest, "Stronger")) == "It is already at 100."

    bot.clock.now += 301  # bot.result_cache_s is 300
    assert (await bot.core.on_button(user("ann"), button(first, "Softer"))).startswith(
        "This result has expired"
    )
    assert len(bot.engine.requests) == 2


async def test_after_a_restart_buttons_say_the_photos_are_gone(storage: Storage) -> None:
    bot = await start_bot(storage)
    await bot.core.on_pair(user("ann"), bot.engine.photo(394), bot.engine.photo(361))
    result = await bot.result()
    await bot.stop()

    restarted = await start_bot(storage)
    try:
        assert await restarted.core.on_button(user("ann"), button(result, "Stronger")) == (
            "I was restarted and no longer have these photos. Please send them again."
        )
    finally:
        await restarted.stop()


# -- commands --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["start", "help"])
async def test_start_and_help_say_how_it_works_with_the_defaults(bot: Bot, command: str) -> None:
    await bot.core.on_command(user("ann"), command)
    text = bot.messenger.texts()[-1]
    assert "Send your selfie" in text
    # Exactly the command table's commands for everyone, in its order.
    listed = re.findall(r"^/(\w+)", text, flags=re.MULTILINE)
    assert listed == [c.name for c in COMMANDS if c.audience == "everyone"]
    assert "admin" not in listed and "strength" in listed
    assert "strength is 70 and the look mode natural" in text
    await bot.core.on_command(user("ann"), "dance")
    assert bot.messenger.texts()[-1] == "I don't know /dance. Send /help to see what I can do."


async def test_stats_count_jobs_and_forget_deletes_everything(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "strength", "50")
    bot.engine.busy_until = asyncio.Event()  # the first job is still running when the second is queued
    await bot.core.on_pair(user("ann"), bot.engine.photo(394), bot.engine.photo(361))
    await bot.core.on_pair(user("ann"), bot.engine.photo(300, face=False), bot.engine.photo(362))
    bot.engine.busy_until.set()
    # Replies: strength set and the no-face explanation (the second job's short wait is not announced).
    await bot.messenger.wait_for(lambda: len(bot.messenger.images()) == 1 and len(bot.messenger.texts()) == 2)
    [first] = bot.messenger.images()
    assert await bot.storage.flush()

    await bot.core.on_command(user("ann"), "stats")
    assert bot.messenger.texts()[-1].startswith("Try-ons: 2 (1 done, 1 failed), 2 in the last 24 hours.")
    assert "Strength: 50." in bot.messenger.texts()[-1]

    await bot.core.on_photo(user("ann"), bot.engine.photo(400))  # pending, dropped by /forget too
    assert bot.core.held_images == 4  # the pending selfie, and the result's selfie, reference and image
    await bot.core.on_command(user("ann"), "forget")
    assert bot.core.held_images == 0
    assert bot.messenger.texts()[-1] == (
        "Done: I deleted everything I stored about you (3 records) and your photos."
    )
    stats = await bot.storage.user_stats("test", "ann")
    assert (stats.jobs_total, stats.strength) == (0, None)
    assert (await bot.core.on_button(user("ann"), button(first, "Softer"))).startswith(
        "This result has expired"
    )
    await bot.core.on_photo(user("ann"), bot.engine.photo(361))
    assert "Got your selfie" in bot.messenger.texts()[-1]  # the earlier selfie is gone


async def test_privacy_says_what_is_kept_and_for_how_long(bot: Bot) -> None:
    await bot.core.on_command(user("ann"), "privacy")
    assert "Never an image" in bot.messenger.texts()[-1] and "5 minutes" in bot.messenger.texts()[-1]
