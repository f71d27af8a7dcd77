"""A local fake of the Telegram Bot API, served over real HTTP by aiohttp.

The real python-telegram-bot `Application` talks to it through `base_url` / `base_file_url`
(`fake.base_url`, `fake.base_file_url`), so tests exercise PTB's own request encoding, polling,
file download and rate limiter. Tests play the users: they register files, inject updates (text,
commands, photos, documents, albums, replies, button presses; private chats and groups) and await
the calls the bot makes (`await fake.next_call("sendPhoto", chat_id=...)`).

Wire format, as Telegram does it: requests are form-encoded or multipart, nested values are JSON
strings; replies are {"ok": true, "result": ...}, errors {"ok": false, "error_code", "description",
"parameters"}. In groups the fake applies privacy mode by default: the bot only receives commands,
mentions of its username and replies to its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web
from PIL import Image

TOKEN = "123456789:FAKE-test-token_never-real"
BOT_ID = 123456789
MAX_REQUEST_BYTES = 80 * 1024 * 1024
# The real Bot API refuses getFile for files above this size.
DOWNLOAD_LIMIT_BYTES = 20 * 1024 * 1024

# Form fields that are free text: never JSON-decode them ("42" must stay a string).
_TEXT_FIELDS = frozenset(
    {"text", "caption", "callback_query_id", "file_id", "action", "parse_mode", "photo", "document",
     "url", "inline_message_id", "emoji", "secret_token", "description", "short_description"}
)  # fmt: skip
_COMMAND_OR_MENTION = re.compile(r"(?<![\w/@])(/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?|@[A-Za-z0-9_]+)")
_NON_CHAT_METHODS = frozenset(
    {"getMe", "getUpdates", "setWebhook", "deleteWebhook", "setMyCommands", "getFile"}
)


@dataclass(frozen=True)
class User:
    id: int
    first_name: str
    username: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data


@dataclass(frozen=True)
class Chat:
    id: int
    type: str  # "private", "group" or "supergroup"
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            data["title"] = self.title
        return data


@dataclass
class ApiCall:
    """One request the bot made: decoded parameters, uploaded files' bytes, and what it got back."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    result: Any = None
    rejected_with: int | None = None  # HTTP status when the fake refused it (e.g. 429)

    @property
    def chat_id(self) -> int | str | None:
        return self.params.get("chat_id")

    def upload(self, field_name: str) -> bytes:
        """Bytes uploaded for `field_name`, following attach:// references."""
        value = self.params.get(field_name)
        if isinstance(value, str) and value.startswith("attach://"):
            return self.files[value.removeprefix("attach://")]
        return self.files[field_name]

    def button_data(self) -> list[str]:
        """callback_data of every inline button attached to this call."""
        keyboard = (self.params.get("reply_markup") or {}).get("inline_keyboard", [])
        return [button["callback_data"] for row in keyboard for button in row if "callback_data" in button]


@dataclass
class _StoredFile:
    data: bytes
    size: int
    unique_id: str


@dataclass
class _RateLimitRule:
    remaining: int
    retry_after: int
    methods: frozenset[str] | None


