"""Logging for `facelab serve` and `facelab worker`: one handler on the root logger, readable text or
JSON lines (`[logging]` in the config). Structured fields passed as `extra=` (job_id, platform,
queue_wait_ms, engine_ms, ...) become `key=value` pairs or JSON keys.

Secrets never reach a log: `redact_in_logs` wraps the log-record factory, so every record, from any
library and for any handler, has the registered tokens and passwords and any Bot API token in a URL
(httpx logs each request URL, which carries it) replaced before anyone formats it; the handler set up
here redacts its finished lines too, which covers exception tracebacks."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, SecretStr
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from facelab.settings import LoggingSettings, Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ["asctime", "levelname", "name", "message"]
REDACTED = "<redacted>"
HANDLER_NAME = "facelab"
# A Bot API token in a URL path, "/bot<digits>:<secret>" (":" percent-encoded in file URLs), even one
# that is not configured here.
BOT_URL_TOKEN = re.compile(r"(?<=/bot)\d+(?::|%3A)[\w-]+")
# Libraries whose INFO lines are one per HTTP request (every poll); kept for DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "discord.gateway")
# Shorter "secrets" would redact ordinary words.
MIN_SECRET_LENGTH = 6


class Redactor:
    """Replaces registered secrets (as written and percent-encoded) and Bot API URL tokens."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            return
        self._secrets.update({secret, quote(secret, safe="")})
        words = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, words)))

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return BOT_URL_TOKEN.sub(REDACTED, text)


class _RedactingRecordFactory:
    def __init__(self, wrapped: Any, redact: Redactor) -> None:
        self.wrapped = wrapped
        self.redact = redact

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.wrapped(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call; logging reports it when emitting
            return record
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record


def redact_in_logs(*secrets: str) -> Redactor:
    """Keep `secrets` out of every log record made from now on, in this process. Returns the
    process's redactor (one for all callers: the record factory is process-wide)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecordFactory):
        factory = _RedactingRecordFactory(factory, Redactor())
        logging.setLogRecordFactory(factory)
    for secret in secrets:
        factory.redact.add(secret)
    return factory.redact


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
