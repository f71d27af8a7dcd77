"""Face analysis on the shared photos: every face found, typed errors, the 68-point mapping."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from engine.errors import (
    FaceTooSmallError,
    NoFaceError,
    ProfileFaceError,
    RotatedFaceError,
    TooDarkError,
)
from engine.faces import N_LANDMARKS, make_face, to_ibug68, usable_faces
from engine.images import load_image
from tests.conftest import NON_FACE_FILES, REPO_ROOT
from tests.engine_helpers import LIMITS, backend, faces, photo
from tests.hostile_images import item

# Slow: the real face detector on the shared photos.
pytestmark = pytest.mark.slow

IMAGE_SUFFIXES = {".jpg", ".png"}


def test_a_face_is_found_on_every_photo_that_has_one(faces_dir):
    names = sorted(p.name for p in faces_dir.glob("*/*") if p.suffix in IMAGE_SUFFIXES)
    assert len(names) >= 40
    missing = [n for n in names if n not in NON_FACE_FILES and not faces(n)]
    assert missing == []
    for name in names:
        for face in faces(name):
            h, w = photo(name).shape[:2]
            assert face.landmarks.shape == (N_LANDMARKS, 2)
            assert face.landmarks.dtype == np.float32
            # Landmarks lie on the face: the mesh may reach a little past a cropped frame, no more.
            assert (face.landmarks > -0.1 * max(h, w)).all() and (face.landmarks[:, 0] < 1.1 * w).all()


@pytest.mark.parametrize("name", sorted(NON_FACE_FILES))
def test_a_photo_without_a_face_raises_no_face(name):
    role = "selfie" if "_source_" in name else "reference"
    with pytest.raises(NoFaceError) as raised:
        usable_faces(faces(name), role)
    assert raised.value.role == role
    assert ("selfie" if role == "selfie" else "reference photo") in raised.value.user_message


def test_every_shared_face_is_usable_both_as_selfie_and_as_reference(faces_dir):
    """The checks for dark, blank and upside-down faces refuse none of the real photos."""
    names = sorted(p.name for p in faces_dir.glob("*/*") if p.suffix in IMAGE_SUFFIXES)
    for name in sorted(set(names) - NON_FACE_FILES):
        found = list(faces(name))
        assert usable_faces(found, "selfie") and usable_faces(found, "reference"), name
        assert all(abs(face.roll_deg) < 30 and face.luma is not None and face.luma > 60 for face in found)


UPRIGHT = ["sm_source_01.jpg", "elegant_ref_02.png", "shmt_source_02.jpg", "fr_ref_01.jpg", "tmw_ref_01.jpg"]


@pytest.mark.parametrize("name", UPRIGHT)
@pytest.mark.parametrize("role", ["selfie", "reference"])
def test_an_upside_down_face_is_refused_not_made_up(name, role):
    """The mesh fits an upright face onto an upside-down one, lip points on the brows: the
    orientation check catches it, whichever photo it is."""
    found = backend().detect(np.ascontiguousarray(photo(name)[::-1, ::-1]))
    assert found and found[0].upside_down
    with pytest.raises(RotatedFaceError) as raised:
        usable_faces(found, role)
    assert raised.value.role == role and "upside down" in raised.value.user_message
    assert not faces(name)[0].upside_down


def test_a_sideways_face_is_refused_by_its_tilt():
    found = backend().detect(np.ascontiguousarray(np.rot90(photo("sm_source_01.jpg"))))
    assert abs(abs(found[0].roll_deg) - 90) < 15
    with pytest.raises(RotatedFaceError):
        usable_faces(found, "selfie")


@pytest.mark.parametrize("name", UPRIGHT)
def test_a_near_black_face_is_too_dark_and_a_dim_one_is_fine(name):
    image = photo(name).astype(np.float32)
    dark = backend().detect(np.round(image * 0.07).astype(np.uint8))
    assert dark, "the mesh still finds the face: it must not be made up"
    with pytest.raises(TooDarkError) as raised:
        usable_faces(dark, "reference")
    assert raised.value.user_message.startswith("The reference photo is too dark")
    dim = backend().detect(np.round(image * 0.3).astype(np.uint8))
    assert usable_faces(dim, "selfie")


def test_a_face_cut_out_of_a_transparent_photo_is_no_face():
    image = load_image(item("transparent_face").data, **LIMITS)
    found = backend().detect(image)
    assert found and not found[0].features_visible  # the mesh guessed a face onto the blank hole
    with pytest.raises(NoFaceError):
        usable_faces(found, "selfie")


@pytest.mark.parametrize(("name", "count"), [("fr_source_03.jpg", 2), ("dlib_source_01.jpg", 3)])
def test_every_face_of_a_group_selfie_is_found(name, count):
    found = faces(name)
    assert len(found) == count
    assert len(usable_faces(list(found), "selfie")) == count
    assert [f.area for f in found] == sorted((f.area for f in found), reverse=True)


def test_the_reference_uses_its_largest_face():
    found = list(faces("dlib_source_01.jpg"))
    assert usable_faces(found, "reference") == [found[0]]


def test_a_small_face_in_a_large_photo_is_found():
    face = photo("sm_source_01.jpg")
    canvas = np.full((3000, 4000, 3), 90, np.uint8)
    small = cv2.resize(face, (200, 200), interpolation=cv2.INTER_AREA)
    canvas[2400:2600, 3100:3300] = small
    found = backend().detect(canvas)
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].bbox
    assert 3100 <= x0 < x1 <= 3300 and 2400 <= y0 < y1 <= 2600


def test_landmarks_follow_the_face_when_the_photo_is_scaled():
    name = "shmt_source_02.jpg"
    image = photo(name)
    big = cv2.resize(image, None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC)
    original, scaled = faces(name)[0], backend().detect(big)[0]
    error = np.linalg.norm(scaled.landmarks / 3.0 - original.landmarks, axis=1).mean()
    assert error < 0.05 * original.inter_ocular


def test_tiny_and_turned_faces_raise_typed_errors_naming_the_photo():
    face = faces("sm_source_01.jpg")[0]
    tiny = make_face(face.landmarks * 0.1, face.yaw_deg)
    with pytest.raises(FaceTooSmallError) as raised:
        usable_faces([tiny], "selfie")
    assert "selfie" in raised.value.user_message and raised.value.role == "selfie"
    turned = make_face(face.landmarks, 70.0)
    with pytest.raises(ProfileFaceError) as raised_profile:
        usable_faces([turned], "reference")
    assert "reference photo" in raised_profile.value.user_message
    # In a group selfie, a tiny background face is skipped rather than refused.
    assert usable_faces([face, tiny], "selfie") == [face]


def test_frontal_faces_have_small_yaw_and_a_turned_one_larger():
    assert abs(faces("shmt_source_02.jpg")[0].yaw_deg) < 10
    assert abs(faces("csdmt_source_01.jpg")[0].yaw_deg) > 20


@pytest.mark.parametrize(
    "name", ["sm_source_01.jpg", "cpm_source_01.png", "tmw_ref_01.jpg", "elegant_ref_02.png"]
)
def test_ibug68_points_are_in_the_300w_order(name):
    face = faces(name)[0]
    p = to_ibug68(face)
    assert p.shape == (68, 2)
    x, y = p[:, 0], p[:, 1]
    slack = 0.02 * face.inter_ocular  # the jaw's top points run nearly vertical
    # On a frontal face the jaw runs from the image's left to its right; the chin (8) is its lowest point.
    assert (np.diff(x[0:17]) > -slack).all() and x[0] < x[4] < x[8] < x[12] < x[16]
    assert y[8] == y[0:17].max()
    # Brows are above the eyes, each brow over its own eye, outer ends first.
    assert y[17:22].max() < y[36:42].min() and y[22:27].max() < y[42:48].min()
    assert x[17] < x[21] < x[22] < x[26]
    assert x[36] < x[39] < x[42] < x[45]
    # Upper lids above lower lids.
    assert y[37] < y[41] and y[38] < y[40] and y[43] < y[47] and y[44] < y[46]
    # Nose bridge top to tip goes down; nostrils left to right, below the eyes, above the mouth.
    assert (np.diff(y[27:31]) > 0).all()
    assert (np.diff(x[31:36]) > 0).all() and y[31:36].min() > y[36:48].max() and y[31:36].max() < y[51]
    # Outer lips: corners 48 and 54, top centre 51 above bottom centre 57; the inner lips inside.
    assert x[48] < x[51] < x[54] and y[51] < y[57]
    assert x[48] <= x[60] < x[64] <= x[54] and y[51] <= y[62] <= y[66] <= y[57]


_DETECT_PEAK = """
import sys
import numpy as np
from engine.faces import MediapipeBackend

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

backend = MediapipeBackend()
backend.detect(np.full((64, 64, 3), 128, np.uint8))  # models loaded and run once
rgb = np.full((int(sys.argv[1]), int(sys.argv[2]), 3), 128, np.uint8)
before = peak_kib()
found = backend.detect(rgb)
print(len(found), (peak_kib() - before) * 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize(("height", "width"), [(800, 8000), (8000, 800)])
def test_searching_a_long_photo_for_a_face_needs_no_copy_of_its_size(height: int, width: int) -> None:
    """A blank 10:1 photo (the longest the gate accepts) goes through every search pass, the padded
    one included; padding it at full size took 420 MB here (and gigabytes for longer strips)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _DETECT_PEAK, str(height), str(width)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found, growth = done.stdout.split()
    assert found == "0"
    assert int(growth) < 64 * 1024 * 1024  # the photo itself is 19 MB
