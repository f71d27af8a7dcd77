"""A stand-in for the makeup engine in fast conversation tests: no mediapipe, no shared photos.

`FakeEngine.photo` makes a small PNG and remembers what it shows (a face or not, how made up it
looks, whether it wears face paint). The fake then answers as the engine would, on both of the
engine's jobs for the bot: checking each photo as it arrives (`PhotoInspector`) and running try-ons
(`bot.queue.JobRunner`). Unknown bytes go through the real image gate, so a PDF or an empty file gets
the real answer; before/after pictures are the real ones. A result is a JPEG at the selfie's size, so
which photo served as the selfie can be read from the result as with the real engine; `requests`
records what each try-on asked for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from engine.api import CompareRequest, EngineRequest, Inspection, MakeupRequest, MakeupResult
from engine.compare import compare
from engine.errors import Role
from engine.faces import usable_faces
from engine.images import encode_image, load_image
from engine.settings import EngineSettings

LIMITS = EngineSettings()


@dataclass(frozen=True)
class FakePhoto:
    width: int
    height: int
    face: bool
    makeup: float
    painted: bool


@dataclass
class FakeEngine:
    photos: dict[bytes, FakePhoto] = field(default_factory=dict, repr=False)
    requests: list[MakeupRequest] = field(default_factory=list, repr=False)
    # While this event is unset, every job waits for it: an engine busy with a long job.
    busy_until: asyncio.Event | None = None

    def photo(
        self, width: int, height: int = 300, *, face: bool = True, makeup: float = 0.0, painted: bool = False
    ) -> bytes:
        """A PNG of `width` x `height` (give each photo of a test its own width) that the fake
        engine knows as a face (or not), this made up (0: bare; the real score's scale), painted
        or not."""
        shade = len(self.photos) * 37 % 256  # distinct bytes even for photos of one size
        data = encode_image(np.full((height, width, 3), shade, np.uint8), "PNG")
        self.photos[data] = FakePhoto(width, height, face, makeup, painted)
        return data

    def inspect(self, data: bytes, role: Role) -> Inspection:
        return Inspection(faces=1, makeup=self._known(data, role).makeup)

    async def run(self, request: EngineRequest) -> MakeupResult:
        if self.busy_until is not None:
            await self.busy_until.wait()
        if isinstance(request, CompareRequest):
            return compare(request, LIMITS)  # the real picture: it needs no face detector
        self.requests.append(request)
        selfie = self._known(request.selfie, "selfie")
        painted = request.reference is not None and self._known(request.reference, "reference").painted
        # The pixels carry the strength, so a re-run at another strength is another picture.
        pixels = np.full((selfie.height, selfie.width, 3), round(request.strength * 255), np.uint8)
        return MakeupResult(
            encode_image(pixels),
            selfie.width,
            selfie.height,
            faces=1,
            paint_left_out=painted and request.mode == "natural",
        )

    def _known(self, data: bytes, role: Role) -> FakePhoto:
        """What `data` shows; raises the engine's own error for a photo without a face, and the
        image gate's for bytes that are no image."""
        photo = self.photos.get(data)
        if photo is None:
            load_image(data, max_pixels=LIMITS.max_pixels, max_bytes=LIMITS.max_bytes, role=role)
            raise AssertionError("a test sent an image the fake engine was not given")
        if not photo.face:
            usable_faces([], role)  # raises the engine's NoFaceError, in its words
        return photo
