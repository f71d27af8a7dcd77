"""The one gate between untrusted bytes and the engine: bytes in, an HxWx3 uint8 RGB array out.

Every adapter and the CLI load images through `load_image`, so the defences live in one place:
the format is sniffed from the bytes (never a file name), byte and pixel limits are checked before
any pixel is decoded, EXIF orientation is applied, and every odd mode (CMYK, 16-bit, palette,
alpha, grayscale, 1-bit, animated) is normalised to plain RGB. Anything that fails becomes an
`ImageError` with a message a chat user understands; no decoder exception escapes.
"""

from __future__ import annotations

import codecs
import io
import warnings

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps

from engine.errors import ImageError, ImageShapeError, ImageTooLargeError, Role

# HEIC/HEIF is what iPhones send; pillow-heif plugs it into PIL's normal Image.open.
pillow_heif.register_heif_opener()

# PIL warns about every malformed EXIF field it skips; we only read the orientation from EXIF, and
# broken metadata on a fine photo is not worth a line in the logs (or on the CLI user's screen).
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")

# PIL format ids we decode. TIFF is recognised (for a precise message) but refused: chat photos are
# never TIFF, and its many exotic variants (float, tiled, multi-page) are attack surface we don't need.
SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "HEIF", "AVIF"})

# Alpha is composited over white: the colour values under transparent pixels are undefined (often
# black), and white is what viewers show behind cut-out photos, so the face keeps its outline and
# the result looks like what the user saw when sending it.
ALPHA_BACKGROUND = (255, 255, 255)

# Longest side over shortest side. Panoramas stay under it; longer strips are banners or crafted files,
# and the face detector's work on them grows with the long side, not the pixel count.
MAX_ASPECT_RATIO = 10

# Larger EXIF blocks are not real camera metadata; they are skipped unread (orientation included).
MAX_EXIF_BYTES = 1024 * 1024

# What the engine computes in, and what an untagged output JPEG is read as.
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_ENCODE_FORMATS = {"JPEG": "JPEG", "JPG": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}


def sniff_format(data: bytes | bytearray) -> str | None:
    """The PIL format id of an image judged from its magic bytes, or None when it is no image format."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM") and len(data) >= 26:
        return "BMP"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if data[4:8] == b"ftyp":
        return _sniff_isobmff_brand(data)
    return None


def _sniff_isobmff_brand(data: bytes | bytearray) -> str | None:
    """HEIF and AVIF share the ISO-BMFF container; the `ftyp` box's brands tell them apart."""
    box_size = int.from_bytes(data[:4], "big")
    box_end = min(max(box_size, 16), len(data), 256)
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


def load_image(
    data: bytes | bytearray, *, max_pixels: int, max_bytes: int, role: Role | None = None
) -> np.ndarray:
    """Decode untrusted bytes into a C-contiguous HxWx3 uint8 RGB array, upright per EXIF.

    Raises ImageTooLargeError (over `max_bytes` or `max_pixels`), ImageShapeError (longer than
    MAX_ASPECT_RATIO times its width), both checked before decoding, or ImageError (anything else
    that is not a usable image), all carrying `role` and a user message.
    """
    subject = _subject(role)
    if not data:
        raise ImageError(f"{subject} arrived empty (0 bytes). Please send it again.", role)
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"{subject} is too big ({_mb(len(data))} MB); please send one under {_mb(max_bytes)} MB.", role
        )
    fmt = sniff_format(data)
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(
            f"{subject} is not a photo I can read ({_describe_unsupported(data, fmt)}). "
            "Please send a JPEG, PNG, WebP or HEIC photo.",
            role,
        )
    try:
        # The temporary PIL image is freed once asarray holds a copy of its bytes, before the final copy.
        pixels = np.asarray(_decode_upright_rgb(data, fmt, max_pixels, subject, role))
    except (ImageError, MemoryError):
        raise  # ours already speaks to the user; running out of memory is the server's problem
    except Image.DecompressionBombError as exc:
        # PIL's own bomb fence (2x Image.MAX_IMAGE_PIXELS) fired first: same answer as ours.
        raise ImageTooLargeError(
            f"{subject} has far too many pixels; please send a smaller photo.", role
        ) from exc
    except Exception as exc:
        # Decoders raise many types on hostile input (OSError, SyntaxError, ValueError, struct.error,
        # ...); for the user they all mean the same thing.
        raise ImageError(
            f"{subject} looks damaged or incomplete and could not be opened. Please send it again.", role
        ) from exc
    return pixels.copy()  # asarray's view of PIL's bytes is read-only; callers may draw on theirs


