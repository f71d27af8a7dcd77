"""The web playground end to end: Debian's headless Chromium (driven by Playwright, never a downloaded
browser) uses the page against the real core, queue, engine process and SQLite storage."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image
from pydantic import Field

from bot.core import Core
from bot.engine_process import EngineProcess
from bot.ports import Adapter
from bot.queue import LocalJobQueue
from bot.settings import BotConfig
from bot.web.playground import WebPlayground
from bot.web.settings import WebSettings
from engine.faces import MediapipeBackend
from engine.regions import region_masks
from facelab.commands.serve import serve
from facelab.settings import Settings
from storage import Storage
from tests.conftest import REPO_ROOT, face_path
from tests.hostile_images import encode, face_rgb
from tests.paint_spotter import PaintSpotter

# Slow: end to end: a real browser, real engine process, shared photos.
pytestmark = pytest.mark.slow

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
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


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
    web = WebPlayground(settings.web, settings, core)
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
    # Checked when chosen, as a chat checks each photo on arrival: said on its slot, nothing to run.
    refusal = page.locator("#selfie-error", has_text="face in your selfie")
    await refusal.wait_for(timeout=60_000)
    assert await page.locator("#submit").is_disabled()

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


class WatchedWeb(WebSettings):
    """The real `[web]` platform, keeping what it builds."""

    built: list[object] = Field(default_factory=list)

    def build(self, config: BotConfig, core: Core) -> Adapter:
        adapter = super().build(config, core)
        self.built.append(adapter)
        return adapter


class SettingsWatchingWeb(Settings):
    web: WatchedWeb = WatchedWeb()


async def test_serve_without_a_bot_token_serves_the_playground(tmp_path: Path) -> None:
    settings = SettingsWatchingWeb(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'facelab.db'}"}, web=WatchedWeb(port=0)
    )
    playgrounds = settings.web.built
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop))
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


# -- the page people enjoy (issue 13, items 8-13) -------------------------------------------------

# Where the latest result is, against the window and the sticky composer, once scrolling has stopped.
RESULT_BOX = """async () => {
  let y = -1;
  while (y !== window.scrollY) { y = window.scrollY; await new Promise((r) => setTimeout(r, 150)); }
  const result = [...document.querySelectorAll("li.result")].pop().getBoundingClientRect();
  const composer = document.querySelector("#composer").getBoundingClientRect();
  return { top: result.top, bottom: result.bottom, composerTop: composer.top,
           composerHeight: composer.height, height: window.innerHeight };
}"""

# Watches the submit button: every (disabled, label) state it shows.
WATCH_SUBMIT = """() => {
  const submit = document.querySelector("#submit");
  window.submitStates = [];
  const note = () => window.submitStates.push([submit.disabled, submit.textContent]);
  const what = { attributes: true, childList: true, characterData: true, subtree: true };
  new MutationObserver(note).observe(submit, what);
}"""

# WCAG contrast of every visible text against what is behind it (semi-transparent layers blended);
# disabled controls are exempt. Returns the texts under 4.5:1.
LOW_CONTRAST = """() => {
  const rgba = (css) => {
    const v = css.match(/[\\d.]+/g).map(Number);
    return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1];
  };
  const over = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3])).concat(1);
  const background = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) layers.push(rgba(getComputedStyle(e).backgroundColor));
    return layers.reverse().reduce((under, layer) => over(layer, under), [255, 255, 255, 1]);
  };
  const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  const luminance = (c) => 0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2]);
  const low = [];
  for (const element of document.querySelectorAll("body *")) {
    const own = [...element.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (!own || !element.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    if (element.closest(":disabled, .disabled")) continue;
    const back = background(element);
    const fore = over(rgba(getComputedStyle(element).color), back);
    const [a, b] = [luminance(fore), luminance(back)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) low.push(`${element.textContent.trim().slice(0, 30)}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""


async def _choose_photos(page: object, selfie: object, reference: object) -> None:
    await page.set_input_files("#selfie", selfie)  # type: ignore[attr-defined]
    await page.set_input_files("#reference", reference)  # type: ignore[attr-defined]
    for role in ("selfie", "reference"):  # previews made by the server, shown in the slots
        await page.wait_for_function(  # type: ignore[attr-defined]
            f"document.querySelector('#{role}-slot img').naturalWidth > 0", timeout=30_000
        )


@pytest.mark.parametrize(("size", "name"), [(DESKTOP, "desktop"), (PHONE, "phone")])
async def test_one_try_on_per_click_lands_in_view_and_survives_a_reload(
    playground: WebPlayground, browser: object, size: dict[str, int], name: str
) -> None:
    context = await browser.new_context(viewport=size, reduced_motion="reduce")  # type: ignore[attr-defined]
    page = await context.new_page()
    tryons: list[str] = []
    page.on("request", lambda r: tryons.append(r.url) if r.url.endswith("api/tryon") else None)
    await page.goto(playground.url)
    # A phone-sized photo: larger than the window has room for, so the page must size it down.
    selfie = Image.fromarray(face_rgb(SELFIE))
    large = encode(selfie.resize((1200, round(1200 * selfie.height / selfie.width))), "JPEG", quality=90)
    large_selfie = {"name": "me.jpg", "mimeType": "image/jpeg", "buffer": large}
    await _choose_photos(page, large_selfie, face_path(REFERENCE))
    await page.evaluate(WATCH_SUBMIT)
    await page.dblclick("#submit")  # item 10: the second click must not start a second try-on
    await page.wait_for_selector("li.result .compare:not(.single)", timeout=60_000)
    await page.wait_for_selector("#submit:not([disabled])", timeout=60_000)
    assert len(tryons) == 1
    assert [True, "Working…"] in await page.evaluate("window.submitStates"), "no progress state shown"
    assert await page.locator("li.user").count() == 1

    # Item 8: the whole result (caption, picture, buttons) is on screen, above the sticky composer.
    box = await page.evaluate(RESULT_BOX)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"web_{name}.png")
    assert box["top"] >= 0, box
    assert box["bottom"] <= box["composerTop"] <= box["height"], box
    assert box["composerHeight"] <= 0.3 * box["height"], "the composer takes too much of the screen"

    # Item 12: a reload shows the same conversation, the before/after slider included.
    caption = await page.locator("li.result .caption").inner_text()
    await page.reload()
    await page.wait_for_selector("li.result .compare:not(.single)", timeout=30_000)
    assert await page.locator("li.result .caption").inner_text() == caption
    assert await page.locator("li.user img").count() == 2
    assert await page.locator("li.result").count() == 1
    await context.close()


async def test_previews_for_every_format_and_errors_on_their_slot(
    playground: WebPlayground, browser: object
) -> None:
    page = await browser.new_page(viewport=DESKTOP)  # type: ignore[attr-defined]
    await page.goto(playground.url)
    # What phones and file managers hand over: HEIC with no type, a JPEG with no extension.
    heic = encode(Image.fromarray(face_rgb(SELFIE)), "HEIF", quality=90)
    jpeg = encode(Image.fromarray(face_rgb(REFERENCE)), "JPEG", quality=90)
    await _choose_photos(
        page,
        {"name": "IMG_0002.HEIC", "mimeType": "", "buffer": heic},
        {"name": "photo", "mimeType": "application/octet-stream", "buffer": jpeg},
    )
    assert await page.locator(".slot-error:visible").count() == 0
    await page.click("#submit")
    await page.wait_for_selector("li.result .compare:not(.single)", timeout=60_000)

    # Errors go under the photo they concern, each with its own words, all looking the same.
    await page.set_input_files("#selfie", {"name": "me.jpg", "mimeType": "image/jpeg", "buffer": b""})
    await page.set_input_files(
        "#reference", {"name": "ref.jpg", "mimeType": "image/jpeg", "buffer": b"%PDF-1.4\n" + bytes(200)}
    )
    selfie_error, reference_error = page.locator("#selfie-error"), page.locator("#reference-error")
    await reference_error.wait_for(state="visible", timeout=30_000)
    assert "empty file (0 bytes)" in await selfie_error.inner_text()
    assert "reference photo is not a photo I can read" in await reference_error.inner_text()
    assert await page.locator("#submit").is_disabled()
    looks = [
        await error.evaluate("e => { const s = getComputedStyle(e); return [s.color, s.backgroundColor]; }")
        for error in (selfie_error, reference_error)
    ]
    assert looks[0] == looks[1]
    await page.evaluate("showError('x')")  # a conversation error, as a refused request shows it
    assert looks[0] == await page.locator("#log li.error .text").evaluate(
        "e => [getComputedStyle(e).color, getComputedStyle(e.parentElement).backgroundColor]"
    )


async def test_page_texts_strength_accessibility_and_delete_my_data(
    playground: WebPlayground, browser: object
) -> None:
    page = await browser.new_page(viewport=DESKTOP)  # type: ignore[attr-defined]
    await page.goto(playground.url)
    slider = page.get_by_role("slider", name="Makeup strength")  # item 13: an accessible name
    assert await slider.input_value() == "70"
    assert await page.evaluate(LOW_CONTRAST) == []

    # Item 9: help and privacy speak of the page's own controls, not of chat commands.
    for button, words in (("Help", "in the left box"), ("Privacy", "What this page keeps")):
        await page.click(f"header button:has-text('{button}')")
        text = await page.locator("#log li.bot", has_text=words).inner_text()
        assert not re.search(r"(^|\s)/[a-z]", text), text

    # Item 9: the slider saves the strength; a new page starts from it.
    await slider.focus()
    saved = lambda r: r.url.endswith("api/strength") and r.request.post_data_json == {"strength": 40}  # noqa: E731
    async with page.expect_response(saved):
        for _ in range(6):
            await page.keyboard.press("ArrowLeft")
    await page.reload()
    await page.wait_for_function("document.querySelector('#strength').value === '40'", timeout=10_000)

    # Item 13: focus shows on the photo slots.
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "selfie":
            break
    outline = await page.locator("#selfie-slot").evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"

    # A look: the menu names it as the result's caption does.
    await page.set_input_files("#selfie", face_path(SELFIE))
    await page.wait_for_function("document.querySelector('#selfie-slot img').naturalWidth > 0")
    await page.select_option("#look", "red_lips")
    menu_name = await page.locator("#look option:checked").inner_text()
    await page.click("#submit")
    await page.wait_for_selector("li.result .compare:not(.single)", timeout=60_000)
    assert f"Look: {menu_name}, strength 40" in await page.locator("li.result .caption").inner_text()
    assert await page.evaluate(LOW_CONTRAST) == []

    # Item 13: the before/after line moves 5 % per arrow key, and shows focus.
    split = page.locator("li.result .split")
    await split.focus()
    compare = page.locator("li.result .compare")
    assert await compare.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    await page.keyboard.press("ArrowLeft")
    assert await split.input_value() == "45"
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    assert await split.input_value() == "55"

    # Item 9 and issue 14.5: "Delete my data" deletes the result images too, and clears the page.
    image = await page.locator("li.result img.after").get_attribute("src")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#forget")
    await page.locator("#log li.bot", has_text="I deleted everything").wait_for(timeout=30_000)
    assert await page.locator("li.result, li.user").count() == 0
    assert await page.evaluate(f"fetch('{image}', {{ cache: 'no-store' }}).then((r) => r.status)") == 404
    await page.wait_for_function("document.querySelector('#strength').value === '70'", timeout=10_000)


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


async def test_after_a_restart_a_browser_keeps_its_strength_and_gets_every_new_event(
    playground: WebPlayground,
) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.post(playground.url + "api/strength", json={"strength": 35}) as saved:
            assert saved.status == 200
        async with client.post(playground.url + "api/command", json={"command": "help"}):
            pass
        [before] = playground.messenger.sessions.values()
        seen = f"{before.epoch}-{before.last_event_id}"

        playground.messenger.sessions.clear()  # what a restart of the bot process loses
        async with client.get(playground.url + "api/settings") as settings:
            assert (await settings.json())["strength"] == 35
        async with client.post(playground.url + "api/command", json={"command": "privacy"}):
            pass
        # The page reconnects with the id it saw last; the new session's events are all new to it.
        async with client.get(playground.url + "api/events", headers={"Last-Event-ID": seen}) as events:
            async with asyncio.timeout(10):
                kind, data = await _next_event(events)
        assert kind == "message" and "What this page keeps" in str(data["text"])
