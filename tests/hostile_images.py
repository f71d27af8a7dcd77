"""A corpus of hostile and odd image files, generated in memory (no binary files in the repository).

Every loader, the CLI and the chat end-to-end tests feed the same corpus, so one list says what each
kind of bad or unusual upload must produce:

    from tests.hostile_images import corpus
    for item in corpus():          # item.name, item.filename, item.data, item.expect
        ...

`Expect.error` is the ImageError kind `engine.images.load_image` raises (None: it decodes, into
`shape`, looking like `like` within `tolerance`); `Expect.engine` lists the outcomes that are right
once the whole engine runs on it ("ok" or an EngineError kind). Limits are the defaults of
`engine.settings.EngineSettings`. Photo-like items are built from the shared face photos
(`tests.conftest.face_path`, which skips when they are absent); `synthetic_corpus()` needs none.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pillow_heif
from PIL import Image

from engine.settings import EngineSettings
from tests.conftest import face_path

pillow_heif.register_heif_opener()  # so the corpus can write HEIC even without engine.images loaded

LIMITS = EngineSettings()
OK = frozenset({"ok"})
NO_USABLE_FACE = frozenset({"no_face", "face_too_small"})
# What the engine's answer for each face refusal says, whichever photo it names.
FACE_REFUSALS = {
    "no_face": "I couldn't find a face in your",
    "face_too_small": "is too small",
    "too_dark": "is too dark",
    "rotated_face": "is upside down or on its side",
}


@dataclass(frozen=True)
class Expect:
    error: str | None = None  # ImageError kind load_image raises; None when the file decodes
    shape: tuple[int, int] | None = None  # (height, width) of the upright decoded image
    like: np.ndarray | None = None  # HxWx3 uint8 the decoded image should look like
    tolerance: float = 0.0  # largest mean absolute difference from `like`, in 8-bit levels
    engine: frozenset[str] = OK  # right outcomes through the whole engine: "ok" or EngineError kinds
    faces: int | None = None  # faces the engine should make up, when that matters


@dataclass(frozen=True)
class HostileImage:
    name: str
    filename: str  # what a user might have called it; extensions lie on purpose
    data: bytes
    expect: Expect


Upload = tuple[str, bytes, Expect]  # what a builder makes: file name, bytes, expectation


def refused(filename: str, data: bytes, kind: str) -> Upload:
    return filename, data, Expect(error=kind, engine=frozenset({kind}))


def decoded(
    filename: str,
    data: bytes,
    like: np.ndarray,
    tolerance: float,
    *,
    engine: frozenset[str] = OK,
    faces: int | None = None,
) -> Upload:
    shape = (like.shape[0], like.shape[1])
    return filename, data, Expect(shape=shape, like=like, tolerance=tolerance, engine=engine, faces=faces)


# ----------------------------------------------------------------------------- encoding helpers


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(
    width: int, height: int, rows: Iterable[bytes], *, color_type: int = 2, bit_depth: int = 8
) -> bytes:
    """A PNG written chunk by chunk, streaming `rows` (raw scanlines without filter byte) through zlib,
    so huge or lying images cost no more memory than their compressed size."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    compressor = zlib.compressobj(1)
    idat = b"".join(compressor.compress(b"\x00" + row) for row in rows) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header (SOF0) of a baseline JPEG so it claims another size."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def jpeg_with_segments(data: bytes, segments: Iterable[tuple[int, bytes]]) -> bytes:
    """Insert APPn segments right after the start-of-image marker."""
    extra = b"".join(struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body for marker, body in segments)
    return data[:2] + extra + data[2:]


