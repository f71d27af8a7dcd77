"""Face Lab's image engine: selfie + reference (or preset look) in, made-up selfie out.

Knows nothing of chats, users or databases. Importing it never imports torch.
"""

from engine.api import REGIONS, MakeupEngine, MakeupRequest, MakeupResult
from engine.errors import (
    EngineError,
    FaceTooSmallError,
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    NoFaceError,
    ProfileFaceError,
    RotatedFaceError,
    TooDarkError,
    UnknownLookError,
)

__all__ = [
    "REGIONS",
    "EngineError",
    "FaceTooSmallError",
    "ImageError",
    "ImageShapeError",
    "ImageTooLargeError",
    "MakeupEngine",
    "MakeupRequest",
    "MakeupResult",
    "NoFaceError",
    "ProfileFaceError",
    "RotatedFaceError",
    "TooDarkError",
    "UnknownLookError",
]
