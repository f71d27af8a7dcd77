"""The quick look at one photo on its arrival (`EmbeddedEngine.inspect`): the same typed errors as a
try-on, and a makeup score that tells a made-up reference from a bare selfie."""

from __future__ import annotations

import pytest

from bot.pairing import ORDER_BY_MAKEUP_MARGIN
from engine.embedded import EmbeddedEngine
from engine.errors import ImageError, NoFaceError
from engine.settings import EngineSettings
from tests.conftest import face_path

# Slow: the real engine on the shared photos.
pytestmark = pytest.mark.slow

BARE = ["sm_source_02.jpg", "dlib_source_01.jpg", "tmw_source_01.jpg", "shmt_source_03.jpg"]
MADE_UP = ["elegant_ref_02.png", "tmw_ref_01.jpg", "scgan_ref_01.png", "cpm_ref_01.png"]


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return EmbeddedEngine(EngineSettings())


def test_clearly_made_up_faces_score_well_above_bare_ones(engine: EmbeddedEngine) -> None:
    bare = {name: engine.inspect(face_path(name).read_bytes(), "selfie").makeup for name in BARE}
    made_up = {name: engine.inspect(face_path(name).read_bytes(), "reference").makeup for name in MADE_UP}
    # The bot reorders a pair only beyond this margin.
    assert min(made_up.values()) - max(bare.values()) >= ORDER_BY_MAKEUP_MARGIN, (bare, made_up)


def test_inspect_raises_what_a_try_on_would(engine: EmbeddedEngine) -> None:
    with pytest.raises(NoFaceError) as no_face:
        engine.inspect(face_path("dlib_source_02.jpg").read_bytes(), "reference")
    assert "your reference photo" in no_face.value.user_message
    with pytest.raises(ImageError) as empty:
        engine.inspect(b"", "selfie")
    assert empty.value.role == "selfie"


def test_inspect_counts_the_usable_faces(engine: EmbeddedEngine) -> None:
    assert engine.inspect(face_path("fr_source_03.jpg").read_bytes(), "selfie").faces == 2