def gradient(width: int, height: int) -> np.ndarray:
    """A smooth colour picture: lossy codecs keep it close, so decoded pixels can be compared."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack(np.broadcast_arrays(x + 0 * y, y + 0 * x, (x + y) / 2), axis=2).astype(np.uint8)


def solid(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


def gray3(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


# Display P3 colorants adapted to D50 (Apple's profile) and sRGB's (LittleCMS's built-in sRGB).
P3_TO_XYZ = np.array(
    [[0.515102, 0.291965, 0.157153], [0.241196, 0.692236, 0.066561], [-0.001053, 0.041885, 0.784072]]
)
SRGB_TO_XYZ = np.array(
    [[0.436066, 0.385147, 0.143066], [0.222488, 0.716873, 0.060608], [0.013916, 0.097076, 0.714096]]
)
P3_GAMMA = 563 / 256  # 2.2 as the u8Fixed8 number an ICC 'curv' tag stores


def display_p3_profile() -> bytes:
    """A minimal ICC v2 matrix/gamma RGB profile for Display P3 (no profile files in the repository)."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    name = b"Display P3 (Face Lab test)"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(name) + 1) + name + b"\x00" + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(P3_GAMMA * 256)) + bytes(2)
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        *((sig, xyz(*P3_TO_XYZ[:, i])) for i, sig in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))),
        *((sig, curve) for sig in (b"rTRC", b"gTRC", b"bTRC")),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, payload in tags:
        payload += bytes(-len(payload) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(payload))
        body += payload
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(24)
        + bytes(4)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + body


def p3_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """Reference conversion of P3 pixel values to sRGB (relative colorimetric, clipped), in numpy."""
    linear = (rgb / 255.0) ** P3_GAMMA
    srgb = np.clip(linear @ (np.linalg.inv(SRGB_TO_XYZ) @ P3_TO_XYZ).T, 0, 1)
    encoded = np.where(srgb <= 0.0031308, 12.92 * srgb, 1.055 * srgb ** (1 / 2.4) - 0.055)
    return np.round(encoded * 255).astype(np.uint8)


@cache
def face_rgb(name: str) -> np.ndarray:
    """A shared face photo as RGB, decoded with plain PIL (independent of the code under test)."""
    with Image.open(face_path(name)) as image:
        return np.array(image.convert("RGB"))


def face_file(name: str) -> bytes:
    return face_path(name).read_bytes()


SELFIE = "sm_source_01.jpg"  # frontal face, 400x400
TALL_SELFIE = "sm_source_02.jpg"  # 394 wide x 390 high: a missed rotation swaps the shape
TILED_FACES = (
    "sm_source_01.jpg",
    "sm_source_02.jpg",
    "elegant_source_01.png",
    "elegant_source_02.png",
    "psgan_source_01.png",
    "cpm_source_01.png",
    "shmt_source_01.jpg",
    "shmt_source_03.jpg",
)

# ----------------------------------------------------------------------------- synthetic items

Builder = Callable[[], Upload]
SYNTHETIC: dict[str, Builder] = {}  # item name (the builder's name) -> builder
PHOTOS: dict[str, Builder] = {}


def synthetic(builder: Builder) -> Builder:
    SYNTHETIC[builder.__name__] = builder
    return builder


def photo(builder: Builder) -> Builder:
    PHOTOS[builder.__name__] = builder
    return builder


@synthetic
def zero_bytes() -> Upload:
    return refused("empty.jpg", b"", "bad_image")


@synthetic
def random_bytes() -> Upload:
    return refused("photo.jpg", np.random.default_rng(6).bytes(4096), "bad_image")


@synthetic
def pdf_renamed_jpg() -> Upload:
    pdf = (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )
    return refused("selfie.jpg", pdf, "bad_image")


@synthetic
def zip_renamed_jpg() -> Upload:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # a real archive holding a real JPEG
        archive.writestr("photo.jpg", encode(Image.fromarray(gradient(64, 64)), "JPEG"))
    return refused("selfie.jpg", buffer.getvalue(), "bad_image")


@synthetic
def text_file() -> Upload:
    return refused("selfie.jpg", "Hello! Here is my selfie 😊\n".encode(), "bad_image")


@synthetic
def html_error_page() -> Upload:
    page = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>"
    return refused("download.jpg", page, "bad_image")


@synthetic
def svg_drawing() -> Upload:
    svg = (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<circle cx="50" cy="50" r="40" fill="red"/></svg>'
    )
    return refused("face.svg", svg, "bad_image")


@synthetic
def tiff_image() -> Upload:
    return refused("scan.tif", encode(Image.fromarray(gradient(64, 48)), "TIFF"), "bad_image")


@synthetic
def video_renamed_jpg() -> Upload:
    mp4 = struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isomiso2" + struct.pack(">I", 8) + b"free"
    return refused("clip.jpg", mp4, "bad_image")


