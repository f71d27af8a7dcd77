"""The web playground: a local page (aiohttp) that behaves like the chat, for people without a bot
token and as a live demo. It is an adapter like Telegram's and Discord's: photos and button presses
go to the same `bot.core.Core` and queue, and the core's answers come back through `WebMessenger`.

Each browser gets a session cookie; its chat id and user id are the session id. The page posts a
selfie with a reference photo (or a preset look) to `/api/tryon`, and reads the core's answers from
one Server-Sent Events stream (`/api/events`). Each try-on gets an id that its answers carry, so the
page knows which of its selfies is the "before" of a result. Results stay in memory, a few per
session, served to that session only (`/api/images/NAME`). It binds to loopback by default: there
are no accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web

from bot.core import Button, Core, Origin
from facelab.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "web"
STATIC_DIR = Path(__file__).with_name("web_static")
COOKIE = "facelab_session"
IMAGES_PER_SESSION = 12  # results kept for the page and downloads; older ones are dropped
SESSION_IDLE_S = 3600.0
TRYON_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEEPALIVE_S = 15.0  # comment lines on the event stream so proxies and browsers keep it open


@dataclass
class Session:
    id: str
    last_seen: float
    images: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    listeners: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = field(default_factory=set)
    backlog: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # events nobody saw yet

    def keep_image(self, data: bytes) -> str:
        name = secrets.token_urlsafe(9)
        self.images[name] = data
        while len(self.images) > IMAGES_PER_SESSION:
            self.images.popitem(last=False)
        return name

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        if not self.listeners:
            self.backlog.append((kind, data))
        for listener in self.listeners:
            listener.put_nowait((kind, data))


SESSION = web.RequestKey("session", Session)


class WebMessenger:
    """The core's way to answer in the playground (`bot.core.Messenger`): events on the session's
    stream. `reply_to` is the id of the try-on the answer is about."""

    platform = PLATFORM
    compresses_images = False

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    async def send_text(
        self, chat_id: str, text: str, *, reply_to: str | None = None, buttons: Sequence[Button] = ()
    ) -> None:
        self._session(chat_id).publish(
            "message", {"text": text, "buttons": _buttons(buttons), "tryon": reply_to}
        )

    async def send_image(
        self,
        chat_id: str,
        image: bytes,
        *,
        filename: str,
        caption: str = "",
        reply_to: str | None = None,
        buttons: Sequence[Button] = (),
        as_file: bool = False,
    ) -> None:
        session = self._session(chat_id)
        session.publish(
            "message",
            {
                "text": caption,
                "image": f"api/images/{session.keep_image(image)}",
                "filename": filename,
                "buttons": _buttons(buttons),
                "tryon": reply_to,
            },
        )

    async def send_action(self, chat_id: str) -> None:
        self._session(chat_id).publish("working", {})

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise LookupError(f"web session {session_id[:4]}… is gone")
        return session

    def session_for(self, request: web.Request) -> Session:
        """The request's session, created (and old idle ones dropped) when it has none."""
        now = time.monotonic()
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is None:
            for stale in [s for s, v in self.sessions.items() if now - v.last_seen > SESSION_IDLE_S]:
                del self.sessions[stale]
            session = Session(secrets.token_urlsafe(18), now)
            self.sessions[session.id] = session
        session.last_seen = now
        return session


def _buttons(buttons: Sequence[Button]) -> list[dict[str, str]]:
    return [{"label": b.label, "data": b.data} for b in buttons]


class WebPlayground:
    """`facelab serve`'s handle on the playground (an adapter: `start()` / `stop()`)."""

    def __init__(self, settings: Settings, core: Core) -> None:
        self._settings = settings.web
        self._core = core
        self.messenger = WebMessenger()
        core.add_messenger(self.messenger)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        # Two photos per try-on, each up to the engine's limit, plus the form's overhead.
        self._max_request = 2 * settings.engine.max_bytes + 64 * 1024
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
        app.router.add_get("/api/events", self._events)
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

    async def _events(self, request: web.Request) -> web.StreamResponse:
        session = _session_of(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        inbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        for event in session.backlog:
            inbox.put_nowait(event)
        session.backlog.clear()
        session.listeners.add(inbox)
        closing = asyncio.create_task(self._closing.wait())
        try:
            while not self._closing.is_set():
                getting = asyncio.create_task(inbox.get())
                done, _ = await asyncio.wait(
                    {getting, closing}, timeout=KEEPALIVE_S, return_when="FIRST_COMPLETED"
                )
                if getting not in done:
                    getting.cancel()
                    await response.write(b": keep-alive\n\n")
                    continue
                kind, data = getting.result()
                await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page was closed or reloaded
        finally:
            closing.cancel()
            session.listeners.discard(inbox)
        return response

    async def _tryon(self, request: web.Request) -> web.Response:
        """A selfie with a reference photo or a look, a strength and a look mode: queued, answered on
        the stream."""
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            mb = self._max_request // (2 * 1024 * 1024)
            return web.json_response({"error": f"Photos can be up to {mb} MB each."}, status=413)
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
        origin = self._origin(request, tryon)
        await self._core.on_pair(
            origin, selfie, None if look else reference, look=look, strength=strength, mode=mode
        )
        return web.json_response({"tryon": tryon}, status=202)

    async def _button(self, request: web.Request) -> web.Response:
        body = await _json(request)
        tryon = str(body.get("tryon") or "") or None
        notice = await self._core.on_button(self._origin(request, tryon), str(body.get("data", "")))
        _session_of(request).publish("message", {"text": notice, "buttons": [], "tryon": tryon})
        return web.json_response({}, status=202)

    async def _command(self, request: web.Request) -> web.Response:
        body = await _json(request)
        await self._core.on_command(
            self._origin(request), str(body.get("command", "")), str(body.get("args", ""))
        )
        return web.json_response({}, status=202)

    async def _image(self, request: web.Request) -> web.Response:
        data = _session_of(request).images.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound(text="This image has expired; try again.")
        return web.Response(
            body=data, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )


def _session_of(request: web.Request) -> Session:
    return request[SESSION]


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
