"""Face Lab's Discord adapter end to end: the real discord.py client against the local fake Discord
(tests/fake_discord.py), the real core, queue, engine process and SQLite storage, with faces from
../shared/data/faces."""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image

from bot.commands import COMMANDS
from bot.core import Core
from bot.discord.adapter import DiscordAdapter, discord_intents
from bot.discord.messenger import fit_upload
from bot.engine_process import EngineProcess
from bot.queue import LocalJobQueue
from engine.api import MakeupRequest, MakeupResult
from facelab.commands.serve import serve, with_flags
from facelab.settings import Settings
from storage import Storage
from tests.conftest import face_path
from tests.fake_discord import ATTACHMENT_SIZE_LIMIT, Call, FakeDiscord, FakeInteraction
from tests.paint_spotter import PaintSpotter

# Slow: end to end: fake Discord gateway, real engine process, shared photos.
pytestmark = pytest.mark.slow

SELFIE, REFERENCE, NO_FACE = "sm_source_01.jpg", "sm_ref_01.jpg", "dlib_source_02.jpg"  # a Joker


class GatedRunner:
    """The real engine behind a gate the test can close, to hold the queue busy."""

    def __init__(self, engine: PaintSpotter) -> None:
        self.engine = engine
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, request: MakeupRequest) -> MakeupResult:
        await self.gate.wait()
        return await self.engine.run(request)


@dataclass
class Stack:
    fake: FakeDiscord
    runner: GatedRunner
    adapter: DiscordAdapter


def photo(name: str) -> bytes:
    return face_path(name).read_bytes()


def upload(fake: FakeDiscord, name: str) -> dict[str, object]:
    return fake.upload(name, photo(name), "image/jpeg")


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def assert_made_up(result: bytes, selfie_name: str) -> None:
    """The result is the selfie's size and visibly changed."""
    before, after = decode(photo(selfie_name)), decode(result)
    assert after.shape == before.shape
    assert np.abs(after - before).mean() > 0.5


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeDiscord]:
    """The fake Discord; a test may set the servers' upload limit with an indirect parameter."""
    limit = getattr(request, "param", ATTACHMENT_SIZE_LIMIT)
    async with FakeDiscord(attachment_size_limit=limit) as server:
        yield server


@pytest.fixture
async def engine() -> AsyncIterator[EngineProcess]:
    process = EngineProcess(Settings().engine)
    await process.start()
    yield process
    await process.close()


@pytest.fixture
async def stack(fake: FakeDiscord, engine: EngineProcess, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}"},
        discord={"token": "fake-token", "sync_commands": True},
    )
    storage = await Storage.open(settings.database.url)
    runner = GatedRunner(PaintSpotter(engine, photo(REFERENCE)))  # the Joker wears face paint
    queue = LocalJobQueue(runner, max_size=10, per_user=2)
    await queue.start()
    core = Core(settings, queue, storage)
    adapter = DiscordAdapter(settings.discord, core, max_bytes=settings.engine.max_bytes)
    with fake.patched():
        await adapter.start()
        try:
            yield Stack(fake, runner, adapter)
        finally:
            runner.gate.set()
            await queue.close(drain_timeout_s=5)
            await core.close()
            await adapter.stop()
            await storage.close()


def followups(fake: FakeDiscord, interaction: FakeInteraction) -> list[Call]:
    path = f"/webhooks/{fake.application_id}/{interaction.token}"
    return [c for c in fake.calls if c.method == "POST" and c.path == path]


async def followup_text(fake: FakeDiscord, interaction: FakeInteraction, words: str) -> Call:
    path = f"/webhooks/{fake.application_id}/{interaction.token}"
    return await fake.wait_for(lambda c: c.path == path and words in (c.json or {}).get("content", ""))


def custom_ids(call: Call) -> dict[str, str]:
    """Button label -> custom_id of a sent message."""
    rows = call.json.get("components", [])
    return {b["label"]: b["custom_id"] for row in rows for b in row["components"]}


