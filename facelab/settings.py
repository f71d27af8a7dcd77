"""One typed settings object, read from a TOML file (documented in config.example.toml) with
environment overrides such as FACELAB_TELEGRAM__TOKEN. Built once at start-up and passed down.

Settings live with the code that reads them; this module composes the sections (each chat platform's
comes from its package in bot/)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.discord.settings import DiscordSettings
from bot.ports import PlatformSettings
from bot.settings import AccessSettings, BotSettings, LimitsSettings, QueueSettings
from bot.telegram.settings import TelegramSettings
from bot.web.settings import WebSettings
from engine.settings import EngineSettings


class DatabaseSettings(BaseModel):
    # `schema` in the file; the attribute is schema_name because BaseModel already has .schema().
    model_config = ConfigDict(populate_by_name=True)

    url: str = "sqlite+aiosqlite:///facelab.db"
    # PostgreSQL only: keep the tables in this schema (created when missing) instead of `public`.
    schema_name: str | None = Field(default=None, alias="schema")
    # Usage rows older than this many days are deleted; 0 keeps them forever.
    retention_days: int = Field(default=90, ge=0)
    # Usage records held in memory while the database is unreachable; beyond that they are logged.
    write_buffer: int = Field(default=1000, ge=1)
    # Longest pause between attempts to write usage while the database is unreachable.
    write_retry_max_s: float = Field(default=30.0, gt=0)


class MetricsSettings(BaseModel):
    """The operator's HTTP endpoint: Prometheus /metrics and /healthz."""

    enabled: bool = True
    # Loopback by default: expose it deliberately (e.g. to a Prometheus on the same network).
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class LoggingSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "text": one readable line per event; "json": one JSON object per line, for log collectors.
    format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACELAB_", env_nested_delimiter="__", extra="forbid")

    engine: EngineSettings = EngineSettings()
    queue: QueueSettings = QueueSettings()
    database: DatabaseSettings = DatabaseSettings()
    bot: BotSettings = BotSettings()
    telegram: TelegramSettings = TelegramSettings()
    discord: DiscordSettings = DiscordSettings()
    web: WebSettings = WebSettings()
    limits: LimitsSettings = LimitsSettings()
    access: AccessSettings = AccessSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()

    def platforms(self) -> dict[str, PlatformSettings]:
        """The platform registry: every section that is a chat platform's, by platform name. Adding a
        platform is its package in bot/ and its section above."""
        return {name: section for name, section in self if isinstance(section, PlatformSettings)}

    @model_validator(mode="after")
    def _access_names_known_platforms(self) -> Settings:
        names = self.platforms()
        for field in ("allow", "deny", "admins"):
            for user in getattr(self.access, field):
                if user.partition(":")[0] not in names:
                    raise ValueError(
                        f"access.{field}: {user!r} is not one of {', '.join(names)}, then ':' and an id"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment (secrets), then the TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(path: Path | None = None) -> Settings:
    """Read `path` (or ./config.toml when it exists) plus FACELAB_* environment overrides."""
    toml_file = path if path is not None else Path("config.toml")
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=toml_file if toml_file.is_file() else None)

    return _FromFile()
