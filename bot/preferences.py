"""A person's remembered strength and look mode: read from storage with the configured defaults,
and set from what they typed or pressed (answering with the text to tell them)."""

from __future__ import annotations

from bot.ports import Origin
from bot.settings import BotSettings
from bot.texts import MODE_HELP, MODE_USAGE, STRENGTH_USAGE
from engine.api import MODES
from storage import Storage, StorageUnavailable


class Preferences:
    def __init__(self, settings: BotSettings, storage: Storage) -> None:
        self._settings = settings
        self._storage = storage

    async def strength_of(self, origin: Origin) -> int:
        stored = await self._storage.get_strength(origin.platform, origin.user_id)
        return stored if stored is not None else self._settings.default_strength

    async def set_strength(self, origin: Origin, value: int) -> bool:
        """Remember a strength (0-100); False when the database cannot take it."""
        try:
            await self._storage.set_strength(origin.platform, origin.user_id, value)
        except StorageUnavailable:
            return False
        return True

    async def set_strength_from(self, origin: Origin, raw: str) -> str:
        """Store a strength typed or pressed by the user; returns what to tell them."""
        value = parse_strength(raw)
        if value is None:
            return STRENGTH_USAGE
        if not await self.set_strength(origin, value):
            return "I can't save your strength right now. Please try again later."
        return f"Strength set to {value}. It applies to your next try-on."

    async def mode_of(self, origin: Origin) -> str:
        stored = await self._storage.get_mode(origin.platform, origin.user_id)
        return stored if stored in MODES else self._settings.default_mode

    async def set_mode_from(self, origin: Origin, raw: str) -> str:
        """Store a mode typed or pressed by the user; returns what to tell them."""
        mode = raw.strip().lower()
        if mode not in MODES:
            return MODE_USAGE
        try:
            await self._storage.set_mode(origin.platform, origin.user_id, mode)
        except StorageUnavailable:
            return "I can't save your look mode right now. Please try again later."
        return f"Look mode set to {mode}: {MODE_HELP[mode]} It applies to your next try-on."


def parse_strength(raw: str) -> int | None:
    """ "60" or "60%" as 60; None unless a whole number from 0 to 100."""
    try:
        value = int(raw.strip().rstrip("%"))
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None
