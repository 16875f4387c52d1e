"""The broker carries room traffic between nodes.

`LocalBroker` serves a single node. `RedisBroker` publishes each room's frames once to a Redis
channel; every node subscribes only to the rooms it has local members for. A publishing node
delivers to its own members directly and ignores its own echo from Redis.

Nothing here is awaited by a room or by a chat acknowledgement: `publish` hands local
delivery over at once and queues the cross-node copy on the node's one pipelined `Publisher`;
`subscribe`/`unsubscribe` record what the node wants, and one task brings the Redis
subscription in line (retrying, with a deadline per attempt). What has not been subscribed
yet shows in /health.

Payloads are opaque bytes (an encoded server frame); the handler decides what they mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from .publisher import Publisher
from .redis_client import RedisClient

log = logging.getLogger(__name__)

# (room, payload) -> None. Called on the event loop; must not block.
Handler = Callable[[str, bytes], None]

CONTROL_ROOM = "_control"  # node-wide messages (e.g. "close the sockets of session X")
SUBSCRIBE_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)


class Broker(Protocol):
    node_id: str
    # True when other nodes may exist (their publications can be missed and caught up)
    distributed: bool

    def set_handler(self, handler: Handler) -> None: ...

    def on_reconnected(self, hook: Callable[[], None]) -> None:
        """Call `hook` after the link to the other nodes came back (what they said meanwhile
        was not heard: state kept from their announcements should be read again)."""

    def on_subscribed(self, hook: Callable[[str], None]) -> None:
        """Call `hook(room)` once this node's subscription to `room` took effect: what other
        nodes announced before it was not heard, and what they write later will be."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, room: str, payload: bytes) -> None:
        """Deliver to this node's handler now and to every other node subscribed to `room`."""

    def publish_remote(self, room: str, payload: bytes) -> None:
        """Deliver to the other nodes only (this node has applied it already)."""

    def subscribe(self, room: str) -> None: ...

    def unsubscribe(self, room: str) -> None: ...

    def health(self) -> dict[str, Any]: ...


class LocalBroker:
    """Everything stays in this process."""

    distributed = False

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._handler: Handler | None = None
        self._rooms: set[str] = {CONTROL_ROOM}

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    def on_reconnected(self, hook: Callable[[], None]) -> None:
        return None  # nothing to lose in one process

    def on_subscribed(self, hook: Callable[[str], None]) -> None:
        return None  # (nor anything to miss before subscribing)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._rooms.clear()

    def publish(self, room: str, payload: bytes) -> None:
        if self._handler is not None and room in self._rooms:
            self._handler(room, payload)

    def publish_remote(self, room: str, payload: bytes) -> None:
        return None

    def subscribe(self, room: str) -> None:
        self._rooms.add(room)

    def unsubscribe(self, room: str) -> None:
        if room != CONTROL_ROOM:
            self._rooms.discard(room)

    def health(self) -> dict[str, Any]:
        return {"status": "healthy", "mode": "in-process"}


