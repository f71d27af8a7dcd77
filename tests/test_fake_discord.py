"""The fake Discord server against the real discord.py client: a small throwaway bot (not Face Lab's)
proves the gateway handshake, slash commands with attachments, follow-ups with files, buttons,
message events and the interaction deadlines behave like Discord, so the adapter's tests can trust it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands

from tests.fake_discord import Call, FakeDiscord, running_client


class EchoButton(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="again", custom_id="echo:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[EchoButton]) -> None:
        await interaction.response.send_message(f"pressed by {interaction.user.id}")


class EchoBot(discord.Client):
    """Echoes attachments back: as a slash-command follow-up, or as a reply to a message."""

    def __init__(self, *, defer_after_s: float = 0.0) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = intents.message_content = True
        super().__init__(intents=intents)
        self.tree = app_commands.CommandTree(self)
        self.defer_after_s = defer_after_s
        self.callback_errors: asyncio.Queue[Exception] = asyncio.Queue()

        @self.tree.command(description="echo a file")
        async def echo(interaction: discord.Interaction, file: discord.Attachment, times: int = 1) -> None:
            await asyncio.sleep(self.defer_after_s)
            try:
                await interaction.response.defer(thinking=True)
            except discord.HTTPException as exc:
                self.callback_errors.put_nowait(exc)
                return
            data = await file.read()
            note = f"{times}x {interaction.filesize_limit}"
            await interaction.followup.send(
                note, file=discord.File(io.BytesIO(data), "echo.bin"), view=EchoButton()
            )

    async def setup_hook(self) -> None:
        self.add_view(EchoButton())

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not message.attachments:
            return
        data = await message.attachments[0].read()
        reference = message.reference.resolved if message.reference else None
        note = f"reply to {reference.id}" if isinstance(reference, discord.Message) else "fresh"
        await message.reply(note, file=discord.File(io.BytesIO(data), "echo.bin"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(attachment_size_limit=8 * 1024 * 1024) as server:
        yield server


def _is_followup(fake: FakeDiscord, token: str):  # type: ignore[no-untyped-def]
    return lambda c: c.method == "POST" and c.path == f"/webhooks/{fake.application_id}/{token}"


async def test_handshake_and_command_sync(fake: FakeDiscord) -> None:
    bot = EchoBot()
    async with running_client(fake, bot):
        assert fake.identify is not None
        assert fake.identify["intents"] == bot.intents.value
        assert fake.commands == []  # nothing synced until asked
        await bot.tree.sync()
        assert [c["name"] for c in fake.commands] == ["echo"]
        options = {o["name"]: o["type"] for o in fake.commands[0]["options"]}
        assert options == {"file": 11, "times": 4}
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        assert bot.get_guild(fake.guild_id) is not None


async def test_slash_command_with_attachment_defers_then_follows_up_with_the_file(fake: FakeDiscord) -> None:
    bot = EchoBot()
    async with running_client(fake, bot):
        await bot.tree.sync()
        alice = fake.user("alice")
        payload = bytes(range(256)) * 40
        interaction = await fake.invoke_command(
            alice, fake.guild_channel, "echo", file=fake.upload("in.bin", payload), times=3
        )
        followup = await fake.wait_for(_is_followup(fake, interaction.token))
        assert interaction.callback is not None and interaction.callback.json["type"] == 5
        assert interaction.callback.at <= followup.at
        assert followup.files == [("echo.bin", payload)]
        assert followup.json["content"] == "3x 8388608"  # the option and Interaction.filesize_limit
        assert followup.json["components"][0]["components"][0]["custom_id"] == "echo:again"
        assert followup.reply["attachments"][0]["filename"] == "echo.bin"
        assert await fake.fetch(followup.reply["attachments"][0]["url"]) == payload


async def test_persistent_button_press_is_routed_with_the_presser(fake: FakeDiscord) -> None:
    bot = EchoBot()
    async with running_client(fake, bot):
        await bot.tree.sync()
        alice, bob = fake.user("alice"), fake.user("bob")
        first = await fake.invoke_command(alice, fake.guild_channel, "echo", file=fake.upload("a.bin", b"x"))
        result = await fake.wait_for(_is_followup(fake, first.token))
        press = await fake.press_button(bob, result.reply, "echo:again")
        callback = await fake.wait_for(lambda c: c.path.startswith(f"/interactions/{press.id}/"))
        assert callback.status == 200
        assert callback.json["type"] == 4
        assert callback.json["data"]["content"] == f"pressed by {bob.id}"


async def test_dm_and_reply_messages_reach_on_message_and_get_replies(fake: FakeDiscord) -> None:
    bot = EchoBot()
    async with running_client(fake, bot):
        alice = fake.user("alice")
        dm = fake.dm_channel(alice)
        first = await fake.send_message(alice, dm, attachments=[fake.upload("1.bin", b"one")])
        reply: Call = await fake.wait_for(lambda c: c.path == f"/channels/{dm.id}/messages")
        assert reply.files == [("echo.bin", b"one")]
        assert reply.json["content"] == "fresh"
        assert str(reply.json["message_reference"]["message_id"]) == first["id"]

        second = await fake.send_message(
            alice, fake.guild_channel, attachments=[fake.upload("2.bin", b"two")], reply_to=first
        )
        in_guild = await fake.wait_for(lambda c: c.path == f"/channels/{fake.guild_channel.id}/messages")
        assert in_guild.json["content"] == f"reply to {first['id']}"
        assert str(in_guild.json["message_reference"]["message_id"]) == second["id"]
        assert fake.sent_messages(fake.guild_channel)[0]["attachments"][0]["size"] == 3


async def test_late_callback_is_refused_like_discord_does(fake: FakeDiscord) -> None:
    fake.callback_window_s = 0.05
    bot = EchoBot(defer_after_s=0.3)
    async with running_client(fake, bot):
        await bot.tree.sync()
        interaction = await fake.invoke_command(
            fake.user("alice"), fake.guild_channel, "echo", file=fake.upload("a.bin", b"x")
        )
        callback = await fake.wait_for(lambda c: c.path.startswith(f"/interactions/{interaction.id}/"))
        assert callback.status == 404
        assert interaction.callback is None
        assert isinstance(await asyncio.wait_for(bot.callback_errors.get(), 10), discord.NotFound)


async def test_expired_token_and_cdn_links_fail_like_discord(fake: FakeDiscord) -> None:
    bot = EchoBot()
    async with running_client(fake, bot):
        await bot.tree.sync()
        attachment = fake.upload("a.bin", b"x")
        fake.expire_cdn_links()
        alice = fake.user("alice")
        interaction = await fake.invoke_command(alice, fake.guild_channel, "echo", file=attachment)
        download = await fake.wait_for(lambda c: c.path == f"/cdn/attachments/{attachment['id']}/a.bin")
        assert download.status == 404
        fake.expire_token(interaction)
        webhook = discord.Webhook.partial(fake.application_id, interaction.token, client=bot)
        with pytest.raises(discord.HTTPException) as refused:
            await webhook.send("late")
        assert refused.value.status == 401
        assert not any(_is_followup(fake, interaction.token)(c) and c.status == 200 for c in fake.calls)
