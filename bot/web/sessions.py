"""The playground's sessions: one per browser (cookie), each with its conversation (numbered
events, replayed to a reloaded page or after a reconnect's `Last-Event-ID`), its images (previews and
results, a few, in memory) and its open event streams; and `WebMessenger`, the core's way to answer
there, by publishing events to the session."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.ports import Button

PLATFORM = "web"
COOKIE = "facelab_session"
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{24}")  # what `secrets.token_urlsafe(18)` makes
IMAGES_PER_SESSION = 24  # previews and results kept for the page; older ones are dropped
EVENTS_PER_SESSION = 200  # the conversation a reloaded page gets back
SESSION_IDLE_S = 3600.0

Event = tuple[str, dict[str, Any]]  # (kind, data)


@dataclass(eq=False)  # each open stream is its own: hashed by identity
class Stream:
    """One open `/api/events` response: where its events go, and how to tell it has gone."""

    inbox: asyncio.Queue[Event | None]  # None: stop, the connection is closed
    request: web.Request

    @property
    def closed(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()


@dataclass
class Session:
    id: str
    last_seen: float
    images: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    # The conversation so far, numbered: every stream replays what its page has not seen, so an
    # answer published while no live stream listened (or to one closing) still arrives.
    history: list[tuple[int, Event]] = field(default_factory=list)
    last_event_id: int = 0
    # Event ids are "<epoch>-<number>": a page that saw events of an earlier session (before a
    # restart) gets all of this one's, not only those numbered above what it saw.
    epoch: str = field(default_factory=lambda: secrets.token_hex(4))
    streams: set[Stream] = field(default_factory=set)

    def keep_image(self, data: bytes) -> str:
        name = secrets.token_urlsafe(9)
        self.images[name] = data
        while len(self.images) > IMAGES_PER_SESSION:
            self.images.popitem(last=False)
        return name

    def publish(self, kind: str, data: dict[str, Any], *, keep: bool = True) -> None:
        """Send an event to the open streams; `keep` it in the conversation unless it is a passing
        state (work in progress) that a reloaded page must not see again."""
        if keep:
            self.last_event_id += 1
            self.history.append((self.last_event_id, (kind, data)))
            del self.history[:-EVENTS_PER_SESSION]
            data = {**data, "id": f"{self.epoch}-{self.last_event_id}"}
        for stream in list(self.streams):
            if stream.closed:  # its page is gone; the conversation keeps the event for the next one
                self.streams.discard(stream)
                stream.inbox.put_nowait(None)
            else:
                stream.inbox.put_nowait((kind, data))

    def events_after(self, last_event_id: str) -> list[Event]:
        """The kept events a page has not seen, given the id of the last one it saw ("" for none)."""
        epoch, _, number = last_event_id.partition("-")
        seen = int(number) if epoch == self.epoch and number.isdigit() else 0
        return [(kind, {**data, "id": f"{self.epoch}-{n}"}) for n, (kind, data) in self.history if n > seen]

    def forget(self) -> None:
        """Drop the conversation and every image, and tell open pages to clear theirs."""
        self.images.clear()
        self.history.clear()
        self.publish("reset", {}, keep=False)


SESSION = web.RequestKey("session", Session)


class WebMessenger:
    """The core's way to answer in the playground (`bot.ports.Messenger`): events on the session's
    stream. `reply_to` is the id of the try-on the answer is about. After each answer a `state`
    event says whether the session still has try-ons running (`busy`), so the page knows when its
    button may start another."""

    platform = PLATFORM
    compresses_images = False

    def __init__(self, busy: Callable[[str], bool]) -> None:
        self.sessions: dict[str, Session] = {}
        self._busy = busy

    async def send_text(
        self, chat_id: str, text: str, *, reply_to: str | None = None, buttons: Sequence[Button] = ()
    ) -> None:
        session = self._session(chat_id)
        session.publish("message", {"text": text, "buttons": _buttons(buttons), "tryon": reply_to})
        self.publish_state(session)

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
        self.publish_state(session)

    async def send_action(self, chat_id: str) -> None:
        self._session(chat_id).publish("working", {}, keep=False)

    def publish_state(self, session: Session) -> None:
        session.publish("state", self.state(session), keep=False)

    def state(self, session: Session) -> dict[str, Any]:
        return {"busy": self._busy(session.id)}

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise LookupError(f"web session {session_id[:4]}… is gone")
        return session

    def session_for(self, request: web.Request) -> Session:
        """The request's session, created (and old idle ones dropped) when it has none. A cookie
        from before a restart keeps its id, so the person's stored strength stays theirs."""
        now = time.monotonic()
        cookie = request.cookies.get(COOKIE, "")
        session = self.sessions.get(cookie)
        if session is None:
            for stale in [s for s, v in self.sessions.items() if now - v.last_seen > SESSION_IDLE_S]:
                del self.sessions[stale]
            session_id = cookie if SESSION_ID.fullmatch(cookie) else secrets.token_urlsafe(18)
            session = self.sessions[session_id] = Session(session_id, now)
        session.last_seen = now
        return session


def _buttons(buttons: Sequence[Button]) -> list[dict[str, str]]:
    return [{"label": b.label, "data": b.data} for b in buttons]


def sse(kind: str, data: dict[str, Any]) -> bytes:
    """One event in the Server-Sent Events format."""
    event_id = f"id: {data['id']}\n" if "id" in data else ""
    return f"{event_id}event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
