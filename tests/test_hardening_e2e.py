"""Hardening through the Telegram path, end to end: `facelab serve`'s wiring (real storage, queue, core,
limits, metrics endpoint) with the real python-telegram-bot client talking to tests/fake_telegram.py,
and one real engine process shared by the module's tests (the helpers of test_telegram_e2e.py).

Abuse limits (flood, daily quota with an injected clock, access lists, gated /admin), /forget checked
table by table on SQLite and PostgreSQL, logs free of tokens and image bytes with every logger at
DEBUG, the metrics and health endpoints after a run, and the hostile image corpus with measured memory.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bot.engine_process import EngineProcess
from engine.errors import EngineError
from engine.images import load_image
from facelab.commands import serve as serve_command
from facelab.logs import setup_logging
from facelab.settings import (
    AccessSettings,
    DatabaseSettings,
    LimitsSettings,
    LoggingSettings,
    MetricsSettings,
    QueueSettings,
    Settings,
)
from storage import Storage, UsageRecord, UsageStatus
from storage.models import Base, Usage, User
from tests import test_telegram_e2e
from tests.conftest import free_port
from tests.fake_telegram import TOKEN, ApiCall, FakeTelegram
from tests.fake_telegram import User as TelegramUser
from tests.hostile_images import FACE_REFUSALS, HostileImage, corpus
from tests.test_telegram_e2e import (
    ALICE,
    BOB,
    GROUP,
    NO_FACE,
    REFERENCE,
    dm,
    engine_paused,
    photo_file,
    read_code,
    replying_to,
    result_id,
    selfie,
    serving,
    settings_for,
)

# Slow: end to end: real engine process, services and the hostile corpus.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

# The Telegram end-to-end fixtures: one engine process per module, a fresh fake Bot API per test, and
# `facelab serve` building its queue over that engine.
engine = test_telegram_e2e.engine
fake = test_telegram_e2e.fake
shared_engine_queue = test_telegram_e2e.shared_engine_queue

CAROL = TelegramUser(503, "Carol")
LOOK = "/look natural"  # a photo with this caption is a whole try-on: one message, one job
# What image bytes look like when something logs them: raw or repr()'d magic numbers, base64.
IMAGE_TRACES = [
    re.compile(r"\xff\xd8\xff|\\xff\\xd8\\xff|\x89PNG|\\x89PNG|JFIF|/9j/|iVBORw0KGgo"),
    re.compile(r"[A-Za-z0-9+/]{120,}={0,2}"),
]


def configured(fake: FakeTelegram, tmp_path: Path, **sections: Any) -> Settings:
    """settings_for(...) with the metrics endpoint off unless asked, and these sections replaced."""
    return settings_for(fake, tmp_path).model_copy(
        update={"metrics": MetricsSettings(enabled=False), **sections}
    )


async def answer_to(
    fake: FakeTelegram, message: dict[str, Any] | None, method: str = "sendMessage"
) -> ApiCall:
    return await fake.next_call(method, message["chat"]["id"] if message else None, replying_to(message))


async def first_answer(fake: FakeTelegram, message: dict[str, Any] | None, timeout: float = 60) -> ApiCall:
    """The bot's first text or photo replying to `message`, whichever it is."""
    is_reply = replying_to(message)
    async with asyncio.timeout(timeout):
        while True:
            for call in fake.calls:
                if (
                    call.method in ("sendMessage", "sendPhoto")
                    and call.rejected_with is None
                    and is_reply(call)
                ):
                    return call
            await asyncio.sleep(0.02)


async def store_usage(settings: Settings, user: TelegramUser, times: list[datetime]) -> Storage:
    """The bot's database with one finished try-on of `user` at each of `times`, as an earlier run
    of the bot would have left it."""
    storage = await Storage.open(settings.database.url)
    for at in times:
        storage.record_usage(
            UsageRecord(
                job_id=uuid.uuid4().hex,
                platform="telegram",
                user_id=user.id,
                chat_id=user.id,
                chat_type="private",
                status=UsageStatus.OK,
                created_at=at,
            )
        )
    assert await storage.flush()
    return storage


# -- abuse limits ------------------------------------------------------------------------------------


