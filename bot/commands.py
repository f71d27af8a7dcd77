"""The chat commands: one table (`COMMANDS`) of what each is called, what it does for the help, who
may use it and which handler answers it. The core dispatches by it, the help text lists it, and each
adapter publishes it (Telegram's command menu, Discord's command tree): a new command is one row
and one handler here.

Handlers are platform-neutral: they get the core, the `Origin` and the words after the command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bot.ports import Button, Origin
from bot.texts import HELP_INTRO, MODE_HELP, MODE_NAMES, PRIVACY_TEXT, minutes
from engine.api import MODES
from engine.looks import load_looks
from storage import StorageUnavailable

if TYPE_CHECKING:
    from bot.core import Core

STRENGTH_CHOICES = (20, 40, 60, 80, 100)

Handler = Callable[["Core", Origin, str], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    name: str  # without the slash
    help: str  # one line, for menus and the help text
    handler: Handler
    usage: str = ""  # its argument, as the help text shows it: "/strength N"
    # "admins": only the users in access.admins may run it (the core refuses everyone else) and menus
    # leave it out (Discord shows it to server admins only).
    audience: Literal["everyone", "admins"] = "everyone"


async def _help(core: Core, origin: Origin, args: str) -> None:
    await core.messengers.reply(
        origin, help_text(core.settings.bot.default_strength, core.settings.bot.default_mode)
    )


async def _strength(core: Core, origin: Origin, args: str) -> None:
    if args:
        await core.messengers.reply(origin, await core.preferences.set_strength_from(origin, args))
        return
    current = await core.preferences.strength_of(origin)
    await core.messengers.reply(
        origin,
        f"Your makeup strength is {current} (0 = none, 100 = full). Pick one or send /strength N.",
        buttons=[Button(str(value), f"strength:{value}") for value in STRENGTH_CHOICES],
    )


async def _mode(core: Core, origin: Origin, args: str) -> None:
    if args:
        await core.messengers.reply(origin, await core.preferences.set_mode_from(origin, args))
        return
    current = await core.preferences.mode_of(origin)
    await core.messengers.reply(
        origin,
        f"Your look mode is {current}: {MODE_HELP[current]} Pick one or send /mode natural|full.",
        buttons=[Button(MODE_NAMES[mode].capitalize(), f"mode:{mode}") for mode in MODES],
    )


async def _look(core: Core, origin: Origin, args: str) -> None:
    looks = sorted(load_looks())
    name = args.split()[0].lower() if args else ""
    if name not in looks:
        intro = f"I don't know the look '{name}'. " if name else ""
        await core.messengers.reply(
            origin, intro + f"Preset looks: {', '.join(looks)}. Send /look NAME, then your selfie."
        )
        return
    if not await core.choose_look(origin, name):
        await core.messengers.reply(origin, f"Look '{name}' it is. Now send your selfie.")


async def _reset(core: Core, origin: Origin, args: str) -> None:
    core.pairing.drop(origin.conversation)
    await core.messengers.reply(origin, "Started over: I forgot the photos you sent here. Send your selfie.")


async def _stats(core: Core, origin: Origin, args: str) -> None:
    try:
        stats = await core.storage.user_stats(origin.platform, origin.user_id)
    except StorageUnavailable:
        await core.messengers.reply(origin, "I can't reach my database right now. Please try /stats later.")
        return
    defaults = core.settings.bot
    strength = stats.strength if stats.strength is not None else defaults.default_strength
    lines = [
        f"Try-ons: {stats.jobs_total} ({stats.jobs_ok} done, {stats.jobs_failed} failed), "
        f"{stats.jobs_last_24h} in the last 24 hours.",
        f"Strength: {strength}.",
        f"Look mode: {stats.mode if stats.mode in MODES else defaults.default_mode}.",
    ]
    if stats.first_seen is not None:
        lines.append(f"First seen: {stats.first_seen:%Y-%m-%d}.")
    await core.messengers.reply(origin, "\n".join(lines))


async def _forget(core: Core, origin: Origin, args: str) -> None:
    await core.drop_photos_of(origin.person)
    try:
        rows = await core.storage.forget_user(origin.platform, origin.user_id)
    except StorageUnavailable:
        await core.messengers.reply(
            origin,
            "I dropped the photos I was holding for you, but I can't reach my database right now, "
            "so your records are not deleted yet. Please send /forget again later.",
        )
        return
    await core.messengers.reply(
        origin, f"Done: I deleted everything I stored about you ({rows} records) and your photos."
    )


async def _privacy(core: Core, origin: Origin, args: str) -> None:
    days = core.settings.database.retention_days
    text = PRIVACY_TEXT.format(
        pending=minutes(core.settings.bot.pending_ttl_s),
        results=minutes(core.settings.bot.result_cache_s),
        user=f"{origin.platform}:{origin.user_id}",
        retention=f"after {days} days" if days else "only by /forget",
    )
    await core.messengers.reply(origin, text)


async def _admin(core: Core, origin: Origin, args: str) -> None:
    await core.messengers.reply(
        origin, await core.admin.handle(origin.platform, origin.user_id, args.split())
    )


COMMANDS: tuple[Command, ...] = (
    # Telegram clients send /start when someone opens the bot for the first time.
    Command("start", "what Face Lab does and how to use it", _help),
    Command("help", "how to use Face Lab", _help),
    Command("strength", "how strong the makeup is, 0-100 (remembered)", _strength, usage="N"),
    Command(
        "mode",
        "natural makeup, or the full look of the reference incl. face paint (remembered)",
        _mode,
        usage="M",
    ),
    Command("look", "use a preset look instead of a reference photo", _look, usage="NAME"),
    Command("reset", "forget the photos you sent and start over", _reset),
    Command("stats", "your own usage", _stats),
    Command("forget", "delete everything stored about you", _forget),
    Command("privacy", "what is stored and for how long", _privacy),
    Command("admin", "operator commands: stats, ban, unban (admins only)", _admin, audience="admins"),
)
BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}


def for_everyone() -> list[Command]:
    """The commands menus and the help list: all but the operator's."""
    return [command for command in COMMANDS if command.audience == "everyone"]


def help_text(default_strength: int, default_mode: str) -> str:
    width = max(len(f"/{c.name} {c.usage}") for c in for_everyone()) + 2
    lines = [f"/{c.name} {c.usage}".ljust(width) + c.help for c in for_everyone()]
    defaults = f"Until you set them, strength is {default_strength} and the look mode {default_mode}."
    return "\n\n".join([HELP_INTRO, "\n".join(lines), defaults])