@synthetic
def png_claims_30000px() -> Upload:
    """Header says 30000x30000 (2.7 GB of pixels); PIL's own bomb fence fires on it."""
    data = png_bytes(30000, 30000, [bytes(90000)])
    return refused("bomb.png", data, "too_large")


@synthetic
def jpeg_claims_8000px() -> Upload:
    """64 megapixels: under PIL's fence, over ours (EngineSettings.max_pixels)."""
    small = encode(Image.fromarray(gradient(64, 64)), "JPEG")
    return refused("bomb.jpg", jpeg_with_size(small, 8000, 8000), "too_large")


@synthetic
def gif_claims_65535px() -> Upload:
    small = bytearray(encode(Image.fromarray(gradient(16, 16)), "GIF"))
    small[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen size
    return refused("bomb.gif", bytes(small), "too_large")


@synthetic
def webp_claims_16383px() -> Upload:
    """A lossless WebP whose VP8L header (14-bit width-1 and height-1) claims the format's maximum."""
    data = bytearray(encode(Image.fromarray(gradient(16, 16)), "WEBP", lossless=True))
    size_bits = data.index(b"VP8L") + 9  # after the chunk header and the 0x2f signature byte
    packed = int.from_bytes(data[size_bits : size_bits + 4], "little")
    packed = packed & ~((1 << 28) - 1) | 16382 | 16382 << 14
    data[size_bits : size_bits + 4] = packed.to_bytes(4, "little")
    return refused("bomb.webp", bytes(data), "too_large")


@synthetic
def heic_claims_20000px() -> Upload:
    """A HEIC whose image spatial extents box ('ispe') claims 20000x20000."""
    data = bytearray(encode(Image.fromarray(gradient(64, 64)), "HEIF"))
    extents = data.index(b"ispe") + 8  # after the box type and its version/flags word
    data[extents : extents + 8] = struct.pack(">II", 20000, 20000)
    return refused("bomb.heic", bytes(data), "too_large")


@synthetic
def over_max_bytes() -> Upload:
    data = b"\xff\xd8\xff\xe0" + bytes(LIMITS.max_bytes)
    return refused("huge.jpg", data, "too_large")


@synthetic
def huge_exif_jpeg() -> Upload:
    """A maximal EXIF segment plus 16 MB of further APP segments in front of a small picture."""
    picture = Image.fromarray(gradient(96, 64))
    exif = Image.Exif()
    exif[0x010E] = "x" * 65000  # ImageDescription filling the 64 KB segment
    data = encode(picture, "JPEG", quality=95, exif=exif)
    padding = [(0xE0 + n % 16, b"FaceLabPadding\x00" + bytes(65000)) for n in range(1, 257)]
    data = jpeg_with_segments(data, padding)
    return decoded("exif.jpg", data, np.array(picture), 3.0, engine=frozenset({"no_face"}))


@synthetic
def huge_exif_png() -> Upload:
    """An 8 MB eXIf chunk (PNG puts no limit on it): skipped unread, its orientation tag included."""
    picture = gradient(96, 64)
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180, ignored along with the rest
    exif[0x010E] = "x" * (8 << 20)
    data = encode(Image.fromarray(picture), "PNG", exif=exif)
    return decoded("exif.png", data, picture, 0.0, engine=frozenset({"no_face"}))


@synthetic
def broken_exif_jpeg() -> Upload:
    """EXIF whose first directory points far past its end: the metadata is ignored, the photo kept."""
    picture = gradient(96, 64)
    broken = b"Exif\x00\x00II*\x00" + struct.pack("<I", 0xFFFFFFF0)
    data = jpeg_with_segments(encode(Image.fromarray(picture), "JPEG", quality=95), [(0xE1, broken)])
    return decoded("odd.jpg", data, picture, 3.0, engine=NO_USABLE_FACE)


@synthetic
def cmyk_red_jpeg() -> Upload:
    data = encode(Image.new("RGB", (64, 48), (220, 20, 30)).convert("CMYK"), "JPEG", quality=95)
    return decoded("red.jpg", data, solid(48, 64, (220, 20, 30)), 4.0, engine=NO_USABLE_FACE)


@synthetic
def display_p3_png() -> Upload:
    """Lipstick, skin and grey patches tagged Display P3, as iPhones send: they must be converted."""
    patches = np.array([[(200, 40, 60), (225, 170, 150)], [(128, 128, 128), (90, 40, 120)]], np.uint8)
    picture = patches.repeat(16, axis=0).repeat(16, axis=1)
    data = encode(Image.fromarray(picture), "PNG", icc_profile=display_p3_profile())
    return decoded("IMG_0003.png", data, p3_to_srgb(picture), 1.0, engine=NO_USABLE_FACE)


@synthetic
def png16_gray_ramp() -> Upload:
    """16-bit grey ramp: level v*257 must come back as v (PIL's convert would clip it to 255)."""
    ramp = np.tile(np.arange(256, dtype=np.uint16) * 257, (32, 1))  # 8:1, within the shape limit
    ramp[:, 128] = 32768  # mid-grey
    expected = gray3(np.tile(np.arange(256, dtype=np.uint8), (32, 1)))
    expected[:, 128] = 128
    data = encode(Image.fromarray(ramp), "PNG")
    return decoded("ramp16.png", data, expected, 0.0, engine=NO_USABLE_FACE)


@synthetic
def png16_rgb() -> Upload:
    picture = gradient(80, 60)
    rows = (row.astype(">u2").tobytes() for row in picture.astype(np.uint16) * 257)
    data = png_bytes(80, 60, rows, color_type=2, bit_depth=16)
    return decoded("deep.png", data, picture, 0.0, engine=NO_USABLE_FACE)


@synthetic
def palette_with_transparency() -> Upload:
    """Left half uses a transparent palette entry with black behind it; it must come back white."""
    indices = np.zeros((32, 64), np.uint8)
    indices[:, 32:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 200, 30, 40])
    data = encode(image, "PNG", transparency=0)
    expected = solid(32, 64, (255, 255, 255))
    expected[:, 32:] = (200, 30, 40)
    return decoded("sticker.png", data, expected, 0.0, engine=NO_USABLE_FACE)


