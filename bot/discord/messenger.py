"""How the core's answers reach Discord: `DiscordMessenger` (the `bot.ports.Messenger`) replies to a
message, or follows up an interaction while its token lives (else a channel message mentioning the
user); result buttons are `CoreButton`s, `DynamicItem`s whose custom_id carries the core's button
data, so buttons on old messages keep working after a restart; images too large for the channel are
re-encoded smaller (`fit_upload`)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from PIL import Image

from bot.ports import Button, Origin

if TYPE_CHECKING:
    from bot.discord.adapter import FaceLabClient

log = logging.getLogger(__name__)

PLATFORM = "discord"
TOKEN_LIFE_S = 15 * 60.0
# Follow-ups are sent only while the token has at least this much life left; later, a channel message.
FOLLOWUP_MARGIN_S = 60.0
TARGET_KEEP_S = 2 * 3600.0  # how long a message or interaction stays answerable by the core
CUSTOM_ID_PREFIX = "facelab:"


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