async def test_start_declares_only_needed_intents_and_publishes_commands_on_demand(stack: Stack) -> None:
    fake = stack.fake
    assert fake.identify is not None
    assert fake.identify["intents"] == discord_intents(message_content=True).value
    # The command table's commands (Telegram's /start aside) with their help, and Discord's own /makeup.
    described = {c["name"]: c["description"] for c in fake.commands}
    assert described.pop("makeup")
    assert described == {command.name: command.help for command in COMMANDS if command.name != "start"}
    makeup = next(c for c in fake.commands if c["name"] == "makeup")
    assert [(o["name"], o["type"]) for o in makeup["options"]] == [
        ("selfie", 11),
        ("reference", 11),
        ("strength", 4),
        ("mode", 3),
    ]
    mode = next(c for c in fake.commands if c["name"] == "mode")
    assert [c["value"] for c in mode["options"][0]["choices"]] == ["natural", "full"]


async def test_admin_command_is_hidden_from_members_and_gated_by_admin_ids(stack: Stack) -> None:
    fake = stack.fake
    admin = next(c for c in fake.commands if c["name"] == "admin")
    assert int(admin["default_member_permissions"]) == 0  # only server admins see it unless granted
    asked = await fake.invoke_command(fake.user("bob"), fake.guild_channel, "admin", action="stats")
    refusal = await followup_text(fake, asked, "only for the bot's operator")
    assert refusal.json["flags"] & 64  # ephemeral


async def test_makeup_command_defers_then_follows_up_with_the_result_and_buttons(stack: Stack) -> None:
    fake = stack.fake
    alice = fake.user("alice")
    interaction = await fake.invoke_command(
        alice, fake.guild_channel, "makeup", selfie=upload(fake, SELFIE), reference=upload(fake, REFERENCE)
    )
    result = await fake.wait_for_reply(interaction)
    assert interaction.callback is not None and interaction.callback.json["type"] == 5  # deferred
    assert interaction.callback.at < result.at
    assert result.path == f"/webhooks/{fake.application_id}/{interaction.token}"  # a follow-up
    [(filename, image)] = result.files
    assert filename == "facelab.jpg"
    assert_made_up(image, SELFIE)
    assert set(custom_ids(result)) == {
        "Full look",
        "Stronger",
        "Softer",
        "Lips only",
        "Before / after",
        "Swap photos",
    }
    assert all(cid.startswith("facelab:") for cid in custom_ids(result).values())


async def test_result_buttons_work_for_the_requester_only(stack: Stack) -> None:
    fake = stack.fake
    alice, bob = fake.user("alice"), fake.user("bob")
    asked = await fake.invoke_command(
        alice, fake.guild_channel, "makeup", selfie=upload(fake, SELFIE), reference=upload(fake, REFERENCE)
    )
    result = await fake.wait_for_reply(asked)
    stronger = custom_ids(result)["Stronger"]

    by_bob = await fake.press_button(bob, result.reply, stronger)
    refusal = await followup_text(fake, by_bob, "Only the person who asked")
    assert refusal.json["flags"] & 64  # ephemeral: only Bob sees it
    assert by_bob.callback is not None and by_bob.callback.json["type"] == 5

    by_alice = await fake.press_button(alice, result.reply, stronger)
    await followup_text(fake, by_alice, "stronger")
    rerun = await fake.wait_for(lambda c: c in followups(fake, by_alice) and c.files != [])
    assert_made_up(rerun.files[0][1], SELFIE)
    assert rerun.files[0][1] != result.files[0][1]
    assert not any(c.files for c in followups(fake, by_bob))


