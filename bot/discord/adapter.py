"""Discord adapter (discord.py 2.x): slash commands (slash_commands.py), a message flow and result
buttons (messenger.py), translated to and from the platform-neutral `bot.core.Core`.

- Slash commands: `/makeup selfie reference [strength] [mode]`, `/look`, `/strength`, `/mode`,
  `/reset`, `/stats`,
  `/forget`, `/privacy`, `/help`. Every interaction is deferred first (Discord allows 3 s), then
  answered with follow-ups, which stay possible for the token's 15 minutes; after that, or if a
  follow-up is refused, the answer goes to the channel as an ordinary message that mentions the user.
- Messages: in DMs every photo counts (the core pairs them up); in server channels only a message
  with two images, an image replying to an image message, or an image mentioning the bot, so the
  bot does not answer every picture people share.
- Buttons are `DynamicItem`s whose custom_id carries the core's button data, registered in
  `setup_hook`, so buttons on old messages keep working after a restart. Whether the presser may use
  a button is the core's rule; the adapter shows its notice ephemerally.

Attachments are downloaded as soon as they arrive (CDN links expire) and never written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import discord
from discord import app_commands

from bot.core import Core
from bot.discord.messenger import CoreButton, DiscordMessenger
from bot.discord.settings import DiscordSettings
from bot.discord.slash_commands import slash_commands
from bot.ports import Origin

log = logging.getLogger(__name__)


def discord_intents(message_content: bool) -> discord.Intents:
    """Only what the adapter reads: guilds (channels for interactions), messages in servers and DMs,
    and, when the message flow in servers is wanted, the privileged Message Content intent."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


def _is_image(attachment: discord.Attachment) -> bool:
    """Typed files by their type; untyped or generic ones may be photos too (phones send HEIC so):
    the engine reads the format from their bytes and says what is wrong with one that is not."""
    kind = attachment.content_type
    return kind is None or kind == "application/octet-stream" or kind.startswith("image/")


class DiscordAdapter:
    """`facelab serve`'s handle on the Discord bot: `start()` returns once the gateway session is up
    (or raises what stopped it, e.g. a bad token), `stop()` disconnects."""

    def __init__(self, settings: DiscordSettings, core: Core, *, max_bytes: int) -> None:
        if settings.token is None:
            raise ValueError("discord.token is not set")
        self._token = settings.token
        self.client = FaceLabClient(settings, core, max_bytes=max_bytes)
        self._running: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._running = asyncio.create_task(self.client.start(self._token.get_secret_value()))
        connected = asyncio.create_task(self.client.connected.wait())
        await asyncio.wait({self._running, connected}, return_when=asyncio.FIRST_COMPLETED)
        if self._running.done():
            connected.cancel()
            self._running.result()  # raises why the client stopped
            raise RuntimeError("the Discord client stopped during start-up")

    async def stop(self) -> None:
        await self.client.close()
        if self._running is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._running


class FaceLabClient(discord.Client):
    """The Discord side of Face Lab. `settings.sync_commands` publishes the slash commands at start-up
    (only needed when they change: Discord rate-limits syncing). Attachments over `max_bytes` (the
    engine's limit) are refused before they are downloaded."""

    def __init__(self, settings: DiscordSettings, core: Core, *, max_bytes: int) -> None:
        super().__init__(
            intents=discord_intents(settings.message_content),
            shard_id=settings.shard_id,
            shard_count=settings.shard_count,
        )
        self.core = core
        self.messenger = DiscordMessenger(self)
        core.add_messenger(self.messenger)
        self.tree: app_commands.CommandTree[FaceLabClient] = app_commands.CommandTree(self)
        for command in slash_commands():
            self.tree.add_command(command)
        self._max_bytes = max_bytes
        self._sync_commands = settings.sync_commands
        self.connected = asyncio.Event()  # set once the gateway session is up

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CoreButton)
        if self._sync_commands:
            synced = await self.tree.sync()
            log.info("published %d slash commands: %s", len(synced), ", ".join(c.name for c in synced))

    async def on_connect(self) -> None:
        self.connected.set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        photos = [a for a in message.attachments if _is_image(a)]
        if not photos:
            if message.guild is None and message.attachments:
                await message.reply("That is not an image. Send me photos: JPEG, PNG, WebP or HEIC.")
            elif message.guild is None:  # small talk, a sticker: a hint beats silence
                await self.core.on_unusable(self.messenger.origin_for_message(message))
            return
        replied = await self._replied_photo(message)
        in_server = message.guild is not None
        addressed = self.user is not None and self.user in message.mentions
        if in_server and not (len(photos) >= 2 or replied is not None or addressed):
            return
        origin = self.messenger.origin_for_message(message)
        images = await self.download(origin, photos)
        if images is None:
            return
        caption = _without_mentions(message)
        if replied is not None and len(images) == 1:
            replied_image = await self.download(origin, [replied])
            if replied_image is not None:
                await self.core.on_photo(origin, images[0], caption=caption, replied_photo=replied_image[0])
            return
        await self.core.on_photos(origin, images, caption=caption)

    async def download(self, origin: Origin, attachments: Sequence[discord.Attachment]) -> list[bytes] | None:
        """The attachments' bytes, or None after telling the user why not (too large, gone)."""
        for attachment in attachments:
            if attachment.size > self._max_bytes:
                mb = self._max_bytes // (1024 * 1024)
                await self.messenger.send_text(
                    origin.chat_id,
                    f"{attachment.filename} is too large: I take images up to {mb} MB.",
                    reply_to=origin.message_id,
                )
                return None
        try:
            return list(await asyncio.gather(*(attachment.read() for attachment in attachments)))
        except discord.HTTPException:
            log.warning("could not download an attachment", exc_info=True)
            await self.messenger.send_text(
                origin.chat_id,
                "I couldn't download your image from Discord. Please send it again.",
                reply_to=origin.message_id,
            )
            return None

    async def _replied_photo(self, message: discord.Message) -> discord.Attachment | None:
        """The first image of the message this one replies to, if any."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        replied = reference.resolved
        if not isinstance(replied, discord.Message):
            try:
                replied = await message.channel.fetch_message(reference.message_id)
            except discord.HTTPException:
                return None
        return next((a for a in replied.attachments if _is_image(a)), None)


def _without_mentions(message: discord.Message) -> str:
    text = message.content
    for user in message.mentions:
        text = text.replace(f"<@{user.id}>", "").replace(f"<@!{user.id}>", "")
    return text.strip()