async def test_a_flood_from_one_user_is_rate_limited_and_others_are_served(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None
) -> None:
    settings = configured(
        fake, tmp_path, limits=LimitsSettings(user_per_minute=3), queue=QueueSettings(per_user=10)
    )
    async with serving(settings, fake):
        flood = [fake.send_photo(ALICE, dm(ALICE), selfie(code), caption=LOOK) for code in range(8)]
        bobs = fake.send_photo(BOB, dm(BOB), selfie(9), caption=LOOK)
        for code, message in enumerate(flood[:3]):
            assert read_code((await answer_to(fake, message, "sendPhoto")).upload("photo")) == code
        for message in flood[3:]:
            refusal = (await answer_to(fake, message)).params["text"]
            assert "faster than I allow (3 a minute)" in refusal and "You can go on at" in refusal
        assert read_code((await answer_to(fake, bobs, "sendPhoto")).upload("photo")) == 9
    assert len(fake.calls_to("sendPhoto", ALICE.id)) == 3


async def test_the_daily_quota_holds_across_restarts_and_resets_at_midnight(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = configured(fake, tmp_path, limits=LimitsSettings(user_per_minute=0, user_per_day=2))
    now = [datetime.now(UTC).replace(hour=23, minute=58)]
    # Two try-ons earlier that day, stored by an earlier run of the bot (relative to the bot's clock:
    # relative to the real one they fell on the day before when the suite ran just after midnight).
    earlier = [now[0] - timedelta(minutes=minutes) for minutes in (30, 90)]
    await (await store_usage(settings, ALICE, earlier)).close()
    monkeypatch.setattr(serve_command, "serve", functools.partial(serve_command.serve, clock=lambda: now[0]))

    async with serving(settings, fake):
        refused = fake.send_photo(ALICE, dm(ALICE), selfie(1), caption=LOOK)
        text = (await answer_to(fake, refused)).params["text"]
        assert "You have used your 2 try-ons for today" in text and "in 2 min" in text
        now[0] += timedelta(minutes=3)  # 00:01 tomorrow
        admitted = fake.send_photo(ALICE, dm(ALICE), selfie(2), caption=LOOK)
        assert read_code((await answer_to(fake, admitted, "sendPhoto")).upload("photo")) == 2


async def test_allow_and_deny_lists(fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None) -> None:
    access = AccessSettings(
        allow=[f"telegram:{ALICE.id}", f"telegram:{CAROL.id}"], deny=[f"telegram:{CAROL.id}"]
    )
    async with serving(configured(fake, tmp_path, access=access), fake):
        allowed = fake.send_photo(ALICE, dm(ALICE), selfie(3), caption=LOOK)
        outsider = fake.send_photo(BOB, dm(BOB), selfie(4), caption=LOOK)
        denied = fake.send_photo(CAROL, dm(CAROL), selfie(5), caption=LOOK)
        assert read_code((await answer_to(fake, allowed, "sendPhoto")).upload("photo")) == 3
        for message in (outsider, denied):
            assert (await answer_to(fake, message)).params[
                "text"
            ] == "Sorry, this bot is not available to you."
        fake.send_text(BOB, dm(BOB), "/help")  # the bot still talks to them
        assert "/strength" in (await fake.next_call("sendMessage", BOB.id)).params["text"]
    assert fake.calls_to("sendPhoto", BOB.id) == fake.calls_to("sendPhoto", CAROL.id) == []


async def test_admin_commands_are_for_admins_only_and_bans_hold(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None
) -> None:
    access = AccessSettings(admins=[f"telegram:{ALICE.id}"])

    async def say(user: TelegramUser, text: str) -> str:
        message = fake.send_text(user, dm(user), text)
        return str((await answer_to(fake, message)).params["text"])

    async with serving(configured(fake, tmp_path, access=access), fake):
        assert await say(BOB, "/admin stats") == "This command is only for the bot's operator."
        assert await say(BOB, f"/admin ban {BOB.id}") == "This command is only for the bot's operator."
        assert "/admin ban ID" in await say(ALICE, "/admin")
        assert await say(ALICE, f"/admin ban {BOB.id} spamming") == f"telegram:{BOB.id} is banned."
        blocked = fake.send_photo(BOB, dm(BOB), selfie(6), caption=LOOK)
        assert "blocked" in (await answer_to(fake, blocked)).params["text"]
        stats = await say(ALICE, "/admin stats")
        assert "Users: 1 (1 banned)" in stats and "Jobs by status:" in stats
        assert await say(ALICE, f"/admin unban telegram:{BOB.id}") == f"telegram:{BOB.id} is unbanned."
        welcome_back = fake.send_photo(BOB, dm(BOB), selfie(7), caption=LOOK)
        assert read_code((await answer_to(fake, welcome_back, "sendPhoto")).upload("photo")) == 7


# -- privacy -------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DatabaseSettings]:
    if request.param == "sqlite":
        yield DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'forget.db'}")
        return
    from tests.test_storage import drop_schema, unique_schema

    postgres_url = request.getfixturevalue("postgres_url")
    schema = unique_schema()
    yield DatabaseSettings(url=postgres_url, schema=schema)
    await drop_schema(postgres_url, schema)


