"""The chat bot's own sections of the config: the conversation (`[bot]`), the job queue (`[queue]`),
abuse limits (`[limits]`) and who may use it (`[access]`). Read by bot/; `facelab.settings` places
them in the config file. (Each chat adapter's section lives beside its adapter.)

`BotConfig` is what the conversation core reads of the whole config; `facelab.settings.Settings` is
one, and bot/ never imports it, so the command line can import the bot and not the other way round."""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, Field, StringConstraints

from engine.settings import EngineSettings


class BotSettings(BaseModel):
    default_strength: int = Field(default=70, ge=0, le=100)
    # Look mode for users who never set /mode (engine.api.MODES).
    default_mode: Literal["natural", "full"] = "natural"
    pending_ttl_s: float = 600.0
    result_cache_s: float = 300.0
    # A user is told their place in the queue once their job has waited this long without starting;
    # shorter waits need no extra message.
    announce_wait_s: float = Field(default=3.0, ge=0)


# "platform:user id" as the chat platform reports it, e.g. "telegram:12345" or "discord:8123..."; the
# platform must be a registered one (facelab.settings.Settings checks it: the registry is there).
PlatformUser = Annotated[str, StringConstraints(pattern=r"^[a-z]+:\S+$")]


class LimitsSettings(BaseModel):
    """Abuse limits, checked each time a try-on is admitted; 0 turns a limit off."""

    user_per_minute: int = Field(default=5, ge=0)
    # Re-runs of a result's photos (Stronger, Softer, Lips only, Swap): their own per-minute budget.
    user_reruns_per_minute: int = Field(default=20, ge=0)
    # Counted from stored usage, so it survives restarts; resets at midnight UTC.
    user_per_day: int = Field(default=100, ge=0)
    # Group chats only: all members together.
    chat_per_minute: int = Field(default=20, ge=0)
    chat_per_day: int = Field(default=500, ge=0)


class AccessSettings(BaseModel):
    """Who may use the bot and who runs it."""

    # Non-empty: only these users may run try-ons.
    allow: list[PlatformUser] = []
    deny: list[PlatformUser] = []
    # May use /admin (stats, ban, unban).
    admins: list[PlatformUser] = []


class QueueSettings(BaseModel):
    backend: Literal["local", "redis"] = "local"
    max_size: int = 100
    per_user: int = 2
    redis_url: str = "redis://127.0.0.1:6379/0"
    # On shutdown, queued jobs get this long to finish; users of the rest are told to resend.
    drain_timeout_s: float = 30.0
    # Redis backend only: every key and the job stream start with this, so deployments can share a Redis.
    redis_prefix: str = "facelab"
    # Inputs and results left in Redis (bot process gone, job undeliverable) expire after this.
    job_ttl_s: float = Field(default=300.0, gt=0)
    # A job unacknowledged this long is taken over by another worker. Keep it above the longest a job
    # can take: 2 x engine.job_timeout_s, since the engine process retries a hung job once.
    reclaim_after_s: float = Field(default=180.0, gt=0)


class Retention(Protocol):
    """All the bot reads of `[database]`: how many days usage is kept (0: forever)."""

    @property
    def retention_days(self) -> int: ...


class BotConfig(Protocol):
    """The sections the conversation core reads: its own, the engine's (limits of the photos it
    checks), and how long usage is kept (which /privacy tells)."""

    @property
    def bot(self) -> BotSettings: ...
    @property
    def queue(self) -> QueueSettings: ...
    @property
    def limits(self) -> LimitsSettings: ...
    @property
    def access(self) -> AccessSettings: ...
    @property
    def engine(self) -> EngineSettings: ...
    @property
    def database(self) -> Retention: ...
