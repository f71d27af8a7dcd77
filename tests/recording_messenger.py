"""A `bot.ports.Messenger` that records what the core sends: the adapter boundary, for tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.ports import Button


@dataclass(frozen=True)
class Sent:
    kind: str  # "text", "image" or "action"
    chat_id: str
    text: str = ""  # the text, or an image's caption
    reply_to: str | None = None
    buttons: tuple[Button, ...] = ()
    image: bytes = b""
    as_file: bool = False


@dataclass
class RecordingMessenger:
    """The adapter boundary: records everything the core sends."""

    platform: str = "test"
    compresses_images: bool = True
    sent: list[Sent] = field(default_factory=list)

    async def send_text(
        self, chat_id: str, text: str, *, reply_to: str | None = None, buttons: Sequence[Button] = ()
    ) -> None:
        self.sent.append(Sent("text", chat_id, text, reply_to, tuple(buttons)))

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
        assert filename.endswith(".jpg")
        self.sent.append(Sent("image", chat_id, caption, reply_to, tuple(buttons), image, as_file))

    async def send_action(self, chat_id: str) -> None:
        self.sent.append(Sent("action", chat_id))

    def texts(self, reply_to: str | None = None) -> list[str]:
        return [
            s.text for s in self.sent if s.kind == "text" and (reply_to is None or s.reply_to == reply_to)
        ]

    def images(self) -> list[Sent]:
        return [s for s in self.sent if s.kind == "image"]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)

    async def wait_for_images(self, count: int) -> list[Sent]:
        await self.wait_for(lambda: len(self.images()) >= count)
        return self.images()
