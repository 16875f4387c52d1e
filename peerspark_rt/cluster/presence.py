"""Who is present in which room, across every node.

Room actors call `add` when a user's first local socket enters a room and `remove` when their
last local one leaves; the registry answers whether that was the user's first (or last)
presence in the whole cluster, so join/leave events fire once however many devices and nodes
the user is on.

With Redis, each node refreshes a heartbeat key with a short TTL and records its entries per
room, with an index of its rooms. Every node sweeps: when a node's heartbeat has lapsed (it
crashed or was killed), one node takes a lock, removes the dead node's entries and reports
each user that thereby left a room, so their presence is gone within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.exceptions import RedisError

from .redis_client import RedisClient

log = logging.getLogger(__name__)

# (room, user_id, username) of a user whose node died while they were present
ExpiredHook = Callable[[str, str, str], Awaitable[None]]
# re-add every local presence (after this node was presumed dead)
ResyncHook = Callable[[], Awaitable[None]]


class Presence(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def add(self, room: str, user_id: str, username: str) -> bool:
        """Record the user on this node; True if they were present nowhere before."""

    async def remove(self, room: str, user_id: str) -> bool:
        """Drop the user on this node; True if they are now present nowhere."""

    async def members(self, room: str) -> dict[str, str]:
        """user_id -> username of everyone present in the room, on any node."""

    async def is_present(self, room: str, user_id: str) -> bool:
        """Whether the user is present in the room on any node."""

    def on_expired(self, hook: ExpiredHook) -> None: ...

    def on_resync(self, hook: ResyncHook) -> None: ...


class LocalPresence:
    """A single node: the registry is a dict."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, str]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._rooms.clear()

    async def add(self, room: str, user_id: str, username: str) -> bool:
        members = self._rooms.setdefault(room, {})
        first = user_id not in members
        members[user_id] = username
        return first

    async def remove(self, room: str, user_id: str) -> bool:
        members = self._rooms.get(room)
        if members is None or members.pop(user_id, None) is None:
            return False
        if not members:
            del self._rooms[room]
        return True

    async def members(self, room: str) -> dict[str, str]:
        return dict(self._rooms.get(room, {}))

    async def is_present(self, room: str, user_id: str) -> bool:
        return user_id in self._rooms.get(room, {})

    def on_expired(self, hook: ExpiredHook) -> None:
        return None  # a single node cannot outlive itself

    def on_resync(self, hook: ResyncHook) -> None:
        return None


# A room's keys share the hash tag {<room>}, so each script touches one slot (a Redis Cluster
# refuses scripts across slots): how many sockets' nodes hold each user (count), their names
# (names), and this node's own entries in the room (node:<id>). A per-node set of rooms
# (node-rooms:<id>) tells a sweeper where a dead node's entries are.
_ADD = """
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) == 1 then return 1 end
return 0
"""

# -> {1 if the user is now present nowhere, entries this node has left in the room}
_REMOVE = """
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return {0, redis.call('HLEN', KEYS[3])} end
local left = redis.call('HLEN', KEYS[3])
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {1, left}
end
return {0, left}
"""


