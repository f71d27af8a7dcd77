"""Makeup transfer on the shared photos: identity at s=0, untouched background, full size, colour
moving towards the reference as strength rises, no skin-tone swap, geometry kept."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys

import cv2
import numpy as np
import pytest

from engine.api import MakeupRequest
from engine.embedded import EmbeddedEngine
from engine.errors import ImageError, ImageTooLargeError, UnknownLookError
from engine.faces import Face
from engine.images import encode_image, load_image
from engine.regions import FACE_OVAL
from engine.settings import EngineSettings
from engine.transfer import _triangle_affines, paint_low_pass
from tests.conftest import REPO_ROOT, face_path
from tests.engine_helpers import LIMITS, backend, delta_e, faces, makeup_colour, mask, mean_lab, photo

# Slow: the real engine on the shared photos.
pytestmark = pytest.mark.slow

# (selfie, reference): light and dark selfies, light and dark references, strong and subtle makeup.
PAIRS = [
    ("sm_source_02.jpg", "elegant_ref_02.png"),
    ("cpm_source_01.png", "shmt_ref_04.jpg"),
    ("fr_source_01.jpg", "tmw_ref_01.jpg"),
    ("shmt_source_02.jpg", "scgan_ref_01.png"),
]
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@functools.cache
def engine() -> EmbeddedEngine:
    return EmbeddedEngine(EngineSettings(), backend=backend())


@functools.cache
def made_up(selfie: str, reference: str, strength: float) -> np.ndarray:
    prepared = engine().prepare_reference(photo(reference))
    return engine().apply_array(photo(selfie), prepared, strength=strength).image


def face_area(image: np.ndarray, face: Face, grow: float) -> np.ndarray:
    area = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(area, [np.round(face.landmarks[list(FACE_OVAL)]).astype(np.int32)], (1,))
    r = max(1, round(grow * face.inter_ocular))
    return cv2.dilate(area, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


@pytest.mark.parametrize(("selfie", "reference"), PAIRS)
def test_strength_zero_returns_the_input_bit_for_bit(selfie, reference):
    out = made_up(selfie, reference, 0.0)
    assert out is not photo(selfie)
    assert out.dtype == np.uint8 and np.array_equal(out, photo(selfie))


@pytest.mark.parametrize(("selfie", "reference"), PAIRS)
def test_only_the_face_changes_and_the_size_is_kept(selfie, reference):
    out = made_up(selfie, reference, 1.0)
    assert out.shape == photo(selfie).shape
    diff = changed(out, photo(selfie))
    assert diff.sum() > 1000  # the makeup is really there
    assert not (diff & ~face_area(out, faces(selfie)[0], 0.02)).any()


@pytest.mark.parametrize(("selfie", "reference"), PAIRS)
@pytest.mark.parametrize("region", ["lips", "eyes"])
def test_colour_moves_monotonically_towards_the_reference(selfie, reference, region):
    target = makeup_colour(photo(reference), faces(reference)[0], region)
    face = faces(selfie)[0]
    distances = [
        delta_e(makeup_colour(made_up(selfie, reference, s), face, region), target) for s in STRENGTHS
    ]
    assert all(later < earlier for earlier, later in itertools.pairwise(distances)), distances
    assert distances[-1] < 0.75 * distances[0], distances


def test_lips_take_the_reference_lip_colour():
    selfie, reference = "cpm_source_01.png", "shmt_ref_04.jpg"  # natural lips, red lipstick reference
    target = mean_lab(photo(reference), mask(photo(reference), faces(reference)[0], "lips"))
    lips = mean_lab(made_up(selfie, reference, 1.0), mask(photo(selfie), faces(selfie)[0], "lips"))
    hue = np.degrees(np.arctan2(lips[2], lips[1]) - np.arctan2(target[2], target[1]))
    assert abs(hue) < 15 and lips[1] > 0.7 * target[1]


def test_a_light_skinned_reference_does_not_lighten_a_dark_selfie():
    selfie, reference = "fr_source_01.jpg", "elegant_ref_02.png"
    face = faces(selfie)[0]
    skin = mask(photo(selfie), face, "skin") & ~mask(photo(selfie), face, "blush")
    before = mean_lab(photo(selfie), skin)
    after = mean_lab(made_up(selfie, reference, 1.0), skin)
    assert abs(after[0] - before[0]) < 2.0
    assert delta_e(after, before) < 3.0


@pytest.mark.parametrize(("selfie", "reference"), PAIRS)
def test_landmarks_found_again_on_the_result_stay_put(selfie, reference):
    face = faces(selfie)[0]
    again = backend().detect(made_up(selfie, reference, 1.0))[0]
    error = np.linalg.norm(again.landmarks - face.landmarks, axis=1)
    assert error.mean() < 0.03 * face.inter_ocular and np.median(error) < 0.03 * face.inter_ocular


def test_region_strengths_limit_the_change_to_those_regions():
    selfie, reference = "sm_source_02.jpg", "elegant_ref_02.png"
    out = engine().apply_array(photo(selfie), photo(reference), regions={"lips": 1.0}).image
    face = faces(selfie)[0]
    # Analysed at working size: allow the upscaled change a couple of pixels of slack.
    lips = (
        cv2.dilate(mask(photo(selfie), face, "lips", above=0.0).astype(np.uint8), np.ones((5, 5), np.uint8))
        > 0
    )
    diff = changed(out, photo(selfie))
    assert diff.sum() > 200 and not (diff & ~lips).any()


def test_every_face_of_a_group_selfie_is_made_up():
    selfie = "fr_source_03.jpg"
    result = engine().apply_array(photo(selfie), look="red_lips")
    assert result.faces == 2
    for face in faces(selfie):
        lips = mask(photo(selfie), face, "lips")
        assert mean_lab(result.image, lips)[1] > mean_lab(photo(selfie), lips)[1] + 5


@pytest.mark.parametrize("look", ["natural", "red_lips", "smoky_eyes", "berry"])
def test_preset_looks_apply_without_a_reference(look):
    selfie = "shmt_source_03.jpg"
    out = engine().apply_array(photo(selfie), look=look).image
    face = faces(selfie)[0]
    diff = changed(out, photo(selfie))
    assert diff.sum() > 500 and not (diff & ~face_area(out, face, 0.02)).any()


def test_red_lips_redden_and_smoky_eyes_darken():
    selfie = "shmt_source_03.jpg"
    face = faces(selfie)[0]
    lips, eyes = mask(photo(selfie), face, "lips"), mask(photo(selfie), face, "eyes")
    red = engine().apply_array(photo(selfie), look="red_lips").image
    smoky = engine().apply_array(photo(selfie), look="smoky_eyes").image
    assert mean_lab(red, lips)[1] > mean_lab(photo(selfie), lips)[1] + 10
    assert mean_lab(smoky, eyes)[0] < mean_lab(photo(selfie), eyes)[0] - 8


def test_an_unknown_look_is_a_typed_error():
    with pytest.raises(UnknownLookError) as raised:
        engine().apply_array(photo("shmt_source_03.jpg"), look="clown")
    assert "red_lips" in raised.value.user_message


def test_a_large_photo_is_made_up_at_full_resolution():
    selfie = photo("sm_source_01.jpg")
    big = cv2.resize(selfie, (2400, 2400), interpolation=cv2.INTER_CUBIC)
    out = engine().apply_array(big, photo("elegant_ref_02.png")).image
    assert out.shape == big.shape
    face = backend().detect(big)[0]
    diff = changed(out, big)
    assert diff.sum() > 20_000 and not (diff & ~face_area(out, face, 0.02)).any()


def test_the_bytes_api_returns_an_encoded_full_size_result_with_timings():
    request = MakeupRequest(
        selfie=face_path("fr_source_02.png").read_bytes(),  # RGBA PNG
        reference=face_path("elegant_ref_01.png").read_bytes(),
        strength=0.7,
        output_format="PNG",
    )
    result = engine().apply(request)
    image = load_image(result.image, **LIMITS)
    assert (result.width, result.height) == (image.shape[1], image.shape[0]) == (401, 768)
    assert result.faces == 1
    assert {"decode", "detect", "align", "transfer", "composite", "encode"} <= set(result.timings_ms)


def test_bad_bytes_give_typed_errors_naming_the_photo():
    good = face_path("sm_source_01.jpg").read_bytes()
    with pytest.raises(ImageError) as raised:
        engine().apply(MakeupRequest(selfie=good[: len(good) // 3], look="natural"))
    assert raised.value.role == "selfie"
    with pytest.raises(ImageError) as raised:
        engine().apply(MakeupRequest(selfie=good, reference=b""))
    assert raised.value.role == "reference"
    small = EmbeddedEngine(EngineSettings(max_pixels=10_000), backend=backend())
    with pytest.raises(ImageTooLargeError):
        small.apply(MakeupRequest(selfie=encode_image(photo("sm_source_01.jpg")), look="natural"))


def test_a_turned_reference_makes_up_both_eyes_alike():
    """The far half of a 3/4-pose reference is foreshortened with background beside it; its
    mirrored near half stands in, so both of the selfie's eyes change the same way."""
    selfie, reference = "shmt_source_02.jpg", "psgan_ref_01.png"
    prepared = engine().prepare_reference(photo(reference))
    assert prepared.mirrored is not None
    assert engine().prepare_reference(photo("elegant_ref_02.png")).mirrored is None
    out = engine().apply_array(photo(selfie), prepared).image
    face = faces(selfie)[0]
    eyes = mask(photo(selfie), face, "eyes")
    image_left = np.arange(eyes.shape[1])[None, :] < face.landmarks[168, 0]
    changes = [
        mean_lab(out, eyes & side) - mean_lab(photo(selfie), eyes & side)
        for side in (image_left, ~image_left)
    ]
    assert np.linalg.norm(changes[0]) > 3 and np.linalg.norm(changes[1]) > 3
    assert delta_e(*changes) < 3.0


