"""A local fake of Discord (gateway WebSocket, REST API and CDN on one aiohttp server) that the real
discord.py 2.x client talks to, so end-to-end tests exercise the library itself over loopback.

`FakeDiscord.patched()` points discord.py at it (`Route.BASE`, `DiscordWebSocket.DEFAULT_GATEWAY`).
Tests then play the users: `send_message`, `invoke_command`, `press_button` dispatch gateway events,
and every REST call the bot makes is recorded as a `Call` that tests can await with `wait_for`.

It enforces the two interaction deadlines Discord enforces, so a slow bot fails like it would in
production: the initial callback must arrive within 3 s (else 404 "Unknown interaction"), and the
interaction token (follow-ups, editing the original response) lives 15 minutes (else 401).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1_420_070_400_000
CALLBACK_WINDOW_S = 3.0
TOKEN_LIFE_S = 15 * 60.0
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
ALL_PERMISSIONS = str((1 << 50) - 1)

# Gateway opcodes and the subset of payload types this fake speaks.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_HELLO, OP_HEARTBEAT_ACK = 0, 1, 2, 6, 10, 11
CHANNEL_TEXT, CHANNEL_DM = 0, 1
INTERACTION_COMMAND, INTERACTION_COMPONENT = 2, 3
OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10}
OPTION_ATTACHMENT = 11


@dataclass
class Call:
    """One REST request the bot made, as the fake understood it."""

    method: str
    path: str  # without the /api/v10 prefix, e.g. "/channels/1/messages"; CDN downloads: "/cdn/..."
    query: dict[str, str]
    json: Any  # the JSON body, or multipart's payload_json
    files: list[tuple[str, bytes]]  # (filename, bytes) of multipart uploads
    at: float  # time.monotonic() when it arrived
    status: int = 200
    reply: Any = None


@dataclass
class FakeInteraction:
    id: int
    token: str
    payload: dict[str, Any]
    created: float  # time.monotonic() when dispatched
    callback: Call | None = None
    response_message_id: int | None = None  # the "original response" the callback created
    token_expired: bool = False


@dataclass
class FakeUser:
    id: int
    username: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.username.title(),
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
        }


@dataclass
class FakeChannel:
    id: int
    type: int
    guild_id: int | None = None
    recipient: FakeUser | None = None
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": str(self.id), "type": self.type}
        if self.guild_id is not None:
            data |= {
                "guild_id": str(self.guild_id),
                "name": f"channel-{self.id}",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
            }
        if self.recipient is not None:
            data["recipients"] = [self.recipient.payload()]
        return data


class FakeDiscord:
    """One loopback server playing Discord. Use as `async with FakeDiscord() as fake:`."""

    def __init__(
        self,
        *,
        attachment_size_limit: int = ATTACHMENT_SIZE_LIMIT,
        callback_window_s: float = CALLBACK_WINDOW_S,
    ) -> None:
        self._ids = itertools.count(1)
        self.attachment_size_limit = attachment_size_limit
        self.callback_window_s = callback_window_s
        self.bot = FakeUser(self.snowflake(), "facelab", bot=True)
        self.application_id = self.snowflake()
        self.guild_id = self.snowflake()
        self.guild_channel = FakeChannel(self.snowflake(), CHANNEL_TEXT, guild_id=self.guild_id)
        self.channels: dict[int, FakeChannel] = {self.guild_channel.id: self.guild_channel}
        self.files: dict[str, bytes] = {}  # CDN path -> bytes
        self.calls: list[Call] = []
        self.interactions: dict[int, FakeInteraction] = {}
        self.commands: list[dict[str, Any]] = []  # the last bulk-overwritten global command set
        self.identify: dict[str, Any] | None = None
        self.ready = asyncio.Event()
        self._sockets: set[web.WebSocketResponse] = set()
        self._sequence = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{path:.+}", self._cdn)
        app.router.add_route("*", "/api/v10/{path:.+}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this fake for the duration."""
        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = f"{self.url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # -- the world: users, channels, files -----------------------------------------------------

    def snowflake(self) -> int:
        """A real-looking snowflake (timestamp in the high bits) so discord.py's created_at is sane."""
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._ids) & 0xFFF)

    def user(self, username: str) -> FakeUser:
        return FakeUser(self.snowflake(), username)

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        for channel in self.channels.values():
            if channel.recipient is not None and channel.recipient.id == user.id:
                return channel
        channel = FakeChannel(self.snowflake(), CHANNEL_DM, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def upload(
        self, filename: str, data: bytes, content_type: str = "image/jpeg", folder: str = "attachments"
    ) -> dict[str, Any]:
        """Store bytes on the fake CDN and return the attachment object Discord would send."""
        attachment_id = self.snowflake()
        path = f"{folder}/{attachment_id}/{filename}"
        self.files[path] = data
        url = f"{self.url}/cdn/{path}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    def expire_cdn_links(self) -> None:
        """Discord's attachment URLs expire; a bot that kept only URLs loses the users' images."""
        for path in [p for p in self.files if p.startswith("attachments/")]:
            del self.files[path]

    async def fetch(self, url: str) -> bytes:
        """Bytes of a file the bot uploaded (its attachment URL points at this fake)."""
        return self.files[url.removeprefix(f"{self.url}/cdn/")]

    # -- gateway events played by tests -------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        await self.ready.wait()
        for ws in list(self._sockets):
            self._sequence += 1
            await ws.send_json({"op": OP_DISPATCH, "t": event, "s": self._sequence, "d": data})

    async def send_message(
        self,
        author: FakeUser,
        channel: FakeChannel,
        content: str = "",
        attachments: list[dict[str, Any]] | None = None,
        reply_to: dict[str, Any] | None = None,
        mentions_bot: bool = False,
    ) -> dict[str, Any]:
        """A user posts a message; the bot receives MESSAGE_CREATE."""
        message = self._message(channel, author, content, attachments or [])
        if mentions_bot:
            message["mentions"] = [self.bot.payload()]
        if reply_to is not None:
            message["type"] = 19  # reply
            message["message_reference"] = {
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                **({"guild_id": str(channel.guild_id)} if channel.guild_id else {}),
            }
            message["referenced_message"] = reply_to
        if channel.guild_id is not None:
            message["member"] = self._member(author)
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def invoke_command(
        self,
        user: FakeUser,
        channel: FakeChannel,
        name: str,
        **options: Any,
    ) -> FakeInteraction:
        """A user runs `/name option:value ...`; attachment options are dicts from `upload`."""
        command = next((c for c in self.commands if c["name"] == name), None)
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self.snowflake()),
            "name": name,
            "type": 1,
            "options": [],
            "resolved": {"attachments": {}},
        }
        for option, value in options.items():
            if isinstance(value, dict):  # an uploaded attachment
                data["resolved"]["attachments"][value["id"]] = value
                data["options"].append({"name": option, "type": OPTION_ATTACHMENT, "value": value["id"]})
            else:
                data["options"].append({"name": option, "type": OPTION_TYPES[type(value)], "value": value})
        return await self._interact(INTERACTION_COMMAND, user, channel, data)

    async def press_button(self, user: FakeUser, message: dict[str, Any], custom_id: str) -> FakeInteraction:
        """A user presses a button on `message` (one the bot sent)."""
        channel = self.channels[int(message["channel_id"])]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(INTERACTION_COMPONENT, user, channel, data, message=message)

    def expire_token(self, interaction: FakeInteraction) -> None:
        """Make the interaction's 15-minute token lapse now (follow-ups then fail with 401)."""
        interaction.token_expired = True

    # -- waiting on what the bot did -----------------------------------------------------------

    async def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 60.0) -> Call:
        """The first recorded call matching `predicate`, waiting for it if needed."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    for call in self.calls:
                        if predicate(call):
                            return call
                    await self._changed.wait()

    async def wait_for_reply(self, interaction: FakeInteraction, timeout: float = 60.0) -> Call:
        """The first message the bot sent about `interaction`: a follow-up, or a channel message
        (the fallback for expired tokens) that replies to nothing in particular."""
        return await self.wait_for(lambda c: self.concerns(c, interaction) and c.files != [], timeout)

    def concerns(self, call: Call, interaction: FakeInteraction) -> bool:
        """Whether `call` is a message sent in answer to `interaction`."""
        if call.method != "POST" or call.status >= 300:
            return False
        if call.path == f"/webhooks/{self.application_id}/{interaction.token}":
            return True
        channel_id = interaction.payload["channel"]["id"]
        return call.path == f"/channels/{channel_id}/messages"

    def sent_messages(self, channel: FakeChannel) -> list[dict[str, Any]]:
        return [m for m in channel.messages.values() if m["author"]["id"] == str(self.bot.id)]

    # -- payload builders ----------------------------------------------------------------------

    def _message(
        self, channel: FakeChannel, author: FakeUser, content: str, attachments: list[dict[str, Any]]
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
        }
        if channel.guild_id is not None:
            message["guild_id"] = str(channel.guild_id)
        channel.messages[int(message["id"])] = message
        return message

    def _member(self, user: FakeUser) -> dict[str, Any]:
        return {
            "user": user.payload(),
            "roles": [],
            "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": ALL_PERMISSIONS,
        }

    def _guild(self) -> dict[str, Any]:
        everyone = {
            "id": str(self.guild_id),
            "name": "@everyone",
            "permissions": ALL_PERMISSIONS,
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
        }
        return {
            "id": str(self.guild_id),
            "name": "Face Lab test server",
            "owner_id": str(self.bot.id),
            "unavailable": False,
            "member_count": 2,
            "roles": [everyone],
            "channels": [self.guild_channel.payload()],
            "members": [self._member(self.bot)],
            "emojis": [],
            "stickers": [],
            "features": [],
            "threads": [],
            "voice_states": [],
            "presences": [],
        }

    async def _interact(
        self,
        kind: int,
        user: FakeUser,
        channel: FakeChannel,
        data: dict[str, Any],
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        interaction_id = self.snowflake()
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": f"token-{interaction_id}",
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "app_permissions": ALL_PERMISSIONS,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.attachment_size_limit,
            "authorizing_integration_owners": {"0": str(self.guild_id)} if channel.guild_id else {},
            "context": 0 if channel.guild_id else 1,
        }
        if channel.guild_id is not None:
            payload |= {"guild_id": str(channel.guild_id), "member": self._member(user)}
            payload["guild_locale"] = "en-US"
        else:
            payload["user"] = user.payload()
        if message is not None:
            payload["message"] = message
        interaction = FakeInteraction(interaction_id, payload["token"], payload, time.monotonic())
        self.interactions[interaction_id] = interaction
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    # -- gateway --------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": OP_HELLO, "d": {"heartbeat_interval": 41_250}})
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if message["op"] == OP_HEARTBEAT:
                await ws.send_json({"op": OP_HEARTBEAT_ACK})
            elif message["op"] == OP_IDENTIFY:
                await self._identified(ws, message["d"])
            elif message["op"] == OP_RESUME:
                self._sockets.add(ws)
                self._sequence += 1
                await ws.send_json({"op": OP_DISPATCH, "t": "RESUMED", "s": self._sequence, "d": {}})
        self._sockets.discard(ws)
        return ws

    async def _identified(self, ws: web.WebSocketResponse, identify: dict[str, Any]) -> None:
        self.identify = identify
        self._sockets.add(ws)
        ready = {
            "v": 10,
            "user": self.bot.payload(),
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": "fake-session",
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
            "application": {"id": str(self.application_id), "flags": 0},
        }
        for event, data in (("READY", ready), ("GUILD_CREATE", self._guild())):
            self._sequence += 1
            await ws.send_json({"op": OP_DISPATCH, "t": event, "s": self._sequence, "d": data})
        self.ready.set()

    # -- CDN ------------------------------------------------------------------------------------

    async def _cdn(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["path"])
        await self._record(Call("GET", request.path, {}, None, [], time.monotonic(), 200 if data else 404))
        if data is None:
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    # -- REST -----------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        body, files = await self._read_body(request)
        path = "/" + request.match_info["path"]
        call = Call(request.method, path, dict(request.query), body, files, time.monotonic())
        status, reply = self._route(call)
        call.status, call.reply = status, reply
        await self._record(call)
        if status == 204:
            return web.Response(status=204)
        # discord.py parses JSON only when Content-Type is exactly "application/json" (no charset).
        body = json.dumps(reply).encode()
        return web.Response(status=status, body=body, headers={"Content-Type": "application/json"})

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                else:
                    files.append((part.filename or "", await part.read()))  # type: ignore[union-attr]
            return payload, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    def _route(self, call: Call) -> tuple[int, Any]:
        parts = call.path.strip("/").split("/")
        match call.method, parts:
            case "GET", ["users", "@me"]:
                return 200, self.bot.payload()
            case "GET", ["oauth2", "applications", "@me"]:
                return 200, self._application()
            case "GET", ["gateway", "bot"]:
                gateway = f"ws://127.0.0.1:{self.port}/gateway"
                limits = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
                return 200, {"url": gateway, "shards": 1, "session_start_limit": limits}
            case "PUT", ["applications", _, "commands"]:
                self.commands = [{**c, "id": str(self.snowflake()), "version": "1"} for c in call.json]
                return 200, [{**c, "application_id": str(self.application_id)} for c in self.commands]
            case "GET", ["applications", _, "commands"]:
                return 200, self.commands
            case "POST", ["interactions", interaction_id, token, "callback"]:
                return self._interaction_callback(call, int(interaction_id), token)
            case "POST", ["webhooks", _, token]:
                return self._followup(call, token)
            case (("PATCH" | "GET"), ["webhooks", _, token, "messages", "@original"]):
                return self._original_response(call, token)
            case "POST", ["channels", channel_id, "messages"]:
                return self._post_message(call, int(channel_id))
            case "GET", ["channels", channel_id, "messages", message_id]:
                return self._get_message(int(channel_id), int(message_id))
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                return self._edit_message(call, int(channel_id), int(message_id))
            case "POST", ["channels", _, "typing"]:
                return 204, None
            case "POST", ["users", "@me", "channels"]:
                user = FakeUser(int(call.json["recipient_id"]), "someone")
                return 200, self.dm_channel(user).payload()
        return 404, {"message": "404: Not Found", "code": 0}

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "Face Lab",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": FakeUser(1, "owner").payload(),
            "verify_key": "0" * 64,
            "flags": 0,
        }

    def _live_interaction(self, token: str) -> FakeInteraction | None:
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if interaction is None or interaction.token_expired:
            return None
        if time.monotonic() - interaction.created > TOKEN_LIFE_S:
            return None
        return interaction

    def _interaction_callback(self, call: Call, interaction_id: int, token: str) -> tuple[int, Any]:
        interaction = self.interactions.get(interaction_id)
        unknown = {"message": "Unknown interaction", "code": 10062}
        if interaction is None or interaction.token != token:
            return 404, unknown
        if interaction.callback is not None:
            return 400, {"message": "Interaction has already been acknowledged.", "code": 40060}
        if call.at - interaction.created > self.callback_window_s:
            return 404, unknown
        interaction.callback = call
        callback_type = call.json["type"]
        summary: dict[str, Any] = {
            "id": str(interaction_id),
            "type": interaction.payload["type"],
            "response_message_loading": callback_type == 5,
            "response_message_ephemeral": bool((call.json.get("data") or {}).get("flags", 0) & 64),
        }
        reply: dict[str, Any] = {"interaction": summary}
        channel = self.channels[int(interaction.payload["channel"]["id"])]
        if callback_type in (4, 5):  # a message, or "thinking…" until the original response is edited
            message = self._bot_message(channel, call)
            interaction.response_message_id = int(message["id"])
            summary["response_message_id"] = message["id"]
            reply["resource"] = {"type": callback_type, "message": message}
        elif callback_type == 7:  # a component's message is updated in place
            message_id = int(interaction.payload["message"]["id"])
            reply["resource"] = {"type": 7, "message": self._bot_message(channel, call, message_id)}
        return 200, reply

    def _followup(self, call: Call, token: str) -> tuple[int, Any]:
        interaction = self._live_interaction(token)
        if interaction is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        if interaction.callback is None:  # nothing to follow up on before the initial response
            return 404, {"message": "Unknown Webhook", "code": 10015}
        channel = self.channels[int(interaction.payload["channel"]["id"])]
        message = self._bot_message(channel, call)
        message["webhook_id"] = str(self.application_id)
        return 200, message

    def _original_response(self, call: Call, token: str) -> tuple[int, Any]:
        interaction = self._live_interaction(token)
        if interaction is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        if interaction.response_message_id is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        channel = self.channels[int(interaction.payload["channel"]["id"])]
        if call.method == "GET":
            return 200, channel.messages[interaction.response_message_id]
        return 200, self._bot_message(channel, call, message_id=interaction.response_message_id)

    def _post_message(self, call: Call, channel_id: int) -> tuple[int, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            return 404, {"message": "Unknown Channel", "code": 10003}
        return 200, self._bot_message(channel, call)

    def _get_message(self, channel_id: int, message_id: int) -> tuple[int, Any]:
        message = self.channels[channel_id].messages.get(message_id) if channel_id in self.channels else None
        if message is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return 200, message

    def _edit_message(self, call: Call, channel_id: int, message_id: int) -> tuple[int, Any]:
        status, message = self._get_message(channel_id, message_id)
        if status != 200:
            return status, message
        return 200, self._bot_message(self.channels[channel_id], call, message_id=message_id)

    def _bot_message(self, channel: FakeChannel, call: Call, message_id: int | None = None) -> dict[str, Any]:
        """Store a message the bot sent (or edited, when `message_id` is given), serving its uploaded
        files from the fake CDN."""
        body = call.json or {}
        data = body.get("data", body) or {}  # interaction callbacks wrap the message in "data"
        uploads = [self.upload(name, content, folder="bot-files") for name, content in call.files]
        if message_id is None:
            message = self._message(channel, self.bot, data.get("content") or "", uploads)
        else:
            message = channel.messages[message_id]
            kept = {str(a["id"]) for a in data.get("attachments", message["attachments"])}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept] + uploads
            message["content"] = data.get("content", message["content"]) or ""
            message["edited_timestamp"] = datetime.now(UTC).isoformat()
        for key in ("components", "embeds", "message_reference", "flags"):
            if key in data:
                message[key] = data[key]
        return message


@contextlib.asynccontextmanager
async def running_client(fake: FakeDiscord, client: discord.Client) -> AsyncIterator[discord.Client]:
    """Run `client` against `fake` until the block ends; the gateway handshake is done on entry."""
    with fake.patched():
        task = asyncio.create_task(client.start("fake-token"))
        try:
            waiter = asyncio.create_task(fake.ready.wait())
            done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()  # the client died during start-up: surface its exception
            if waiter not in done:
                raise TimeoutError("the client did not identify with the fake gateway")
            yield client
        finally:
            await client.close()
            with contextlib.suppress(asyncio.CancelledError):
                await task