class RedisPresence:
    HEARTBEAT_EVERY = 1.0  # seconds
    HEARTBEAT_TTL_MS = 4000
    SWEEP_EVERY = 1.0
    ROUND_TIMEOUT = 5.0  # seconds one heartbeat-and-sweep round may take
    CLOSE_TIMEOUT = 2.0  # seconds a clean shutdown may spend handing presence over

    def __init__(self, redis: RedisClient, node_id: str, prefix: str) -> None:
        self._redis = redis
        self._node = node_id
        self._p = f"{prefix}presence:"
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._expired: list[ExpiredHook] = []
        self._resync: list[ResyncHook] = []
        self._task: asyncio.Task[None] | None = None

    def _keys(self, room: str, node: str) -> list[str]:
        tagged = f"{self._p}{{{room}}}"
        return [f"{tagged}:count", f"{tagged}:names", f"{tagged}:node:{node}"]

    def _rooms_of(self, node: str) -> str:
        return f"{self._p}node-rooms:{node}"

    def on_expired(self, hook: ExpiredHook) -> None:
        self._expired.append(hook)

    def on_resync(self, hook: ResyncHook) -> None:
        self._resync.append(hook)

    async def start(self) -> None:
        # Entries left by an earlier life of this node id are stale: sweep them first.
        await self._sweep_node(self._node)
        await self._beat()
        self._task = asyncio.create_task(self._loop(), name=f"presence:{self._node}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A clean shutdown hands its users' presence over at once instead of after the TTL
        # (if Redis answers in time; otherwise the other nodes sweep them when it lapses).
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self.CLOSE_TIMEOUT):
                await self._sweep_node(self._node)
                await self._redis.delete(f"{self._p}alive:{self._node}")
                await self._redis.srem(f"{self._p}nodes", self._node)

    async def add(self, room: str, user_id: str, username: str) -> bool:
        # the room goes in the node's index first, so a sweep after a crash finds the entry
        await self._redis.sadd(self._rooms_of(self._node), room)
        result = await self._add(keys=self._keys(room, self._node), args=[user_id, username])
        return bool(result)

    async def remove(self, room: str, user_id: str) -> bool:
        return await self._remove_for(self._node, room, user_id)

    async def _remove_for(self, node: str, room: str, user_id: str) -> bool:
        gone, left = await self._remove(keys=self._keys(room, node), args=[user_id])
        if not left:
            # (a node's presence writes are applied one at a time, so no add of this room
            # can come between the script and this)
            await self._redis.srem(self._rooms_of(node), room)
        return bool(gone)

    async def members(self, room: str) -> dict[str, str]:
        raw = await self._redis.hgetall(self._keys(room, self._node)[1])
        return {_text(k): _text(v) for k, v in raw.items()}

    async def is_present(self, room: str, user_id: str) -> bool:
        return bool(await self._redis.hexists(self._keys(room, self._node)[0], user_id))

    async def _beat(self) -> bool:
        """Refresh our heartbeat; True if it had lapsed (others may have swept us)."""
        previous = await self._redis.set(
            f"{self._p}alive:{self._node}", b"1", px=self.HEARTBEAT_TTL_MS, get=True
        )
        await self._redis.sadd(f"{self._p}nodes", self._node)
        return previous is None

    async def _loop(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(min(self.HEARTBEAT_EVERY, self.SWEEP_EVERY))
            tick += 1
            try:
                # (every Redis call also has the client's socket timeout; this bounds a sweep
                # of many entries as a whole)
                async with asyncio.timeout(self.ROUND_TIMEOUT):
                    lapsed = await self._beat()
                    if lapsed:
                        log.warning("presence heartbeat had lapsed; re-registering local presence")
                        for hook in self._resync:
                            await hook()
                    await self._sweep_dead()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("presence heartbeat failed: %s", exc or type(exc).__name__)
            except Exception:
                log.exception("presence loop error")

    async def _sweep_dead(self) -> None:
        nodes = {_text(n) for n in await self._redis.smembers(f"{self._p}nodes")}
        for node in nodes - {self._node}:
            if await self._redis.exists(f"{self._p}alive:{node}"):
                continue
            # One sweeper per dead node.
            if not await self._redis.set(f"{self._p}sweep:{node}", self._node, nx=True, px=10_000):
                continue
            log.info("node %s stopped heartbeating; expiring its presence", node)
            await self._sweep_node(node, report=True)
            await self._redis.srem(f"{self._p}nodes", node)

    async def _sweep_node(self, node: str, *, report: bool = False) -> None:
        for raw_room in await self._redis.smembers(self._rooms_of(node)):
            room = _text(raw_room)
            entries_key = self._keys(room, node)[2]
            entries = await self._redis.hgetall(entries_key)
            for user_id, name in entries.items():
                if await self._remove_for(node, room, _text(user_id)) and report:
                    for hook in self._expired:
                        try:
                            await hook(room, _text(user_id), _text(name))
                        except Exception:
                            log.exception("presence expiry hook failed")
            await self._redis.delete(entries_key)
        await self._redis.delete(self._rooms_of(node))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
