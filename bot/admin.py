"""`/admin` for the operator: `stats`, `ban ID [reason]`, `unban ID`. Only the users listed in
`access.admins` may run it: the core checks `is_admin` before it dispatches a command whose audience
is "admins" (bot/commands.py). Platform-neutral: the core passes the words after `/admin` and sends
back the text this returns."""

from __future__ import annotations

import logging

from bot.settings import AccessSettings
from storage import AdminStats, Storage, StorageUnavailable

log = logging.getLogger(__name__)

USAGE = (
    "Operator commands:\n"
    "/admin stats — users, jobs and errors\n"
    "/admin ban ID [reason] — block a user (ID as the platform shows it, or platform:ID)\n"
    "/admin unban ID — let them back in"
)
STORAGE_DOWN = "The database is unreachable right now, so I can't do that. Please try again later."


class AdminCommands:
    def __init__(self, access: AccessSettings, storage: Storage) -> None:
        self._admins = frozenset(access.admins)
        self._storage = storage

    def is_admin(self, platform: str, user_id: str) -> bool:
        return f"{platform}:{user_id}" in self._admins

    async def handle(self, platform: str, user_id: str, words: list[str]) -> str:
        """The reply to `/admin <words>` from the admin `user_id` on `platform`."""
        action, arguments = (words[0].lower(), words[1:]) if words else ("", [])
        try:
            if action == "stats" and not arguments:
                return format_admin_stats(await self._storage.admin_stats())
            if action in ("ban", "unban") and arguments:
                target_platform, target_id = _target(arguments[0], platform)
                reason = " ".join(arguments[1:]) or None
                await self._storage.set_banned(target_platform, target_id, action == "ban", reason)
                log.info("admin %s:%s %sned %s:%s", platform, user_id, action, target_platform, target_id)
                return f"{target_platform}:{target_id} is {action}ned."
        except StorageUnavailable:
            return STORAGE_DOWN
        return USAGE


def _target(argument: str, default_platform: str) -> tuple[str, str]:
    """An id alone is a user of the admin's own platform; "discord:123" names the platform."""
    platform, separator, user_id = argument.rpartition(":")
    return (platform, user_id) if separator and platform else (default_platform, argument)


def format_admin_stats(stats: AdminStats) -> str:
    jobs = ", ".join(f"{status} {count}" for status, count in sorted(stats.jobs_by_status.items()))
    errors = ", ".join(f"{kind} {count}" for kind, count in sorted(stats.errors_by_kind.items()))
    return (
        f"Users: {stats.users} ({stats.banned_users} banned)\n"
        f"Jobs in the last 24 h: {stats.jobs_last_24h}\n"
        f"Jobs by status: {jobs or 'none yet'}\n"
        f"Errors by kind: {errors or 'none'}"
    )
