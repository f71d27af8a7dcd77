"""The web playground: the `[web]` settings (settings.py), the aiohttp server (playground.py) and the
page it serves (static/)."""
