"""`[telegram]`: the bot's token and how it talks to the Bot API (polling or a webhook, pacing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator

from bot.ports import Adapter, PlatformSettings

if TYPE_CHECKING:
    from bot.core import Core
    from bot.settings import BotConfig


class TelegramSettings(PlatformSettings):
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

    def configured(self) -> bool:
        return self.token is not None

    def build(self, config: BotConfig, core: Core) -> Adapter:
        from bot.telegram.adapter import TelegramAdapter

        return TelegramAdapter(self, core)