def _decode_upright_rgb(
    data: bytes | bytearray, fmt: str, max_pixels: int, subject: str, role: Role | None
) -> Image.Image:
    # No `with`: the source is in memory, and closing would free the pixels we return.
    image = Image.open(io.BytesIO(data), formats=[fmt])  # lazy: parses the header, decodes nothing
    _check_size(image.size, max_pixels, subject, role)
    image.seek(0)  # animated GIF/WebP/APNG: the first frame is the picture
    image.load()
    _make_upright(image)
    return _to_rgb(image)


def _make_upright(image: Image.Image) -> None:
    """Apply the EXIF orientation, unless the EXIF block is junk-sized.

    A JPEG's EXIF cannot exceed 64 KB, but PNG and WebP put no limit on it, and parsing then
    rewriting it costs several copies (8x the block, measured). HEIF orientation lives in the
    container instead (libheif applies it and pillow-heif neutralises the tag): never rotated twice.
    """
    if len(image.info.get("exif") or b"") <= MAX_EXIF_BYTES:  # pillow-heif stores None
        ImageOps.exif_transpose(image, in_place=True)


def _check_size(size: tuple[int, int], max_pixels: int, subject: str, role: Role | None) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{subject} is too large ({width}×{height} pixels); "
            f"please send one of at most {max_pixels / 1e6:.0f} megapixels.",
            role,
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageShapeError(
            f"{subject} is a long thin strip ({width}×{height} pixels), not a photo of a face. "
            f"Please send a photo at most {MAX_ASPECT_RATIO} times as long as it is wide.",
            role,
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Normalise any decoded mode to sRGB, keeping the visible colours."""
    image = _to_srgb(image)
    if image.mode.startswith("I"):
        image = _sixteen_bit_to_gray(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", image.size, ALPHA_BACKGROUND)
        image.paste(rgba, mask=rgba.getchannel("A"))
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert through the embedded colour profile when it is not sRGB already.

    Recent phones shoot Display P3 and print files are CMYK with a profile; read as plain sRGB their
    numbers look duller or shifted, and lipstick colour is exactly what this product is about.
    """
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "sRGB" in ImageCms.getProfileDescription(source):
            return image
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a broken or mismatched profile is metadata, no reason to refuse the photo
    assert converted is not None  # only None with inPlace=True
    return converted


def _has_alpha(image: Image.Image) -> bool:
    # Palette and grayscale images carry transparency as a `transparency` entry rather than a band.
    return image.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in image.info


def _sixteen_bit_to_gray(image: Image.Image) -> Image.Image:
    """16-bit grayscale (PIL modes I;16*, or I for 16-bit PNG with transparency) as 8-bit L.

    PIL's own convert() clips values above 255, turning almost every 16-bit photo white; rounding
    v * 255 / 65535 (= v / 257) maps 0..65535 exactly onto 0..255.
    """
    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))  # 2-D uint8: mode L


def encode_image(rgb: np.ndarray, fmt: str = "JPEG", quality: int = 92) -> bytes:
    """Encode an HxWx3 uint8 RGB array as JPEG, PNG or WEBP bytes."""
    pil_format = _ENCODE_FORMATS.get(fmt.upper())
    if pil_format is None:
        raise ValueError(f"unsupported output format {fmt!r}; use JPEG, PNG or WEBP")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 array, got shape {rgb.shape} dtype {rgb.dtype}")
    buffer = io.BytesIO()
    image = Image.fromarray(rgb)
    if pil_format == "JPEG":
        # 4:4:4 chroma: lipstick and eyeliner are colour edges that 4:2:0 subsampling would blur.
        image.save(buffer, "JPEG", quality=quality, subsampling=0)
    elif pil_format == "WEBP":
        image.save(buffer, "WEBP", quality=quality)
    else:
        # zlib's fastest level: a third of the default's time (12 ms instead of 39 at 512x512,
        # 0.4 s instead of 1.1 s at 12 megapixels, more than the makeup itself) for files 15-35 %
        # larger; still lossless.
        image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _subject(role: Role | None) -> str:
    return {"selfie": "Your selfie", "reference": "The reference photo"}.get(role or "", "The file")


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}"


def _describe_unsupported(data: bytes | bytearray, fmt: str | None) -> str:
    """A short guess at what the user actually sent, for the error message."""
    if fmt == "TIFF":
        return "TIFF images are not supported"
    head = data[:512].lstrip()
    if head.startswith(b"%PDF"):
        return "it looks like a PDF document"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "it looks like a ZIP archive or office document"
    if data[4:8] == b"ftyp":  # the ISO-BMFF container of HEIF, but also of MP4 and MOV
        return "it looks like a video"
    if head.lower().startswith((b"<!doctype html", b"<html")):
        return "it looks like a web page"
    if b"<svg" in head.lower():
        return "it looks like an SVG drawing"
    if _looks_like_text(head):
        return "it looks like a text file"
    return "unknown file type"


def _looks_like_text(head: bytes | bytearray) -> bool:
    try:
        # final=False: the 512-byte cut may split a multi-byte character.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)
