"""The boundary between the conversation core and the chat platforms: where a message came from
(`Origin`), the buttons the core puts under its answers (`Button`), what an adapter implements so the
core can answer (`Messenger`), and the core's side of it (`Messengers`: one per platform, failures
logged rather than raised). Also what makes a platform: its section of the config, which says
whether it is configured and builds its `Adapter` (`PlatformSettings`).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from bot.core import Core
    from bot.settings import BotConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where a message came from, and where the answer goes.

    Ids are the platform's, as text; the core never interprets them and only hands `chat_id` and
    `message_id` back to the `Messenger` of `platform` (so an adapter may put anything there that
    lets it reply, e.g. an interaction token). `message_id` is the message answers reply to.
    """

    platform: str
    chat_id: str
    user_id: str
    message_id: str | None = None
    chat_type: Literal["private", "group"] = "private"

    @property
    def person(self) -> tuple[str, str]:
        return (self.platform, self.user_id)

    @property
    def conversation(self) -> tuple[str, str, str]:
        return (self.platform, self.chat_id, self.user_id)


@dataclass(frozen=True)
class Button:
    """An inline button under a message. `data` (at most 64 ASCII bytes, Telegram's limit) goes back
    to `Core.on_button` unchanged when someone presses it."""

    label: str
    data: str


class Messenger(Protocol):
    """What an adapter implements so the core can answer on its platform.

    Methods raise whatever their platform raises on failure; the core logs it and carries on.
    Buttons are laid out by the adapter (e.g. two or three per row). Texts are plain text.
    """

    platform: str  # matches Origin.platform, e.g. "telegram"
    # True when send_image may shrink the image (Telegram photos): results then get a
    # "Full resolution" button, answered with send_image(..., as_file=True).
    compresses_images: bool

    async def send_text(
        self, chat_id: str, text: str, *, reply_to: str | None = None, buttons: Sequence[Button] = ()
    ) -> None: ...

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
    ) -> None: ...

    async def send_action(self, chat_id: str) -> None:
        """Show that the bot is working on something for this chat (Telegram's chat action,
        Discord's typing indicator); called every few seconds while a job runs."""
        ...


class Messengers:
    """Every registered adapter's `Messenger`, by platform. Answers go to the origin's platform; a
    platform's failure to send is logged, never raised: one lost message must not stop a job."""

    def __init__(self) -> None:
        self._by_platform: dict[str, Messenger] = {}

    def add(self, messenger: Messenger) -> None:
        """One messenger per platform; a second one for the same platform replaces the first."""
        self._by_platform[messenger.platform] = messenger

    def of(self, origin: Origin) -> Messenger:
        try:
            return self._by_platform[origin.platform]
        except KeyError:
            raise ValueError(f"no messenger registered for platform {origin.platform!r}") from None

    async def reply(self, origin: Origin, text: str, *, buttons: Sequence[Button] = ()) -> None:
        try:
            await self.of(origin).send_text(origin.chat_id, text, reply_to=origin.message_id, buttons=buttons)
        except Exception:
            log.warning("could not send a message on %s", origin.platform, exc_info=True)

    async def send_image(
        self,
        origin: Origin,
        image: bytes,
        *,
        caption: str,
        buttons: Sequence[Button] = (),
        as_file: bool = False,
    ) -> None:
        try:
            await self.of(origin).send_image(
                origin.chat_id,
                image,
                filename="facelab.jpg",
                caption=caption,
                reply_to=origin.message_id,
                buttons=buttons,
                as_file=as_file,
            )
        except Exception:
            log.warning("could not send an image on %s", origin.platform, exc_info=True)

    async def show_action(self, origin: Origin) -> None:
        try:
            await self.of(origin).send_action(origin.chat_id)
        except Exception:
            log.warning("could not send a chat action to %s", origin.platform, exc_info=True)


class Adapter(Protocol):
    """A chat platform wired to the core. Its constructor registers its `Messenger` with
    `core.add_messenger`; `start()` returns once it receives updates; `stop()` stops it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class PlatformSettings(BaseModel):
    """A chat platform's section of the config (`[telegram]`, ...), and so its entry in the
    registry: every such section of `facelab.settings.Settings` is a platform `facelab serve` can run,
    and its name is the platform's (in `Origin.platform` and in `access` ids such as "telegram:123").
    """

    # Run when no other platform is configured, so that a fresh install has something to try.
    fallback: ClassVar[bool] = False

    @abstractmethod
    def configured(self) -> bool:
        """Whether these settings ask for the platform (a token is set, ...)."""

    @abstractmethod
    def build(self, config: BotConfig, core: Core) -> Adapter:
        """The platform's adapter, registered with `core` (`config`: the rest of the settings);
        imports the platform's library, so only platforms that run pay for it."""
