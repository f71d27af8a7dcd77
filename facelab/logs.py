"""Logging for `facelab serve` and `facelab worker`: one handler on the root logger, readable text or
JSON lines (`[logging]` in the config). Structured fields passed as `extra=` (job_id, platform,
queue_wait_ms, engine_ms, ...) become `key=value` pairs or JSON keys.

Secrets never reach a log: every configured token and password is registered with
`bot.log_redaction`, which redacts each record as it is made, and the handler set up here redacts its
finished lines too, which covers exception tracebacks."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from bot.log_redaction import Redactor, redact_in_logs
from facelab.settings import LoggingSettings, Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ["asctime", "levelname", "name", "message"]
HANDLER_NAME = "facelab"
# Libraries whose INFO lines are one per HTTP request (every poll); kept for DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "discord.gateway")


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` followed by the record's structured fields as key=value, redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={value}" for key, value in structured_fields(record).items())
        return self._redact(f"{line} {fields}" if fields else line)


class RedactingJsonFormatter(JsonFormatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__(JSON_FIELDS)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed as `extra=`: the record's attributes that logging itself does not set."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in RESERVED_ATTRS and not key.startswith("_") and key not in ("message", "asctime")
    }


def secrets_of(settings: BaseModel) -> list[str]:
    """Every SecretStr value and every password inside a URL setting, anywhere in `settings`."""
    found: list[str] = []
    for value in settings.__dict__.values():
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found.extend(secrets_of(value))
        elif isinstance(value, str) and "://" in value:
            password = urlsplit(value).password
            if password:
                found.append(password)
    return found


def setup_logging(
    settings: Settings, stream: TextIO | None = None, *, debug: bool = False
) -> logging.Handler:
    """Route every logger to one redacting handler on `stream` (stderr); calling it again replaces
    that handler (others, such as a test's log capture, stay). `debug` (a command's --verbose)
    overrides the configured level."""
    options: LoggingSettings = (
        settings.logging.model_copy(update={"level": "DEBUG"}) if debug else settings.logging
    )
    redact = redact_in_logs(*secrets_of(settings))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        RedactingJsonFormatter(redact) if options.format == "json" else TextFormatter(redact)
    )
    root = logging.getLogger()
    for old in [old for old in root.handlers if old.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.level)
    chatty_level = logging.DEBUG if options.level == "DEBUG" else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)
    logging.captureWarnings(True)
    return handler
