"""The product on a real socket in a background thread (its own event loop), for tests whose
client is synchronous (schemathesis calls with `requests`). PostgreSQL and Redis are the real
ones the fixtures give; AI talks to a fake OpenAI server started in the same loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from peerspark_rt.app import build_app
from peerspark_rt.config import Settings
from tests.fake_openai import FakeOpenAI

T = TypeVar("T")

START_TIMEOUT = 60.0


class LiveApp:
    """`build_app(settings)` served on 127.0.0.1 (a free port) until `stop()`."""

    def __init__(self, settings_for: Callable[[FakeOpenAI], Settings]) -> None:
        self._settings_for = settings_for
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-app")
        self._runner: web.AppRunner | None = None
        self._fake: FakeOpenAI | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app(self) -> web.Application:
        assert self._runner is not None
        return self._runner.app

    def start(self) -> None:
        self._thread.start()
        self.run(self._start(), timeout=START_TIMEOUT)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the app's loop (e.g. to reach its services) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._fake = FakeOpenAI()
        await self._fake.start()
        settings = self._settings_for(self._fake)
        self._runner = web.AppRunner(build_app(settings), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._fake is not None:
            await self._fake.close()

    def stop(self) -> None:
        try:
            self.run(self._stop(), timeout=START_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