def test_paint_lightness_never_takes_in_what_its_weight_leaves_out():
    # White paint beside black hair over the reference's face: the hair is hidden (weight 0), and
    # the paint beside it stays white instead of greying towards it.
    lab = np.zeros((64, 64, 3), np.float32)
    lab[:, :32, 0], lab[:, 32:, 0] = 90.0, 10.0
    weight = np.zeros((64, 64), np.float32)
    weight[:, :32] = 1.0
    assert paint_low_pass(lab, 6.0, weight)[:, :32, 0].min() > 89.5
    assert paint_low_pass(lab, 6.0)[:, :32, 0].min() < 60.0  # unweighted, it does


def test_triangle_affines_send_each_destination_triangle_onto_its_source():
    rng = np.random.default_rng(7)
    dst = rng.uniform(0, 200, (50, 3, 2)).astype(np.float32)
    src = rng.uniform(0, 200, (50, 3, 2)).astype(np.float32)
    dst[0] = [[5, 5], [10, 10], [20, 20]]  # collinear: covers no pixel, must stay finite
    affines = _triangle_affines(dst, src)
    vertices = np.concatenate([dst, np.ones((50, 3, 1), np.float32)], axis=2)
    mapped = np.einsum("tij,tvj->tvi", affines, vertices)
    assert np.isfinite(affines).all()
    assert np.allclose(mapped[1:], src[1:], atol=0.05)  # a twentieth of a pixel, in float32


def test_importing_the_engine_loads_neither_torch_nor_the_models():
    code = (
        "import sys, engine.embedded, facelab.commands.apply; "
        "print(sorted(m for m in ('torch', 'diffusers', 'mediapipe') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "[]"