async def test_forget_deletes_every_row_about_the_user_table_by_table(
    fake: FakeTelegram,
    tmp_path: Path,
    shared_engine_queue: None,
    engine: EngineProcess,
    database: DatabaseSettings,
) -> None:
    settings = configured(fake, tmp_path, database=database)
    args = {"server_settings": {"search_path": database.schema_name}} if database.schema_name else {}
    tables = create_async_engine(database.url, connect_args=args)

    async def rows(statement: Any) -> int:
        async with tables.connect() as connection:
            return int(await connection.scalar(statement) or 0)

    async def wait_for_usage_rows(count: int) -> None:
        async with asyncio.timeout(10):
            while await rows(select(func.count()).select_from(Usage)) < count:
                await asyncio.sleep(0.05)

    try:
        async with serving(settings, fake):
            fake.send_text(BOB, dm(BOB), "/strength 40")
            await fake.next_call("sendMessage", BOB.id)
            for user, chat, code in ((BOB, dm(BOB), 1), (BOB, GROUP, 2), (ALICE, dm(ALICE), 3)):
                message = fake.send_photo(user, chat, selfie(code), caption=LOOK)
                await answer_to(fake, message, "sendPhoto")
            await wait_for_usage_rows(3)
            bob_pk = await rows(select(User.id).where(User.platform_user_id == str(BOB.id)))
            assert await rows(select(func.count()).where(Usage.user_id == bob_pk)) == 2

            # Bob asks for one more try-on and leaves a selfie waiting, then forgets while it runs.
            with engine_paused(engine):
                running = fake.send_photo(BOB, dm(BOB), selfie(6), caption=LOOK)
                lone_selfie = fake.send_photo(BOB, dm(BOB), selfie(4))
                assert "Got your selfie" in (await answer_to(fake, lone_selfie)).params["text"]
                forget = fake.send_text(BOB, dm(BOB), "/forget")
                assert "(3 records)" in (await answer_to(fake, forget)).params["text"]
            await answer_to(fake, running, "sendPhoto")  # he gets the result he asked for...
            alices = fake.send_photo(ALICE, dm(ALICE), selfie(7), caption=LOOK)
            await answer_to(fake, alices, "sendPhoto")
            await wait_for_usage_rows(2)  # ...but unlike Alice's later job, it is not stored

            # Every table, each with what would still tie a row to Bob.
            about_bob = {
                "users": select(func.count()).where(User.platform_user_id == str(BOB.id)),
                "usage": select(func.count()).where(
                    (Usage.user_id == bob_pk) | Usage.chat_id.in_([str(BOB.id)])
                ),
            }
            assert set(about_bob) == {table.name for table in Base.metadata.sorted_tables}
            for table, statement in about_bob.items():
                assert await rows(statement) == 0, f"{table} still has rows about Bob"
            assert await rows(select(func.count()).select_from(User)) == 1  # Alice keeps hers
            assert await rows(select(func.count()).select_from(Usage)) == 2

            # The photo he left waiting went too: his next one is a new selfie, not a try-on.
            after = fake.send_photo(BOB, dm(BOB), selfie(5))
            assert "Got your selfie" in (await answer_to(fake, after)).params["text"]
            privacy = fake.send_text(BOB, dm(BOB), "/privacy")
            text = (await answer_to(fake, privacy)).params["text"]
            assert (
                f"telegram:{BOB.id}" in text and "deleted after 90 days" in text and "Never an image" in text
            )
    finally:
        await tables.dispose()


