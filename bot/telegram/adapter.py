"""The Telegram adapter: python-telegram-bot's `Application` translating between Telegram updates and
the platform-neutral `bot.core.Core`. It decides nothing about the conversation; it turns updates
into `Origin`s, bytes and text, and the core's answers into Telegram messages and buttons.

    adapter = TelegramAdapter(settings.telegram, core)   # registers itself as the core's messenger
    await adapter.start()                                  # polling (default) or webhook
    ...
    await adapter.stop()
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any
from urllib.parse import urlsplit

from telegram import (
    Bot,
    BotCommand,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    PhotoSize,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, MessageEntityType
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.commands import COMMANDS, for_everyone
from bot.core import Core
from bot.log_redaction import redact_in_logs
from bot.ports import Button, Origin
from bot.telegram.http import AiohttpRequest
from bot.telegram.settings import TelegramSettings

log = logging.getLogger(__name__)

PLATFORM = "telegram"


class _UntypedDocument(filters.MessageFilter):
    def filter(self, message: Message) -> bool:
        return message.document is not None and not message.document.mime_type


# Image files as documents: by MIME type, HEIC/HEIF by name, and files with no type or the generic one
# (phones send HEIC as "x.bin" untyped): the engine reads the format from their bytes.
IMAGE_DOCUMENT = (
    filters.Document.IMAGE
    | filters.Document.FileExtension("heic")
    | filters.Document.FileExtension("heif")
    | filters.Document.MimeType("application/octet-stream")
    | _UntypedDocument()
)
# Messages with nothing the bot can use: answered with a short hint rather than silence.
UNUSABLE = (
    filters.Sticker.ALL
    | filters.VOICE
    | filters.AUDIO
    | filters.VIDEO
    | filters.VIDEO_NOTE
    | filters.ANIMATION
    | filters.LOCATION
    | filters.VENUE
    | filters.CONTACT
    | filters.POLL
    | filters.Dice.ALL
)
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
NOT_AN_IMAGE = (
    "That file is not an image I can use. Send a photo, or an image file (JPEG, PNG, WebP or HEIC)."
)
DOWNLOAD_FAILED = "I couldn't download that photo from Telegram. Please send it again."


class TelegramAdapter:
    """Runs the bot on Telegram and is the core's `Messenger` for platform "telegram"."""

    platform = PLATFORM
    compresses_images = True  # Telegram photos are recompressed: results offer the file too

    def __init__(self, settings: TelegramSettings, core: Core) -> None:
        if settings.token is None:
            raise ValueError("telegram.token is not set")
        token = settings.token.get_secret_value()
        # Before building the Bot: it logs its API URL, which contains the token.
        redact_in_logs(token)
        self._settings = settings
        self._core = core
        self.application = self._build_application(token)
        core.add_messenger(self)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (getMe), publish the command list, and start receiving updates."""
        app = self.application
        await app.initialize()
        await app.bot.set_my_commands([BotCommand(c.name, c.help) for c in for_everyone()])
        await app.start()
        assert app.updater is not None
        if self._settings.mode == "webhook":
            await self._start_webhook()
        else:
            await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)

    async def stop(self) -> None:
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    async def _start_webhook(self) -> None:
        assert self.application.updater is not None
        secret = self._settings.webhook_secret
        await self.application.updater.start_webhook(
            listen=self._settings.webhook_listen,
            port=self._settings.webhook_port,
            url_path=urlsplit(self._settings.webhook_url).path.lstrip("/"),
            webhook_url=self._settings.webhook_url,
            secret_token=secret.get_secret_value() if secret else secrets.token_urlsafe(32),
            allowed_updates=ALLOWED_UPDATES,
        )

    def _build_application(self, token: str) -> Application[Any, Any, Any, Any, Any, Any]:
        app = (
            ApplicationBuilder()
            .token(token)
            .base_url(self._settings.base_url)
            .base_file_url(self._settings.base_file_url)
            .rate_limiter(
                AIORateLimiter(
                    overall_max_rate=self._settings.messages_per_s, max_retries=self._settings.max_retries
                )
            )
            .request(AiohttpRequest())
            .get_updates_request(AiohttpRequest(connections=1))
            .concurrent_updates(InOrderPerPerson())
            .build()
        )
        app.add_handler(CommandHandler([c.name for c in COMMANDS], self._on_command))
        # Other commands in a private chat: the core answers with what it does know.
        app.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, self._on_command))
        addressed = AddressedToBot()
        app.add_handler(MessageHandler((filters.PHOTO | IMAGE_DOCUMENT) & addressed, self._on_image))
        app.add_handler(MessageHandler(filters.Document.ALL & addressed, self._on_other_file))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & addressed, self._on_help))
        app.add_handler(MessageHandler(UNUSABLE & addressed, self._on_unusable))
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_error_handler(self._on_error)
        return app

    # -- Messenger: the core's answers ----------------------------------------------------------------

    async def send_text(
        self, chat_id: str, text: str, *, reply_to: str | None = None, buttons: Sequence[Button] = ()
    ) -> None:
        await self._bot.send_message(
            int(chat_id), text, reply_parameters=_reply_to(reply_to), reply_markup=_keyboard(buttons)
        )

    async def send_image(
        self,
        chat_id: str,
        image: bytes,
        *,
        filename: str,
        caption: str = "",
        reply_to: str | None = None,
        buttons: Sequence[Button] = (),
        as_file: bool = False,
    ) -> None:
        common: dict[str, Any] = {
            "caption": caption,
            "reply_parameters": _reply_to(reply_to),
            "reply_markup": _keyboard(buttons),
        }
        if not as_file:
            try:
                await self._bot.send_photo(int(chat_id), InputFile(image, filename=filename), **common)
                return
            except BadRequest as error:
                # Photos are limited to 10 MB and 10000 px width + height; a document has no such limit.
                log.info("sending the image as a file instead of a photo: %s", error.message)
        await self._bot.send_document(int(chat_id), InputFile(image, filename=filename), **common)

    async def send_action(self, chat_id: str) -> None:
        await self._bot.send_chat_action(int(chat_id), ChatAction.UPLOAD_PHOTO)

    @property
    def _bot(self) -> Bot:
        return self.application.bot

    # -- handlers: Telegram updates in ----------------------------------------------------------------

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        origin = _origin(update)
        if message is None or message.text is None or origin is None:
            return
        command = message.text.split(maxsplit=1)[0].lstrip("/").split("@")[0]
        await self._core.on_command(origin, command, " ".join(context.args or ()))

    async def _on_image(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        origin = _origin(update)
        if message is None or origin is None:
            return
        image = await self._download(message, origin)
        if image is None:
            return
        replied_photo = None
        replied = message.reply_to_message
        if replied is not None and _image_attachment(replied) is not None:
            replied_photo = await self._download(replied, origin)
            if replied_photo is None:
                return
        await self._core.on_photo(
            origin,
            image,
            caption=message.caption or "",
            album_id=message.media_group_id,
            replied_photo=replied_photo,
        )

    async def _on_other_file(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (origin := _origin(update)) is not None:
            await self.send_text(origin.chat_id, NOT_AN_IMAGE, reply_to=origin.message_id)

    async def _on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Text that is no command (in a private chat, or addressed to the bot in a group): the help."""
        if (origin := _origin(update)) is not None:
            await self._core.on_command(origin, "help")

    async def _on_unusable(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (origin := _origin(update)) is not None:
            await self._core.on_unusable(origin)

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        origin = _origin(update)
        if query is None:
            return
        if origin is None or query.data is None:
            await query.answer("This button is too old to use. Send your photos again.")
            return
        notice = await self._core.on_button(origin, query.data)
        await query.answer(notice)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        log.error("error while handling Telegram update %s", update_id, exc_info=context.error)

    # -- helpers --------------------------------------------------------------------------------------

    async def _download(self, message: Message, origin: Origin) -> bytes | None:
        """The bytes of the message's photo (largest size) or image file; None, after telling the user
        why, when it is over the download limit or cannot be fetched."""
        attachment = _image_attachment(message)
        assert attachment is not None
        try:
            return await self._fetch(attachment)
        except _NotDownloaded as refusal:
            await self.send_text(origin.chat_id, refusal.user_message, reply_to=origin.message_id)
            return None

    async def _fetch(self, attachment: PhotoSize | Document) -> bytes:
        limit = self._settings.max_download_bytes
        # Checked before asking: Telegram announces the size, and refuses getFile above its limit anyway.
        if attachment.file_size is not None and attachment.file_size > limit:
            raise _NotDownloaded(_too_large(attachment.file_size, limit))
        try:
            file = await attachment.get_file()
            # Messages may leave the size out; getFile states it, and it is checked before downloading.
            if file.file_size is not None and file.file_size > limit:
                raise _NotDownloaded(_too_large(file.file_size, limit))
            return bytes(await file.download_as_bytearray())
        except BadRequest as error:
            if "too big" in error.message.lower():
                raise _NotDownloaded(_too_large(attachment.file_size, limit)) from None
            log.warning("Telegram refused a photo download: %s", error.message)
        except TelegramError:
            log.warning("downloading a photo from Telegram failed", exc_info=True)
        raise _NotDownloaded(DOWNLOAD_FAILED)


class AddressedToBot(filters.MessageFilter):
    """Everything in a private chat; in a group only what Telegram's privacy mode lets through (commands,
    mentions of the bot, replies to it), so the bot behaves the same whether privacy mode is on or off
    and never answers photos people share among themselves."""

    def filter(self, message: Message) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        bot = message.get_bot()
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
            return True
        me = f"@{bot.username}".lower()
        words = {**message.parse_entities(), **message.parse_caption_entities()}
        return any(
            (entity.type == MessageEntityType.BOT_COMMAND and ("@" not in text or text.lower().endswith(me)))
            or (entity.type == MessageEntityType.MENTION and text.lower() == me)
            for entity, text in words.items()
        )


class _NotDownloaded(Exception):
    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class InOrderPerPerson(BaseUpdateProcessor):
    """Handles updates concurrently, except that one person's updates in one chat run one at a time,
    in the order they arrived: a slow download for one user never holds up another, and a user's
    first photo stays their selfie."""

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[tuple[int | None, int | None], asyncio.Lock] = {}
        self._users: Counter[tuple[int | None, int | None]] = Counter()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _person_key(update)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                await coroutine
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key], self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up: locks are made per person as updates arrive."""

    async def shutdown(self) -> None:
        """Nothing to free."""


def _origin(update: Update) -> Origin | None:
    """Who sent the update, in which chat, and which message answers reply to; None for updates with
    no person behind them (channel posts) or whose message Telegram no longer provides."""
    message = update.effective_message
    chat, user = update.effective_chat, update.effective_user
    if message is None or chat is None or user is None:
        return None
    return Origin(
        platform=PLATFORM,
        chat_id=str(chat.id),
        user_id=str(user.id),
        message_id=str(message.message_id),
        chat_type="private" if chat.type == ChatType.PRIVATE else "group",
    )


def _person_key(update: object) -> tuple[int | None, int | None]:
    if not isinstance(update, Update):
        return (None, None)
    chat, user = update.effective_chat, update.effective_user
    return (chat.id if chat else None, user.id if user else None)


def _image_attachment(message: Message) -> PhotoSize | Document | None:
    if message.photo:
        return message.photo[-1]  # the largest size
    if message.document is not None and IMAGE_DOCUMENT.check_update(Update(0, message=message)):
        return message.document
    return None


def _keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    """Short labels (strength values) share one row; longer ones go two per row."""
    if not buttons:
        return None
    per_row = len(buttons) if all(len(button.label) <= 3 for button in buttons) else 2
    keys = [InlineKeyboardButton(button.label, callback_data=button.data) for button in buttons]
    return InlineKeyboardMarkup([keys[start : start + per_row] for start in range(0, len(keys), per_row)])


def _reply_to(message_id: str | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(int(message_id), allow_sending_without_reply=True)


def _too_large(size: int | None, limit: int) -> str:
    size_text = f"{size / 2**20:.0f} MB" if size else "too big"
    return (
        f"That file is {size_text}; Telegram lets me download files up to {limit / 2**20:.0f} MB. "
        "Send it as a photo instead, or a smaller file."
    )
