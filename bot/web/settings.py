"""`[web]`: where the playground listens, and whether it runs next to the chat bots."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from bot.ports import Adapter, PlatformSettings

if TYPE_CHECKING:
    from bot.core import Core
    from bot.settings import BotConfig


class WebSettings(PlatformSettings):
    # It always runs when no chat platform is configured, so a fresh install has something to try.
    fallback: ClassVar[bool] = True

    # Loopback by default: the playground has no accounts, so anyone who can reach it can use it.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Serve it next to the chat bots (`facelab serve --web`).
    enabled: bool = False

    def configured(self) -> bool:
        return self.enabled

    def build(self, config: BotConfig, core: Core) -> Adapter:
        from bot.web.playground import WebPlayground

        return WebPlayground(self, config, core)
