"""Telegram: the `[telegram]` settings (settings.py), the python-telegram-bot adapter (adapter.py) and
its aiohttp transport (http.py)."""
