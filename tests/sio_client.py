"""The official Python Socket.IO client (python-socketio's AsyncClient), wrapped for tests:
every event the server emits lands in a queue that a test reads in order."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio


class SioUser:
    """One Socket.IO connection as a user of the spec's events."""

    def __init__(self, base_url: str, token: str | None, **connect: Any) -> None:
        self.base_url = base_url
        self.token = token
        self.connect_options = connect
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.client = socketio.AsyncClient(reconnection=False)
        self.client.on("*", self._any)
        self.client.on("connect_error", self._refused)
        self.refusal: Any = None  # the CONNECT_ERROR's payload: {message, data: {code}}

    async def _refused(self, data: Any) -> None:
        self.refusal = data

    async def _any(self, event: str, *args: Any) -> None:
        await self.events.put((event, args[0] if args else None))

    async def connect(self) -> SioUser:
        options: dict[str, Any] = {"transports": ["websocket"], "wait_timeout": 10}
        if self.token is not None:
            options["auth"] = {"token": self.token}
        options.update(self.connect_options)
        await self.client.connect(self.base_url, **options)
        return self

    async def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        """Emit with an acknowledgement callback; returns what the server acknowledged."""
        return await self.client.call(event, data, timeout=timeout)

    async def emit(self, event: str, data: Any) -> None:
        await self.client.emit(event, data)

    async def next(self, event: str, timeout: float = 10, **match: Any) -> Any:
        """The next `event` whose payload has the `match` fields (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                name, data = await self.events.get()
                if name == event and all(data.get(k) == v for k, v in match.items()):
                    return data

    async def quiet(self, event: str, seconds: float = 0.3) -> list[Any]:
        """Every `event` that arrives within `seconds` (to show that nothing more came)."""
        got = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    name, data = await self.events.get()
                    if name == event:
                        got.append(data)
        except TimeoutError:
            return got

    async def close(self) -> None:
        await self.client.disconnect()
