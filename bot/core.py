"""The conversation core: the chat rules of Face Lab, shared by every platform.

Adapters (Telegram, Discord, the web playground) translate their platform's updates into calls on
`Core` with plain data (`Origin`, bytes, text) and implement `Messenger` (bot/ports.py) so the core
can answer. The core never sees a platform object, and it keeps photos in memory only.

The core takes photos in (checking each as it arrives, settling albums) and hands them to its parts:
bot/pairing.py decides which photo is the selfie and which the reference, bot/delivery.py runs the
try-on to the user and keeps its result for the buttons, bot/commands.py answers the commands, and
bot/texts.py holds what they all say. Per (platform, chat, user), so people in one group never mix:
- an album of two photos is both at once (selfie first);
- a photo sent as a reply to a photo uses the replied photo as the reference;
- `/strength` and `/mode` are remembered per person (bot/preferences.py).

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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.admin import AdminCommands
from bot.commands import BY_NAME
from bot.delivery import Delivery
from bot.limits import Gatekeeper
from bot.metrics import Metrics
from bot.pairing import Caption, Pair, Pairing, album_roles, order_by_makeup, read_caption
from bot.ports import Messenger, Messengers, Origin
from bot.preferences import Preferences
from bot.queue import JobQueue
from bot.results import Inputs, MemoryResults, ResultStore
from bot.settings import BotConfig
from bot.texts import (
    ADMINS_ONLY,
    GOT_REFERENCE,
    GOT_SELFIE,
    MODE_USAGE,
    NOT_TWO_PHOTOS,
    UNKNOWN_COMMAND,
    UNUSABLE_HINT,
)
from engine.api import MODES, Inspection, PhotoInspector
from engine.embedded import EmbeddedEngine
from engine.errors import EngineError, Role
from storage import Storage

log = logging.getLogger(__name__)

# Expired photos leave memory on timers set this much later than their deadline, so that the clock
# which decides expiry always agrees the deadline has passed when the timer fires.
EXPIRY_MARGIN_S = 1.0


@dataclass
class _Album:
    origin: Origin
    last_added: float
    photos: list[tuple[bytes, str]] = field(default_factory=list)  # (image, caption)


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

    Its parts are public for the command handlers (bot/commands.py).
    """

    def __init__(
        self,
        settings: BotConfig,
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
        self.settings = settings
        self.storage = storage
        self.messengers = Messengers()
        self.admin = AdminCommands(settings.access, storage)
        self.preferences = Preferences(settings.bot, storage)
        self.pairing = Pairing(settings.bot.pending_ttl_s, clock)
        self._metrics = metrics or Metrics()
        self.delivery = Delivery(
            settings.bot,
            queue=queue,
            storage=storage,
            gatekeeper=gatekeeper or Gatekeeper.from_settings(settings, storage),
            metrics=self._metrics,
            messengers=self.messengers,
            results=results or MemoryResults(settings.bot.result_cache_s, clock, EXPIRY_MARGIN_S),
        )
        self._inspector = inspector or EmbeddedEngine(settings.engine)
        # One thread: the face detector's graph must not run twice at once.
        self._inspecting = ThreadPoolExecutor(1, thread_name_prefix="inspect")
        self._album_settle_s = album_settle_s
        self._albums: dict[tuple[str, str, str, str], _Album] = {}

    def add_messenger(self, messenger: Messenger) -> None:
        """Let the core answer on `messenger.platform`; one messenger per platform."""
        self.messengers.add(messenger)

    @property
    def held_images(self) -> int:
        """Images held in memory now: photos waiting for their partner, and the inputs and output
        of results whose buttons still work. Each is dropped when it expires (or on /forget)."""
        return self.pairing.held_images + self.delivery.held_images

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
        wanted = read_caption(caption)
        if wanted.strength is not None:
            await self.messengers.reply(
                origin, await self.preferences.set_strength_from(origin, wanted.strength)
            )
        if replied_photo is not None:
            self.pairing.drop(origin.conversation)
            selfie, reference = (
                (replied_photo, image) if wanted.role == "reference" else (image, replied_photo)
            )
            await self._submit(origin, Pair(selfie, reference))
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
            await self.messengers.reply(
                origin, "Send a selfie together with either a reference photo or a look."
            )
            return
        if strength is not None and not 0 <= strength <= 100:
            await self.messengers.reply(origin, "Strength is a number from 0 to 100.")
            return
        if mode is not None and mode not in MODES:
            await self.messengers.reply(origin, MODE_USAGE)
            return
        await self._submit(origin, Pair(selfie, reference, look), strength=strength, mode=mode)

    async def on_command(self, origin: Origin, command: str, args: str = "") -> None:
        """A command without its slash (and without any "@botname"), e.g. ("strength", "40")."""
        name = command.lstrip("/").split("@")[0].lower()
        known = BY_NAME.get(name)
        if known is None:
            await self.messengers.reply(origin, UNKNOWN_COMMAND.format(name=name))
            return
        if known.audience == "admins" and not self.admin.is_admin(origin.platform, origin.user_id):
            log.warning("refused /%s from non-admin %s:%s", name, origin.platform, origin.user_id)
            await self.messengers.reply(origin, ADMINS_ONLY)
            return
        await known.handler(self, origin, args.strip())

    async def on_unusable(self, origin: Origin) -> None:
        """A message with nothing to work with (a sticker, voice, a location, small talk): a hint."""
        await self.messengers.reply(origin, UNUSABLE_HINT)

    async def on_button(self, origin: Origin, data: str) -> str:
        """Someone pressed a `Button`; `origin` is the presser and the message the button is on.
        Returns a short notice for the presser only (Telegram's callback answer, Discord's
        ephemeral reply); anything for the chat is sent through the messenger."""
        action, _, argument = data.partition(":")
        if action == "strength":
            return await self.preferences.set_strength_from(origin, argument)
        if action == "mode":
            return await self.preferences.set_mode_from(origin, argument)
        return await self.delivery.on_button(origin, action, argument)

    def jobs_in_flight(self, person: tuple[str, str]) -> int:
        """The person's try-ons queued or running now (their answers not sent yet)."""
        return self.delivery.jobs_in_flight(person)

    async def preferred_strength(self, origin: Origin) -> int:
        """The strength the person's next try-on gets: theirs, or the configured default."""
        return await self.preferences.strength_of(origin)

    async def set_strength(self, origin: Origin, value: int) -> bool:
        """Remember the person's strength (0-100) without a chat message; False when the database
        cannot take it."""
        return await self.preferences.set_strength(origin, value)

    async def check_photo(self, image: bytes, role: Role) -> Inspection:
        """Check one photo now, as one arriving in a chat is (decodes, has a usable face); raises the
        `EngineError` whose message says what is wrong with it. For a page that checks each photo
        when it is chosen."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._inspecting, self._inspector.inspect, image, role)

    async def choose_look(self, origin: Origin, look: str) -> bool:
        """/look NAME: the preset replaces the reference. True when a waiting selfie made it a
        try-on (which then runs), False when the selfie is still to come."""
        pair = self.pairing.choose_look(origin.conversation, look)
        self._expire_later(origin)
        if pair is None:
            return False
        await self._submit(origin, pair)
        return True

    async def drop_photos_of(self, person: tuple[str, str]) -> None:
        """/forget: every photo and result the person has here, now."""
        self.pairing.drop_person(person)
        await self.delivery.forget(person)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Wait (up to `timeout_s`) until every result or failure notice has been sent. Call it
        after `queue.close()`, which settles every job, and before stopping the adapters."""
        await self.delivery.close(timeout_s)

    # -- collecting photos ----------------------------------------------------------------------------

    async def _collect(
        self, origin: Origin, image: bytes, wanted: Caption, inspection: Inspection | None = None
    ) -> None:
        """One photo towards a pair. `inspection`: the photo was checked already (an album's)."""
        role = self.pairing.role_of(origin.conversation, wanted)
        if inspection is None and (inspection := await self._inspect(origin, image, role)) is None:
            return  # the user was told what is wrong with this photo; the other one stays
        pair = self.pairing.add(origin.conversation, image, wanted, inspection.makeup)
        self._expire_later(origin)
        if pair is not None:
            await self._submit(origin, pair)
            return
        await self.messengers.reply(origin, GOT_SELFIE if role == "selfie" else GOT_REFERENCE)

    def _expire_later(self, origin: Origin) -> None:
        """Drop the conversation's waiting photos once they are too old, unless touched again."""
        asyncio.get_running_loop().call_later(
            self.settings.bot.pending_ttl_s + EXPIRY_MARGIN_S, self.pairing.drop_if_stale, origin.conversation
        )

    async def _inspect(self, origin: Origin, image: bytes, role: Role) -> Inspection | None:
        """Check a photo as it arrives; None after telling the user what is wrong with it."""
        try:
            return await self.check_photo(image, role)
        except EngineError as error:
            fields = {"platform": origin.platform, "chat_type": origin.chat_type, "error_kind": error.kind}
            log.info("photo refused on arrival", extra=fields)
            self._metrics.observe_refused_photo(error.kind)
            await self.messengers.reply(origin, error.user_message)
            return None

    def _add_to_album(self, origin: Origin, album_id: str, image: bytes, caption: str) -> None:
        key = (*origin.conversation, album_id)
        now = asyncio.get_running_loop().time()
        album = self._albums.get(key)
        if album is None:
            album = self._albums[key] = _Album(origin, now)
            self.delivery.spawn(self._settle_album(key))
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
            await self._collect(origin, image, read_caption(caption))
            return
        if len(photos) != 2:
            await self.messengers.reply(origin, NOT_TWO_PHOTOS.format(count=len(photos)))
            return
        (first, first_caption), (second, second_caption) = photos
        swapped, guessed = album_roles(read_caption(first_caption), read_caption(second_caption))
        # Checked in their likely roles; a bad one is explained and the good one kept, as if sent alone.
        checks = [
            await self._inspect(origin, first, "reference" if swapped else "selfie"),
            await self._inspect(origin, second, "selfie" if swapped else "reference"),
        ]
        if None in checks:
            for (image, caption), inspection in zip(photos, checks, strict=True):
                if inspection is not None:
                    await self._collect(origin, image, read_caption(caption), inspection)
            return
        first_check, second_check = checks
        assert first_check is not None and second_check is not None
        note = ""
        if guessed:
            swapped, note = order_by_makeup(first_check.makeup, second_check.makeup)
        selfie, reference = (second, first) if swapped else (first, second)
        self.pairing.drop(origin.conversation)
        await self._submit(origin, Pair(selfie, reference, note=note))

    async def _submit(
        self, origin: Origin, pair: Pair, *, strength: int | None = None, mode: str | None = None
    ) -> None:
        """A try-on with the person's own strength and mode unless given; refusals are said here."""
        if strength is None:
            strength = await self.preferences.strength_of(origin)
        if mode is None:
            mode = await self.preferences.mode_of(origin)
        inputs = Inputs(pair.selfie, pair.reference, pair.look, strength, mode=mode)
        refusal = await self.delivery.enqueue(origin, inputs, note=pair.note)
        if refusal is not None:
            await self.messengers.reply(origin, refusal)
