"""The conversation core: the chat rules of Face Lab, shared by every platform.

Adapters (Telegram, Discord, the web playground) translate their platform's updates into calls on
`Core` with plain data (`Origin`, bytes, text) and implement `Messenger` so the core can answer.
The core never sees a platform object, and it keeps photos in memory only.

Rules a user can guess, per (platform, chat, user), so people in one group never mix:
- the first photo is the selfie, the second the reference (a face wearing the makeup wanted);
- a caption "ref"/"reference" or "me"/"selfie" says which one a photo is;
- an album of two photos is both at once (selfie first);
- a photo sent as a reply to a photo uses the replied photo as the reference;
- `/look NAME` replaces the reference with a preset look; `/reset` starts over;
- `/mode natural|full` picks how much of the reference travels (remembered, like `/strength`);
- a lone photo is forgotten after `bot.pending_ttl_s` seconds.
A result's buttons re-run it from inputs kept for `bot.result_cache_s`; only its requester may use them.

Adapter sketch (any platform):

    core = Core(settings, queue, storage)
    core.add_messenger(MyMessenger())                 # implements Messenger, platform="web"
    origin = Origin("web", chat_id="s1", user_id="u1", message_id="m7")
    await core.on_photo(origin, selfie_bytes)         # "Got your selfie. Now send the reference..."
    await core.on_photo(origin, reference_bytes)      # queued; the result arrives via send_image
    await core.on_command(origin, "strength", "40")
    notice = await core.on_button(origin, button.data)  # show `notice` to the presser only
    await core.close()                                # after queue.close(): waits for deliveries
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from bot.admin import AdminCommands
from bot.limits import Gatekeeper, Requester
from bot.metrics import Metrics
from bot.queue import Job, JobQueue, QueueError, Ticket
from bot.results import Inputs, MemoryResults, ResultStore, StoredResult
from engine.api import MODES, Inspection, MakeupResult, PhotoInspector
from engine.compare import before_after
from engine.embedded import EmbeddedEngine
from engine.errors import EngineError
from engine.looks import load_looks
from facelab.settings import Settings
from storage import Storage, StorageUnavailable, UsageRecord, UsageStatus

log = logging.getLogger(__name__)

# Commands every adapter registers (Telegram setMyCommands, Discord app commands), with their help.
COMMANDS: dict[str, str] = {
    "start": "what Face Lab does and how to use it",
    "help": "how to use Face Lab",
    "strength": "how strong the makeup is, 0-100 (remembered)",
    "mode": "natural makeup, or the full look of the reference incl. face paint (remembered)",
    "look": "use a preset look instead of a reference photo",
    "reset": "forget the photos you sent and start over",
    "stats": "your own usage",
    "forget": "delete everything stored about you",
    "privacy": "what is stored and for how long",
}
# Handled like the commands above but not advertised to users.
OPERATOR_COMMANDS: dict[str, str] = {"admin": "operator commands: stats, ban, unban (admins only)"}

STRENGTH_CHOICES = (20, 40, 60, 80, 100)
STRENGTH_STEP = 20  # the "stronger" / "softer" buttons
ACTION_EVERY_S = 4.0  # chat actions ("sending a photo...") fade after about 5 s on Telegram
# A job that ends this soon after it starts needs no chat action: its result is the feedback. Skipping
# it matters because Telegram caps a bot's messages at about 30 a second, chat actions included.
FIRST_ACTION_AFTER_S = 1.0
# Expired photos leave memory on timers set this much later than their deadline, so that the clock
# which decides expiry always agrees the deadline has passed when the timer fires.
EXPIRY_MARGIN_S = 1.0
# Two uncaptioned photos are put in the other order when the first looks made up by this much more
# than the second (engine.makeup_score: about 1 per clearly made-up feature); closer, order decides.
ORDER_BY_MAKEUP_MARGIN = 1.5

# How users read each look mode (engine.api.MODES; capitalised on buttons), and /mode's explanations.
MODE_NAMES = {"natural": "natural look", "full": "full look"}
MODE_HELP = {
    "natural": "makeup on your own skin; face paint on the reference is left out.",
    "full": "the whole look of the reference face, face paint and patterns too.",
}
MODE_USAGE = "The look mode is natural or full, e.g. /mode full."

Role = Literal["selfie", "reference"]
ROLE_WORDS: dict[str, Role] = {
    "me": "selfie",
    "selfie": "selfie",
    "ref": "reference",
    "reference": "reference",
}


@dataclass(frozen=True)
class Origin:
    """Where a message came from, and where the answer goes.

    Ids are the platform's, as text; the core never interprets them and only hands `chat_id` and
    `message_id` back to the `Messenger` of `platform` (so an adapter may put anything there that
    lets it reply, e.g. an interaction token). `message_id` is the message answers reply to.
    """

    platform: str
    chat_id: str
    user_id: str
    message_id: str | None = None
    chat_type: Literal["private", "group"] = "private"

    @property
    def person(self) -> tuple[str, str]:
        return (self.platform, self.user_id)

    @property
    def conversation(self) -> tuple[str, str, str]:
        return (self.platform, self.chat_id, self.user_id)


@dataclass(frozen=True)
class Button:
    """An inline button under a message. `data` (at most 64 ASCII bytes, Telegram's limit) goes back
    to `Core.on_button` unchanged when someone presses it."""

    label: str
    data: str


class Messenger(Protocol):
    """What an adapter implements so the core can answer on its platform.

    Methods raise whatever their platform raises on failure; the core logs it and carries on.
    Buttons are laid out by the adapter (e.g. two or three per row). Texts are plain text.
    """

    platform: str  # matches Origin.platform, e.g. "telegram"
    # True when send_image may shrink the image (Telegram photos): results then get a
    # "Full resolution" button, answered with send_image(..., as_file=True).
    compresses_images: bool

    async def send_text(
        self, chat_id: str, text: str, *, reply_to: str | None = None, buttons: Sequence[Button] = ()
    ) -> None: ...

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
    ) -> None: ...

    async def send_action(self, chat_id: str) -> None:
        """Show that the bot is working on something for this chat (Telegram's chat action,
        Discord's typing indicator); called every few seconds while a job runs."""
        ...


@dataclass
class _Pending:
    """One person's photos in one chat, waiting for their partner."""

    touched: float
    selfie: bytes | None = None
    reference: bytes | None = None
    look: str | None = None
    selfie_guessed: bool = False  # the selfie came without a caption saying so
    selfie_makeup: float = 0.0  # how made up the selfie looks (engine.makeup_score)


@dataclass
class _Album:
    origin: Origin
    last_added: float
    photos: list[tuple[bytes, str]] = field(default_factory=list)  # (image, caption)


@dataclass(frozen=True)
class _Caption:
    role: Role | None = None
    look: str | None = None
    strength: str | None = None  # the raw argument of a "/strength N" caption


class Core:
    """The conversation core. Create one per process, register every adapter's `Messenger`, then
    call the `on_*` entry points from the adapters' handlers. Entry points only enqueue work and
    answer; they never wait for a job to run, so they return within a database round trip.

    `clock` (monotonic seconds) times photo expiry and the result cache; `album_settle_s` is how
    long an album waits for more photos after its latest one. `gatekeeper` admits or refuses each
    try-on (by default the configured limits); `metrics` counts jobs (`facelab serve` shares its own
    with the /metrics endpoint). `inspector` checks each photo as it arrives (by default the
    embedded engine, on a thread of its own: the bot process then holds a face detector too, about
    100 MB, so that a bad photo is answered at once rather than after its partner arrives).
    """

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.monotonic,
        album_settle_s: float = 1.0,
        gatekeeper: Gatekeeper | None = None,
        metrics: Metrics | None = None,
        inspector: PhotoInspector | None = None,
        results: ResultStore | None = None,
    ) -> None:
        self._settings = settings.bot
        self._retention_days = settings.database.retention_days
        self._gatekeeper = gatekeeper or Gatekeeper.from_settings(settings, storage)
        self._admin = AdminCommands(settings.access, storage)
        self._metrics = metrics or Metrics()
        self._engine_settings = settings.engine
        self._inspector = inspector or EmbeddedEngine(settings.engine)
        # One thread: the face detector's graph must not run twice at once.
        self._inspecting = ThreadPoolExecutor(1, thread_name_prefix="inspect")
        self._queue = queue
        self._storage = storage
        self._clock = clock
        self._album_settle_s = album_settle_s
        self._messengers: dict[str, Messenger] = {}
        self._pending: dict[tuple[str, str, str], _Pending] = {}
        self._albums: dict[tuple[str, str, str, str], _Album] = {}
        self._results = results or MemoryResults(settings.bot.result_cache_s, clock, EXPIRY_MARGIN_S)
        # Part of every result id: a button whose result id names another run was made before a
        # restart, which a memory store does not survive.
        self._run = secrets.token_hex(3)
        self._tasks: set[asyncio.Task[None]] = set()
        # Jobs queued or running, by person; those whose person sent /forget meanwhile are not recorded.
        self._in_flight: dict[str, tuple[str, str]] = {}
        self._forgotten_jobs: set[str] = set()

    def add_messenger(self, messenger: Messenger) -> None:
        """Let the core answer on `messenger.platform`; one messenger per platform."""
        self._messengers[messenger.platform] = messenger

    @property
    def held_images(self) -> int:
        """Images held in memory now: photos waiting for their partner, and the inputs and output
        of results whose buttons still work. Each is dropped when it expires (or on /forget)."""
        waiting = sum((p.selfie is not None) + (p.reference is not None) for p in self._pending.values())
        return waiting + self._results.held_images

    # -- entry points -------------------------------------------------------------------------------

    async def on_photo(
        self,
        origin: Origin,
        image: bytes,
        *,
        caption: str = "",
        album_id: str | None = None,
        replied_photo: bytes | None = None,
    ) -> None:
        """A photo (or image file) from a user.

        `caption`: its caption, if any (role words and "/look NAME" or "/strength N" are honoured).
        `album_id`: set when the photo is one of an album sent as separate updates (Telegram's
        media_group_id); the album's photos are taken together once no more arrive.
        `replied_photo`: the photo of the message this one replies to, if any; it becomes the
        reference and this photo the selfie, and the job starts at once.
        """
        if album_id is not None:
            self._add_to_album(origin, album_id, image, caption)
            return
        wanted = _read_caption(caption)
        if wanted.strength is not None:
            await self._reply(origin, await self._set_strength(origin, wanted.strength))
        if replied_photo is not None:
            await self._run_reply_pair(origin, image, replied_photo, wanted.role)
            return
        await self._collect(origin, image, wanted)

    async def on_photos(self, origin: Origin, images: Sequence[bytes], *, caption: str = "") -> None:
        """Several photos in one message (e.g. Discord attachments): two are the selfie and the
        reference, in that order unless a caption role says otherwise; one is like `on_photo`."""
        await self._take_album(origin, [(image, caption) for image in images])

    async def on_pair(
        self,
        origin: Origin,
        selfie: bytes,
        reference: bytes | None = None,
        *,
        look: str | None = None,
        strength: int | None = None,
        mode: str | None = None,
    ) -> None:
        """An explicit try-on (a slash command's attachments, the web form): `selfie` with either a
        `reference` photo or a preset `look`. `strength` (0-100) and `mode` (one of
        `engine.api.MODES`) override the user's for this job only. Leaves the user's pending photos
        alone."""
        if (reference is None) == (look is None):
            await self._reply(origin, "Send a selfie together with either a reference photo or a look.")
            return
        if strength is not None and not 0 <= strength <= 100:
            await self._reply(origin, "Strength is a number from 0 to 100.")
            return
        if mode is not None and mode not in MODES:
            await self._reply(origin, MODE_USAGE)
            return
        await self._submit(origin, selfie, reference=reference, look=look, strength=strength, mode=mode)

    async def on_command(self, origin: Origin, command: str, args: str = "") -> None:
        """A command without its slash (and without any "@botname"), e.g. ("strength", "40")."""
        name = command.lstrip("/").split("@")[0].lower()
        handler = {
            "start": self._cmd_help,
            "help": self._cmd_help,
            "strength": self._cmd_strength,
            "mode": self._cmd_mode,
            "look": self._cmd_look,
            "reset": self._cmd_reset,
            "stats": self._cmd_stats,
            "forget": self._cmd_forget,
            "privacy": self._cmd_privacy,
            "admin": self._cmd_admin,
        }.get(name)
        if handler is None:
            await self._reply(origin, f"I don't know /{name}. Send /help to see what I can do.")
            return
        await handler(origin, args.strip())

    async def on_unusable(self, origin: Origin) -> None:
        """A message with nothing to work with (a sticker, voice, a location, small talk): a hint."""
        await self._reply(origin, UNUSABLE_HINT)

    async def on_button(self, origin: Origin, data: str) -> str:
        """Someone pressed a `Button`; `origin` is the presser and the message the button is on.
        Returns a short notice for the presser only (Telegram's callback answer, Discord's
        ephemeral reply); anything for the chat is sent through the messenger."""
        action, _, argument = data.partition(":")
        if action == "strength":
            return await self._set_strength(origin, argument)
        if action == "mode":
            return await self._set_mode(origin, argument)
        result = await self._results.get(argument)
        if result is None:
            if not self._results.survives_restart and not argument.startswith(f"{self._run}."):
                return RESTARTED_NOTICE
            kept = _minutes(self._settings.result_cache_s)
            return f"This result has expired (I keep photos for {kept} only). Send them again."
        if result.person != origin.person:
            return "Only the person who asked for this result can use its buttons."
        return await self._result_action(origin, action, result)

    def jobs_in_flight(self, person: tuple[str, str]) -> int:
        """The person's try-ons queued or running now (their answers not sent yet)."""
        return sum(1 for owner in self._in_flight.values() if owner == person)

    async def preferred_strength(self, origin: Origin) -> int:
        """The strength the person's next try-on gets: theirs, or the configured default."""
        return await self._strength_of(origin)

    async def set_strength(self, origin: Origin, value: int) -> bool:
        """Remember the person's strength (0-100) without a chat message; False when the database
        cannot take it."""
        try:
            await self._storage.set_strength(origin.platform, origin.user_id, value)
        except StorageUnavailable:
            return False
        return True

    async def close(self, timeout_s: float = 30.0) -> None:
        """Wait (up to `timeout_s`) until every result or failure notice has been sent. Call it
        after `queue.close()`, which settles every job, and before stopping the adapters."""
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("gave up delivering %d answer(s) at shutdown", len(late))

    # -- collecting photos ----------------------------------------------------------------------------

    async def _collect(
        self, origin: Origin, image: bytes, wanted: _Caption, inspection: Inspection | None = None
    ) -> None:
        """One photo towards a pair. `inspection`: the photo was checked already (an album's)."""
        pending = self._pending_for(origin)
        role = wanted.role or ("selfie" if pending.selfie is None else "reference")
        if inspection is None and (inspection := await self._inspect(origin, image, role)) is None:
            return  # the user was told what is wrong with this photo; the other one stays
        note = ""
        if role == "selfie":
            if wanted.role and pending.selfie_guessed and pending.reference is None and pending.look is None:
                pending.reference = pending.selfie  # "me" on the second photo: the first was the reference
            pending.selfie, pending.selfie_guessed = image, wanted.role is None
            pending.selfie_makeup = inspection.makeup
        else:
            pending.reference, pending.look = image, None
            if wanted.role is None and pending.selfie_guessed:
                swapped, note = _order_by_makeup(pending.selfie_makeup, inspection.makeup)
                if swapped:
                    pending.selfie, pending.reference = image, pending.selfie
        if wanted.look is not None:
            pending.reference, pending.look = None, wanted.look
        self._touch(origin, pending)
        if pending.selfie is not None and (pending.reference is not None or pending.look is not None):
            await self._run_pending(origin, note)
            return
        if role == "selfie":
            await self._reply(
                origin,
                "Got your selfie. Now send the reference: a photo of a face wearing the makeup "
                "you want (or choose a preset with /look NAME).",
            )
        else:
            await self._reply(origin, "Got the reference. Now send your selfie.")

    def _pending_for(self, origin: Origin) -> _Pending:
        """The person's photos waiting in this chat (a fresh, empty set when they expired)."""
        pending = self._pending.get(origin.conversation)
        if pending is None or self._is_stale(pending):
            pending = self._pending[origin.conversation] = _Pending(touched=self._clock())
        return pending

    async def check_photo(self, image: bytes, role: Role) -> Inspection:
        """Check one photo now, as one arriving in a chat is (decodes, has a usable face); raises the
        `EngineError` whose message says what is wrong with it. For a page that checks each photo
        when it is chosen."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._inspecting, self._inspector.inspect, image, role)

    async def _inspect(self, origin: Origin, image: bytes, role: Role) -> Inspection | None:
        """Check a photo as it arrives; None after telling the user what is wrong with it."""
        try:
            return await self.check_photo(image, role)
        except EngineError as error:
            fields = {"platform": origin.platform, "chat_type": origin.chat_type, "error_kind": error.kind}
            log.info("photo refused on arrival", extra=fields)
            self._metrics.observe_refused_photo(error.kind)
            await self._reply(origin, error.user_message)
            return None

    async def _run_pending(self, origin: Origin, note: str = "") -> None:
        pending = self._pending.pop(origin.conversation)
        assert pending.selfie is not None
        await self._submit(origin, pending.selfie, reference=pending.reference, look=pending.look, note=note)

    async def _run_reply_pair(self, origin: Origin, image: bytes, replied: bytes, role: Role | None) -> None:
        self._pending.pop(origin.conversation, None)
        selfie, reference = (replied, image) if role == "reference" else (image, replied)
        await self._submit(origin, selfie, reference=reference)

    def _add_to_album(self, origin: Origin, album_id: str, image: bytes, caption: str) -> None:
        key = (*origin.conversation, album_id)
        now = asyncio.get_running_loop().time()
        album = self._albums.get(key)
        if album is None:
            album = self._albums[key] = _Album(origin, now)
            self._spawn(self._settle_album(key))
        album.photos.append((image, caption))
        album.last_added = now

    async def _settle_album(self, key: tuple[str, str, str, str]) -> None:
        loop = asyncio.get_running_loop()
        album = self._albums[key]
        while (delay := album.last_added + self._album_settle_s - loop.time()) > 0:
            await asyncio.sleep(delay)
        del self._albums[key]
        await self._take_album(album.origin, album.photos)

    async def _take_album(self, origin: Origin, photos: list[tuple[bytes, str]]) -> None:
        if len(photos) == 1:
            image, caption = photos[0]
            await self._collect(origin, image, _read_caption(caption))
            return
        if len(photos) != 2:
            await self._reply(
                origin,
                f"I got {len(photos)} photos at once, but I need exactly two: your selfie and the "
                "reference (a face wearing the makeup you want).",
            )
            return
        (first, first_caption), (second, second_caption) = photos
        first_role = _read_caption(first_caption).role
        second_role = _read_caption(second_caption).role
        swapped = first_role == "reference" or second_role == "selfie"
        guessed = first_role is None and second_role is None
        # Checked in their likely roles; a bad one is explained and the good one kept, as if sent alone.
        checks = [
            await self._inspect(origin, first, "reference" if swapped else "selfie"),
            await self._inspect(origin, second, "selfie" if swapped else "reference"),
        ]
        if None in checks:
            for (image, caption), inspection in zip(photos, checks, strict=True):
                if inspection is not None:
                    await self._collect(origin, image, _read_caption(caption), inspection)
            return
        first_check, second_check = checks
        assert first_check is not None and second_check is not None
        note = ""
        if guessed:
            swapped, note = _order_by_makeup(first_check.makeup, second_check.makeup)
        selfie, reference = (second, first) if swapped else (first, second)
        self._pending.pop(origin.conversation, None)
        await self._submit(origin, selfie, reference=reference, note=note)

    # -- running jobs ---------------------------------------------------------------------------------

    async def _submit(
        self,
        origin: Origin,
        selfie: bytes,
        *,
        reference: bytes | None = None,
        look: str | None = None,
        strength: int | None = None,
        mode: str | None = None,
        note: str = "",
    ) -> None:
        if strength is None:
            strength = await self._strength_of(origin)
        if mode is None:
            mode = await self._mode_of(origin)
        inputs = Inputs(selfie, reference, look, strength, mode=mode)
        refusal = await self._enqueue(origin, inputs, note=note)
        if refusal is not None:
            await self._reply(origin, refusal)

    async def _enqueue(
        self, origin: Origin, inputs: Inputs, *, rerun: bool = False, note: str = ""
    ) -> str | None:
        """The one place a try-on is admitted: the limits first, then the queue. Returns what to
        tell the user when it is refused. `rerun`: the same photos again (a result's button), which
        count against their own, larger per-minute budget."""
        job = Job(uuid.uuid4().hex, origin.platform, origin.chat_id, origin.user_id, inputs.request())
        requester = Requester(
            origin.platform, origin.user_id, origin.chat_id, group=origin.chat_type == "group"
        )
        refusal = await self._gatekeeper.admit(requester, rerun=rerun)
        if refusal is not None:
            self._record(origin, job.id, UsageStatus.REJECTED, error_kind=refusal.kind)
            return refusal.user_message
        try:
            ticket = await self._queue.submit(job)
        except QueueError as error:
            self._record(origin, job.id, UsageStatus.REJECTED, error_kind=error.kind)
            return error.user_message
        self._in_flight[job.id] = origin.person
        self._spawn(self._deliver(origin, ticket, inputs, note))
        return None

    async def _deliver(self, origin: Origin, ticket: Ticket, inputs: Inputs, note: str = "") -> None:
        working = asyncio.create_task(self._show_progress(origin, ticket))
        try:
            result = await ticket.result()
        except (EngineError, QueueError) as error:
            self._record_ticket(origin, ticket, UsageStatus.ERROR, error_kind=error.kind)
            await self._reply(origin, error.user_message)
            return
        finally:
            working.cancel()
        self._record_ticket(origin, ticket, UsageStatus.OK)
        result_id = await self._remember(origin, inputs, result)
        await self._send_image(
            origin,
            result.image,
            caption="\n".join(filter(None, [_describe(inputs, result), note])),
            buttons=self._result_buttons(origin, result_id, inputs, result),
        )

    async def _show_progress(self, origin: Origin, ticket: Ticket) -> None:
        """Tell the user their place in the queue once their job has waited `bot.announce_wait_s`
        without starting, then show a chat action while it runs (if it runs more than a moment)."""
        try:
            await asyncio.wait_for(ticket.started(), self._settings.announce_wait_s)
        except TimeoutError:
            await self._announce_place(origin, ticket)
            await ticket.started()
        await asyncio.sleep(FIRST_ACTION_AFTER_S)
        while not ticket.done:
            try:
                await self._messenger(origin).send_action(origin.chat_id)
            except Exception:
                log.warning("could not send a chat action to %s", origin.platform, exc_info=True)
            await asyncio.sleep(ACTION_EVERY_S)

    async def _announce_place(self, origin: Origin, ticket: Ticket) -> None:
        ahead = await self._queue.position(ticket.job.id)
        if not ahead:  # next in line, or already done: nothing worth a message
            return
        jobs = "is 1 try-on" if ahead == 1 else f"are {ahead} try-ons"
        await self._reply(origin, f"There {jobs} ahead of yours; I'll reply here when it's ready.")

    async def _remember(self, origin: Origin, inputs: Inputs, result: MakeupResult) -> str:
        result_id = f"{self._run}.{secrets.token_urlsafe(6)}"
        await self._results.put(result_id, StoredResult(origin.person, inputs, result.image))
        return result_id

    def _result_buttons(
        self, origin: Origin, result_id: str, inputs: Inputs, result: MakeupResult
    ) -> list[Button]:
        buttons = [
            Button("Stronger", f"more:{result_id}"),
            Button("Softer", f"less:{result_id}"),
            Button("Lips only", f"lips:{result_id}"),
            Button("Before / after", f"compare:{result_id}"),
        ]
        if inputs.reference is not None:  # a preset look is the same in either mode
            # The photos may have been taken the wrong way round.
            buttons.append(Button("Swap photos", f"swap:{result_id}"))
            other = _other_mode(inputs.mode)
            switch = Button(MODE_NAMES[other].capitalize(), f"{other}:{result_id}")
            # The paint left out is what the user most likely wants next: its button comes first.
            buttons.insert(0 if result.paint_left_out else len(buttons), switch)
        if self._messenger(origin).compresses_images:
            buttons.append(Button("Full resolution", f"file:{result_id}"))
        return buttons

    async def _result_action(self, origin: Origin, action: str, result: StoredResult) -> str:
        inputs = result.inputs
        if action in ("more", "less"):
            step = STRENGTH_STEP if action == "more" else -STRENGTH_STEP
            strength = min(100, max(0, inputs.strength + step))
            if strength == inputs.strength:
                return f"It is already at {strength}."
            rerun = replace(inputs, strength=strength)
            working = f"Making it {'stronger' if step > 0 else 'softer'} ({strength})…"
        elif action == "lips":
            rerun, working = replace(inputs, regions={"lips": 1.0}), "Putting on the lips only…"
        elif action in MODES and inputs.reference is not None:
            rerun, working = replace(inputs, mode=action), f"Trying the {MODE_NAMES[action]}…"
        elif action == "swap" and inputs.reference is not None:
            rerun = replace(inputs, selfie=inputs.reference, reference=inputs.selfie)
            working = "Swapping: the other photo as your selfie…"
        else:
            return await self._result_reply(origin, action, result)
        # A refused re-run is said in the presser's notice, instead of announcing work that won't happen.
        return await self._enqueue(origin, rerun, rerun=True) or working

    async def _result_reply(self, origin: Origin, action: str, result: StoredResult) -> str:
        """The buttons that send something back without a new try-on."""
        inputs = result.inputs
        if action == "file":
            await self._send_image(origin, result.image, caption="Full resolution", as_file=True)
            return "Sending the full-resolution file…"
        if action == "compare":
            comparison = await asyncio.to_thread(
                before_after, inputs.selfie, result.image, self._engine_settings
            )
            await self._send_image(origin, comparison, caption="Before / after")
            return "Before / after…"
        return "That button is no longer supported."

    # -- commands -------------------------------------------------------------------------------------

    async def _cmd_help(self, origin: Origin, args: str) -> None:
        settings = self._settings
        await self._reply(
            origin, HELP_TEXT.format(default=settings.default_strength, mode=settings.default_mode)
        )

    async def _cmd_strength(self, origin: Origin, args: str) -> None:
        if args:
            await self._reply(origin, await self._set_strength(origin, args))
            return
        current = await self._strength_of(origin)
        await self._reply(
            origin,
            f"Your makeup strength is {current} (0 = none, 100 = full). Pick one or send /strength N.",
            buttons=[Button(str(value), f"strength:{value}") for value in STRENGTH_CHOICES],
        )

    async def _cmd_mode(self, origin: Origin, args: str) -> None:
        if args:
            await self._reply(origin, await self._set_mode(origin, args))
            return
        current = await self._mode_of(origin)
        await self._reply(
            origin,
            f"Your look mode is {current}: {MODE_HELP[current]} Pick one or send /mode natural|full.",
            buttons=[Button(MODE_NAMES[mode].capitalize(), f"mode:{mode}") for mode in MODES],
        )

    async def _cmd_look(self, origin: Origin, args: str) -> None:
        looks = sorted(load_looks())
        name = args.split()[0].lower() if args else ""
        if name not in looks:
            intro = f"I don't know the look '{name}'. " if name else ""
            await self._reply(
                origin, intro + f"Preset looks: {', '.join(looks)}. Send /look NAME, then your selfie."
            )
            return
        pending = self._pending_for(origin)
        pending.reference, pending.look = None, name
        self._touch(origin, pending)
        if pending.selfie is not None:
            await self._run_pending(origin)
            return
        await self._reply(origin, f"Look '{name}' it is. Now send your selfie.")

    async def _cmd_reset(self, origin: Origin, args: str) -> None:
        self._pending.pop(origin.conversation, None)
        await self._reply(origin, "Started over: I forgot the photos you sent here. Send your selfie.")

    async def _cmd_stats(self, origin: Origin, args: str) -> None:
        try:
            stats = await self._storage.user_stats(origin.platform, origin.user_id)
        except StorageUnavailable:
            await self._reply(origin, "I can't reach my database right now. Please try /stats later.")
            return
        strength = stats.strength if stats.strength is not None else self._settings.default_strength
        lines = [
            f"Try-ons: {stats.jobs_total} ({stats.jobs_ok} done, {stats.jobs_failed} failed), "
            f"{stats.jobs_last_24h} in the last 24 hours.",
            f"Strength: {strength}.",
            f"Look mode: {stats.mode if stats.mode in MODES else self._settings.default_mode}.",
        ]
        if stats.first_seen is not None:
            lines.append(f"First seen: {stats.first_seen:%Y-%m-%d}.")
        await self._reply(origin, "\n".join(lines))

    async def _cmd_forget(self, origin: Origin, args: str) -> None:
        await self._drop_photos_of(origin.person)
        self._forgotten_jobs.update(job for job, person in self._in_flight.items() if person == origin.person)
        try:
            rows = await self._storage.forget_user(origin.platform, origin.user_id)
        except StorageUnavailable:
            await self._reply(
                origin,
                "I dropped the photos I was holding for you, but I can't reach my database right now, "
                "so your records are not deleted yet. Please send /forget again later.",
            )
            return
        await self._reply(
            origin, f"Done: I deleted everything I stored about you ({rows} records) and your photos."
        )

    async def _cmd_privacy(self, origin: Origin, args: str) -> None:
        pending, results = self._settings.pending_ttl_s, self._settings.result_cache_s
        days = self._retention_days
        text = PRIVACY_TEXT.format(
            pending=_minutes(pending),
            results=_minutes(results),
            user=f"{origin.platform}:{origin.user_id}",
            retention=f"after {days} days" if days else "only by /forget",
        )
        await self._reply(origin, text)

    async def _cmd_admin(self, origin: Origin, args: str) -> None:
        await self._reply(origin, await self._admin.handle(origin.platform, origin.user_id, args.split()))

    # -- strength -------------------------------------------------------------------------------------

    async def _strength_of(self, origin: Origin) -> int:
        stored = await self._storage.get_strength(origin.platform, origin.user_id)
        return stored if stored is not None else self._settings.default_strength

    async def _set_strength(self, origin: Origin, raw: str) -> str:
        """Store a strength typed or pressed by the user; returns what to tell them."""
        value = _parse_strength(raw)
        if value is None:
            return "Strength is a number from 0 to 100, e.g. /strength 60."
        if not await self.set_strength(origin, value):
            return "I can't save your strength right now. Please try again later."
        return f"Strength set to {value}. It applies to your next try-on."

    # -- look mode ------------------------------------------------------------------------------------

    async def _mode_of(self, origin: Origin) -> str:
        stored = await self._storage.get_mode(origin.platform, origin.user_id)
        return stored if stored in MODES else self._settings.default_mode

    async def _set_mode(self, origin: Origin, raw: str) -> str:
        """Store a mode typed or pressed by the user; returns what to tell them."""
        mode = raw.strip().lower()
        if mode not in MODES:
            return MODE_USAGE
        try:
            await self._storage.set_mode(origin.platform, origin.user_id, mode)
        except StorageUnavailable:
            return "I can't save your look mode right now. Please try again later."
        return f"Look mode set to {mode}: {MODE_HELP[mode]} It applies to your next try-on."

    # -- plumbing -------------------------------------------------------------------------------------

    def _messenger(self, origin: Origin) -> Messenger:
        try:
            return self._messengers[origin.platform]
        except KeyError:
            raise ValueError(f"no messenger registered for platform {origin.platform!r}") from None

    async def _reply(self, origin: Origin, text: str, *, buttons: Sequence[Button] = ()) -> None:
        try:
            await self._messenger(origin).send_text(
                origin.chat_id, text, reply_to=origin.message_id, buttons=buttons
            )
        except Exception:
            log.warning("could not send a message on %s", origin.platform, exc_info=True)

    async def _send_image(
        self,
        origin: Origin,
        image: bytes,
        *,
        caption: str,
        buttons: Sequence[Button] = (),
        as_file: bool = False,
    ) -> None:
        try:
            await self._messenger(origin).send_image(
                origin.chat_id,
                image,
                filename="facelab.jpg",
                caption=caption,
                reply_to=origin.message_id,
                buttons=buttons,
                as_file=as_file,
            )
        except Exception:
            log.warning("could not send an image on %s", origin.platform, exc_info=True)

    def _record(
        self,
        origin: Origin,
        job_id: str,
        status: UsageStatus,
        *,
        error_kind: str | None = None,
        queue_wait_ms: int | None = None,
        engine_ms: int | None = None,
        store: bool = True,
    ) -> None:
        record = UsageRecord(
            job_id=job_id,
            platform=origin.platform,
            user_id=origin.user_id,
            chat_id=origin.chat_id,
            chat_type=origin.chat_type,
            status=status,
            error_kind=error_kind,
            queue_wait_ms=queue_wait_ms,
            engine_ms=engine_ms,
        )
        if store:
            self._storage.record_usage(record)
        self._metrics.observe(record)
        log.info("job %s", status.value, extra=_job_log_fields(record))

    def _record_ticket(
        self, origin: Origin, ticket: Ticket, status: UsageStatus, *, error_kind: str | None = None
    ) -> None:
        del self._in_flight[ticket.job.id]
        # Asked for before a /forget: storing it would bring the person's rows back (counted all the same).
        forgotten = ticket.job.id in self._forgotten_jobs
        self._forgotten_jobs.discard(ticket.job.id)
        started = ticket.started_at if ticket.started_at is not None else ticket.finished_at
        finished = ticket.finished_at
        self._record(
            origin,
            ticket.job.id,
            status,
            error_kind=error_kind,
            queue_wait_ms=_ms(started - ticket.submitted_at) if started is not None else None,
            engine_ms=_ms(finished - started) if started is not None and finished is not None else None,
            store=not forgotten,
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _is_stale(self, pending: _Pending) -> bool:
        return self._clock() - pending.touched > self._settings.pending_ttl_s

    def _touch(self, origin: Origin, pending: _Pending) -> None:
        pending.touched = self._clock()
        asyncio.get_running_loop().call_later(
            self._settings.pending_ttl_s + EXPIRY_MARGIN_S, self._drop_pending_if_stale, origin.conversation
        )

    def _drop_pending_if_stale(self, key: tuple[str, str, str]) -> None:
        pending = self._pending.get(key)
        if pending is not None and self._is_stale(pending):
            del self._pending[key]

    async def _drop_photos_of(self, person: tuple[str, str]) -> None:
        for key in [key for key in self._pending if (key[0], key[2]) == person]:
            del self._pending[key]
        await self._results.forget(person)


HELP_TEXT = """Face Lab puts the makeup of any photo on your selfie.

1. Send your selfie.
2. Send the reference: a photo of a face wearing the makeup you want.
I reply with your selfie wearing that makeup.

You can also send both as an album (selfie first), caption a photo "me" or "ref" to say which is which, \
or reply with your selfie to someone's photo to borrow their makeup.

/strength N  how strong the makeup is, 0-100 (yours is remembered; default {default})
/mode M      natural (makeup on your own skin) or full (the reference's whole look, face paint \
too; yours is remembered; default {mode})
/look NAME   a preset look instead of a reference photo (/look lists them)
/reset       forget the photos you sent and start over
/stats       your usage
/forget      delete everything stored about you
/privacy     what is stored"""

RESTARTED_NOTICE = "I was restarted and no longer have these photos. Please send them again."
UNUSABLE_HINT = (
    "I only work with photos: send your selfie, then a photo of a face wearing the makeup you "
    "want. /help tells more."
)
# Result captions when no caption said which photo is which.
ORDER_NOTE = "Taken in order: your {selfie} photo as the selfie, the {reference} as the reference."
SWAPPED_NOTE = (
    "Your {reference} photo looks made up, so I took it as the reference and the {selfie} as the selfie."
)

PRIVACY_TEXT = """What Face Lab keeps:
- Your photos and results: in memory only, never on disk. Unpaired photos are dropped after \
{pending}; a result's inputs stay {results} so its buttons work, then they are dropped too.
- In the database: your platform user id ({user}), preferred strength and look mode (and a ban, if an \
operator sets one), and for each try-on its time, chat id and type, outcome, error kind and timings. \
Never an image. Try-on records are deleted {retention}.
- In the logs: job ids, outcomes and timings; a user id only where the operator needs it (a ban, a \
refused operator command, a record the database could not take). Never an image.
/forget deletes all of it at once."""


def _read_caption(caption: str) -> _Caption:
    """Roles ("me", "ref", ...), and "/look NAME" or "/strength N" at its start."""
    text = caption.strip()
    command, args = "", text
    if text.startswith("/"):
        head, _, args = text.partition(" ")
        command = head[1:].split("@")[0].lower()
    if command == "look" and args.split():
        return _Caption(role="selfie", look=args.split()[0].lower())
    if command == "strength" and args.split():
        return _Caption(strength=args.split()[0])
    words = re.findall(r"[a-z]+", args.lower())
    role = next((ROLE_WORDS[word] for word in words if word in ROLE_WORDS), None)
    return _Caption(role=role)


def _parse_strength(raw: str) -> int | None:
    try:
        value = int(raw.strip().rstrip("%"))
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def _describe(inputs: Inputs, result: MakeupResult) -> str:
    parts = [f"Look: {inputs.look}" if inputs.look else "Makeup from your reference"]
    parts.append(f"strength {inputs.strength}")
    if inputs.reference is not None and inputs.mode != "natural":
        parts.append(MODE_NAMES[inputs.mode])
    if inputs.regions is not None:
        parts.append("lips only")
    if result.faces > 1:
        parts.append(f"{result.faces} faces")
    caption = ", ".join(parts) + "."
    if result.paint_left_out:
        caption += (
            "\nYour reference wears face paint that natural mode leaves out. Press “Full look” to "
            "put it on too, or send /mode full to always get the whole look."
        )
    return caption


def _order_by_makeup(first: float, second: float) -> tuple[bool, str]:
    """Two photos with no caption saying which is which, by their makeup scores: whether to take
    them the other way round, and what to say about it. Nothing is said when the makeup confirms the
    order they came in; when it is unclear, which photo was taken for which."""
    if first - second >= ORDER_BY_MAKEUP_MARGIN:
        return True, SWAPPED_NOTE.format(selfie="second", reference="first")
    if second - first >= ORDER_BY_MAKEUP_MARGIN:
        return False, ""
    return False, ORDER_NOTE.format(selfie="first", reference="second")


def _other_mode(mode: str) -> str:
    return next(other for other in MODES if other != mode)


def _job_log_fields(record: UsageRecord) -> dict[str, Any]:
    """What a job's log line carries: ids of the job, not of the person; outcome and timings."""
    fields = {
        "job_id": record.job_id,
        "platform": record.platform,
        "chat_type": record.chat_type,
        "status": record.status.value,
        "error_kind": record.error_kind,
        "queue_wait_ms": record.queue_wait_ms,
        "engine_ms": record.engine_ms,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