async def test_serve_deletes_usage_older_than_the_retention_setting(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None
) -> None:
    settings = configured(
        fake,
        tmp_path,
        database=DatabaseSettings(url=settings_for(fake, tmp_path).database.url, retention_days=30),
    )
    storage = await store_usage(settings, ALICE, [datetime.now(UTC) - timedelta(days=d) for d in (31, 29)])
    async with serving(settings, fake):
        stats = fake.send_text(ALICE, dm(ALICE), "/stats")
        assert "Try-ons: 1 " in (await answer_to(fake, stats)).params["text"]
    await storage.close()


async def test_logs_carry_job_fields_but_no_token_or_image_bytes(
    fake: FakeTelegram,
    tmp_path: Path,
    shared_engine_queue: None,
    caplog: pytest.LogCaptureFixture,
    restore_root_logging: None,
) -> None:
    settings = configured(fake, tmp_path, logging=LoggingSettings(level="DEBUG"))
    output = io.StringIO()
    setup_logging(settings, output)  # what `facelab serve` does, with every logger at DEBUG
    caplog.set_level(logging.DEBUG)
    chat = dm(ALICE)
    async with serving(settings, fake):
        fake.send_photo(ALICE, chat, selfie(1))
        await fake.next_call("sendMessage", chat.id)
        reference = fake.send_document(ALICE, chat, photo_file(REFERENCE, "PNG"), "ref.png", "image/png")
        result = await answer_to(fake, reference, "sendPhoto")
        for action, method in (("file", "sendDocument"), ("compare", "sendPhoto")):
            fake.press_button(ALICE, result.result, result_id(result, action))
            await fake.next_call(method, chat.id)
        fake.send_photo(ALICE, chat, photo_file(NO_FACE), caption=LOOK)
        await fake.next_call("sendMessage", chat.id, lambda call: "face" in call.params["text"])
        fake.send_text(ALICE, chat, "/stats")
        await fake.next_call("sendMessage", chat.id, lambda call: "Try-ons" in call.params["text"])

    for name, text in (("handler output", output.getvalue()), ("every record", caplog.text)):
        assert TOKEN not in text and TOKEN.split(":")[1] not in text, name
        for trace in IMAGE_TRACES:
            assert not trace.search(text), f"{name}: {trace.search(text)}"
    lines = output.getvalue().splitlines()
    assert len(lines) > 50  # DEBUG from PTB, httpx, aiohttp, the core... really were captured
    ok_job = next(line for line in lines if "bot.delivery: job ok" in line)
    assert re.search(r"job_id=[0-9a-f]{32} platform=telegram chat_type=private status=ok", ok_job)
    assert re.search(r"queue_wait_ms=\d+ engine_ms=\d+", ok_job)
    # The faceless photo was refused on arrival, before any job.
    assert any("photo refused on arrival" in line and "error_kind=no_face" in line for line in lines)


# -- operations ----------------------------------------------------------------------------------------


