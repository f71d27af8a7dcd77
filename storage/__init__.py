"""Face Lab's database: users' preferences and bans, and one usage row per job (never images).

Callers use `Storage` and the plain records below; models and migrations stay inside this package."""

from storage.api import AdminStats, StorageUnavailable, UsageRecord, UsageStatus, UserStats
from storage.repository import Storage

__all__ = ["AdminStats", "Storage", "StorageUnavailable", "UsageRecord", "UsageStatus", "UserStats"]
