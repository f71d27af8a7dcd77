"""engine/images.py: every hostile or odd file either decodes to the right RGB picture or raises the
expected ImageError kind, nothing else escapes, and refusing bombs costs no memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageError, ImageTooLargeError
from engine.images import encode_image, load_image, sniff_format
from tests.hostile_images import ALL_NAMES, LIMITS, encode, gradient, item, png_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def load(data: bytes | bytearray, **limits: int) -> np.ndarray:
    return load_image(
        data,
        max_pixels=limits.get("max_pixels", LIMITS.max_pixels),
        max_bytes=limits.get("max_bytes", LIMITS.max_bytes),
        role="selfie",
    )


# engine.images silences this at import, but pytest installs its own filters around each test.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("name", ALL_NAMES)
def test_corpus_item_gives_expected_error_or_picture(name: str) -> None:
    case = item(name)
    expect = case.expect
    if expect.error is not None:
        with pytest.raises(ImageError) as caught:
            load(case.data)
        error = caught.value
        assert error.kind == expect.error
        assert error.role == "selfie"
        assert error.user_message.startswith("Your selfie ")
        assert "\n" not in error.user_message
        return
    assert expect.shape is not None and expect.like is not None
    rgb = load(case.data)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (*expect.shape, 3)
    assert rgb.flags.c_contiguous and rgb.flags.writeable
    difference = np.abs(rgb.astype(np.int16) - expect.like.astype(np.int16)).mean()
    assert difference <= expect.tolerance


def test_cmyk_red_stays_red_and_16_bit_mid_grey_stays_mid_grey() -> None:
    # Spelled out on top of the corpus comparison, since these are the classic conversion bugs.
    red = load(item("cmyk_red_jpeg").data)[10, 10]
    assert red[0] > 200 and red[1] < 40 and red[2] < 50
    ramp = load(item("png16_gray_ramp").data)
    assert tuple(ramp[0, 128]) == (128, 128, 128)
    assert tuple(ramp[0, 255]) == (255, 255, 255) and tuple(ramp[0, 0]) == (0, 0, 0)


def test_format_is_sniffed_from_magic_bytes() -> None:
    small = Image.fromarray(gradient(8, 8))
    assert sniff_format(encode(small, "JPEG")) == "JPEG"
    assert sniff_format(encode(small, "PNG")) == "PNG"
    assert sniff_format(encode(small, "GIF")) == "GIF"
    assert sniff_format(encode(small, "WEBP")) == "WEBP"
    assert sniff_format(encode(small, "BMP")) == "BMP"
    assert sniff_format(encode(small, "HEIF")) == "HEIF"
    assert sniff_format(encode(small, "AVIF")) == "AVIF"
    assert sniff_format(encode(small, "TIFF")) == "TIFF"
    for not_an_image in (b"", b"%PDF-1.7", b"PK\x03\x04", b"<svg/>", b"\x00\x00\x00\x18ftypmp42isom"):
        assert sniff_format(not_an_image) is None


def test_pixel_limit_refuses_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.fromarray(gradient(40, 30)), "PNG")

    def decoding_forbidden(self: Image.Image) -> None:
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", decoding_forbidden)
    with pytest.raises(ImageTooLargeError) as caught:
        load(data, max_pixels=40 * 30 - 1)
    assert "40×30" in caught.value.user_message


def test_byte_limit_is_inclusive() -> None:
    data = encode(Image.fromarray(gradient(40, 30)), "PNG")
    assert load(data, max_bytes=len(data)).shape == (30, 40, 3)
    with pytest.raises(ImageTooLargeError):
        load(data, max_bytes=len(data) - 1)


def test_bytearray_from_a_chat_download_is_accepted() -> None:
    data = bytearray(encode(Image.fromarray(gradient(40, 30)), "PNG"))  # PTB downloads as bytearray
    assert load(data).shape == (30, 40, 3)


def test_role_names_the_image_in_the_message() -> None:
    with pytest.raises(ImageError) as caught:
        load_image(b"", max_pixels=100, max_bytes=100, role="reference")
    assert caught.value.role == "reference"
    assert caught.value.user_message.startswith("The reference photo ")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "HEIF", "AVIF", "BMP"])
def test_damaged_files_raise_image_error_or_decode(fmt: str) -> None:
    """Cut and bit-flipped variants of a valid file: a picture or an ImageError, never anything else."""
    valid = encode(Image.fromarray(gradient(48, 32)), fmt)
    rng = np.random.default_rng(2026)
    variants = [valid[:cut] for cut in rng.integers(1, len(valid), 12)]
    for _ in range(24):
        damaged = bytearray(valid)
        positions = rng.integers(0, len(valid), 3)
        damaged[positions[0]] ^= 0xFF
        damaged[positions[1]] = 0
        damaged[positions[2]] = 0xFF
        variants.append(bytes(damaged))
    refused = 0
    for data in variants:
        try:
            rgb = load(data)
        except ImageError:
            refused += 1
        else:
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    # Some damage still decodes (a flipped pixel byte, a cut trailer); most must be noticed, or the
    # variants were not damaging anything.
    assert refused >= len(variants) // 3


@pytest.mark.parametrize(("fmt", "tolerance"), [("JPEG", 2.0), ("PNG", 0.0), ("WEBP", 3.0), ("jpg", 2.0)])
def test_encode_image_round_trips(fmt: str, tolerance: float) -> None:
    picture = gradient(64, 48)
    data = encode_image(picture, fmt)
    decoded = load(data)
    assert decoded.shape == picture.shape
    assert np.abs(decoded.astype(np.int16) - picture).mean() <= tolerance


def test_encode_image_refuses_wrong_input() -> None:
    with pytest.raises(ValueError, match="output format"):
        encode_image(gradient(8, 8), "GIF")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        encode_image(gradient(8, 8).astype(np.float32), "PNG")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        encode_image(np.zeros((8, 8), np.uint8), "PNG")


# ----------------------------------------------------------------------------- memory

_MEASURE = """
import gc, sys
from engine.errors import ImageError
from engine.images import load_image

