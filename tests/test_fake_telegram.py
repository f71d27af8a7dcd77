"""The fake Bot API server, checked with a throwaway python-telegram-bot Application: the real client
over real loopback HTTP, so the fake speaks what PTB sends and understands what it gets back."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from PIL import Image
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fake_telegram import TOKEN, Chat, FakeTelegram, User

ALICE = User(11, "Alice", "alice")
BOB = User(12, "Bob")
ALICE_DM = Chat(11, "private")
GROUP = Chat(-100500, "supergroup", "Makeup club")


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


async def echo_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"command {update.effective_message.text}", do_quote=True)


async def echo_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Downloads the photo (largest size) or image document and sends the same bytes back."""
    message = update.effective_message
    assert message is not None
    attachment = message.photo[-1] if message.photo else message.document
    assert attachment is not None
    data = bytes(await (await attachment.get_file()).download_as_bytearray())
    buttons = InlineKeyboardMarkup([[InlineKeyboardButton("file", callback_data="full")]])
    await message.reply_photo(data, caption=f"caption={message.caption}", reply_markup=buttons)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    await query.answer("on its way")
    await query.edit_message_caption(caption=f"pressed {query.data}")
    await context.bot.send_document(query.message.chat.id, b"full bytes", filename="full.png")


@asynccontextmanager
async def running_bot(fake: FakeTelegram) -> AsyncIterator[Application]:
    app = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .rate_limiter(AIORateLimiter(max_retries=3))
        .build()
    )
    app.add_handler(CommandHandler("start", echo_command))
    app.add_handler(MessageHandler(filters.PHOTO | filters.Document.IMAGE, echo_photo))
    app.add_handler(CallbackQueryHandler(on_button))
    async with app:
        await app.bot.set_my_commands([("start", "say hello")])
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=5)
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


async def test_start_up_calls_get_me_and_commands(fake: FakeTelegram) -> None:
    async with running_bot(fake) as app:
        assert app.bot.username == fake.bot_username
        commands = fake.calls_to("setMyCommands")
        assert commands[0].params["commands"] == [{"command": "start", "description": "say hello"}]
        assert fake.calls_to("deleteWebhook")


async def test_command_in_private_chat_gets_a_reply_to_it(fake: FakeTelegram) -> None:
    async with running_bot(fake):
        sent = fake.send_text(ALICE, ALICE_DM, "/start")
        reply = await fake.next_call("sendMessage", chat_id=ALICE_DM.id)
    assert sent is not None
    assert reply.params["text"] == "command /start"
    assert reply.params["reply_parameters"]["message_id"] == sent["message_id"]


async def test_photo_round_trip_with_button_and_document(fake: FakeTelegram) -> None:
    photo = png((200, 10, 10))
    async with running_bot(fake):
        fake.send_photo(ALICE, ALICE_DM, photo)
        answer = await fake.next_call("sendPhoto", chat_id=ALICE_DM.id)
        assert answer.upload("photo") == photo
        assert answer.button_data() == ["full"]
        assert answer.params["caption"] == "caption=None"

        query_id = fake.press_button(ALICE, answer.result, "full")
        answered = await fake.next_call("answerCallbackQuery")
        edited = await fake.next_call("editMessageCaption", chat_id=ALICE_DM.id)
        document = await fake.next_call("sendDocument", chat_id=ALICE_DM.id)
    assert answered.params["callback_query_id"] == query_id
    assert answered.params["text"] == "on its way"
    assert edited.params["message_id"] == answer.result["message_id"]
    assert fake.message(ALICE_DM.id, answer.result["message_id"])["caption"] == "pressed full"
    assert document.upload("document") == b"full bytes"


async def test_photo_captioned_with_a_command_is_a_photo_not_a_command(fake: FakeTelegram) -> None:
    async with running_bot(fake):
        fake.send_photo(ALICE, ALICE_DM, png((1, 2, 3)), caption="/start")
        answer = await fake.next_call("sendPhoto", chat_id=ALICE_DM.id)
    assert answer.params["caption"] == "caption=/start"
    assert not fake.calls_to("sendMessage")


async def test_image_document_is_downloaded_whole(fake: FakeTelegram) -> None:
    data = png((5, 200, 5), size=(64, 64))
    async with running_bot(fake):
        fake.send_document(ALICE, ALICE_DM, data, "selfie.png", "image/png")
        answer = await fake.next_call("sendPhoto", chat_id=ALICE_DM.id)
    assert answer.upload("photo") == data


async def test_album_is_one_update_per_photo_with_a_shared_group_id(fake: FakeTelegram) -> None:
    first, second = png((10, 10, 10)), png((20, 20, 20))
    async with running_bot(fake):
        messages = fake.send_album(ALICE, ALICE_DM, [first, second], caption="both")
        answers = [await fake.next_call("sendPhoto", chat_id=ALICE_DM.id) for _ in range(2)]
    assert messages[0]["media_group_id"] == messages[1]["media_group_id"]
    assert sorted(a.upload("photo") for a in answers) == sorted([first, second])
    assert sorted(a.params["caption"] for a in answers) == ["caption=None", "caption=both"]


async def test_group_privacy_mode_hides_plain_messages_from_the_bot(fake: FakeTelegram) -> None:
    async with running_bot(fake):
        assert not fake.reached_bot(fake.send_photo(BOB, GROUP, png((9, 9, 9))))
        assert not fake.reached_bot(fake.send_text(BOB, GROUP, "/start@some_other_bot"))
        assert fake.reached_bot(fake.send_text(BOB, GROUP, "/start@facelab_test_bot"))
        reply = await fake.next_call("sendMessage", chat_id=GROUP.id)
        mention = fake.send_photo(BOB, GROUP, png((8, 8, 8)), caption="@facelab_test_bot here")
        answer = await fake.next_call("sendPhoto", chat_id=GROUP.id)
        reply_to_bot = fake.send_photo(BOB, GROUP, png((7, 7, 7)), reply_to=answer.result)
        second = await fake.next_call("sendPhoto", chat_id=GROUP.id)
    assert reply.params["text"] == "command /start@facelab_test_bot"
    assert fake.reached_bot(mention) and fake.reached_bot(reply_to_bot)
    assert second.upload("photo") == png((7, 7, 7))
    assert len(fake.calls_to("sendPhoto")) == 2


async def test_rate_limit_answer_is_honoured_by_the_rate_limiter(fake: FakeTelegram) -> None:
    async with running_bot(fake):
        fake.fail_next(1, retry_after=1, methods={"sendMessage"})
        fake.send_text(ALICE, ALICE_DM, "/start")
        delivered = await fake.next_call("sendMessage", chat_id=ALICE_DM.id)
    attempts = fake.calls_to("sendMessage", ALICE_DM.id)
    assert [a.rejected_with for a in attempts] == [429, None]
    assert delivered is attempts[1]
    assert attempts[1].at - attempts[0].at >= 1.0


async def test_files_over_the_download_limit_cannot_be_fetched(fake: FakeTelegram) -> None:
    file_id = fake.add_file(b"tiny stand-in", size=25 * 1024 * 1024)
    async with running_bot(fake) as app:
        with pytest.raises(BadRequest, match="too big"):
            await app.bot.get_file(file_id)
