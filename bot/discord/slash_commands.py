"""The command table (bot/commands.py) as Discord slash commands, plus `/makeup`, Discord's
one-message try-on with both photos attached. Every interaction is deferred first (Discord allows
3 s); the core then answers through the messenger's follow-ups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands

from bot.commands import BY_NAME, COMMANDS, Command

if TYPE_CHECKING:
    from bot.discord.adapter import FaceLabClient

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
