"""`[discord]`: the bot's token, its intents, publishing its slash commands and sharding."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, model_validator

from bot.ports import Adapter, PlatformSettings

if TYPE_CHECKING:
    from bot.core import Core
    from bot.settings import BotConfig


class DiscordSettings(PlatformSettings):
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

    def configured(self) -> bool:
        return self.token is not None

    def build(self, config: BotConfig, core: Core) -> Adapter:
        from bot.discord.adapter import DiscordAdapter

        return DiscordAdapter(self, core, max_bytes=config.engine.max_bytes)
