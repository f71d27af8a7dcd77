"""Face Lab on Telegram, end to end: `facelab serve`'s own wiring (real SQLite storage, queue, core and
Telegram adapter) with the real python-telegram-bot client talking over loopback HTTP to the fake Bot
API in tests/fake_telegram.py, and one real engine process shared by the module's tests.

Which selfie a result was made from is read from the result itself: every test selfie carries a
distinct binary code stamped in its top-left corner, away from the face, which the makeup leaves alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image

from bot.commands import COMMANDS
from bot.engine_process import EngineProcess
from bot.log_redaction import REDACTED
from bot.queue import JobQueue, LocalJobQueue
from bot.settings import QueueSettings
from bot.telegram.settings import TelegramSettings
from facelab.commands import serve as serve_command
from facelab.settings import DatabaseSettings, Settings
from tests.conftest import face_path
from tests.fake_telegram import TOKEN, ApiCall, Chat, FakeTelegram, User
from tests.paint_spotter import PaintSpotter

# Slow: end to end: fake Bot API server, real engine process, shared photos.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SELFIES = [
    "sm_source_01.jpg",
    "sm_source_02.jpg",
    "shmt_source_01.jpg",
    "shmt_source_02.jpg",
    "shmt_source_03.jpg",
    "elegant_source_01.png",
    "fr_source_01.jpg",
    "elegant_source_02.png",
]
REFERENCE = "elegant_ref_02.png"
NO_FACE = "dlib_source_02.jpg"
CODE_BITS = 6
BLOCK = 14  # px per code bit: big enough to survive JPEG in the result
RESULT_BUTTONS = ["more", "less", "lips", "compare", "swap", "full", "file"]
PAINTED = "sm_ref_01.jpg"  # a Joker
ALICE, BOB = User(501, "Alice", "alice"), User(502, "Bob")
GROUP = Chat(-100777, "supergroup", "Makeup club")


def dm(user: User) -> Chat:
    return Chat(user.id, "private")


def selfie(code: int, *, fmt: str = "JPEG", name: str | None = None) -> bytes:
    """A real selfie, at most 320 px, with `code` stamped as black/white blocks in its top-left corner."""
    with Image.open(face_path(name or SELFIES[code % len(SELFIES)])) as source:
        image = source.convert("RGB")
    image.thumbnail((320, 320))
    for bit in range(CODE_BITS):
        shade = 255 if code >> bit & 1 else 0
        image.paste((shade, shade, shade), (bit * BLOCK, 0, (bit + 1) * BLOCK, BLOCK))
    return encode(image, fmt)


def read_code(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        gray = image.convert("L")
    code = 0
    for bit in range(CODE_BITS):
        block = gray.crop((bit * BLOCK + 3, 3, (bit + 1) * BLOCK - 3, BLOCK - 3))
        mean = sum(block.get_flattened_data()) / (block.width * block.height)
        code |= (mean > 128) << bit
    return code


def photo_file(name: str, fmt: str = "JPEG") -> bytes:
    with Image.open(face_path(name)) as source:
        image = source.convert("RGB")
    image.thumbnail((320, 320))
    return encode(image, fmt)


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def replying_to(message: dict[str, Any]) -> Callable[[ApiCall], bool]:
    return lambda call: (call.params.get("reply_parameters") or {}).get("message_id") == message["message_id"]


def result_id(call: ApiCall, action: str) -> str:
    return next(data for data in call.button_data() if data.startswith(f"{action}:"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine() -> AsyncIterator[EngineProcess]:
    process = EngineProcess(Settings().engine)
    await process.start()
    yield process
    await process.close()


@pytest.fixture
def shared_engine_queue(engine: EngineProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """`facelab serve` builds its queue over the module's engine process instead of spawning one."""

    @contextlib.asynccontextmanager
    async def queue_over_shared_engine(settings: Settings) -> AsyncIterator[JobQueue]:
        yield LocalJobQueue(engine, max_size=settings.queue.max_size, per_user=settings.queue.per_user)

    monkeypatch.setitem(serve_command.QUEUES, "local", queue_over_shared_engine)


