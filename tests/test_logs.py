"""facelab/logs.py: structured fields reach the output, and configured secrets and Bot API URLs
never do. The whole-job check (Telegram path, every logger at DEBUG) is in test_hardening_e2e.py."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import SecretStr

from bot.settings import QueueSettings
from bot.telegram.settings import TelegramSettings
from facelab.logs import secrets_of, setup_logging
from facelab.settings import DatabaseSettings, LoggingSettings, Settings

TOKEN = "987654:secret-token-value"


def settings(format: str = "text") -> Settings:
    return Settings(
        telegram=TelegramSettings(token=SecretStr(TOKEN)),
        database=DatabaseSettings(url="postgresql+asyncpg://facelab:db-password@db:5432/facelab"),
        queue=QueueSettings(redis_url="redis://:redis-password@redis:6379/0"),
        logging=LoggingSettings(level="DEBUG", format=format),  # type: ignore[arg-type]
    )


def test_secrets_are_found_in_every_section() -> None:
    assert set(secrets_of(settings())) == {TOKEN, "db-password", "redis-password"}


def test_text_lines_carry_structured_fields_and_no_secrets(restore_root_logging: None) -> None:
    out = io.StringIO()
    setup_logging(settings(), out)
    log = logging.getLogger("facelab.test")
    log.info("job finished", extra={"job_id": "j1", "platform": "telegram", "engine_ms": 412})
    logging.getLogger("httpx").info(f"HTTP Request: POST https://api.telegram.org/bot{TOKEN}/getUpdates")
    logging.getLogger("httpx").info("POST https://example.org/bot111222:AnotherBotsToken_x/sendPhoto")
    try:
        raise ConnectionError(f"cannot reach postgresql://facelab:db-password@db/ with {TOKEN}")
    except ConnectionError:
        log.exception("database down")
    text = out.getvalue()
    assert "job finished job_id=j1 platform=telegram engine_ms=412" in text
    assert "/bot<redacted>/getUpdates" in text and "/bot<redacted>/sendPhoto" in text
    assert "Traceback" in text and "facelab:<redacted>@db" in text
    for secret in (TOKEN, "db-password", "AnotherBotsToken"):
        assert secret not in text


def test_other_handlers_get_redacted_records_too(
    restore_root_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    setup_logging(settings(), io.StringIO())
    caplog.set_level(logging.DEBUG)
    logging.getLogger("telegram.ext").debug("calling %s/bot%s/getMe", "https://api.telegram.org", TOKEN)
    logging.getLogger("httpx").debug("GET /file/bot987654%3Asecret-token-value/photos/1.jpg")
    assert TOKEN not in caplog.text and "secret-token-value" not in caplog.text
    assert caplog.text.count("<redacted>") == 2


def test_json_lines_are_objects_with_the_fields(restore_root_logging: None) -> None:
    out = io.StringIO()
    setup_logging(settings("json"), out)
    logging.getLogger("bot.core").warning("token %s in args", TOKEN, extra={"job_id": "j2"})
    line = json.loads(out.getvalue())
    assert line["message"] == "token <redacted> in args"
    assert line["job_id"] == "j2" and line["levelname"] == "WARNING" and line["name"] == "bot.core"


def test_chatty_libraries_are_quiet_unless_debugging(restore_root_logging: None) -> None:
    out = io.StringIO()
    quiet = settings()
    quiet.logging.level = "INFO"
    setup_logging(quiet, out)
    logging.getLogger("httpx").info("HTTP Request: POST ... 200 OK")
    logging.getLogger("bot.core").info("kept")
    assert out.getvalue().count("\n") == 1 and "kept" in out.getvalue()
