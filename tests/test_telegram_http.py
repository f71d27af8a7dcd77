"""The aiohttp request backend's failure mapping, over real loopback HTTP: PTB only retries and reports
correctly when slow and unreachable servers become its TimedOut and NetworkError. (Successful calls,
uploads and downloads are covered end to end by test_telegram_e2e.py.)"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web
from telegram.error import NetworkError, TimedOut

from bot.telegram.http import AiohttpRequest


async def test_a_server_slower_than_the_read_timeout_is_timed_out() -> None:
    async def never_answers(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/botT/getMe", never_answers)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.do_request(f"http://127.0.0.1:{port}/botT/getMe", "POST", read_timeout=0.2)
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_an_unreachable_server_is_a_network_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError, match="aiohttp"):
            await request.do_request(f"http://127.0.0.1:{port}/botT/getMe", "POST")
    finally:
        await request.shutdown()
