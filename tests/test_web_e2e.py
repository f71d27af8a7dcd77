"""The web playground end to end: Debian's headless Chromium (driven by Playwright, never a downloaded
browser) uses the page against the real core, queue, engine process and SQLite storage."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image

from bot.core import Core
from bot.engine_process import EngineProcess
from bot.queue import LocalJobQueue
from bot.web import WebPlayground
from engine.faces import MediapipeBackend
from engine.regions import region_masks
from facelab.commands.serve import ADAPTERS, Adapter, serve
from facelab.settings import Settings
from storage import Storage
from tests.conftest import REPO_ROOT, face_path
from tests.paint_spotter import PaintSpotter

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "artifacts"
SELFIE, REFERENCE, NO_FACE = "sm_source_02.jpg", "elegant_ref_02.png", "dlib_source_02.jpg"
PAINTED = "sm_ref_01.jpg"  # a Joker


def require_chromium() -> Path:
    if not CHROMIUM.is_file():
        reason = f"Debian's chromium ({CHROMIUM}) is not installed: apt-get install chromium"
        if os.environ.get("FACELAB_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " (required under FACELAB_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def spotter() -> AsyncIterator[PaintSpotter]:
    """The real engine process, reporting the Joker's paint as the engine contract says."""
    engine = EngineProcess(Settings().engine)
    await engine.start()
    yield PaintSpotter(engine, face_path(PAINTED).read_bytes())
    await engine.close()


@pytest.fixture
async def playground(tmp_path: Path, spotter: PaintSpotter) -> AsyncIterator[WebPlayground]:
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}"},
        web={"host": "127.0.0.1", "port": 0},
    )
    storage = await Storage.open(settings.database.url)
    queue = LocalJobQueue(spotter, max_size=10, per_user=2)
    await queue.start()
    core = Core(settings, queue, storage)
    web = WebPlayground(settings, core)
    await web.start()
    try:
        yield web
    finally:
        await queue.close(drain_timeout_s=5)
        await core.close()
        await web.stop()
        await storage.close()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    executable = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def lips_mask(selfie: np.ndarray) -> np.ndarray:
    [face] = MediapipeBackend().detect(selfie)
    return region_masks(face.landmarks, selfie.shape[:2], face.inter_ocular)["lips"] > 0.5


async def test_try_on_in_the_browser_and_download_the_result(
    playground: WebPlayground, browser: object, tmp_path: Path
) -> None:
    page = await browser.new_page(viewport={"width": 960, "height": 1200}, accept_downloads=True)  # type: ignore[attr-defined]
    await page.goto(playground.url)
    await page.set_input_files("#selfie", face_path(SELFIE))
    await page.set_input_files("#reference", face_path(REFERENCE))
    await page.click("#submit")
    # The result arrives over the event stream, and the slider appears once both images are loaded.
    await page.wait_for_selector("li.result .compare:not(.single)", timeout=60_000)
    await page.fill("li.result .split", "35")
    async with page.expect_download() as downloading:
        await page.click("li.result a.download")
    download = await downloading.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "web_playground.png", full_page=True)

    selfie, result = rgb(face_path(SELFIE).read_bytes()), rgb(saved.read_bytes())
    assert result.shape == selfie.shape
    lips = lips_mask(selfie)
    change = np.abs(result.astype(np.int16) - selfie.astype(np.int16)).mean(axis=2)
    assert change[lips].mean() > 4.0, "the lips did not change"
    assert download.suggested_filename == "facelab.jpg"


async def test_result_buttons_and_a_photo_without_a_face(playground: WebPlayground, browser: object) -> None:
    page = await browser.new_page(viewport={"width": 960, "height": 1200})  # type: ignore[attr-defined]
    await page.goto(playground.url)
    await page.set_input_files("#selfie", face_path(NO_FACE))
    await page.select_option("#look", "red_lips")
    await page.click("#submit")
    refusal = page.locator("#log li.bot", has_text="face in your selfie")
    await refusal.wait_for(timeout=60_000)
    assert await page.locator("li.result").count() == 0

    await page.set_input_files("#selfie", face_path(SELFIE))
    await page.click("#submit")
    await page.wait_for_selector("li.result .compare:not(.single)", timeout=60_000)
    await page.click("li.result button:has-text('Lips only')")
    await page.wait_for_selector("li.result >> nth=1", timeout=60_000)
    assert (
        await page.locator("li.result .caption").nth(1).inner_text()
        == "Look: red_lips, strength 70, lips only."
    )


