"""Discord adapter (discord.py 2.x): slash commands, a message flow and result buttons, translated to
and from the platform-neutral `bot.core.Core`.

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
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import discord
from discord import app_commands
from PIL import Image

from bot.commands import BY_NAME, COMMANDS, Command
from bot.core import Core
from bot.ports import Button, Origin
from facelab.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "discord"
TOKEN_LIFE_S = 15 * 60.0
# Follow-ups are sent only while the token has at least this much life left; later, a channel message.
FOLLOWUP_MARGIN_S = 60.0
TARGET_KEEP_S = 2 * 3600.0  # how long a message or interaction stays answerable by the core
CUSTOM_ID_PREFIX = "facelab:"


def discord_intents(message_content: bool) -> discord.Intents:
    """Only what the adapter reads: guilds (channels for interactions), messages in servers and DMs,
    and, when the message flow in servers is wanted, the privileged Message Content intent."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


@dataclass
class _ReplyTarget:
    """What an `Origin.message_id` stands for: a user's message to reply to, or an interaction to
    follow up on (its token is the only way to answer in the user's own context)."""

    user_id: int
    filesize_limit: int
    created: float  # time.monotonic()
    message_id: int | None = None
    interaction: discord.Interaction[Any] | None = None
    ephemeral: bool = False

    def can_follow_up(self) -> bool:
        if self.interaction is None:
            return False
        age = (discord.utils.utcnow() - self.interaction.created_at).total_seconds()
        return age < TOKEN_LIFE_S - FOLLOWUP_MARGIN_S


class CoreButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID_PREFIX + r"(?P<data>.+)"):
    """A core `Button`; its custom_id is the prefix plus the core's data (at most 64 bytes, well
    inside Discord's 100), so a press can be routed with no state kept in the process."""

    def __init__(self, label: str, data: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=label, style=discord.ButtonStyle.secondary, custom_id=CUSTOM_ID_PREFIX + data
            )
        )
        self.data = data

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> CoreButton:
        label = item.label if isinstance(item, discord.ui.Button) else None
        return cls(label or "", match["data"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client: FaceLabClient = interaction.client
        await interaction.response.defer(ephemeral=True, thinking=True)
        origin = client.messenger.origin_for_interaction(interaction)
        notice = await client.core.on_button(origin, self.data)
        await interaction.followup.send(notice, ephemeral=True)


def _view(buttons: Sequence[Button]) -> discord.ui.View | None:
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(CoreButton(button.label, button.data))
    return view


class DiscordMessenger:
    """The core's way to answer on Discord (`bot.ports.Messenger`)."""

    platform = PLATFORM
    compresses_images = False  # files go up as they are

    def __init__(self, client: discord.Client) -> None:
        self._client = client
        self._targets: dict[str, _ReplyTarget] = {}

    def origin_for_interaction(
        self, interaction: discord.Interaction[Any], *, ephemeral: bool = False
    ) -> Origin:
        key = f"i{interaction.id}"
        self._remember(
            key,
            _ReplyTarget(
                interaction.user.id,
                interaction.filesize_limit,
                time.monotonic(),
                interaction=interaction,
                ephemeral=ephemeral,
            ),
        )
        return Origin(
            PLATFORM,
            chat_id=str(interaction.channel_id),
            user_id=str(interaction.user.id),
            message_id=key,
            chat_type="group" if interaction.guild_id is not None else "private",
        )

    def origin_for_message(self, message: discord.Message) -> Origin:
        key = f"m{message.id}"
        limit = message.guild.filesize_limit if message.guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        self._remember(key, _ReplyTarget(message.author.id, limit, time.monotonic(), message_id=message.id))
        return Origin(
            PLATFORM,
            chat_id=str(message.channel.id),
            user_id=str(message.author.id),
            message_id=key,
            chat_type="group" if message.guild is not None else "private",
        )

    async def send_text(
        self, chat_id: str, text: str, *, reply_to: str | None = None, buttons: Sequence[Button] = ()
    ) -> None:
        await self._send(chat_id, reply_to, text, None, _view(buttons))

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
        target = self._targets.get(reply_to or "")
        limit = target.filesize_limit if target else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        fitted = await asyncio.to_thread(fit_upload, image, limit)
        if fitted is None:
            text = f"The result is larger than this server's {limit // (1024 * 1024)} MB upload limit."
            await self._send(chat_id, reply_to, text, None, None)
            return
        await self._send(chat_id, reply_to, caption, (fitted, filename), _view(buttons))

    async def send_action(self, chat_id: str) -> None:
        await self._client.get_partial_messageable(int(chat_id)).typing()

    async def _send(
        self,
        chat_id: str,
        reply_to: str | None,
        text: str,
        file: tuple[bytes, str] | None,
        view: discord.ui.View | None,
    ) -> None:
        """Follow up on the interaction while its token lives; otherwise (or if Discord refuses the
        follow-up) post in the channel, replying to the user's message or mentioning the user."""
        target = self._targets.get(reply_to or "")
        # discord.py's MISSING means "not given"; a typed call keeps its overloads checkable.
        shown_view: Any = view if view is not None else discord.utils.MISSING
        if target is not None and target.interaction is not None and target.can_follow_up():
            try:
                await target.interaction.followup.send(
                    text, ephemeral=target.ephemeral, file=_file(file), view=shown_view
                )
                return
            except discord.HTTPException as error:
                if target.ephemeral:  # a private answer (e.g. /stats) is not posted for all to see
                    log.warning("private follow-up refused (%s %s), dropped", error.status, error.code)
                    return
                log.info("follow-up refused (%s %s), posting in the channel", error.status, error.code)
        channel = self._client.get_partial_messageable(int(chat_id))
        reference: Any = None  # Messageable.send's own default
        if target is not None and target.message_id is not None:
            reference = discord.MessageReference(
                message_id=target.message_id, channel_id=int(chat_id), fail_if_not_exists=False
            )
        elif target is not None:
            text = f"<@{target.user_id}> {text}"
        await channel.send(text, file=_file(file), view=shown_view, reference=reference)

    def _remember(self, key: str, target: _ReplyTarget) -> None:
        now = target.created
        for old in [k for k, t in self._targets.items() if now - t.created > TARGET_KEEP_S]:
            del self._targets[old]
        self._targets[key] = target


def _file(file: tuple[bytes, str] | None) -> Any:
    # A fresh File per attempt: discord.py closes it after each send.
    return discord.File(io.BytesIO(file[0]), file[1]) if file is not None else discord.utils.MISSING


def fit_upload(image: bytes, limit: int) -> bytes | None:
    """`image` if it fits in `limit` bytes, else a JPEG re-encoded at lower quality and then smaller
    sizes until it fits (None if even a small one does not)."""
    if len(image) <= limit:
        return image
    with Image.open(io.BytesIO(image)) as opened:
        picture = opened.convert("RGB")
    scale = 1.0
    while min(picture.size) * scale >= 64:
        size = (round(picture.width * scale), round(picture.height * scale))
        resized = picture.resize(size, Image.Resampling.LANCZOS) if scale < 1 else picture
        for quality in (90, 80, 70):
            buffer = io.BytesIO()
            resized.save(buffer, "JPEG", quality=quality)
            if buffer.tell() <= limit:
                return buffer.getvalue()
        scale *= 0.75
    return None


def _is_image(attachment: discord.Attachment) -> bool:
    """Typed files by their type; untyped or generic ones may be photos too (phones send HEIC so):
    the engine reads the format from their bytes and says what is wrong with one that is not."""
    kind = attachment.content_type
    return kind is None or kind == "application/octet-stream" or kind.startswith("image/")


class DiscordAdapter:
    """`facelab serve`'s handle on the Discord bot: `start()` returns once the gateway session is up
    (or raises what stopped it, e.g. a bad token), `stop()` disconnects."""

    def __init__(self, settings: Settings, core: Core) -> None:
        if settings.discord.token is None:
            raise ValueError("discord.token is not set")
        self._token = settings.discord.token
        self.client = FaceLabClient(settings, core, sync_commands=settings.discord.sync_commands)
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
    """The Discord side of Face Lab. `sync_commands` publishes the slash commands at start-up (only
    needed when they change: Discord rate-limits syncing)."""

    def __init__(self, settings: Settings, core: Core, *, sync_commands: bool = False) -> None:
        super().__init__(
            intents=discord_intents(settings.discord.message_content),
            shard_id=settings.discord.shard_id,
            shard_count=settings.discord.shard_count,
        )
        self.core = core
        self.messenger = DiscordMessenger(self)
        core.add_messenger(self.messenger)
        self.tree: app_commands.CommandTree[FaceLabClient] = app_commands.CommandTree(self)
        for command in slash_commands():
            self.tree.add_command(command)
        self._max_bytes = settings.engine.max_bytes
        self._sync_commands = sync_commands
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


# -- slash commands ---------------------------------------------------------------------------------

Interaction = discord.Interaction[FaceLabClient]
LookMode = Literal["natural", "full"]  # engine.api.MODES, offered as choices


async def _command(interaction: Interaction, name: str, args: str = "") -> None:
    """A command the core answers privately (only the user sees it)."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    origin = interaction.client.messenger.origin_for_interaction(interaction, ephemeral=True)
    await interaction.client.core.on_command(origin, name, args)


@app_commands.command(description="put the makeup of a reference photo on your selfie")
@app_commands.describe(
    selfie="a photo of your face",
    reference="a photo of a face wearing the makeup you want",
    strength="0-100, for this try-on only (default: yours, see /strength)",
    mode="natural or full, for this try-on only (default: yours, see /mode)",
)
async def makeup(
    interaction: Interaction,
    selfie: discord.Attachment,
    reference: discord.Attachment,
    strength: app_commands.Range[int, 0, 100] | None = None,
    mode: LookMode | None = None,
) -> None:
    await interaction.response.defer(thinking=True)
    client = interaction.client
    origin = client.messenger.origin_for_interaction(interaction)
    images = await client.download(origin, [selfie, reference])
    if images is not None:
        await client.core.on_pair(origin, images[0], images[1], strength=strength, mode=mode)


@app_commands.command(description=BY_NAME["look"].help)
@app_commands.describe(name="the look's name", selfie="your selfie (or send it afterwards)")
async def look(interaction: Interaction, name: str, selfie: discord.Attachment | None = None) -> None:
    if selfie is None:
        await _command(interaction, "look", name)
        return
    await interaction.response.defer(thinking=True)
    client = interaction.client
    origin = client.messenger.origin_for_interaction(interaction)
    images = await client.download(origin, [selfie])
    if images is not None:
        await client.core.on_pair(origin, images[0], look=name.lower())


@look.autocomplete("name")
async def _look_names(interaction: Interaction, typed: str) -> list[app_commands.Choice[str]]:
    from engine.looks import load_looks  # on demand: it loads the image libraries

    names = sorted(load_looks())
    return [app_commands.Choice(name=n, value=n) for n in names if typed.lower() in n][:25]


@app_commands.command(description=BY_NAME["strength"].help)
@app_commands.describe(value="0 = none, 100 = full; leave out to see yours")
async def strength(interaction: Interaction, value: app_commands.Range[int, 0, 100] | None = None) -> None:
    await _command(interaction, "strength", "" if value is None else str(value))


@app_commands.command(name="mode", description=BY_NAME["mode"].help)
@app_commands.describe(value="natural: makeup on your own skin; full: face paint too. Leave out to see yours")
async def mode_command(interaction: Interaction, value: LookMode | None = None) -> None:
    await _command(interaction, "mode", value or "")


@app_commands.command(description=BY_NAME["admin"].help)
@app_commands.describe(action="stats, ban ID [reason] or unban ID")
async def admin(interaction: Interaction, action: str) -> None:
    await _command(interaction, "admin", action)


def _plain_command(command: Command) -> app_commands.Command[Any, ..., None]:
    async def callback(interaction: Interaction) -> None:
        await _command(interaction, command.name)

    return app_commands.Command(name=command.name, description=command.help, callback=callback)


# The table's commands that take options, with Discord's own parameters for them.
_WITH_OPTIONS: dict[str, app_commands.Command[Any, ..., None]] = {
    "look": look,
    "strength": strength,
    "mode": mode_command,
    "admin": admin,
}
# Telegram clients send /start when someone opens a bot; Discord has nothing like it.
_NOT_ON_DISCORD = {"start"}


def slash_commands() -> list[app_commands.Command[Any, ..., None]]:
    """The command table (bot/commands.py) as slash commands, plus /makeup, Discord's one-message
    try-on with both photos as attachments."""
    published: list[app_commands.Command[Any, ..., None]] = [makeup]
    for command in COMMANDS:
        if command.name in _NOT_ON_DISCORD:
            continue
        slash = _WITH_OPTIONS.get(command.name) or _plain_command(command)
        if command.audience == "admins":
            # Hidden from server members (an empty permission set); the core checks access.admins anyway.
            slash.default_permissions = discord.Permissions.none()
        published.append(slash)
    return published
