"""The web playground: a local page (aiohttp) that behaves like the chat, for people without a bot
token and as a live demo. It is an adapter like Telegram's and Discord's: photos and button presses
go to the same `bot.core.Core` and queue, and the core's answers come back through `WebMessenger`
(bot/web/sessions.py, with the sessions and their event streams). This module is the HTTP side.

Each browser gets a session cookie; its chat id and user id are the session id. The page has each
chosen photo previewed by the server (`/api/preview`: any format the engine reads, HEIC included),
posts a selfie with a reference photo (or a preset look) to `/api/tryon`, and reads the
conversation from one Server-Sent Events stream (`/api/events`). Each try-on gets an id that its
answers carry, so the page knows which selfie is the "before" of a result. The session keeps its
conversation (numbered events, replayed to a reloaded page or after a reconnect's `Last-Event-ID`)
and its images (previews and results, in memory, a few per session, served to that session only at
`/api/images/NAME`). It binds to loopback by default: there are no accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web

from bot.core import Core
from bot.ports import Origin
from bot.settings import BotConfig
from bot.web.sessions import (
    COOKIE,
    IMAGES_PER_SESSION,
    PLATFORM,
    SESSION,
    SESSION_IDLE_S,
    Session,
    Stream,
    WebMessenger,
    sse,
)
from bot.web.settings import WebSettings
from engine.errors import EngineError, Role

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
TRYON_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEEPALIVE_S = 15.0  # comment lines on the event stream so proxies and browsers keep it open
PREVIEWS_AT_ONCE = 2  # decoding a 40-megapixel photo takes ~200 MB; bound what the bot process holds


class WebPlayground:
    """`facelab serve`'s handle on the playground (an adapter: `start()` / `stop()`)."""

    def __init__(self, settings: WebSettings, config: BotConfig, core: Core) -> None:
        self._settings = settings
        self._engine_settings = config.engine
        self._bot_settings = config.bot
        self._retention_days = config.database.retention_days
        self._core = core
        self.messenger = WebMessenger(lambda session_id: core.jobs_in_flight((PLATFORM, session_id)) > 0)
        core.add_messenger(self.messenger)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._previews = asyncio.Semaphore(PREVIEWS_AT_ONCE)
        # Two photos per try-on, each up to the engine's limit, plus the form's overhead.
        self._max_request = 2 * config.engine.max_bytes + 64 * 1024
        self.url = ""

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        await site.start()
        host, port = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}/"
        log.info("web playground on %s", self.url)

    async def stop(self) -> None:
        self._closing.set()  # ends the open event streams
        if self._runner is not None:
            await self._runner.cleanup()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_request, middlewares=[self._with_session])
        app.on_response_prepare.append(self._set_cookie)
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC_DIR)
        app.router.add_get("/api/looks", self._looks)
        app.router.add_get("/api/settings", self._get_settings)
        app.router.add_post("/api/strength", self._strength)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/preview", self._preview)
        app.router.add_post("/api/tryon", self._tryon)
        app.router.add_post("/api/button", self._button)
        app.router.add_post("/api/command", self._command)
        app.router.add_get("/api/images/{name}", self._image)
        return app

    @web.middleware
    async def _with_session(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request[SESSION] = self.messenger.session_for(request)
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    async def _set_cookie(request: web.Request, response: web.StreamResponse) -> None:
        """Give a new browser its session cookie, on whatever response goes out first (also the
        event stream, whose headers go out before its handler returns). Cookies set through
        `response.set_cookie` are already rendered at this point, hence the raw header."""
        session = request.get(SESSION)
        if session is not None and request.cookies.get(COOKIE) != session.id:
            cookie = SimpleCookie()
            cookie[COOKIE] = session.id
            cookie[COOKIE]["path"] = "/"
            cookie[COOKIE]["httponly"] = True
            cookie[COOKIE]["samesite"] = "Strict"
            response.headers.add(hdrs.SET_COOKIE, cookie[COOKIE].OutputString())

    def _origin(self, request: web.Request, tryon: str | None = None) -> Origin:
        session = _session_of(request)
        return Origin(PLATFORM, chat_id=session.id, user_id=session.id, message_id=tryon)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _looks(self, request: web.Request) -> web.Response:
        from engine.looks import load_looks  # on demand: it loads the image libraries

        return web.json_response({"looks": sorted(load_looks())})

    async def _get_settings(self, request: web.Request) -> web.Response:
        """What the page starts from: the person's remembered strength and the upload limit."""
        return web.json_response(
            {
                "strength": await self._core.preferred_strength(self._origin(request)),
                "max_bytes": self._engine_settings.max_bytes,
            }
        )

    async def _strength(self, request: web.Request) -> web.Response:
        """The strength slider was moved: remember it, as /strength does in the chats."""
        value = (await _json(request)).get("strength")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            return web.json_response({"error": "Strength is a number from 0 to 100."}, status=400)
        if not await self._core.set_strength(self._origin(request), value):
            error = "I can't save your strength right now; it still applies to your next try-on."
            return web.json_response({"error": error}, status=503)
        return web.json_response({"strength": value})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """The session's conversation as Server-Sent Events: what the page has not seen yet (all of
        it for a new page, what followed `Last-Event-ID` for a reconnecting one), then live."""
        session = _session_of(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        stream = Stream(asyncio.Queue(), request)
        for missed in session.events_after(request.headers.get("Last-Event-ID", "")):
            stream.inbox.put_nowait(missed)
        stream.inbox.put_nowait(("state", self.messenger.state(session)))
        session.streams.add(stream)
        closing = asyncio.create_task(self._closing.wait())
        try:
            while not self._closing.is_set():
                getting = asyncio.create_task(stream.inbox.get())
                done, _ = await asyncio.wait(
                    {getting, closing}, timeout=KEEPALIVE_S, return_when="FIRST_COMPLETED"
                )
                if getting not in done:
                    getting.cancel()
                    await response.write(b": keep-alive\n\n")
                    continue
                event = getting.result()
                if event is None:
                    break
                await response.write(sse(*event))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page was closed or reloaded; the conversation keeps what it missed
        finally:
            closing.cancel()
            session.streams.discard(stream)
        return response

    async def _preview(self, request: web.Request) -> web.Response:
        """A chosen photo, checked as a chat checks each photo on arrival (it decodes, it has a
        usable face) and returned as a JPEG any browser shows (kept in the session for the
        conversation); or what is wrong with it, for its slot."""
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        role: Role = "reference" if form.get("role") == "reference" else "selfie"
        photo = _upload(form.get("photo"))
        if not photo:
            subject = "Your selfie" if role == "selfie" else "The reference photo"
            return web.json_response(
                {"error": f"{subject} is an empty file (0 bytes). Please choose the photo again."},
                status=422,
            )
        from engine.compare import preview  # on demand: it loads the image libraries

        async with self._previews:
            try:
                jpeg = await asyncio.to_thread(preview, photo, self._engine_settings, role)
                await self._core.check_photo(photo, role)  # a face, as a chat checks each photo
            except EngineError as error:
                return web.json_response({"error": error.user_message, "kind": error.kind}, status=422)
        name = _session_of(request).keep_image(jpeg)
        return web.json_response({"name": name, "image": f"api/images/{name}"})

    async def _tryon(self, request: web.Request) -> web.Response:
        """A selfie with a reference photo or a look, a strength and a look mode: queued, answered on
        the stream."""
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        selfie = _upload(form.get("selfie"))
        reference = _upload(form.get("reference"))
        look = str(form.get("look") or "") or None
        if selfie is None or (reference is None and look is None):
            return web.json_response(
                {"error": "Choose your selfie and a reference photo (or a look)."}, status=400
            )
        try:
            strength = int(str(form.get("strength", "")))
        except ValueError:
            strength = None
        mode = str(form.get("mode") or "") or None  # the "Full look" toggle; the core checks it
        # The page names its try-ons, so it knows each result's selfie before the answer can arrive.
        tryon = str(form.get("tryon", ""))
        if not TRYON_ID.fullmatch(tryon):
            tryon = secrets.token_urlsafe(9)
        session = _session_of(request)
        session.publish(
            "user",
            {
                "tryon": tryon,
                "selfie": _image_url(session, form.get("selfie_preview")),
                "reference": None if look else _image_url(session, form.get("reference_preview")),
                "look": look,
                "strength": strength,
                "mode": mode,
            },
        )
        await self._core.on_pair(
            self._origin(request, tryon),
            selfie,
            None if look else reference,
            look=look,
            strength=strength,
            mode=mode,
        )
        self.messenger.publish_state(session)
        return web.json_response({"tryon": tryon}, status=202)

    async def _button(self, request: web.Request) -> web.Response:
        body = await _json(request)
        tryon = str(body.get("tryon") or "") or None
        notice = await self._core.on_button(self._origin(request, tryon), str(body.get("data", "")))
        session = _session_of(request)
        session.publish("message", {"text": notice, "buttons": [], "tryon": tryon})
        self.messenger.publish_state(session)
        return web.json_response({}, status=202)

    async def _command(self, request: web.Request) -> web.Response:
        """The page's Help, Privacy and "Delete my data" buttons (texts written for the page; the
        core's speak of chat commands the page has no box for)."""
        command = str((await _json(request)).get("command", ""))
        session = _session_of(request)
        if command == "help":
            session.publish("message", {"text": self._help_text(), "buttons": [], "tryon": None})
        elif command == "privacy":
            session.publish("message", {"text": self._privacy_text(), "buttons": [], "tryon": None})
        elif command == "forget":
            session.forget()  # this page's images and conversation; the core forgets the rest
            await self._core.on_command(self._origin(request), "forget")
        else:
            raise web.HTTPBadRequest(text=f"unknown command {command!r}")
        return web.json_response({}, status=202)

    async def _image(self, request: web.Request) -> web.Response:
        data = _session_of(request).images.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound(text="This image has expired; try again.")
        return web.Response(
            body=data,
            content_type="image/jpeg",
            headers={"Cache-Control": "no-store"},  # deleted data must not live on in the browser
        )

    async def _form(self, request: web.Request) -> Any:
        """The posted form, or the answer to a post over the size limit."""
        try:
            return await request.post()
        except web.HTTPRequestEntityTooLarge:
            mb = self._max_request // (2 * 1024 * 1024)
            return web.json_response({"error": f"Photos can be up to {mb} MB each."}, status=413)

    def _help_text(self) -> str:
        mb = self._engine_settings.max_bytes // (1024 * 1024)
        megapixels = self._engine_settings.max_pixels // 1_000_000
        return WEB_HELP_TEXT.format(mb=mb, megapixels=megapixels)

    def _privacy_text(self) -> str:
        days = self._retention_days
        results = max(1, round(self._bot_settings.result_cache_s / 60))
        return WEB_PRIVACY_TEXT.format(
            images=IMAGES_PER_SESSION,
            idle=round(SESSION_IDLE_S / 60),
            results=f"{results} minute{'s' if results > 1 else ''}",
            retention=f"after {days} days" if days else "only when you delete your data",
        )


WEB_HELP_TEXT = """Face Lab puts the makeup of any photo on your selfie.

1. Drop or choose your selfie in the left box.
2. Drop or choose a photo of a face wearing the makeup you like in the right box, or pick a preset look.
3. Set the strength (remembered for your next visit) and press “Try it on”.

Drag the line across the result to compare before and after (or focus it and use the arrow keys). \
Stronger, Softer and Lips only try again with the same photos; Download saves the result.
Photos: JPEG, PNG, WebP, HEIC, AVIF, GIF or BMP, up to {mb} MB and {megapixels} megapixels."""

WEB_PRIVACY_TEXT = """What this page keeps:
- Your photos, their previews and your results: in the server's memory only, never on disk, for \
this browser only (the latest {images} images; all of them after {idle} minutes without a visit). \
The photos of a result stay {results} so its buttons work.
- In the database: an id for this browser and your strength, and for each try-on its time, \
outcome, error kind and timings. Never an image. Try-on records are deleted {retention}.
“Delete my data” deletes all of it at once."""


def _session_of(request: web.Request) -> Session:
    return request[SESSION]


def _image_url(session: Session, name: Any) -> str | None:
    """The URL of one of the session's images named by the page (a preview), if it still has it."""
    return f"api/images/{name}" if isinstance(name, str) and name in session.images else None


def _upload(field: Any) -> bytes | None:
    if isinstance(field, web.FileField):
        data = field.file.read()
        return data or None
    return None


async def _json(request: web.Request) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    raise web.HTTPBadRequest(text="expected a JSON object")