@synthetic
def la_png() -> Upload:
    gray = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    alpha = np.repeat(np.linspace(0, 255, 32).astype(np.uint8)[:, None], 64, axis=1)
    data = encode(Image.fromarray(np.stack([gray, alpha], axis=2), mode="LA"), "PNG")
    return decoded("gray_alpha.png", data, gray3(over_white(gray, alpha)), 1.0, engine=NO_USABLE_FACE)


@synthetic
def one_bit_png() -> Upload:
    checker = ((np.indices((48, 64)) // 8).sum(axis=0) % 2).astype(bool)
    data = encode(Image.fromarray(checker), "PNG")
    return decoded("lineart.png", data, gray3(checker * np.uint8(255)), 0.0, engine=NO_USABLE_FACE)


@synthetic
def tiny_1x1() -> Upload:
    data = encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")
    return decoded("pixel.png", data, solid(1, 1, (10, 200, 30)), 0.0, engine=NO_USABLE_FACE)


@synthetic
def elongated_strip() -> Upload:
    return refused("banner.png", encode(Image.fromarray(gradient(6000, 4)), "PNG"), "bad_shape")


def grey_png(width: int, height: int) -> bytes:
    return png_bytes(width, height, (bytes([128]) * (3 * width) for _ in range(height)))


@synthetic
def strip_1x20000() -> Upload:
    """165 bytes that once took 2.6 GB and 15 s before "no face"."""
    return refused("line.png", grey_png(1, 20000), "bad_shape")


@synthetic
def strip_20000x1000() -> Upload:
    """20 megapixels (under the pixel limit), 20 times as wide as high."""
    return refused("panorama.png", grey_png(20000, 1000), "bad_shape")


@synthetic
def strip_1x100000() -> Upload:
    """Once a traceback: padding it for the detector asked for 60 GB."""
    return refused("line.png", grey_png(1, 100000), "bad_shape")


@synthetic
def panorama_at_the_ratio_limit() -> Upload:
    """10:1, the longest strip the gate accepts."""
    picture = gradient(4000, 400)
    data = encode(Image.fromarray(picture), "PNG")
    return decoded("panorama.png", data, picture, 0.0, engine=NO_USABLE_FACE)


def over_white(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Expected compositing of `values` with `alpha` over a white background, in 8 bits."""
    a = alpha.astype(np.float32)[..., None] / 255 if values.ndim == 3 else alpha.astype(np.float32) / 255
    return np.round(values * a + 255 * (1 - a)).astype(np.uint8)


# ----------------------------------------------------------------------------- photo items


@photo
def plain_selfie_jpeg() -> Upload:
    return decoded("selfie.jpg", face_file(SELFIE), face_rgb(SELFIE), 0.0, faces=1)


@photo
def jpeg_named_png() -> Upload:
    return decoded("selfie.png", face_file(SELFIE), face_rgb(SELFIE), 0.0, faces=1)


@photo
def truncated_jpeg() -> Upload:
    data = face_file(SELFIE)
    return refused("selfie.jpg", data[: len(data) // 2], "bad_image")


@photo
def truncated_png() -> Upload:
    data = encode(Image.fromarray(face_rgb(SELFIE)), "PNG")
    return refused("selfie.png", data[: len(data) * 2 // 3], "bad_image")


@photo
def exif_rotated_jpeg() -> Upload:
    """Stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view"), as phones do."""
    upright = face_rgb(TALL_SELFIE)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(np.rot90(upright, 1)), "JPEG", quality=95, exif=exif)
    return decoded("IMG_0001.jpg", data, upright, 3.0, faces=1)


@photo
def exif_mirrored_webp() -> Upload:
    upright = face_rgb(TALL_SELFIE)
    exif = Image.Exif()
    exif[0x0112] = 2  # mirrored horizontally
    data = encode(Image.fromarray(upright[:, ::-1]), "WEBP", quality=95, exif=exif)
    return decoded("selfie.webp", data, upright, 4.0, faces=1)


@photo
def cmyk_jpeg_face() -> Upload:
    data = encode(Image.fromarray(face_rgb(SELFIE)).convert("CMYK"), "JPEG", quality=95)
    return decoded("print.jpg", data, face_rgb(SELFIE), 3.0, faces=1)


@photo
def png16_gray_face() -> Upload:
    gray = np.array(Image.fromarray(face_rgb(SELFIE)).convert("L"))
    deep = np.minimum(gray.astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)  # low byte must not matter
    data = encode(Image.fromarray(deep), "PNG")
    return decoded("scan16.png", data, gray3(gray), 0.0, faces=1)


@photo
def palette_face() -> Upload:
    data = encode(Image.fromarray(face_rgb(SELFIE)).quantize(256), "PNG")
    return decoded("selfie_256.png", data, face_rgb(SELFIE), 6.0, faces=1)


@photo
def rgba_cutout_face() -> Upload:
    """A background-removed selfie: black under alpha 0 must not show; it becomes white."""
    rgb = face_rgb(SELFIE)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    inside = ((yy - h / 2) / (h * 0.48)) ** 2 + ((xx - w / 2) / (w * 0.42)) ** 2 <= 1
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    data = encode(Image.fromarray(np.dstack([rgb * inside[..., None], alpha]), mode="RGBA"), "PNG")
    return decoded("cutout.png", data, over_white(rgb, alpha), 0.0, faces=1)


@photo
def grayscale_jpeg_face() -> Upload:
    gray = Image.fromarray(face_rgb(SELFIE)).convert("L")
    data = encode(gray, "JPEG", quality=95)
    return decoded("bw.jpg", data, gray3(np.array(gray)), 2.0, faces=1)


@photo
def animated_gif_face() -> Upload:
    frames = [Image.fromarray(face_rgb(SELFIE)), Image.fromarray(gradient(400, 400))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    return decoded("wave.gif", data, face_rgb(SELFIE), 8.0, faces=1)


@photo
def animated_webp_face() -> Upload:
    frames = [Image.fromarray(face_rgb(SELFIE)), Image.fromarray(gradient(400, 400))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], quality=95)
    return decoded("wave.webp", data, face_rgb(SELFIE), 4.0, faces=1)


@photo
def apng_face() -> Upload:
    frames = [Image.fromarray(face_rgb(SELFIE)), Image.fromarray(gradient(400, 400))]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    return decoded("wave.png", data, face_rgb(SELFIE), 0.0, faces=1)


@photo
def webp_face() -> Upload:
    data = encode(Image.fromarray(face_rgb(SELFIE)), "WEBP", quality=90)
    return decoded("selfie.webp", data, face_rgb(SELFIE), 4.0, faces=1)


@photo
def heic_face() -> Upload:
    data = encode(Image.fromarray(face_rgb(SELFIE)), "HEIF", quality=90)
    return decoded("IMG_0002.HEIC", data, face_rgb(SELFIE), 4.0, faces=1)


@photo
def avif_face() -> Upload:
    data = encode(Image.fromarray(face_rgb(SELFIE)), "AVIF", quality=90)
    return decoded("selfie.avif", data, face_rgb(SELFIE), 4.0, faces=1)


@photo
def bmp_face() -> Upload:
    data = encode(Image.fromarray(face_rgb(SELFIE)), "BMP")
    return decoded("selfie.bmp", data, face_rgb(SELFIE), 0.0, faces=1)


@photo
def upside_down_face() -> Upload:
    """The mesh takes it for an upright face (lip points on the brows): refused, never painted."""
    turned = np.ascontiguousarray(face_rgb(SELFIE)[::-1, ::-1])
    data = encode(Image.fromarray(turned), "PNG")
    return decoded("upside_down.png", data, turned, 0.0, engine=frozenset({"rotated_face"}))


@photo
def sideways_face() -> Upload:
    turned = np.ascontiguousarray(np.rot90(face_rgb(SELFIE)))
    data = encode(Image.fromarray(turned), "PNG")
    return decoded("sideways.png", data, turned, 0.0, engine=frozenset({"rotated_face"}))


@photo
def near_black_face() -> Upload:
    """A face at 7 % brightness: once made up with glowing colours."""
    dark = np.round(face_rgb(SELFIE) * 0.07).astype(np.uint8)
    data = encode(Image.fromarray(dark), "PNG")
    return decoded("night.png", data, dark, 0.0, engine=frozenset({"too_dark"}))


@photo
def dim_face() -> Upload:
    """At 30 % brightness a face is still made up."""
    dim = np.round(face_rgb(SELFIE) * 0.3).astype(np.uint8)
    data = encode(Image.fromarray(dim), "PNG")
    return decoded("dim.png", data, dim, 0.0, faces=1)


@photo
def transparent_face() -> Upload:
    """An RGBA photo whose face is cut out (transparent, so white): the mesh still guesses a face from
    the head around the hole, with its lips and an eye on the blank. Once painted there."""
    rgb = face_rgb(SELFIE)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    hole = ((yy - 150) / 68) ** 2 + ((xx - 180) / 60) ** 2 <= 1
    alpha = np.where(hole, 0, 255).astype(np.uint8)
    data = encode(Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA"), "PNG")
    return decoded("cutout_face.png", data, over_white(rgb, alpha), 0.0, engine=frozenset({"no_face"}))


@photo
def face_at_20px() -> Upload:
    """The whole 400 px portrait shrunk to 40 px (its face about 20 px) on a 640 px canvas."""
    canvas = solid(640, 640, (128, 128, 128))
    canvas[300:340, 300:340] = np.array(
        Image.fromarray(face_rgb(SELFIE)).resize((40, 40), Image.Resampling.LANCZOS)
    )
    data = encode(Image.fromarray(canvas), "JPEG", quality=95)
    return decoded("far.jpg", data, canvas, 3.0, engine=NO_USABLE_FACE)


@photo
def eight_faces_tiled() -> Upload:
    tiles = [
        np.array(Image.fromarray(face_rgb(name)).resize((256, 256), Image.Resampling.LANCZOS))
        for name in TILED_FACES
    ]
    grid = np.vstack([np.hstack(tiles[:4]), np.hstack(tiles[4:])])
    data = encode(Image.fromarray(grid), "JPEG", quality=95)
    return decoded("group.jpg", data, grid, 3.0, faces=8)


# ----------------------------------------------------------------------------- public entry points


def item(name: str) -> HostileImage:
    """One item by name, building only that one (e.g. in a subprocess measuring memory)."""
    return HostileImage(name, *{**SYNTHETIC, **PHOTOS}[name]())


def synthetic_corpus() -> list[HostileImage]:
    """The items built from code alone (no face photos needed)."""
    return [item(name) for name in SYNTHETIC]


def corpus() -> list[HostileImage]:
    """Every item; skips the calling test when the shared face photos are absent."""
    return [item(name) for name in ALL_NAMES]


ALL_NAMES: tuple[str, ...] = (*SYNTHETIC, *PHOTOS)
