"""The engine's public surface, shared by every backend: what a caller asks for and gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from engine.errors import Role

# Regions a caller may name; each maps to a feathered landmark mask in engine/regions.py.
REGIONS: tuple[str, ...] = ("lips", "eyes", "brows", "blush", "skin")

# How much of the reference travels: "natural" puts its makeup on the selfie's own skin; "full"
# carries the whole look of the reference face (face paint, stage base, drawn patterns) as well.
MODES: tuple[str, ...] = ("natural", "full")


@dataclass(frozen=True)
class MakeupRequest:
    """One try-on. Exactly one of `reference` (encoded image bytes) or `look` (preset name) is set.

    `strength` is in [0, 1]; `regions` optionally maps region names to their own strength in [0, 1]
    (regions left out get 0), e.g. {"lips": 1.0} for lips only. `mode` is one of MODES.
    """

    # Image bytes stay out of repr(), so a logged request or job can never carry a photo.
    selfie: bytes = field(repr=False)
    reference: bytes | None = field(default=None, repr=False)
    look: str | None = None
    strength: float = 1.0
    regions: Mapping[str, float] | None = None
    output_format: str = "JPEG"
    mode: str = "natural"

    def __post_init__(self) -> None:
        if (self.reference is None) == (self.look is None):
            raise ValueError("set exactly one of reference or look")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError("strength must be in [0, 1]")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")


@dataclass(frozen=True)
class CompareRequest:
    """A before | after picture of a try-on (engine/compare.py): its selfie and its result, side by
    side. Its `MakeupResult` has no faces made up."""

    before: bytes = field(repr=False)
    after: bytes = field(repr=False)


# What an engine process runs: a try-on, or a picture made from one.
EngineRequest = MakeupRequest | CompareRequest


@dataclass(frozen=True)
class MakeupResult:
    image: bytes = field(repr=False)  # encoded in request.output_format, at the selfie's full resolution
    width: int
    height: int
    faces: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The reference wears more than this mode carried (face paint in natural mode): the bot says so
    # and offers the full look.
    paint_left_out: bool = False


@dataclass(frozen=True)
class Inspection:
    """What a quick look at one photo found (`PhotoInspector.inspect`): it decodes and has a usable
    face. `makeup` scores how made up that face looks, from 0 (bare) upwards (see engine/makeup_score.py):
    comparable between photos, so a caller can tell which of two is the made-up reference."""

    faces: int
    makeup: float


class PhotoInspector(Protocol):
    """Checks one photo in a few milliseconds, before any try-on is queued; raises the same
    engine.errors.EngineError subclasses `MakeupEngine.apply` would for that photo."""

    def inspect(self, data: bytes, role: Role) -> Inspection: ...


class MakeupEngine(Protocol):
    """What the bot's engine process and the CLI drive; raises engine.errors.EngineError subclasses."""

    def apply(self, request: MakeupRequest) -> MakeupResult: ...