def peak_rss_kib():
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the parent (here
    # the pytest process, whose own peak would hide everything measured below).
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

data = open(sys.argv[1], "rb").read()
gc.collect()
before = peak_rss_kib()
try:
    load_image(data, max_pixels=int(sys.argv[2]), max_bytes=int(sys.argv[3]))
    outcome = "decoded"
except ImageError as error:
    outcome = error.kind
print(outcome, (peak_rss_kib() - before) * 1024)
"""


def peak_memory_growth(data: bytes, tmp_path: Path) -> tuple[str, int]:
    """The outcome of loading `data` in a fresh process ("decoded" or the ImageError kind) and the
    bytes by which it raised that process's peak resident memory.

    Measured in a subprocess because PIL allocates pixels in C, out of tracemalloc's sight; the
    file is written first so building it does not set the peak the load is measured against."""
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [str(path), str(LIMITS.max_pixels), str(LIMITS.max_bytes)]
    output = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args], env=env, capture_output=True, text=True, check=True
    )
    outcome, growth = output.stdout.split()
    return outcome, int(growth)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_memory_measurement_sees_a_real_decode(tmp_path: Path) -> None:
    """Control: decoding a legitimate 20-megapixel PNG raises the peak by several pixel buffers
    (typically 168 MB: PIL's buffer, the bytes numpy reads and the returned array), so the small
    bounds below would notice a decode."""
    width, height = 5000, 4000
    data = png_bytes(width, height, (bytes(width * 3) for _ in range(height)))
    outcome, growth = peak_memory_growth(data, tmp_path)
    assert outcome == "decoded"
    assert growth > width * height * 3


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize(
    "name",
    [
        "png_claims_30000px",
        "gif_claims_65535px",
        "jpeg_claims_8000px",
        "webp_claims_16383px",
        "heic_claims_20000px",
    ],
)
def test_refusing_a_bomb_allocates_nothing_big(name: str, tmp_path: Path) -> None:
    outcome, growth = peak_memory_growth(item(name).data, tmp_path)
    assert outcome == "too_large"
    assert growth < 8 * MB


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize("name", ["strip_1x20000", "strip_20000x1000", "strip_1x100000"])
def test_refusing_a_strip_allocates_nothing_big(name: str, tmp_path: Path) -> None:
    outcome, growth = peak_memory_growth(item(name).data, tmp_path)
    assert outcome == "bad_shape"
    assert growth < 8 * MB


@pytest.mark.parametrize(("width", "height"), [(4000, 400), (400, 4000), (1, 10), (10, 1), (1, 1)])
def test_photos_up_to_ten_times_as_long_as_wide_are_accepted(width: int, height: int) -> None:
    assert load(encode(Image.new("RGB", (width, height)), "PNG")).shape == (height, width, 3)


@pytest.mark.parametrize(("width", "height"), [(4001, 400), (400, 4001), (1, 11), (11, 1)])
def test_longer_strips_are_refused_naming_their_size(width: int, height: int) -> None:
    with pytest.raises(ImageError) as caught:
        load(encode(Image.new("RGB", (width, height)), "PNG"))
    assert caught.value.kind == "bad_shape"
    assert f"({width}×{height} pixels)" in caught.value.user_message


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize("name", ["huge_exif_jpeg", "huge_exif_png"])
def test_huge_metadata_costs_memory_in_proportion_to_the_file(name: str, tmp_path: Path) -> None:
    data = item(name).data
    outcome, growth = peak_memory_growth(data, tmp_path)
    assert outcome == "decoded"
    assert growth < 2 * len(data) + 8 * MB


def test_pil_bomb_error_maps_to_too_large() -> None:
    with pytest.raises(ImageTooLargeError):
        load(item("png_claims_30000px").data, max_pixels=10**12)  # PIL's own fence fires first
