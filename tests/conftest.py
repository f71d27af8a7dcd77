"""Shared fixtures: the real face photos in ../shared/data/faces and the local services.

Tests that need them skip with a reason when they are absent; under FACELAB_REQUIRE_DATA=1 /
FACELAB_REQUIRE_SERVICES=1 (set by .ci/run) they fail instead, so CI cannot go green by skipping.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FACES_DIR = Path(os.environ.get("FACELAB_FACES_DIR", REPO_ROOT.parent / "shared" / "data" / "faces"))

# Files in ../shared/data/faces with no human face on purpose (see SOURCES.md there).
NON_FACE_FILES = {"dlib_source_02.jpg", "dlib_ref_01.jpg"}


def _missing(what: str, env_flag: str) -> None:
    if os.environ.get(env_flag) == "1":
        pytest.fail(f"{what} is required here ({env_flag}=1) but absent")
    pytest.skip(f"{what} is absent (set {env_flag}=1 to make this a failure)")


def require_faces() -> Path:
    if not (FACES_DIR / "source").is_dir() or not (FACES_DIR / "reference").is_dir():
        _missing(f"the test face photos at {FACES_DIR}", "FACELAB_REQUIRE_DATA")
    return FACES_DIR


def face_path(name: str) -> Path:
    """Path of a shared photo by file name, e.g. face_path('sm_source_01.jpg')."""
    root = require_faces()
    kind = "source" if "_source_" in name else "reference"
    return root / kind / name


def free_port() -> int:
    """A TCP port nothing listens on right now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_service(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError:
        _missing(f"{name} at {host}:{port}", "FACELAB_REQUIRE_SERVICES")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return require_faces()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("FACELAB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return os.environ.get("FACELAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """For tests that call facelab.logs.setup_logging: put the root logger's handlers and the levels
    it changes back afterwards."""
    from facelab.logs import CHATTY_LOGGERS

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, chatty_level in chatty.items():
        logging.getLogger(name).setLevel(chatty_level)
