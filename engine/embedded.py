"""The embedded CPU engine: mediapipe face mesh + classical makeup transfer, no downloaded weights."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from engine.api import REGIONS, Inspection, MakeupRequest, MakeupResult
from engine.errors import Role
from engine.faces import FaceBackend, MediapipeBackend, usable_faces
from engine.images import encode_image, load_image
from engine.looks import LookMakeup, get_look
from engine.makeup_score import makeup_score
from engine.settings import EngineSettings
from engine.transfer import (
    MIRROR_FROM_YAW,
    Makeup,
    ReferenceFace,
    ReferenceMakeup,
    analyse_selfie,
    blend,
    composite,
    crop_face,
    prepare_reference,
    warp_reference,
)

REFERENCE_CACHE_SIZE = 8  # users often try several strengths or selfies with one reference


@dataclass
class MadeUp:
    """An array-level result: the made-up RGB image, how many faces were made up, stage timings."""

    image: np.ndarray
    faces: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    paint_left_out: bool = False  # the reference wears paint that natural mode did not carry


class EmbeddedEngine:
    def __init__(
        self,
        settings: EngineSettings,
        backend: FaceBackend | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`clock` times the stages (seconds); the benchmark passes `time.process_time` for CPU time."""
        cv2.setNumThreads(settings.threads)
        # NumPy's OpenBLAS otherwise keeps a thread per core busy-waiting between the engine's small
        # matrix products: measured, it doubled the CPU time of a 1280 px job (112 ms for 57 ms wall).
        threadpool_limits(limits=settings.threads)
        self.settings = settings
        self._backend = backend
        self._clock = clock
        self._references: OrderedDict[str, ReferenceFace] = OrderedDict()

    @property
    def backend(self) -> FaceBackend:
        # Built on first use: a request refused at decoding never pays for (or logs) model loading.
        if self._backend is None:
            self._backend = MediapipeBackend(self.settings.working_size)
        return self._backend

    def apply(self, request: MakeupRequest) -> MakeupResult:
        timings: dict[str, float] = {}
        with self._timed(timings, "decode"):
            selfie = self._load(request.selfie, "selfie")
        reference = None
        if request.reference is not None:
            reference = self._cached_reference(request.reference, timings)
        made_up = self.apply_array(
            selfie,
            reference,
            look=request.look,
            strength=request.strength,
            regions=request.regions,
            mode=request.mode,
        )
        timings.update(made_up.timings_ms)
        with self._timed(timings, "encode"):
            data = encode_image(made_up.image, fmt=request.output_format)
        h, w = made_up.image.shape[:2]
        return MakeupResult(data, w, h, made_up.faces, timings, made_up.paint_left_out)

    def inspect(self, data: bytes, role: Role) -> Inspection:
        """Decode a photo and find its faces (a few ms at selfie sizes), raising what `apply` would
        raise for it; scores how made up its largest usable face looks."""
        rgb = self._load(data, role)
        faces = usable_faces(self.backend.detect(rgb), role)
        return Inspection(faces=len(faces), makeup=makeup_score(rgb, faces[0]))

    def prepare_reference(self, rgb: np.ndarray) -> ReferenceFace:
        """Analyse a reference photo once (its largest face); reusable for any number of selfies."""
        face = usable_faces(self.backend.detect(rgb), "reference")[0]
        mirrored = None
        if abs(face.yaw_deg) > MIRROR_FROM_YAW:
            # A turned head: its well-seen half, mirrored, stands in for the hidden one.
            found = self.backend.detect(np.ascontiguousarray(rgb[:, ::-1]))
            mirrored = found[0] if found else None
        return prepare_reference(rgb, face, self.settings.working_size, mirrored)

    def apply_array(
        self,
        selfie: np.ndarray,
        reference: ReferenceFace | np.ndarray | None = None,
        *,
        look: str | None = None,
        strength: float = 1.0,
        regions: Mapping[str, float] | None = None,
        mode: str = "natural",
    ) -> MadeUp:
        """Make up every usable face of an HxWx3 uint8 RGB selfie with a reference (a photo array or
        a prepared one) or a preset look. Strength 0 returns an identical copy."""
        timings: dict[str, float] = {}
        if isinstance(reference, np.ndarray):
            with self._timed(timings, "reference"):
                reference = self.prepare_reference(reference)
        preset = get_look(look) if look is not None else None
        with self._timed(timings, "detect"):
            faces = usable_faces(self.backend.detect(selfie), "selfie")
        # Paint is the rest of the reference's face, laid on in full mode only.
        strengths = {
            r: strength * (1.0 if regions is None else regions.get(r, 0.0)) for r in (*REGIONS, "paint")
        }
        output = selfie.copy()
        paint_left_out = mode == "natural" and isinstance(reference, ReferenceFace) and reference.has_paint
        if not any(strengths.values()):
            return MadeUp(output, len(faces), timings, paint_left_out)
        for face in faces:
            crop = crop_face(selfie, face, self.settings.working_size)
            with self._timed(timings, "transfer"):
                layers = analyse_selfie(crop)
            makeup: Makeup
            if reference is not None:
                with self._timed(timings, "align"):
                    warped = warp_reference(reference, crop, face.yaw_deg)
                with self._timed(timings, "transfer"):
                    makeup = ReferenceMakeup(
                        layers, warped, reference.lip_colour, mode, reference.fringe, reference.painted_base
                    )
            else:
                assert preset is not None
                makeup = LookMakeup(layers, preset)
            with self._timed(timings, "transfer"):
                delta = blend(layers, makeup, strengths)
            with self._timed(timings, "composite"):
                composite(output, crop, delta)
        return MadeUp(output, len(faces), timings, paint_left_out)

    @contextmanager
    def _timed(self, timings: dict[str, float], stage: str) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            timings[stage] = timings.get(stage, 0.0) + (self._clock() - start) * 1000.0

    def _load(self, data: bytes, role: Role) -> np.ndarray:
        return load_image(
            data, max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_bytes, role=role
        )

    def _cached_reference(self, data: bytes, timings: dict[str, float]) -> ReferenceFace:
        key = hashlib.blake2b(data, digest_size=16).hexdigest()
        if key in self._references:
            self._references.move_to_end(key)
            return self._references[key]
        with self._timed(timings, "reference"):
            prepared = self.prepare_reference(self._load(data, "reference"))
        self._references[key] = prepared
        if len(self._references) > REFERENCE_CACHE_SIZE:
            self._references.popitem(last=False)
        return prepared
