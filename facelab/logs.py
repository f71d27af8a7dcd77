"""Logging for `facelab serve` and `facelab worker`: one handler on the root logger, readable text or
JSON lines (`[logging]` in the config). Structured fields passed as `extra=` (job_id, platform,
queue_wait_ms, engine_ms, ...) become `key=value` pairs or JSON keys.

Every line is redacted before it is written: the configured tokens and passwords, and Bot API URLs
(httpx logs each request URL, which carries the Telegram token) never reach the output."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from facelab.settings import LoggingSettings, Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ["asctime", "levelname", "name", "message"]
REDACTED = "[redacted]"
# A Bot API token in a URL path: /bot<digits>:<secret>/ (also a token that is not configured here).
BOT_URL_TOKEN = re.compile(r"(?<=/bot)\d+:[\w-]+")
# Libraries whose INFO lines are one per HTTP request (every poll); kept for DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "discord.gateway")
# Shorter "secrets" would redact ordinary words.
MIN_SECRET_LENGTH = 6


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        words = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, words))) if words else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        return BOT_URL_TOKEN.sub(REDACTED, text)


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


def setup_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger to one redacting handler on `stream` (stderr), replacing earlier set-ups."""
    options: LoggingSettings = settings.logging
    redact = Redactor(secrets_of(settings))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        RedactingJsonFormatter(redact) if options.format == "json" else TextFormatter(redact)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.level)
    chatty_level = logging.DEBUG if options.level == "DEBUG" else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)
    logging.captureWarnings(True)
    return handler
