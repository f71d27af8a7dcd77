"""One typed settings object, read from a TOML file (documented in config.example.toml) with
environment overrides such as FACELAB_TELEGRAM__TOKEN. Built once at start-up and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.settings import AccessSettings, BotSettings, LimitsSettings, QueueSettings
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


class TelegramSettings(BaseModel):
    token: SecretStr | None = None
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    # Telegram sends it in a header with every webhook call; unset: a random one per start.
    webhook_secret: SecretStr | None = None
    # Times a call refused with 429 is retried after the retry_after Telegram asks for.
    max_retries: int = Field(default=3, ge=0)
    # Messages a second across all chats that replies are paced under: Telegram's flood limit for a bot.
    # 0 turns the pacing off (429 answers are still honoured); raise it only if Telegram allows more.
    messages_per_s: float = Field(default=30.0, ge=0)
    # The cloud Bot API refuses downloads above 20 MB; raise only with a self-hosted Bot API server.
    max_download_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _webhook_needs_an_address(self) -> TelegramSettings:
        if self.mode == "webhook" and not self.webhook_url:
            raise ValueError('telegram.webhook_url is required when telegram.mode is "webhook"')
        return self


class DiscordSettings(BaseModel):
    token: SecretStr | None = None
    # The message flow in server channels (two images in a message, or an image replying to one)
    # needs the privileged Message Content intent; without it only slash commands, DMs and mentions work.
    message_content: bool = True
    # Publish the slash commands at start-up (`facelab serve --sync-commands`); only needed when they
    # change, since Discord rate-limits it.
    sync_commands: bool = False
    # Sharding, required past 2,500 servers: this process runs shard `shard_id` of `shard_count`; start
    # one `facelab serve` per shard. Unset: one shard. Discord sends DMs to shard 0 only.
    shard_id: int | None = Field(default=None, ge=0)
    shard_count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _shard_within_count(self) -> DiscordSettings:
        if (self.shard_id is None) != (self.shard_count is None):
            raise ValueError("set discord.shard_id and discord.shard_count together")
        if self.shard_id is not None and self.shard_count is not None and self.shard_id >= self.shard_count:
            raise ValueError("discord.shard_id must be below discord.shard_count")
        return self


class WebSettings(BaseModel):
    # Loopback by default: the playground has no accounts, so anyone who can reach it can use it.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Serve it next to the chat bots (`facelab serve --web`); it always runs when no bot token is set.
    enabled: bool = False


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
