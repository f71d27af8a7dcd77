"""Small pieces the conversation tests share: a settable clock, a chat user, an image's size."""

from __future__ import annotations

import io

from PIL import Image

from bot.ports import Origin


class Clock:
    """A clock the test moves by hand (`clock.now += 601`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def user(name: str, chat: str = "dm", message: str = "m1", group: bool = False) -> Origin:
    chat_id = chat if chat != "dm" else f"dm-{name}"
    return Origin("test", chat_id, name, message, "group" if group else "private")


def size_of(image: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(image)) as opened:
        return opened.size
