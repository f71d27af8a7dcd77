"""Photo pairing: which of a person's photos is the selfie and which the reference, kept per
(platform, chat, user) until both are there. Pure and synchronous: the core checks photos, runs jobs
and answers; this module only decides.

Rules a user can guess:
- the first photo is the selfie, the second the reference (a face wearing the makeup wanted);
- a caption "ref"/"reference" or "me"/"selfie" says which one a photo is;
- two uncaptioned photos are swapped when the first looks clearly more made up than the second;
- `/look NAME` replaces the reference with a preset look;
- a lone photo is forgotten after `bot.pending_ttl_s` seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.texts import ORDER_NOTE, SWAPPED_NOTE
from engine.errors import Role

ROLE_WORDS: dict[str, Role] = {
    "me": "selfie",
    "selfie": "selfie",
    "ref": "reference",
    "reference": "reference",
}
# Two uncaptioned photos are put in the other order when the first looks made up by this much more
# than the second (engine.makeup_score: about 1 per clearly made-up feature); closer, order decides.
ORDER_BY_MAKEUP_MARGIN = 1.5

Conversation = tuple[str, str, str]  # bot.ports.Origin.conversation


@dataclass(frozen=True)
class Caption:
    """What a photo's caption asks for."""

    role: Role | None = None
    look: str | None = None
    strength: str | None = None  # the raw argument of a "/strength N" caption


def read_caption(caption: str) -> Caption:
    """Roles ("me", "ref", ...), and "/look NAME" or "/strength N" at its start."""
    text = caption.strip()
    command, args = "", text
    if text.startswith("/"):
        head, _, args = text.partition(" ")
        command = head[1:].split("@")[0].lower()
    if command == "look" and args.split():
        return Caption(role="selfie", look=args.split()[0].lower())
    if command == "strength" and args.split():
        return Caption(strength=args.split()[0])
    words = re.findall(r"[a-z]+", args.lower())
    role = next((ROLE_WORDS[word] for word in words if word in ROLE_WORDS), None)
    return Caption(role=role)


@dataclass(frozen=True)
class Pair:
    """A complete try-on: a selfie with a reference photo or a preset look. `note` tells the user
    how uncaptioned photos were ordered (empty when the makeup confirmed their order)."""

    selfie: bytes
    reference: bytes | None = None
    look: str | None = None
    note: str = ""


def order_by_makeup(first: float, second: float) -> tuple[bool, str]:
    """Two photos with no caption saying which is which, by their makeup scores: whether to take
    them the other way round, and what to say about it. Nothing is said when the makeup confirms the
    order they came in; when it is unclear, which photo was taken for which."""
    if first - second >= ORDER_BY_MAKEUP_MARGIN:
        return True, SWAPPED_NOTE.format(selfie="second", reference="first")
    if second - first >= ORDER_BY_MAKEUP_MARGIN:
        return False, ""
    return False, ORDER_NOTE.format(selfie="first", reference="second")


def album_roles(first: Caption, second: Caption) -> tuple[bool, bool]:
    """Two photos sent at once: whether their captions put the reference first, and whether no
    caption said anything (then their makeup decides, see `order_by_makeup`)."""
    swapped = first.role == "reference" or second.role == "selfie"
    return swapped, first.role is None and second.role is None


@dataclass
class _Pending:
    """One person's photos in one chat, waiting for their partner."""

    touched: float
    selfie: bytes | None = None
    reference: bytes | None = None
    look: str | None = None
    selfie_guessed: bool = False  # the selfie came without a caption saying so
    selfie_makeup: float = 0.0  # how made up the selfie looks (engine.makeup_score)


class Pairing:
    """Photos waiting for their partner, per conversation. `clock` (monotonic seconds) decides
    when a waiting photo is older than `ttl_s` and so forgotten; the caller calls `drop_if_stale`
    once that time has passed, so memory does not wait for the person's next photo."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._pending: dict[Conversation, _Pending] = {}

    @property
    def held_images(self) -> int:
        return sum((p.selfie is not None) + (p.reference is not None) for p in self._pending.values())

    def role_of(self, conversation: Conversation, wanted: Caption) -> Role:
        """The role the next photo takes: its caption's, else whichever is missing."""
        if wanted.role is not None:
            return wanted.role
        pending = self._live(conversation)
        return "selfie" if pending is None or pending.selfie is None else "reference"

    def add(self, conversation: Conversation, image: bytes, wanted: Caption, makeup: float) -> Pair | None:
        """Take a checked photo (`makeup`: its makeup score). Returns the pair it completes, which
        leaves the conversation, or None while it waits for its partner."""
        pending = self._pending_for(conversation)
        note = ""
        if self.role_of(conversation, wanted) == "selfie":
            if wanted.role and pending.selfie_guessed and pending.reference is None and pending.look is None:
                pending.reference = pending.selfie  # "me" on the second photo: the first was the reference
            pending.selfie, pending.selfie_guessed = image, wanted.role is None
            pending.selfie_makeup = makeup
        else:
            pending.reference, pending.look = image, None
            if wanted.role is None and pending.selfie_guessed:
                swapped, note = order_by_makeup(pending.selfie_makeup, makeup)
                if swapped:
                    pending.selfie, pending.reference = image, pending.selfie
        if wanted.look is not None:
            pending.reference, pending.look = None, wanted.look
        return self._complete(conversation, pending, note)

    def choose_look(self, conversation: Conversation, look: str) -> Pair | None:
        """A preset look replaces the reference: the pair when a selfie waits, else None."""
        pending = self._pending_for(conversation)
        pending.reference, pending.look = None, look
        return self._complete(conversation, pending)

    def drop(self, conversation: Conversation) -> None:
        self._pending.pop(conversation, None)

    def drop_person(self, person: tuple[str, str]) -> None:
        """Forget a person's photos in every chat (/forget)."""
        for key in [key for key in self._pending if (key[0], key[2]) == person]:
            del self._pending[key]

    def drop_if_stale(self, conversation: Conversation) -> None:
        if self._pending.get(conversation) is not None and self._live(conversation) is None:
            del self._pending[conversation]

    def _live(self, conversation: Conversation) -> _Pending | None:
        pending = self._pending.get(conversation)
        if pending is None or self._clock() - pending.touched > self._ttl_s:
            return None
        return pending

    def _pending_for(self, conversation: Conversation) -> _Pending:
        """The conversation's waiting photos (a fresh, empty set when they expired), touched now."""
        pending = self._live(conversation)
        if pending is None:
            pending = self._pending[conversation] = _Pending(touched=self._clock())
        pending.touched = self._clock()
        return pending

    def _complete(self, conversation: Conversation, pending: _Pending, note: str = "") -> Pair | None:
        if pending.selfie is None or (pending.reference is None and pending.look is None):
            return None
        del self._pending[conversation]
        return Pair(pending.selfie, pending.reference, pending.look, note)
