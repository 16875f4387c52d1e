"""The broker carries room traffic between nodes.

`LocalBroker` serves a single node. `RedisBroker` publishes each room's frames once to a Redis
channel; every node subscribes only to the rooms it has local members for. A publishing node
delivers to its own members directly and ignores its own echo from Redis.

Payloads are opaque bytes (an encoded server frame); the handler decides what they mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# (room, payload) -> None. Called on the event loop; must not block.
Handler = Callable[[str, bytes], None]

CONTROL_ROOM = "_control"  # node-wide messages (e.g. "close the sockets of session X")


class Broker(Protocol):
    node_id: str

    def set_handler(self, handler: Handler) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, room: str, payload: bytes) -> None:
        """Deliver to every node subscribed to `room`, this one included."""

    async def subscribe(self, room: str) -> None: ...

    async def unsubscribe(self, room: str) -> None: ...

    @property
    def healthy(self) -> bool: ...


class LocalBroker:
    """Everything stays in this process."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._handler: Handler | None = None
        self._rooms: set[str] = {CONTROL_ROOM}

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._rooms.clear()

    async def publish(self, room: str, payload: bytes) -> None:
        if self._handler is not None and room in self._rooms:
            self._handler(room, payload)

    async def subscribe(self, room: str) -> None:
        self._rooms.add(room)

    async def unsubscribe(self, room: str) -> None:
        if room != CONTROL_ROOM:
            self._rooms.discard(room)

    @property
    def healthy(self) -> bool:
        return True


class RedisBroker:
    """Room traffic over Redis pub/sub. Losing Redis degrades this node to local-only delivery
    until the listener reconnects (with backoff) and re-subscribes."""

    def __init__(self, redis: Redis, node_id: str, prefix: str) -> None:
        self.node_id = node_id
        self._redis = redis
        self._prefix = f"{prefix}room:"
        self._origin = node_id.encode() + b"|"
        self._handler: Handler | None = None
        self._rooms: set[str] = {CONTROL_ROOM}
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._task: asyncio.Task[None] | None = None
        self._connected = False

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    def _channel(self, room: str) -> str:
        return self._prefix + room

    async def start(self) -> None:
        await self._pubsub.subscribe(*(self._channel(r) for r in self._rooms))
        self._connected = True
        self._task = asyncio.create_task(self._listen(), name=f"broker:{self.node_id}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @property
    def healthy(self) -> bool:
        return self._connected

    async def publish(self, room: str, payload: bytes) -> None:
        if self._handler is not None and room in self._rooms:
            self._handler(room, payload)
        try:
            await self._redis.publish(self._channel(room), self._origin + payload)
        except (RedisError, OSError) as exc:
            log.warning("redis publish failed; delivered locally only: %s", exc)

    async def subscribe(self, room: str) -> None:
        if room in self._rooms:
            return
        self._rooms.add(room)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.subscribe(self._channel(room))

    async def unsubscribe(self, room: str) -> None:
        if room == CONTROL_ROOM or room not in self._rooms:
            return
        self._rooms.discard(room)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.unsubscribe(self._channel(room))

    def _dispatch(self, channel: bytes | str, data: bytes) -> None:
        if data.startswith(self._origin) or self._handler is None:
            return  # our own echo: already delivered locally
        _, sep, payload = data.partition(b"|")
        if not sep:
            return
        name = channel.decode() if isinstance(channel, bytes) else channel
        room = name[len(self._prefix) :]
        if room in self._rooms:
            self._handler(room, payload)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
                    backoff = 0.1
                # listen() ends when the connection drops without raising
                raise ConnectionError("pubsub stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._connected = False
                log.warning("redis pubsub lost (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(*(self._channel(r) for r in self._rooms))
            self._connected = True
            log.info("redis pubsub re-subscribed to %d rooms", len(self._rooms))
        except (RedisError, OSError) as exc:
            log.warning("redis re-subscribe failed: %s", exc)