@pytest_asyncio.fixture(loop_scope="module")
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def settings_for(
    fake: FakeTelegram, tmp_path: Path, telegram: dict[str, Any] | None = None, **queue: Any
) -> Settings:
    return Settings(
        telegram=TelegramSettings(
            token=TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url, **(telegram or {})
        ),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}"),
        queue=QueueSettings(**queue),
    )


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, fake: FakeTelegram, started_by: str = "deleteWebhook"
) -> AsyncIterator[None]:
    """`facelab serve` running until the block ends; then it must drain and exit with status 0.
    `started_by`: the call that shows updates are being received (polling begins with deleteWebhook)."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve_command.serve(settings, stop))
    started = asyncio.create_task(fake.next_call(started_by))
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        raise AssertionError(f"serve exited during start-up with {task.result()}")
    try:
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 60) == 0


@pytest.fixture
def bot_settings(fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None) -> Settings:
    return settings_for(fake, tmp_path)


@contextlib.contextmanager
def engine_paused(engine: EngineProcess) -> Iterator[None]:
    """Freeze the engine child (as if it were busy with a long job) until the block ends."""
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


async def test_private_chat_flow_with_result_buttons_and_no_token_in_logs(
    fake: FakeTelegram, bot_settings: Settings, engine: EngineProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    chat = dm(ALICE)
    async with serving(bot_settings, fake):
        fake.send_text(ALICE, chat, "/start")
        help_text = await fake.next_call("sendMessage", chat.id)
        assert "/strength" in help_text.params["text"]
        fake.send_text(ALICE, chat, "/frobnicate")
        assert "don't know /frobnicate" in (await fake.next_call("sendMessage", chat.id)).params["text"]

        first = fake.send_photo(ALICE, chat, selfie(5))
        got_selfie = await fake.next_call("sendMessage", chat.id, replying_to(first))
        assert "selfie" in got_selfie.params["text"]
        with engine_paused(engine):  # a job long enough for the chat to show the bot at work
            reference = fake.send_photo(ALICE, chat, photo_file(REFERENCE))
            action = await fake.next_call("sendChatAction", chat.id)
        assert action.params["action"] == "upload_photo"
        result = await fake.next_call("sendPhoto", chat.id, replying_to(reference))
        assert read_code(result.upload("photo")) == 5
        assert [data.split(":")[0] for data in result.button_data()] == RESULT_BUTTONS

        fake.press_button(ALICE, result.result, result_id(result, "file"))
        full = await fake.next_call("sendDocument", chat.id)
        assert full.upload("document") == result.upload("photo")
        assert (await fake.next_call("answerCallbackQuery")).params["text"].startswith("Sending")

        fake.press_button(ALICE, result.result, result_id(result, "more"))
        stronger = await fake.next_call("sendPhoto", chat.id)
        assert "strength 90" in stronger.params["caption"]
        assert read_code(stronger.upload("photo")) == 5

        fake.press_button(ALICE, result.result, result_id(result, "lips"))
        lips = await fake.next_call("sendPhoto", chat.id)
        assert "lips only" in lips.params["caption"]

        fake.press_button(ALICE, result.result, result_id(result, "compare"))
        compare = await fake.next_call("sendPhoto", chat.id)
        with Image.open(io.BytesIO(compare.upload("photo"))) as side_by_side:
            assert side_by_side.width > side_by_side.height  # before and after, side by side
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text
    assert REDACTED in caplog.text  # the redaction ran on lines that would have carried it


async def test_strength_is_remembered_across_a_bot_restart(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    chat = dm(BOB)
    async with serving(bot_settings, fake):
        fake.send_text(BOB, chat, "/strength")
        menu = await fake.next_call("sendMessage", chat.id)
        assert "70" in menu.params["text"]
        assert menu.button_data() == [f"strength:{value}" for value in (20, 40, 60, 80, 100)]
        fake.press_button(BOB, menu.result, "strength:40")
        answer = await fake.next_call("answerCallbackQuery")
        assert "40" in answer.params["text"]
    async with serving(bot_settings, fake):
        fake.send_text(BOB, chat, "/strength")
        assert "strength is 40" in (await fake.next_call("sendMessage", chat.id)).params["text"]
        fake.send_photo(BOB, chat, selfie(9))
        fake.send_photo(BOB, chat, photo_file(REFERENCE))
        result = await fake.next_call("sendPhoto", chat.id)
    assert "strength 40" in result.params["caption"]


async def test_mode_command_and_the_full_look_button(
    fake: FakeTelegram, tmp_path: Path, engine: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    painted = photo_file(PAINTED)
    spotter = PaintSpotter(engine, painted)

    @contextlib.asynccontextmanager
    async def queue_spotting_paint(settings: Settings) -> AsyncIterator[JobQueue]:
        yield LocalJobQueue(spotter, max_size=settings.queue.max_size, per_user=settings.queue.per_user)

    monkeypatch.setitem(serve_command.QUEUES, "local", queue_spotting_paint)
    chat = dm(ALICE)
    async with serving(settings_for(fake, tmp_path), fake):
        menu = fake.calls_to("setMyCommands")[-1].params["commands"]
        # The command table's commands for everyone, in its order, with its help; /admin stays off the menu.
        assert [(c["command"], c["description"]) for c in menu] == [
            (command.name, command.help) for command in COMMANDS if command.audience == "everyone"
        ]
        fake.send_photo(ALICE, chat, selfie(3))
        assert "Got your selfie" in (await fake.next_call("sendMessage", chat.id)).params["text"]
        fake.send_photo(ALICE, chat, painted)
        natural = await fake.next_call("sendPhoto", chat.id)
        assert "face paint that natural mode leaves out" in natural.params["caption"]
        assert natural.button_data()[0].startswith("full:")  # the full look is offered first

        fake.press_button(ALICE, natural.result, natural.button_data()[0])
        assert (await fake.next_call("answerCallbackQuery")).params["text"] == "Trying the full look…"
        full = await fake.next_call("sendPhoto", chat.id)
        assert full.params["caption"] == "Makeup from your reference, strength 70, full look."
        assert read_code(full.upload("photo")) == 3
        assert [data.split(":")[0] for data in full.button_data()][-2:] == ["natural", "file"]

        fake.send_text(ALICE, chat, "/mode")
        menu = await fake.next_call("sendMessage", chat.id)
        assert menu.params["text"].startswith("Your look mode is natural")  # the button changed one result
        assert menu.button_data() == ["mode:natural", "mode:full"]
        fake.press_button(ALICE, menu.result, "mode:full")
        assert "Look mode set to full" in (await fake.next_call("answerCallbackQuery")).params["text"]
        fake.send_photo(ALICE, chat, selfie(4))
        assert "Got your selfie" in (await fake.next_call("sendMessage", chat.id)).params["text"]
        fake.send_photo(ALICE, chat, painted)
        remembered = await fake.next_call("sendPhoto", chat.id)
        assert remembered.params["caption"] == "Makeup from your reference, strength 70, full look."
    assert spotter.modes == ["natural", "full", "full"]


async def test_group_with_privacy_mode_keeps_two_interleaving_users_apart(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    async with serving(bot_settings, fake):
        assert not fake.reached_bot(fake.send_photo(ALICE, GROUP, selfie(1)))  # privacy mode: not for the bot
        alice_selfie = fake.send_photo(ALICE, GROUP, selfie(2), caption="@facelab_test_bot me")
        bob_selfie = fake.send_photo(BOB, GROUP, selfie(3), caption="@facelab_test_bot")
        asked_alice = await fake.next_call("sendMessage", GROUP.id, replying_to(alice_selfie))
        await fake.next_call("sendMessage", GROUP.id, replying_to(bob_selfie))
        # Alice answers the bot's question by replying to it; Bob captions his reference.
        alice_ref = fake.send_photo(ALICE, GROUP, photo_file(REFERENCE), reply_to=asked_alice.result)
        bob_ref = fake.send_photo(BOB, GROUP, photo_file("shmt_ref_04.jpg"), caption="@facelab_test_bot ref")
        alice_result = await fake.next_call("sendPhoto", GROUP.id, replying_to(alice_ref))
        bob_result = await fake.next_call("sendPhoto", GROUP.id, replying_to(bob_ref))

        fake.press_button(BOB, alice_result.result, result_id(alice_result, "more"))
        refused = await fake.next_call("answerCallbackQuery")
    assert read_code(alice_result.upload("photo")) == 2
    assert read_code(bob_result.upload("photo")) == 3
    assert "Only the person who asked" in refused.params["text"]
    assert len(fake.calls_to("sendPhoto", GROUP.id)) == 2


async def test_reply_with_a_selfie_to_someones_photo_borrows_its_makeup(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    async with serving(bot_settings, fake):
        shared = fake.send_photo(ALICE, GROUP, photo_file(REFERENCE))  # Alice shows off her makeup
        borrow = fake.send_photo(BOB, GROUP, selfie(7), caption="@facelab_test_bot", reply_to=shared)
        result = await fake.next_call("sendPhoto", GROUP.id, replying_to(borrow))
    assert not fake.reached_bot(shared)
    assert read_code(result.upload("photo")) == 7
    assert not fake.calls_to("sendMessage", GROUP.id)  # one message made the whole request


async def test_group_without_privacy_mode_still_answers_only_when_addressed(
    tmp_path: Path, shared_engine_queue: None
) -> None:
    async with FakeTelegram(privacy_mode=False) as open_fake:
        async with serving(settings_for(open_fake, tmp_path), open_fake):
            assert open_fake.reached_bot(
                open_fake.send_photo(ALICE, GROUP, selfie(4))
            )  # the bot sees it, and keeps quiet
            open_fake.send_text(BOB, GROUP, "what a nice photo")
            addressed = open_fake.send_photo(ALICE, GROUP, selfie(6), caption="@facelab_test_bot")
            answer = await open_fake.next_call("sendMessage", GROUP.id)
        assert replying_to(addressed)(answer)
        assert "Got your selfie" in answer.params["text"]
        assert len(open_fake.calls_to("sendMessage")) == 1


async def test_photo_captioned_with_a_look_command_runs_at_once(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    async with serving(bot_settings, fake):
        asked = fake.send_photo(BOB, GROUP, selfie(8), caption="/look@facelab_test_bot red_lips")
        result = await fake.next_call("sendPhoto", GROUP.id, replying_to(asked))
    assert fake.reached_bot(asked)
    assert "Look: red_lips" in result.params["caption"]
    assert read_code(result.upload("photo")) == 8


async def test_album_of_selfie_and_reference(fake: FakeTelegram, bot_settings: Settings) -> None:
    chat = dm(ALICE)
    async with serving(bot_settings, fake):
        first, _ = fake.send_album(ALICE, chat, [selfie(11), photo_file(REFERENCE)])
        result = await fake.next_call("sendPhoto", chat.id, replying_to(first))
    assert read_code(result.upload("photo")) == 11
    assert not fake.calls_to("sendMessage", chat.id)  # no "got your selfie": the album was one request


async def test_uncompressed_image_files_png_webp_and_heic(fake: FakeTelegram, bot_settings: Settings) -> None:
    chat = dm(BOB)
    async with serving(bot_settings, fake):
        fake.send_document(BOB, chat, selfie(12, fmt="PNG"), "me.png", "image/png")
        fake.send_document(BOB, chat, photo_file(REFERENCE, "WEBP"), "look.webp", "image/webp")
        png_result = await fake.next_call("sendPhoto", chat.id)
        # iPhone photos: HEIC, sometimes sent untyped.
        fake.send_document(BOB, chat, selfie(13, fmt="HEIF"), "IMG_0001.HEIC", "application/octet-stream")
        fake.send_photo(BOB, chat, photo_file(REFERENCE))
        heic_result = await fake.next_call("sendPhoto", chat.id)
    assert read_code(png_result.upload("photo")) == 12
    assert read_code(heic_result.upload("photo")) == 13


async def test_photo_without_a_face_is_answered_on_arrival_and_the_other_kept(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    chat = dm(ALICE)
    async with serving(bot_settings, fake):
        first = fake.send_photo(ALICE, chat, selfie(21))
        await fake.next_call("sendMessage", chat.id, replying_to(first))  # got your selfie
        faceless = fake.send_photo(ALICE, chat, photo_file(NO_FACE))
        message = await fake.next_call("sendMessage", chat.id, replying_to(faceless))
        fake.send_photo(ALICE, chat, photo_file(REFERENCE))  # the selfie was kept
        result = await fake.next_call("sendPhoto", chat.id)
    assert "couldn't find a face in your reference photo" in message.params["text"]
    assert read_code(result.upload("photo")) == 21


async def test_files_that_are_not_images(fake: FakeTelegram, bot_settings: Settings) -> None:
    chat = dm(BOB)
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    async with serving(bot_settings, fake):
        declared = fake.send_document(BOB, chat, pdf, "cv.pdf", "application/pdf")
        refused = await fake.next_call("sendMessage", chat.id, replying_to(declared))
        disguised = fake.send_document(BOB, chat, pdf, "selfie.jpg", "image/jpeg")
        engine_refused = await fake.next_call("sendMessage", chat.id, replying_to(disguised))
        empty = fake.send_document(BOB, chat, b"", "selfie.jpg", "image/jpeg")
        empty_refused = await fake.next_call("sendMessage", chat.id, replying_to(empty))
    assert "not an image" in refused.params["text"]
    assert "looks like a PDF" in engine_refused.params["text"]
    assert "arrived empty" in empty_refused.params["text"]
    assert not fake.calls_to("sendPhoto")
    assert len(fake.calls_to("getFile")) == 2  # the declared PDF was never downloaded


async def test_an_untyped_heic_named_bin_is_read_from_its_bytes(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    chat = dm(ALICE)
    async with serving(bot_settings, fake):
        fake.send_document(ALICE, chat, selfie(14, fmt="HEIF"), "file_17.bin", None)
        fake.send_photo(ALICE, chat, photo_file(REFERENCE))
        result = await fake.next_call("sendPhoto", chat.id)
    assert read_code(result.upload("photo")) == 14


async def test_a_size_stated_only_by_getfile_is_refused_before_downloading(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None
) -> None:
    settings = settings_for(fake, tmp_path, telegram={"max_download_bytes": 2**20})
    chat = dm(BOB)
    async with serving(settings, fake):
        big = fake.send_document(
            BOB, chat, b"\xff\xd8\xff" + bytes(3 * 2**20), "big.jpg", "image/jpeg", announce_size=False
        )
        refusal = await fake.next_call("sendMessage", chat.id, replying_to(big))
    assert "3 MB" in refusal.params["text"] and "1 MB" in refusal.params["text"]
    assert len(fake.calls_to("getFile")) == 1 and not fake.downloads


async def test_stickers_voice_and_locations_get_a_hint(fake: FakeTelegram, bot_settings: Settings) -> None:
    chat = dm(ALICE)
    sticker = {"file_id": "s1", "file_unique_id": "us1", "type": "regular", "width": 512, "height": 512,
               "is_animated": False, "is_video": False, "emoji": "\U0001f600"}  # fmt: skip
    async with serving(bot_settings, fake):
        sent = [
            fake.send_other(ALICE, chat, sticker=sticker),
            fake.send_other(ALICE, chat, voice={"file_id": "v1", "file_unique_id": "uv1", "duration": 2}),
            fake.send_other(ALICE, chat, location={"latitude": 48.85, "longitude": 2.35}),
        ]
        hints = [await fake.next_call("sendMessage", chat.id, replying_to(message)) for message in sent]
    assert all("I only work with photos" in hint.params["text"] for hint in hints)


async def test_files_over_the_download_limit_are_refused_without_downloading(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    chat = dm(ALICE)
    async with serving(bot_settings, fake):
        photo = fake.send_photo(ALICE, chat, selfie(1), file_size=25 * 2**20)
        photo_refusal = await fake.next_call("sendMessage", chat.id, replying_to(photo))
        document = fake.send_document(ALICE, chat, b"...", "huge.png", "image/png", file_size=21 * 2**20)
        document_refusal = await fake.next_call("sendMessage", chat.id, replying_to(document))
    assert "25 MB" in photo_refusal.params["text"] and "20 MB" in photo_refusal.params["text"]
    assert "21 MB" in document_refusal.params["text"]
    assert not fake.calls_to("getFile")


async def test_full_queue_says_so_and_loses_nothing(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None, engine: EngineProcess
) -> None:
    users = [User(600 + index, f"user{index}") for index in range(3)]
    async with serving(settings_for(fake, tmp_path, max_size=1), fake):
        with engine_paused(engine):
            for index, user in enumerate(users):
                fake.send_photo(user, dm(user), selfie(30 + index))
                await fake.next_call("sendMessage", dm(user).id)
                fake.send_photo(user, dm(user), photo_file(REFERENCE))
                # One job runs (frozen), one waits, the third finds the queue full. Each answer is
                # awaited before the next user asks, so the jobs are queued in this order.
                await fake.next_call("sendChatAction" if index == 0 else "sendMessage", dm(user).id)
        first = await fake.next_call("sendPhoto", dm(users[0]).id)
        second = await fake.next_call("sendPhoto", dm(users[1]).id)
    waiting, full = (fake.calls_to("sendMessage", dm(user).id)[-1] for user in users[1:])
    assert "1 try-on ahead" in waiting.params["text"]
    assert "queue is full" in full.params["text"]
    assert (read_code(first.upload("photo")), read_code(second.upload("photo"))) == (30, 31)
    assert not fake.calls_to("sendPhoto", dm(users[2]).id)


async def test_fifty_concurrent_users_each_get_exactly_their_own_result(
    fake: FakeTelegram, bot_settings: Settings
) -> None:
    users = [User(1000 + index, f"user{index}") for index in range(50)]
    async with serving(bot_settings, fake):
        for index, user in enumerate(users):
            fake.send_photo(user, dm(user), selfie(index))
        for user in users:
            fake.send_photo(user, dm(user), photo_file(REFERENCE))
        results = {user.id: await fake.next_call("sendPhoto", dm(user).id, timeout=180) for user in users}
    for index, user in enumerate(users):
        assert read_code(results[user.id].upload("photo")) == index
    assert len(fake.calls_to("sendPhoto")) == 50  # nothing sent twice or to the wrong chat


async def test_engine_killed_mid_job_still_delivers(
    fake: FakeTelegram, bot_settings: Settings, engine: EngineProcess
) -> None:
    chat = dm(BOB)
    restarts = engine.restarts
    async with serving(bot_settings, fake):
        killed_pid = engine.pid
        assert killed_pid is not None
        with engine_paused(engine):
            fake.send_photo(BOB, chat, selfie(40))
            fake.send_photo(BOB, chat, photo_file(REFERENCE))
            await fake.next_call("sendChatAction", chat.id)  # the job is in the (frozen) engine
            os.kill(killed_pid, signal.SIGKILL)
        result = await fake.next_call("sendPhoto", chat.id)
    assert read_code(result.upload("photo")) == 40
    assert engine.restarts == restarts + 1
    assert engine.pid != killed_pid


async def test_rate_limit_answers_are_waited_out(fake: FakeTelegram, bot_settings: Settings) -> None:
    chat = dm(ALICE)
    async with serving(bot_settings, fake):
        fake.fail_next(2, retry_after=1, methods={"sendPhoto"})
        fake.send_photo(ALICE, chat, selfie(50))
        fake.send_photo(ALICE, chat, photo_file(REFERENCE))
        result = await fake.next_call("sendPhoto", chat.id)
    attempts = fake.calls_to("sendPhoto", chat.id)
    assert [attempt.rejected_with for attempt in attempts] == [429, 429, None]
    assert all(later.at - earlier.at >= 1.0 for earlier, later in itertools.pairwise(attempts))
    assert read_code(result.upload("photo")) == 50


async def test_replies_are_paced_under_the_flood_limit(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None
) -> None:
    settings = settings_for(fake, tmp_path, telegram={"messages_per_s": 4})
    users = [User(900 + index, f"user{index}") for index in range(20)]
    async with serving(settings, fake):
        for user in users:
            fake.send_text(user, dm(user), "/help")
        for user in users:
            await fake.next_call("sendMessage", dm(user).id)
    replies = sorted(call.at for call in fake.calls_to("sendMessage") if call.chat_id >= 900)
    # Four at once, then one every quarter second: twenty replies cannot take less than four seconds,
    # and no second after the first reply holds more than the four at once and four more, one more
    # for a slot at its edge. Half a second is left for the first replies' delivery to lag on a
    # loaded machine (twelve replies, two seconds apart by the limiter, once arrived 1.56 s apart);
    # a lagging first reply also pulls later slots into the window after it, so the window is a
    # whole second (half a second once held seven replies, where six were expected).
    assert len(replies) == 20
    assert replies[-1] - replies[0] >= 3.5
    assert sum(at - replies[0] < 1.0 for at in replies) <= 9


async def test_webhook_mode_takes_updates_from_telegram_and_refuses_forged_ones(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None, unused_tcp_port: int
) -> None:
    hook = f"http://127.0.0.1:{unused_tcp_port}/telegram/hook"
    webhook = {
        "mode": "webhook",
        "webhook_url": hook,
        "webhook_port": unused_tcp_port,
        "webhook_secret": "s3cret",
    }
    chat = dm(ALICE)
    async with serving(settings_for(fake, tmp_path, webhook), fake, started_by="setWebhook"):
        fake.send_text(ALICE, chat, "/start")
        help_text = await fake.next_call("sendMessage", chat.id)
        forged = {"update_id": 999, "message": {"message_id": 1, "date": 0, "chat": chat.to_dict(),
                                                "from": ALICE.to_dict(), "text": "/forget"}}  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.post(hook, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"}) as answer,
        ):
            assert answer.status == 403
    registered = fake.calls_to("setWebhook")[0].params
    assert registered["url"] == hook and registered["secret_token"] == "s3cret"
    assert registered["allowed_updates"] == ["message", "callback_query"]
    assert "/strength" in help_text.params["text"]
    assert fake.webhook_statuses == [200]
    assert len(fake.calls_to("sendMessage", chat.id)) == 1  # the forged /forget was not acted on
