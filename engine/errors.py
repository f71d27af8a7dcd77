"""Typed engine errors. Each carries a message a chat user understands and a short machine `kind`
that callers record (usage.error_kind) without parsing text."""

from __future__ import annotations

from typing import ClassVar, Literal

Role = Literal["selfie", "reference"]


class EngineError(Exception):
    """Base of every error the engine raises on purpose; anything else is a bug."""

    kind: ClassVar[str] = "engine"

    def __init__(self, user_message: str, role: Role | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.role = role


class ImageError(EngineError):
    """The bytes are not a usable image (unknown format, corrupt, truncated, empty)."""

    kind = "bad_image"


class ImageTooLargeError(ImageError):
    """The image exceeds the configured byte or pixel limit (refused before decoding)."""

    kind = "too_large"


class ImageShapeError(ImageError):
    """The image is a long thin strip (a banner, a line of pixels), never a photo of a face; refused
    from the header, before decoding, since strips are what makes detection buffers explode."""

    kind = "bad_shape"


class NoFaceError(EngineError):
    kind = "no_face"


class FaceTooSmallError(EngineError):
    kind = "face_too_small"


class ProfileFaceError(EngineError):
    """The face is turned too far to the side for the makeup to be placed reliably."""

    kind = "profile_face"


class TooDarkError(EngineError):
    """The face is lit too little for its colours to be read or makeup to be placed on them."""

    kind = "too_dark"


class RotatedFaceError(EngineError):
    """The face is upside down or on its side in the photo (the makeup would land in wrong places)."""

    kind = "rotated_face"


class UnknownLookError(EngineError):
    kind = "unknown_look"