async def test_mode_command_and_the_full_look_button(stack: Stack) -> None:
    fake, spotter = stack.fake, stack.runner.engine
    alice = fake.user("alice")
    asked = await fake.invoke_command(
        alice, fake.guild_channel, "makeup", selfie=upload(fake, SELFIE), reference=upload(fake, REFERENCE)
    )
    natural = await fake.wait_for_reply(asked)
    assert "face paint that natural mode leaves out" in natural.json["content"]
    assert next(iter(custom_ids(natural))) == "Full look"  # offered first

    pressed = await fake.press_button(alice, natural.reply, custom_ids(natural)["Full look"])
    await followup_text(fake, pressed, "Trying the full look")
    full = await fake.wait_for(lambda c: c in followups(fake, pressed) and c.files != [])
    assert full.json["content"] == "Makeup from your reference, strength 70, full look."
    assert_made_up(full.files[0][1], SELFIE)
    assert "Natural look" in custom_ids(full)

    menu = await fake.invoke_command(alice, fake.guild_channel, "mode")
    shown = await followup_text(fake, menu, "Your look mode is natural")
    assert shown.json["flags"] & 64  # ephemeral, like /strength
    chose = await fake.press_button(alice, shown.reply, custom_ids(shown)["Full look"])
    await followup_text(fake, chose, "Look mode set to full")
    said = await fake.invoke_command(alice, fake.guild_channel, "mode", value="natural")
    await followup_text(fake, said, "Look mode set to natural")
    once = await fake.invoke_command(
        alice,
        fake.guild_channel,
        "makeup",
        selfie=upload(fake, SELFIE),
        reference=upload(fake, REFERENCE),
        mode="full",
    )
    await fake.wait_for(lambda c: c in followups(fake, once) and c.files != [])
    assert spotter.modes == ["natural", "full", "full"]


async def test_two_images_in_a_server_message_and_a_reply_with_an_image(stack: Stack) -> None:
    fake = stack.fake
    channel = fake.guild_channel
    bob, carol = fake.user("bob"), fake.user("carol")

    pair = await fake.send_message(bob, channel, attachments=[upload(fake, SELFIE), upload(fake, REFERENCE)])
    answer = await fake.wait_for(lambda c: c.path == f"/channels/{channel.id}/messages" and c.files != [])
    assert str(answer.json["message_reference"]["message_id"]) == pair["id"]
    assert_made_up(answer.files[0][1], SELFIE)

    # A lone picture in a server channel is just a picture: no answer.
    lone = await fake.send_message(carol, channel, attachments=[upload(fake, REFERENCE)])
    # Replying to it with a selfie borrows its makeup.
    reply = await fake.send_message(carol, channel, attachments=[upload(fake, SELFIE)], reply_to=lone)
    second = await fake.wait_for(
        lambda c: (
            c.files != []
            and str((c.json or {}).get("message_reference", {}).get("message_id")) == reply["id"]
        )
    )
    assert_made_up(second.files[0][1], SELFIE)
    answered = [str(c.json["message_reference"]["message_id"]) for c in fake.calls if c.files]
    assert lone["id"] not in answered


async def test_direct_messages_pair_photos_one_at_a_time_and_refuse_other_files(stack: Stack) -> None:
    fake = stack.fake
    dave = fake.user("dave")
    dm = fake.dm_channel(dave)
    await fake.send_message(dave, dm, content="hello")
    await fake.wait_for(
        lambda c: c.path == f"/channels/{dm.id}/messages" and "I only work with photos" in c.json["content"]
    )
    await fake.send_message(dave, dm, attachments=[fake.upload("notes.pdf", b"%PDF-1.4", "application/pdf")])
    await fake.wait_for(
        lambda c: c.path == f"/channels/{dm.id}/messages" and "not an image" in c.json["content"]
    )
    await fake.send_message(dave, dm, attachments=[upload(fake, SELFIE)])
    await fake.wait_for(
        lambda c: c.path == f"/channels/{dm.id}/messages" and "Got your selfie" in c.json["content"]
    )
    await fake.send_message(dave, dm, attachments=[upload(fake, REFERENCE)])
    result = await fake.wait_for(lambda c: c.path == f"/channels/{dm.id}/messages" and c.files != [])
    assert_made_up(result.files[0][1], SELFIE)


async def test_no_face_photo_gets_a_clear_answer(stack: Stack) -> None:
    fake = stack.fake
    erin = fake.user("erin")
    interaction = await fake.invoke_command(
        erin, fake.guild_channel, "makeup", selfie=upload(fake, NO_FACE), reference=upload(fake, REFERENCE)
    )
    answer = await followup_text(fake, interaction, "face in your selfie")
    assert answer.files == []
    assert not any(c.files for c in followups(fake, interaction))


