"""Discord: the `[discord]` settings (settings.py) and the discord.py adapter (adapter.py)."""