class RedisBroker:
    """Room traffic over Redis pub/sub. Losing Redis degrades this node to local-only delivery
    until the listener reconnects (with backoff) and re-subscribes.

    What is specific to classic pub/sub on one server (one connection, SUBSCRIBE, one
    listener) is in the methods under "the subscription"; `ShardedRedisBroker` replaces them
    for a Redis Cluster."""

    distributed = True
    mode = "redis"

    def __init__(
        self,
        redis: RedisClient,
        node_id: str,
        prefix: str,
        *,
        publisher: Publisher,
        timeout: float,
    ) -> None:
        self.node_id = node_id
        self._redis = redis
        self._publisher = publisher
        self._timeout = timeout
        self._prefix = f"{prefix}room:"
        self._origin = node_id.encode() + b"|"
        self._handler: Handler | None = None
        self._rooms: set[str] = {CONTROL_ROOM}  # what this node wants
        self._subscribed: set[str] = set()  # what the pubsub connection has
        self._changed = asyncio.Event()
        # the syncer and a reconnect must not work on the pubsub connection at once
        self._lock = asyncio.Lock()
        # subscribe confirmations are read: they say when a room's subscription took effect
        self._pubsub: PubSub = redis.pubsub(ignore_subscribe_messages=False)
        self._listeners: list[asyncio.Task[None]] = []
        self._syncer: asyncio.Task[None] | None = None
        self._connected = False
        self._sync_failures = 0
        self._reconnected: list[Callable[[], None]] = []
        self._subscribed_hooks: list[Callable[[str], None]] = []

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    def on_reconnected(self, hook: Callable[[], None]) -> None:
        self._reconnected.append(hook)

    def on_subscribed(self, hook: Callable[[str], None]) -> None:
        self._subscribed_hooks.append(hook)

    def _channel(self, room: str) -> str:
        return self._prefix + room

    async def start(self) -> None:
        async with asyncio.timeout(self._timeout * 5):
            await self._add({self._channel(r) for r in self._rooms})
        self._subscribed = set(self._rooms)
        self._connected = True
        self._publisher.start()
        self._listeners = self._start_listening()
        self._syncer = asyncio.create_task(self._sync(), name=f"broker-subs:{self.node_id}")

    async def close(self) -> None:
        await self._publisher.close()
        for task in (*self._listeners, self._syncer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    def health(self) -> dict[str, Any]:
        pending = len(self._rooms - self._subscribed)
        connected = self._is_connected()
        healthy = connected and self._publisher.healthy and not pending
        return {
            "status": "healthy" if healthy else "degraded",
            "mode": self.mode,
            "pubsub": "connected" if connected else "reconnecting",
            "publishing": "ok" if self._publisher.healthy else "failing",
            "subscriptionsPending": pending,
        }

    def publish(self, room: str, payload: bytes) -> None:
        if self._handler is not None and room in self._rooms:
            self._handler(room, payload)
        self._publisher.publish(self._channel(room), self._origin + payload)

    def publish_remote(self, room: str, payload: bytes) -> None:
        self._publisher.publish(self._channel(room), self._origin + payload)

    def subscribe(self, room: str) -> None:
        if room not in self._rooms:
            self._rooms.add(room)
            self._changed.set()

    def unsubscribe(self, room: str) -> None:
        if room != CONTROL_ROOM and room in self._rooms:
            self._rooms.discard(room)
            self._changed.set()

    async def _sync(self) -> None:
        """Bring the Redis subscription in line with what the node wants, retrying failures
        (a room whose SUBSCRIBE was lost would otherwise hear nothing from other nodes)."""
        attempt = 0
        while True:
            if attempt == 0:
                await self._changed.wait()
            self._changed.clear()
            try:
                async with self._lock, asyncio.timeout(self._timeout):
                    add = self._rooms - self._subscribed
                    drop = self._subscribed - self._rooms
                    if add:
                        await self._add({self._channel(r) for r in add})
                        self._subscribed |= add
                    if drop:
                        await self._drop({self._channel(r) for r in drop})
                        self._subscribed -= drop
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure is retried)
                self._sync_failures += 1
                if attempt == 0:
                    log.warning("redis subscribe failed (%s); retrying", exc or type(exc).__name__)
                await asyncio.sleep(SUBSCRIBE_BACKOFF[min(attempt, len(SUBSCRIBE_BACKOFF) - 1)])
                attempt += 1

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

    def _confirmed(self, channel: bytes | str) -> None:
        """Redis confirmed a subscription: from now on this node hears the room."""
        name = channel.decode() if isinstance(channel, bytes) else channel
        room = name[len(self._prefix) :]
        if room in self._rooms:
            for hook in self._subscribed_hooks:
                hook(room)

    # --- the subscription: classic pub/sub on one connection ------------------------------

    async def _add(self, channels: set[str]) -> None:
        await self._pubsub.subscribe(*channels)

    async def _drop(self, channels: set[str]) -> None:
        await self._pubsub.unsubscribe(*channels)

    def _start_listening(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._listen(), name=f"broker:{self.node_id}")]

    def _is_connected(self) -> bool:
        return self._connected

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
                    elif message["type"] == "subscribe":
                        self._confirmed(message["channel"])
                    backoff = 0.1
                # listen() ends when the connection drops without raising
                raise ConnectionError("pubsub stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure reconnects)
                self._connected = False
                log.warning("redis pubsub lost (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        async with self._lock:
            await self._reconnect()

    async def _reconnect(self) -> None:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=False)
        self._subscribed = set()
        try:
            wanted = set(self._rooms)
            async with asyncio.timeout(self._timeout):
                await self._pubsub.subscribe(*(self._channel(r) for r in wanted))
            self._subscribed = wanted
            self._connected = True
            for hook in self._reconnected:
                hook()
            self._changed.set()  # rooms wanted meanwhile
            log.info("redis pubsub re-subscribed to %d rooms", len(wanted))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis re-subscribe failed: %s", exc or type(exc).__name__)


# the application's key for what this module provides (typed app state)
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
BROKER = web.AppKey("broker", Broker)
