"""The storage's public records: plain dataclasses in and out, so no ORM object reaches a caller."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class UsageStatus(StrEnum):
    OK = "ok"  # the user got a result
    ERROR = "error"  # the job failed; error_kind says why (e.g. "no_face", "timeout")
    REJECTED = "rejected"  # refused before running (rate limit, quota, ban); never counts as usage


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class UsageRecord:
    """One try-on job as it is stored: ids, outcome and timings. Never image bytes.

    `user_id` and `chat_id` are the platform's ids; they are kept as text (123 and "123" are one user)."""

    job_id: str
    platform: str
    user_id: str | int
    chat_id: str | int
    chat_type: str
    status: UsageStatus
    error_kind: str | None = None
    queue_wait_ms: int | None = None
    engine_ms: int | None = None
    created_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_id", str(self.user_id))
        object.__setattr__(self, "chat_id", str(self.chat_id))
        object.__setattr__(self, "status", UsageStatus(self.status))
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")

    def as_log(self) -> dict[str, Any]:
        """JSON-ready fields, for logging a record that could not be stored."""
        data = asdict(self)
        data["status"] = str(self.status)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class UserStats:
    """What /stats shows a user about themselves."""

    strength: int | None
    first_seen: datetime | None
    jobs_total: int
    jobs_ok: int
    jobs_failed: int
    jobs_last_24h: int
    last_job_at: datetime | None
    mode: str | None = None  # None when never chosen: the configured default applies


@dataclass(frozen=True)
class AdminStats:
    """What `/admin stats` shows the operator."""

    users: int
    banned_users: int
    jobs_by_status: dict[str, int]
    errors_by_kind: dict[str, int]
    jobs_last_24h: int


class StorageUnavailable(RuntimeError):
    """The database cannot be reached right now; the caller should say "try again later"."""
