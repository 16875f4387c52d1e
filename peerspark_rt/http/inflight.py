"""Requests in flight on this node, so a graceful stop can wait for them.

aiohttp's own shutdown stops reading from every connection before it waits for handlers: a
request whose body is still arriving then stalls until it is cancelled, and a websocket can no
longer hear its client's close reply. A node that stops therefore drains first (app.drain):
no new connections, answers carry `Connection: close`, websockets are closed with 1001, and it
waits here until the requests in flight have finished (bounded) before aiohttp's shutdown runs.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web


class InFlight:
    __slots__ = ("_idle", "count", "draining")

    def __init__(self) -> None:
        self.count = 0
        self.draining = False  # a stop has begun: keep-alive connections are not reused
        self._idle: asyncio.Event | None = None

    def started(self) -> None:
        self.count += 1

    def finished(self) -> None:
        self.count -= 1
        if self.count <= 0 and self._idle is not None:
            self._idle.set()

    async def idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (True), or `timeout` seconds (False)."""
        if self.count <= 0:
            return True
        self._idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return self.count <= 0


# the application's key for what this module provides (typed app state)
REQUESTS = web.AppKey("requests", InFlight)  # requests in flight (a graceful stop waits)