async def scrape(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_metrics_after_a_run_count_jobs_errors_and_engine_time(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None
) -> None:
    port = free_port()
    settings = configured(
        fake, tmp_path, metrics=MetricsSettings(port=port), limits=LimitsSettings(user_per_minute=1)
    )
    base = f"http://127.0.0.1:{port}"
    async with serving(settings, fake):
        made_up = fake.send_photo(ALICE, dm(ALICE), selfie(1), caption=LOOK)
        await answer_to(fake, made_up, "sendPhoto")
        no_face = fake.send_photo(ALICE, dm(ALICE), photo_file(NO_FACE), caption=LOOK)
        assert "face" in (await answer_to(fake, no_face)).params["text"]
        flooded = fake.send_photo(ALICE, dm(ALICE), selfie(2), caption=LOOK)
        assert "faster than I allow" in (await answer_to(fake, flooded)).params["text"]
        bobs = fake.send_photo(BOB, dm(BOB), selfie(3), caption=LOOK)
        await answer_to(fake, bobs, "sendPhoto")

        health_status, health = await scrape(f"{base}/healthz")
        status, exposition = await scrape(f"{base}/metrics")
    assert health_status == 200 and json.loads(health) == {"status": "ok", "checks": {"serving": "ok"}}
    assert status == 200
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    jobs = {"ok": 2, "rejected": 1}
    for outcome, count in jobs.items():
        assert found["facelab_jobs_total", (("platform", "telegram"), ("status", outcome))] == count
    # The faceless photo was refused on arrival: an error, but no job.
    assert ("facelab_jobs_total", (("platform", "telegram"), ("status", "error"))) not in found
    assert found["facelab_errors_total", (("kind", "no_face"),)] == 1
    assert found["facelab_errors_total", (("kind", "rate_limit"),)] == 1
    assert found["facelab_engine_seconds_count", ()] == 2  # the refused ones never reached the engine
    assert 0 < found["facelab_engine_seconds_sum", ()] < 60
    assert found["facelab_queue_depth", ()] == 0


# -- the hostile corpus --------------------------------------------------------------------------------


def expected_answer(item: HostileImage, limits: Settings) -> Callable[[ApiCall], bool]:
    """What the user must get back for `item` sent as their selfie: the result, or the gate's exact
    message, or (for images without a usable face) the engine's face message."""
    if "ok" in item.expect.engine:
        # How many faces are found is the engine's business (tests/test_faces.py); here: a group photo
        # comes back made up as a group photo.
        several = item.expect.faces is not None and item.expect.faces > 1
        return lambda call: (
            call.method == "sendPhoto" and (not several or " faces." in call.params["caption"])
        )
    if len(item.data) > limits.telegram.max_download_bytes:
        return lambda call: "Telegram lets me download files up to 20 MB" in call.params.get("text", "")
    if item.expect.error is not None:
        try:
            load_image(
                item.data,
                max_pixels=limits.engine.max_pixels,
                max_bytes=limits.engine.max_bytes,
                role="selfie",
            )
        except EngineError as refusal:
            gate_message = refusal.user_message
        return lambda call: call.params.get("text") == gate_message
    phrases = [FACE_REFUSALS[kind] for kind in item.expect.engine]
    return lambda call: (
        "selfie" in call.params.get("text", "") and any(phrase in call.params["text"] for phrase in phrases)
    )


def peak_rss_mb(pid: int | str = "self") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def reset_peak_rss(pid: int | str = "self") -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def test_the_hostile_corpus_gets_clear_answers_in_bounded_memory(
    fake: FakeTelegram, tmp_path: Path, shared_engine_queue: None, engine: EngineProcess
) -> None:
    settings = configured(fake, tmp_path)
    items = corpus()
    assert len(items) >= 20
    reference = photo_file(REFERENCE)
    restarts, engine_pid = engine.restarts, engine.pid
    assert engine_pid is not None
    async with serving(settings, fake):
        reset_peak_rss()
        reset_peak_rss(engine_pid)
        before = peak_rss_mb(), peak_rss_mb(engine_pid)
        wrong: list[str] = []
        for number, item in enumerate(items):
            # A new person for each file: each one is also "the next user" after a hostile one.
            user, mime = TelegramUser(7000 + number, item.name), mimetypes.guess_type(item.filename)[0]
            chat = dm(user)
            upload = fake.send_document(
                user, chat, item.data, item.filename, mime or "application/octet-stream"
            )
            answer = await first_answer(fake, upload)
            if "Got your selfie" in answer.params.get("text", ""):
                answer = await first_answer(fake, fake.send_photo(user, chat, reference))
            if not expected_answer(item, settings)(answer):
                said = answer.params.get("text") or answer.params.get("caption")
                wrong.append(f"{item.name}: {answer.method} {said}")
        after = peak_rss_mb(), peak_rss_mb(engine_pid)
        # The bot still serves an ordinary user, with the same engine process.
        last = fake.send_photo(BOB, dm(BOB), selfie(8), caption=LOOK)
        assert read_code((await answer_to(fake, last, "sendPhoto")).upload("photo")) == 8
    assert wrong == []
    assert engine.restarts == restarts
    print(f"\npeak RSS during the corpus: bot and fake server {before[0]:.0f} -> {after[0]:.0f} MB,")
    print(f"engine process {before[1]:.0f} -> {after[1]:.0f} MB")
    # One decoded bomb alone (30000x30000 RGB) would be 2.7 GB: nothing was decoded past the limits.
    assert after[0] < before[0] + 600
    assert after[1] < 1200
