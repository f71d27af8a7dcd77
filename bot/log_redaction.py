"""Secrets never reach a log: `redact_in_logs` wraps the log-record factory, so every record, from any
library and for any handler, has the registered tokens and passwords and any Bot API token in a URL
(httpx logs each request URL, which carries it) replaced before anyone formats it. A chat adapter
registers its token as it starts; `facelab.logs` registers every configured secret and redacts its
finished lines too (exception tracebacks)."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

REDACTED = "<redacted>"
# A Bot API token in a URL path, "/bot<digits>:<secret>" (":" percent-encoded in file URLs), even one
# that is not configured here.
BOT_URL_TOKEN = re.compile(r"(?<=/bot)\d+(?::|%3A)[\w-]+")
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
