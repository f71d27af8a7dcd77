"""`DiffusionEngine`: Stable-Makeup diffusion for the look, the embedded compositor for the identity.

Per request: the selfie's largest face and the reference's face are cropped to squares at
`engine.diffusion.size`; the diffusion pipeline repaints the selfie crop with the reference's makeup;
that result, pasted back, is pixel-aligned with the selfie, so it is analysed as an already-aligned
reference (the selfie's own landmarks, no second face search) and composited by mode:

- natural: the embedded engine's compositor keeps the selfie's structure and detail layers and takes
  only the makeup colour from the diffusion output, per region and strength;
- full: `compose.compose_full` takes the generated face's low-frequency colour (paint, stage base,
  patterns) inside the face outline over the selfie's own detail layer.

Either way every pixel outside the face stays the selfie's, and diffusion drift (a changed nose, eyes,
skin texture) never reaches the result. In a group selfie the largest face is diffused and its look is
carried onto every face.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import torch

from engine.api import MakeupRequest, MakeupResult
from engine.diffusion.compose import compose_full
from engine.diffusion.pipeline import StableMakeupPipeline, StageTimer
from engine.diffusion.settings import DiffusionSampling
from engine.diffusion.structure import draw_structure
from engine.embedded import EmbeddedEngine, MadeUp
from engine.faces import Face, to_ibug68, usable_faces
from engine.images import encode_image, load_image
from engine.settings import EngineSettings
from engine.transfer import prepare_reference

# Square crop side = this × the larger side of the landmark box: the whole face, some hair and neck,
# like the face-centred training images.
CROP_SCALE = 1.6


def square_box(face: Face, height: int, width: int) -> tuple[int, int, int, int]:
    """A square (x0, y0, x1, y1) centred on the face, shrunk and shifted to stay inside the image."""
    x0, y0, x1, y1 = face.bbox
    side = int(min(CROP_SCALE * max(x1 - x0, y1 - y0), height, width))
    left = int(np.clip((x0 + x1 - side) / 2, 0, width - side))
    top = int(np.clip((y0 + y1 - side) / 2, 0, height - side))
    return left, top, left + side, top + side


def crop_square(rgb: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    interpolation = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return cv2.resize(rgb[y0:y1, x0:x1], (size, size), interpolation=interpolation)


def guidance_for(strength: float, sampling: DiffusionSampling) -> float:
    """User strength [0, 1] → classifier-free guidance [min, max]: how hard the makeup tokens pull."""
    return sampling.min_guidance + strength * (sampling.max_guidance - sampling.min_guidance)


class DiffusionEngine:
    def __init__(
        self, settings: EngineSettings, pipeline: StableMakeupPipeline, compositor: EmbeddedEngine
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.compositor = compositor

    @classmethod
    def from_settings(cls, settings: EngineSettings, compositor: EmbeddedEngine) -> DiffusionEngine:
        # torch defaults to every core; on a shared machine that oversubscribes and slows it 3-4×.
        torch.set_num_threads(settings.threads)
        pipeline = StableMakeupPipeline.from_pretrained(
            settings.diffusion.models_dir, settings.diffusion.device
        )
        return cls(settings, pipeline, compositor)

    def apply(self, request: MakeupRequest) -> MakeupResult:
        if request.reference is None:  # a preset look has no photo to diffuse from
            return self.compositor.apply(request)
        timings: dict[str, float] = {}
        timer = StageTimer(self.pipeline.device, timings)
        limits = {"max_pixels": self.settings.max_pixels, "max_bytes": self.settings.max_bytes}
        with timer.stage("decode"):
            selfie = load_image(request.selfie, role="selfie", **limits)
            reference = load_image(request.reference, role="reference", **limits)
        made_up = self.apply_array(
            selfie, reference, strength=request.strength, regions=request.regions, mode=request.mode
        )
        timings.update(made_up.timings_ms)
        with timer.stage("encode"):
            data = encode_image(made_up.image, fmt=request.output_format)
        height, width = made_up.image.shape[:2]
        return MakeupResult(data, width, height, made_up.faces, timings, made_up.paint_left_out)

    def apply_array(
        self,
        selfie: np.ndarray,
        reference: np.ndarray,
        *,
        strength: float = 1.0,
        regions: Mapping[str, float] | None = None,
        mode: str = "natural",
    ) -> MadeUp:
        """Make up an H×W×3 uint8 RGB selfie with a reference photo in `mode` (engine.api.MODES);
        strength 0 returns a copy."""
        if strength == 0.0:
            return self.compositor.apply_array(selfie, None, strength=0.0)
        timings: dict[str, float] = {}
        timer = StageTimer(self.pipeline.device, timings)
        with timer.stage("detect"):
            faces = usable_faces(self.compositor.backend.detect(selfie), "selfie")
            ref_face = usable_faces(self.compositor.backend.detect(reference), "reference")[0]
        face, working_size = faces[0], self.settings.working_size
        generated = self.generate(selfie, face, reference, ref_face, strength, timings)
        with timer.stage("composite"):
            aligned = prepare_reference(generated, face, working_size)
            if mode == "full":
                image = compose_full(
                    selfie, aligned, faces, working_size=working_size, strength=strength, regions=regions
                )
                return MadeUp(image, len(faces), timings)
            made_up = self.compositor.apply_array(selfie, aligned, strength=strength, regions=regions)
            # The generated face is aligned to the selfie; whether paint was left out is a question
            # about the reference photo itself.
            painted = prepare_reference(reference, ref_face, working_size).has_paint
        return MadeUp(made_up.image, made_up.faces, timings, paint_left_out=painted)

    def generate(
        self,
        selfie: np.ndarray,
        face: Face,
        reference: np.ndarray,
        ref_face: Face,
        strength: float,
        timings: dict[str, float],
    ) -> np.ndarray:
        """The selfie with its face square repainted by the diffusion pipeline (same size as `selfie`)."""
        options, sampling = self.settings.diffusion, self.settings.diffusion.sampling
        box = square_box(face, *selfie.shape[:2])
        scale = options.size / (box[2] - box[0])
        landmarks = np.subtract(to_ibug68(face), box[:2]) * scale
        repainted = self.pipeline(
            crop_square(selfie, box, options.size),
            crop_square(reference, square_box(ref_face, *reference.shape[:2]), options.size),
            draw_structure([landmarks], options.size, options.size),
            num_inference_steps=sampling.steps,
            denoise=sampling.denoise,
            guidance_scale=guidance_for(strength, sampling),
            seed=options.seed,
            timings_ms=timings,
        )
        x0, y0, x1, y1 = box
        generated = selfie.copy()
        generated[y0:y1, x0:x1] = cv2.resize(repainted, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
        return generated