async def test_defer_comes_at_once_while_the_queue_is_busy(stack: Stack) -> None:
    fake, gate = stack.fake, stack.runner.gate
    gate.clear()  # the engine is "busy" until the test opens the gate
    alice, bob = fake.user("alice"), fake.user("bob")
    first = await fake.invoke_command(
        alice, fake.guild_channel, "makeup", selfie=upload(fake, SELFIE), reference=upload(fake, REFERENCE)
    )
    second = await fake.invoke_command(
        bob, fake.guild_channel, "makeup", selfie=upload(fake, SELFIE), reference=upload(fake, REFERENCE)
    )

    # The two are handled concurrently: whichever was queued second is told its place.
    def place_told(call: Call) -> bool:
        content = call.json.get("content", "") if isinstance(call.json, dict) else ""
        return "1 try-on ahead" in content and any(fake.concerns(call, i) for i in (first, second))

    await fake.wait_for(place_told)
    # Both were acknowledged while the engine was still blocked; the fake refuses callbacks that
    # come more than 3 s after the interaction, as Discord does.
    for interaction in (first, second):
        assert interaction.callback is not None and interaction.callback.status == 200
    assert not gate.is_set() and not any(c.files for c in fake.calls)
    gate.set()
    for interaction in (first, second):
        assert_made_up((await fake.wait_for_reply(interaction)).files[0][1], SELFIE)


async def test_result_goes_to_the_channel_when_the_token_has_expired(stack: Stack) -> None:
    fake, gate = stack.fake, stack.runner.gate
    gate.clear()
    alice = fake.user("alice")
    interaction = await fake.invoke_command(
        alice, fake.guild_channel, "makeup", selfie=upload(fake, SELFIE), reference=upload(fake, REFERENCE)
    )
    await fake.wait_for(lambda c: c.path.startswith("/cdn/") and REFERENCE in c.path)
    fake.expire_cdn_links()  # the adapter kept the bytes, not the links
    fake.expire_token(interaction)  # a long wait in the queue outlived the 15-minute token
    gate.set()
    posted = await fake.wait_for(
        lambda c: c.path == f"/channels/{fake.guild_channel.id}/messages" and c.files != []
    )
    assert posted.json["content"].startswith(f"<@{alice.id}>")
    assert_made_up(posted.files[0][1], SELFIE)


@pytest.mark.parametrize("fake", [30_000], indirect=True)  # the server's upload limit, in bytes
async def test_results_respect_the_upload_limit_of_the_interaction(stack: Stack) -> None:
    fake = stack.fake
    interaction = await fake.invoke_command(
        fake.user("alice"),
        fake.guild_channel,
        "makeup",
        selfie=upload(fake, "sm_source_02.jpg"),
        reference=upload(fake, REFERENCE),
    )
    image = (await fake.wait_for_reply(interaction)).files[0][1]
    assert len(image) <= 30_000 < len(photo("sm_source_02.jpg"))
    assert Image.open(io.BytesIO(image)).format == "JPEG"


def test_fit_upload_keeps_small_images_and_shrinks_large_ones() -> None:
    original = photo(SELFIE)
    assert fit_upload(original, len(original)) is original
    smaller = fit_upload(original, len(original) // 3)
    assert smaller is not None and len(smaller) <= len(original) // 3
    assert fit_upload(original, 100) is None


async def test_serve_runs_discord_and_the_web_playground_in_one_process(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a free port for the playground
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}"},
        discord={"token": "fake-token"},
        web={"port": port},
    )
    settings = with_flags(settings, argparse.Namespace(web=True, sync_commands=True))
    stop = asyncio.Event()
    with fake.patched():
        server = asyncio.create_task(serve(settings, stop))
        try:
            async with asyncio.timeout(60):
                await fake.ready.wait()
            assert {c["name"] for c in fake.commands} >= {"makeup", "look"}  # --sync-commands
            interaction = await fake.invoke_command(
                fake.user("alice"),
                fake.guild_channel,
                "makeup",
                selfie=upload(fake, SELFIE),
                reference=upload(fake, REFERENCE),
            )
            assert_made_up((await fake.wait_for_reply(interaction)).files[0][1], SELFIE)
            async with aiohttp.ClientSession() as browser, browser.get(f"http://127.0.0.1:{port}/") as page:
                assert page.status == 200
                assert "Face Lab" in await page.text()
        finally:
            stop.set()
            assert await asyncio.wait_for(server, 60) == 0