@dataclass
class FakeTelegram:
    """The fake server. Use as `async with FakeTelegram() as fake:`; then build the bot with
    `ApplicationBuilder().token(TOKEN).base_url(fake.base_url).base_file_url(fake.base_file_url)`."""

    bot_username: str = "facelab_test_bot"
    privacy_mode: bool = True
    calls: list[ApiCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._files: dict[str, _StoredFile] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._reached_bot: set[tuple[int, int]] = set()
        self._rate_limits: list[_RateLimitRule] = []
        # Accepted calls no next_call has returned yet, and the next_calls waiting for a match.
        self._unclaimed: list[ApiCall] = []
        self._waiters: list[tuple[Callable[[ApiCall], bool], asyncio.Future[ApiCall]]] = []
        self._updates_arrived = asyncio.Event()
        # Set by setWebhook: updates are then POSTed there, as Telegram does, instead of polled.
        self._webhook: tuple[str, str | None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self.webhook_statuses: list[int] = []
        self.downloads: list[str] = []  # file_ids whose bytes were fetched, in order
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closing = False

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        self._updates_arrived.set()
        for delivery in self._deliveries:
            delivery.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Face Lab", "username": self.bot_username}

    # ----------------------------------------------------------------- what tests do as users

    def add_file(self, data: bytes, size: int | None = None) -> str:
        """Register a downloadable file and return its file_id. `size` lets a test claim a larger
        file_size than the bytes it stores (e.g. a 25 MB file without allocating it)."""
        number = next(self._file_ids)
        file_id = f"file-{number}"
        self._files[file_id] = _StoredFile(data, size if size is not None else len(data), f"u{number}")
        return file_id

    def send_text(
        self, user: User, chat: Chat, text: str, reply_to: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A text message (commands and @mentions get their entities)."""
        message = self._new_message(user, chat, reply_to)
        message["text"] = text
        if entities := _entities(text):
            message["entities"] = entities
        return self._deliver(message)

    def send_photo(
        self,
        user: User,
        chat: Chat,
        data: bytes,
        caption: str | None = None,
        reply_to: dict[str, Any] | None = None,
        media_group_id: str | None = None,
        file_size: int | None = None,
    ) -> dict[str, Any]:
        """A compressed photo, as Telegram sends it: a list of sizes (here a thumbnail and the full one)."""
        file_id = self.add_file(data, file_size)
        width, height = _image_size(data)
        stored = self._files[file_id]
        thumb_id = self.add_file(data)
        message = self._new_message(user, chat, reply_to)
        message["photo"] = [
            {"file_id": thumb_id, "file_unique_id": f"t{thumb_id}", "width": max(1, width // 4),
             "height": max(1, height // 4), "file_size": len(data)},
            {"file_id": file_id, "file_unique_id": stored.unique_id, "width": width, "height": height,
             "file_size": stored.size},
        ]  # fmt: skip
        self._add_caption(message, caption)
        if media_group_id:
            message["media_group_id"] = media_group_id
        return self._deliver(message)

    def send_album(
        self, user: User, chat: Chat, photos: list[bytes], caption: str | None = None
    ) -> list[dict[str, Any]]:
        """Several photos sent at once: one update per photo sharing a media_group_id; Telegram puts
        the album's caption on the first photo."""
        group_id = f"album-{next(self._message_ids)}"
        return [
            self.send_photo(user, chat, data, caption if index == 0 else None, media_group_id=group_id)
            for index, data in enumerate(photos)
        ]

    def send_document(
        self,
        user: User,
        chat: Chat,
        data: bytes,
        file_name: str,
        mime_type: str | None,
        caption: str | None = None,
        file_size: int | None = None,
        announce_size: bool = True,
    ) -> dict[str, Any]:
        """A file. `mime_type` None: sent untyped; `announce_size` False: the message leaves out the
        size (as Telegram may), which only getFile then states."""
        file_id = self.add_file(data, file_size)
        stored = self._files[file_id]
        message = self._new_message(user, chat, None)
        document = {"file_id": file_id, "file_unique_id": stored.unique_id, "file_name": file_name}
        if mime_type is not None:
            document["mime_type"] = mime_type
        if announce_size:
            document["file_size"] = stored.size
        message["document"] = document
        self._add_caption(message, caption)
        return self._deliver(message)

    def send_other(self, user: User, chat: Chat, **content: Any) -> dict[str, Any]:
        """Any other kind of message, its content given as Bot API fields, e.g. location={...}."""
        message = self._new_message(user, chat, None)
        message.update(content)
        return self._deliver(message)

    def press_button(self, user: User, message: dict[str, Any], data: str) -> str:
        """The user taps an inline button of a message the bot sent; returns the callback query id."""
        query_id = f"cb-{next(self._callback_ids)}"
        self._push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user.to_dict(),
                    "chat_instance": f"ci-{message['chat']['id']}",
                    "message": self._messages.get((message["chat"]["id"], message["message_id"]), message),
                    "data": data,
                }
            }
        )
        return query_id

    def fail_next(self, count: int, retry_after: int = 1, methods: set[str] | None = None) -> None:
        """Answer the next `count` matching calls with 429 Too Many Requests and retry_after.
        Without `methods`, every call that targets a chat counts."""
        self._rate_limits.append(_RateLimitRule(count, retry_after, frozenset(methods) if methods else None))

    # ----------------------------------------------------------------- what tests observe

    async def next_call(
        self,
        method: str,
        chat_id: int | None = None,
        where: Callable[[ApiCall], bool] | None = None,
        timeout: float = 30.0,
    ) -> ApiCall:
        """The oldest accepted call to `method` (for `chat_id`, matching `where`) that no earlier
        next_call returned; waits for it up to `timeout` seconds."""

        def matches(call: ApiCall) -> bool:
            return (
                call.method == method
                and (chat_id is None or call.chat_id == chat_id)
                and (where is None or where(call))
            )

        for index, call in enumerate(self._unclaimed):
            if matches(call):
                return self._unclaimed.pop(index)
        waiter = (matches, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter[1], timeout)
        except TimeoutError:
            seen = [(c.method, c.chat_id) for c in self.calls[-15:]]
            raise AssertionError(
                f"no {method} to chat {chat_id} within {timeout}s; last calls: {seen}"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def reached_bot(self, message: dict[str, Any]) -> bool:
        """Whether a message a user sent was delivered to the bot (group privacy mode may hold it back)."""
        return (message["chat"]["id"], message["message_id"]) in self._reached_bot

    def calls_to(self, method: str, chat_id: int | None = None) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (chat_id is None or c.chat_id == chat_id)]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """The current state of a message (after the bot's edits)."""
        return self._messages[(chat_id, message_id)]

    # ----------------------------------------------------------------- building messages

    def _new_message(self, user: User, chat: Chat, reply_to: dict[str, Any] | None) -> dict[str, Any]:
        self._chats[chat.id] = chat.to_dict()
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat.to_dict(),
            "from": user.to_dict(),
        }
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        return message

    def _add_caption(self, message: dict[str, Any], caption: str | None) -> None:
        if caption:
            message["caption"] = caption
            if entities := _entities(caption):
                message["caption_entities"] = entities

    def _deliver(self, message: dict[str, Any]) -> dict[str, Any]:
        key = (message["chat"]["id"], message["message_id"])
        self._messages[key] = message
        if message["chat"]["type"] == "private" or not self.privacy_mode or self._bot_may_see(message):
            self._reached_bot.add(key)
            self._push_update({"message": message})
        return message

    def _bot_may_see(self, message: dict[str, Any]) -> bool:
        """Telegram's group privacy mode: commands, mentions of the bot, replies to the bot."""
        entities = message.get("entities", []) + message.get("caption_entities", [])
        text = message.get("text") or message.get("caption") or ""
        for entity in entities:
            word = _utf16_slice(text, entity["offset"], entity["length"])
            if entity["type"] == "bot_command" and (
                "@" not in word or word.endswith("@" + self.bot_username)
            ):
                return True
            if entity["type"] == "mention" and word == "@" + self.bot_username:
                return True
        replied = message.get("reply_to_message") or {}
        return (replied.get("from") or {}).get("id") == BOT_ID

    def _push_update(self, body: dict[str, Any]) -> None:
        update = {"update_id": next(self._update_ids), **body}
        if self._webhook is None:
            self._updates.append(update)
            self._updates_arrived.set()
            return
        task = asyncio.get_running_loop().create_task(self._post_to_webhook(update, *self._webhook))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _post_to_webhook(self, update: dict[str, Any], url: str, secret: str | None) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        async with ClientSession() as session, session.post(url, json=update, headers=headers) as response:
            self.webhook_statuses.append(response.status)

    def _hand_over(self, call: ApiCall) -> None:
        """Give an accepted call to the oldest next_call waiting for one like it, or keep it."""
        for matches, future in self._waiters:
            if not future.done() and matches(call):
                future.set_result(call)
                return
        self._unclaimed.append(call)

    # ----------------------------------------------------------------- HTTP side

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != TOKEN:
            return web.Response(status=401)
        file_id = request.match_info["path"].removeprefix("files/")
        stored = self._files.get(file_id)
        if stored is None:
            return web.Response(status=404)
        self.downloads.append(file_id)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        try:
            params, files = await _read_request(request)
        except ConnectionResetError:  # the client gave up mid-request (e.g. a poll cut short at shutdown)
            return web.Response(status=499)
        call = ApiCall(method, params, files, time.monotonic())
        if method != "getUpdates":
            self.calls.append(call)
        if (retry_after := self._take_rate_limit(method)) is not None:
            call.rejected_with = 429
            return _error(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            call.rejected_with = 400
            return _error(400, f"Bad Request: method {method} is not served by the fake")
        try:
            call.result = await handler(call)
        except _ApiError as exc:
            call.rejected_with = exc.status
            return _error(exc.status, exc.description)
        if method != "getUpdates":
            self._hand_over(call)
        return web.json_response({"ok": True, "result": call.result})

    def _take_rate_limit(self, method: str) -> int | None:
        targets_chat = method not in _NON_CHAT_METHODS
        for rule in self._rate_limits:
            applies = method in rule.methods if rule.methods is not None else targets_chat
            if applies and rule.remaining > 0:
                rule.remaining -= 1
                return rule.retry_after
        return None

    # ----------------------------------------------------------------- Bot API methods

    async def _api_getMe(self, call: ApiCall) -> dict[str, Any]:
        reads_all = not self.privacy_mode
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": reads_all,
                "supports_inline_queries": False}  # fmt: skip

    async def _api_setWebhook(self, call: ApiCall) -> bool:
        self._webhook = (call.params["url"], call.params.get("secret_token"))
        return True

    async def _api_deleteWebhook(self, call: ApiCall) -> bool:
        self._webhook = None
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _api_setMyCommands(self, call: ApiCall) -> bool:
        return True

    async def _api_sendChatAction(self, call: ApiCall) -> bool:
        return True

    async def _api_answerCallbackQuery(self, call: ApiCall) -> bool:
        return True

    async def _api_getUpdates(self, call: ApiCall) -> list[dict[str, Any]]:
        offset = int(call.params.get("offset") or 0)
        limit = int(call.params.get("limit") or 100)
        wait = float(call.params.get("timeout") or 0)
        # Telegram forgets updates older than the offset the client confirms.
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and wait > 0 and not self._closing:
            self._updates_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updates_arrived.wait(), wait)
        return self._updates[:limit]

    async def _api_getFile(self, call: ApiCall) -> dict[str, Any]:
        file_id = call.params["file_id"]
        stored = self._files.get(file_id)
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if stored.size > DOWNLOAD_LIMIT_BYTES:
            raise _ApiError(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": stored.unique_id, "file_size": stored.size,
                "file_path": f"files/{file_id}"}  # fmt: skip

    async def _api_sendMessage(self, call: ApiCall) -> dict[str, Any]:
        message = self._bot_message(call)
        message["text"] = call.params["text"]
        return message

    async def _api_sendPhoto(self, call: ApiCall) -> dict[str, Any]:
        data = self._sent_media(call, "photo")
        width, height = _image_size(data)
        file_id = self.add_file(data)
        message = self._bot_message(call)
        message["photo"] = [{"file_id": file_id, "file_unique_id": self._files[file_id].unique_id,
                             "width": width, "height": height, "file_size": len(data)}]  # fmt: skip
        return message

    async def _api_sendDocument(self, call: ApiCall) -> dict[str, Any]:
        data = self._sent_media(call, "document")
        file_id = self.add_file(data)
        message = self._bot_message(call)
        message["document"] = {"file_id": file_id, "file_unique_id": self._files[file_id].unique_id,
                               "file_size": len(data)}  # fmt: skip
        return message

    async def _api_editMessageText(self, call: ApiCall) -> dict[str, Any]:
        return self._edit(call, text=call.params["text"])

    async def _api_editMessageCaption(self, call: ApiCall) -> dict[str, Any]:
        return self._edit(call, caption=call.params.get("caption", ""))

    async def _api_editMessageReplyMarkup(self, call: ApiCall) -> dict[str, Any]:
        return self._edit(call)

    async def _api_editMessageMedia(self, call: ApiCall) -> dict[str, Any]:
        media = call.params["media"]
        data = self._resolve_media(call, media["media"])
        file_id = self.add_file(data)
        width, height = _image_size(data)
        changes: dict[str, Any] = {"caption": media.get("caption", "")}
        if media["type"] == "photo":
            changes["photo"] = [{"file_id": file_id, "file_unique_id": self._files[file_id].unique_id,
                                 "width": width, "height": height, "file_size": len(data)}]  # fmt: skip
        else:
            changes["document"] = {"file_id": file_id, "file_unique_id": self._files[file_id].unique_id,
                                   "file_size": len(data)}  # fmt: skip
        return self._edit(call, **changes)

    async def _api_deleteMessage(self, call: ApiCall) -> bool:
        self._messages.pop((call.params["chat_id"], call.params["message_id"]), None)
        return True

    def _bot_message(self, call: ApiCall) -> dict[str, Any]:
        chat_id = call.params["chat_id"]
        chat = self._known_chat(chat_id)
        message: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                                   "chat": chat, "from": self.bot_user}  # fmt: skip
        if caption := call.params.get("caption"):
            message["caption"] = caption
        if markup := call.params.get("reply_markup"):
            message["reply_markup"] = markup
        reply_id = (call.params.get("reply_parameters") or {}).get("message_id") or call.params.get(
            "reply_to_message_id"
        )
        if reply_id is not None:
            replied = self._messages.get((chat_id, reply_id))
            if replied is None:
                raise _ApiError(400, "Bad Request: message to be replied not found")
            message["reply_to_message"] = replied
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _known_chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id not in self._chats:
            raise _ApiError(400, "Bad Request: chat not found")
        return self._chats[chat_id]

    def _edit(self, call: ApiCall, **changes: Any) -> dict[str, Any]:
        key = (call.params.get("chat_id"), call.params.get("message_id"))
        message = self._messages.get(key)  # type: ignore[arg-type]
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        message.update(changes)
        if "reply_markup" in call.params:
            message["reply_markup"] = call.params["reply_markup"]
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = int(time.time())
        return message

    def _sent_media(self, call: ApiCall, field_name: str) -> bytes:
        return self._resolve_media(call, call.params.get(field_name, f"attach://{field_name}"))

    def _resolve_media(self, call: ApiCall, reference: str) -> bytes:
        """Uploaded bytes (multipart part or attach://name) or a file_id the fake already knows."""
        if reference in self._files:
            return self._files[reference].data
        name = reference.removeprefix("attach://")
        if name not in call.files:
            raise _ApiError(400, "Bad Request: there is no media in the request")
        return call.files[name]


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


async def _read_request(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Form fields (JSON-decoding the non-text ones, as Telegram does) and uploaded files."""
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    form = await request.post()
    for name, value in form.items():
        if isinstance(value, web.FileField):
            files[name] = value.file.read()
        elif name in _TEXT_FIELDS:
            params[name] = value
        else:
            try:
                params[name] = json.loads(value)
            except ValueError:
                params[name] = value
    return params, files


def _entities(text: str) -> list[dict[str, Any]]:
    """bot_command and mention entities, offsets in UTF-16 code units like Telegram."""
    entities = []
    for match in _COMMAND_OR_MENTION.finditer(text):
        kind = "bot_command" if match.group().startswith("/") else "mention"
        entities.append(
            {"type": kind, "offset": _utf16_len(text[: match.start()]), "length": _utf16_len(match.group())}
        )
    return entities


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _utf16_slice(text: str, offset: int, length: int) -> str:
    encoded = text.encode("utf-16-le")
    return encoded[offset * 2 : (offset + length) * 2].decode("utf-16-le")


def _image_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return (0, 0)