async def test_the_full_look_toggle_and_button(
    playground: WebPlayground, browser: object, spotter: PaintSpotter
) -> None:
    page = await browser.new_page(viewport={"width": 960, "height": 1200})  # type: ignore[attr-defined]
    await page.goto(playground.url)
    await page.set_input_files("#selfie", face_path(SELFIE))
    await page.set_input_files("#reference", face_path(PAINTED))
    await page.click("#submit")
    first = page.locator("li.result").nth(0)
    await first.wait_for(timeout=60_000)
    assert "face paint that natural mode leaves out" in await first.locator(".caption").inner_text()
    assert await first.locator(".actions button").first.inner_text() == "Full look"

    await first.locator(".actions button", has_text="Full look").click()
    pressed = page.locator("li.result").nth(1).locator(".caption")
    await pressed.wait_for(timeout=60_000)
    assert await pressed.inner_text() == "Makeup from your reference, strength 70, full look."

    await page.check("#full-look")
    await page.click("#submit")
    toggled = page.locator("li.result").nth(2).locator(".caption")
    await toggled.wait_for(timeout=60_000)
    assert await toggled.inner_text() == "Makeup from your reference, strength 70, full look."
    assert await page.locator("li.user").last.inner_text() == "strength 70, full look"
    assert spotter.modes == ["natural", "full", "full"]


async def test_results_are_private_to_their_session(playground: WebPlayground) -> None:
    # unsafe=True: keep cookies from an IP-address host (the playground is on 127.0.0.1).
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as alice, aiohttp.ClientSession() as mallory:
        async with alice.get(playground.url + "api/events") as events:
            form = aiohttp.FormData()
            form.add_field("selfie", face_path(SELFIE).read_bytes(), filename="me.jpg")
            form.add_field("reference", face_path(REFERENCE).read_bytes(), filename="ref.png")
            form.add_field("strength", "60")
            async with alice.post(playground.url + "api/tryon", data=form) as accepted:
                assert accepted.status == 202
            async with asyncio.timeout(60):
                image_url = await _next_image(events)
        async with alice.get(playground.url + image_url) as own:
            assert own.status == 200 and own.content_type == "image/jpeg"
        async with mallory.get(playground.url + image_url) as other:
            assert other.status == 404


async def _next_image(events: aiohttp.ClientResponse) -> str:
    async for line in events.content:
        if line.startswith(b"data:"):
            data = json.loads(line[5:])
            if data.get("image"):
                return str(data["image"])
    raise AssertionError("the event stream ended without a result")


async def test_serve_without_a_bot_token_serves_the_playground(tmp_path: Path) -> None:
    playgrounds: list[Adapter | None] = []

    def web(settings: Settings, core: Core) -> Adapter | None:  # the real factory, watched
        playgrounds.append(ADAPTERS["web"](settings, core))
        return playgrounds[-1]

    settings = Settings(database={"url": f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}"}, web={"port": 0})
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop, {**ADAPTERS, "web": web}))
    try:
        async with asyncio.timeout(60):
            while not (playgrounds and isinstance(playgrounds[0], WebPlayground) and playgrounds[0].url):
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as client, client.get(playgrounds[0].url) as page:
            assert page.status == 200
            assert "Try it on" in await page.text()
    finally:
        stop.set()
        assert await asyncio.wait_for(server, 60) == 0


async def _post_tryon(client: aiohttp.ClientSession, url: str) -> None:
    form = aiohttp.FormData()
    form.add_field("selfie", face_path(SELFIE).read_bytes(), filename="me.jpg")
    form.add_field("reference", face_path(REFERENCE).read_bytes(), filename="ref.png")
    async with client.post(url + "api/tryon", data=form) as accepted:
        assert accepted.status == 202


async def test_forget_deletes_the_result_images(playground: WebPlayground) -> None:
    """Issue 14.5: after "I deleted everything ... and your photos" no earlier result is reachable."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(playground.url + "api/events") as events:
            await _post_tryon(client, playground.url)
            async with asyncio.timeout(60):
                image_url = await _next_image(events)
        async with client.get(playground.url + image_url) as before:
            assert before.status == 200
        async with client.post(playground.url + "api/command", json={"command": "forget"}) as forgot:
            assert forgot.status == 202
        async with client.get(playground.url + image_url) as after:
            assert after.status == 404


async def test_an_answer_waits_for_the_next_stream_after_one_closed(playground: WebPlayground) -> None:
    """Issue 14.6: the answer to a try-on made while the page's stream was closing is not lost; a
    stream reconnecting with Last-Event-ID gets only what it missed."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(playground.url + "api/events") as events:
            await _post_tryon(client, playground.url)
            async with asyncio.timeout(30):
                seen = await _next_event_id(events, "user")  # the try-on itself
        async with asyncio.timeout(60):  # the answer is published while no stream is open
            while playground._core.held_images == 0:
                await asyncio.sleep(0.05)
        [session] = playground.messenger.sessions.values()
        assert not session.streams, "a closed stream is still listening"
        async with client.get(playground.url + "api/events", headers={"Last-Event-ID": seen}) as events:
            async with asyncio.timeout(30):
                first = await _next_event(events)
        assert first[0] == "message" and first[1]["image"], "the answer was lost"


async def _next_event(events: aiohttp.ClientResponse) -> tuple[str, dict[str, object]]:
    kind = ""
    async for line in events.content:
        if line.startswith(b"event:"):
            kind = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            return kind, json.loads(line[5:])
    raise AssertionError("the event stream ended")


async def _next_event_id(events: aiohttp.ClientResponse, kind: str) -> str:
    while True:
        got, data = await _next_event(events)
        if got == kind:
            return str(data["id"])
