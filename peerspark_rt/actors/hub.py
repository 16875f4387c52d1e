"""The hub: this node's registry of room actors and open sockets.

It starts a room's actor on the first local join (subscribing the node to the room on the
broker first, so nothing published meanwhile is missed), routes broker traffic to actors,
retires idle actors, applies node-wide control messages (evict a user from a room, close the
sockets of a revoked login session) and closes everything with "going away" on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from ..cluster import envelope
from ..cluster.broker import CONTROL_ROOM, Broker
from ..cluster.presence import Presence
from ..protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_SESSION_REVOKED,
    CLOSE_SLOW_CONSUMER,
    Resync,
)
from .connection import Connection, Flusher
from .room import RoomActor, presence_payload

log = logging.getLogger(__name__)


class History(Protocol):
    """Where a session room's stored messages come from (implemented by the services)."""

    async def last_seq(self, room: str) -> int: ...

    async def since(self, room: str, after: int, upto: int, limit: int) -> list[tuple[int, bytes]]:
        """Encoded message frames with after < seq <= upto, in order."""


# (room, user_id, present) when a user's presence in a room starts or ends cluster-wide
PresenceHook = Callable[[str, uuid.UUID, bool], Awaitable[None]]
# (room, user_id, seq) the furthest message a user acknowledged when they left
ReadHook = Callable[[str, uuid.UUID, int], Awaitable[None]]


class HubMetrics(Protocol):
    def deliveries(self, n: int) -> None: ...

    def rooms(self, n: int) -> None: ...

    def connections(self, n: int) -> None: ...

    def slow_consumer(self, action: str) -> None: ...


class Hub:
    def __init__(
        self,
        *,
        broker: Broker,
        presence: Presence,
        history: History,
        metrics: HubMetrics,
        typing_ttl: float = 6.0,
        outbound_limit: int = 256,
        presence_grace: float = 5.0,
    ) -> None:
        self.broker = broker
        self.presence = presence
        self.history = history
        self.metrics = metrics
        self.typing_ttl = typing_ttl
        self.outbound_limit = outbound_limit
        # seconds a user whose last socket was lost (not closed) stays present
        self.presence_grace = presence_grace
        self.rooms: dict[str, RoomActor] = {}
        self.connections: set[Connection] = set()
        self.on_presence: list[PresenceHook] = []
        self.on_read: list[ReadHook] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: Flusher | None = None
        self._closing = False

    async def start(self) -> None:
        self._flusher = Flusher()
        self.broker.set_handler(self._on_broker)
        self.presence.on_expired(self._expired)
        self.presence.on_resync(self._resync)

    @property
    def flusher(self) -> Flusher:
        assert self._flusher is not None, "hub not started"
        return self._flusher

    async def close(self) -> None:
        """Close every socket with 'going away' and let the rooms process the leaves."""
        if self._closing:
            return
        self._closing = True
        for conn in list(self.connections):
            conn.close(CLOSE_GOING_AWAY, "server shutting down")
        for conn in list(self.connections):
            await self.disconnect(conn)
        for actor in list(self.rooms.values()):
            actor.post(("stop",))
        actors = [a.task for a in self.rooms.values() if a.task is not None]
        if actors:
            await asyncio.wait(actors, timeout=5)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    # --- sockets -------------------------------------------------------------------------

    def connection(self, **kwargs: Any) -> Connection:
        conn = Connection(flusher=self.flusher, limit=self.outbound_limit, **kwargs)
        conn.on_overflow = self._overflow
        self.connections.add(conn)
        self.metrics.connections(len(self.connections))
        return conn

    async def disconnect(self, conn: Connection, *, lost: bool = False) -> None:
        """The socket is gone: leave every room it was in. `lost`: the client did not close
        it (a dropped network, a missed heartbeat, a socket we closed): its user stays present
        for the grace period in case it comes back."""
        # A join still in a room's mailbox must not add it back after this.
        conn.closing = True
        self.connections.discard(conn)
        self.metrics.connections(len(self.connections))
        waits = []
        for room in list(conn.rooms):
            actor = self.rooms.get(room)
            if actor is not None:
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                actor.post(("leave", conn, done, lost))
                waits.append(done)
        if waits:
            await asyncio.wait(waits, timeout=10)

    def _overflow(self, conn: Connection, hard: bool) -> None:
        if hard:
            self.metrics.slow_consumer("closed")
            conn.close(CLOSE_SLOW_CONSUMER, "too slow: reconnect and resume")
            return
        self.metrics.slow_consumer("resync")
        for room in conn.rooms:
            actor = self.rooms.get(room)
            if actor is not None:
                actor.send_to(conn, Resync(room=room))

    # --- rooms ---------------------------------------------------------------------------

    async def _actor(self, room: str) -> RoomActor:
        actor = self.rooms.get(room)
        if actor is None:
            actor = RoomActor(self, room)
            self.rooms[room] = actor
            # Subscribe before the actor reads its state, so nothing falls in between.
            await self.broker.subscribe(room)
            actor.start()
            self.metrics.rooms(len(self.rooms))
        return actor

    async def join(self, conn: Connection, room: str, since: int | None) -> None:
        """Put the socket in the room (authorization was checked by the caller)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (await self._actor(room)).post(("join", conn, since, done))
        await done

    def redispatch_join(self, room: str, item: tuple[Any, ...]) -> None:
        """A join that reached an actor as it retired: hand it to the room's next actor."""
        _, conn, since, done = item

        async def again() -> None:
            try:
                await self.join(conn, room, since)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

        self.spawn(again())

    async def leave(self, conn: Connection, room: str) -> None:
        actor = self.rooms.get(room)
        if actor is None or room not in conn.rooms:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        actor.post(("leave", conn, done, False))
        await done

    def post(self, conn: Connection, room: str, item: tuple[Any, ...]) -> bool:
        """Send a local socket's request (typing, share, resume) to its room's actor."""
        actor = self.rooms.get(room)
        if actor is None or room not in conn.rooms:
            return False
        actor.post(item)
        return True

    async def retire(self, actor: RoomActor) -> None:
        if self.rooms.get(actor.room) is actor:
            del self.rooms[actor.room]
            self.metrics.rooms(len(self.rooms))
            with contextlib.suppress(Exception):
                await self.broker.unsubscribe(actor.room)

    # --- broker traffic ------------------------------------------------------------------

    def _on_broker(self, room: str, payload: bytes) -> None:
        if room == CONTROL_ROOM:
            self._control(payload)
            return
        actor = self.rooms.get(room)
        if actor is not None:
            actor.post(("wire", payload))

    def _control(self, payload: bytes) -> None:
        if not payload or payload[0] != envelope.CONTROL:
            return
        try:
            body = orjson.loads(payload[1:])
        except orjson.JSONDecodeError:
            return
        if body.get("op") == "evict":
            actor = self.rooms.get(body.get("room", ""))
            if actor is not None:
                actor.post(("evict", body.get("userId", "")))
        elif body.get("op") == "revoke":
            session = body.get("sessionId")
            for conn in list(self.connections):
                if str(conn.session_id) == session:
                    conn.close(CLOSE_SESSION_REVOKED, "session revoked")

    async def broadcast(self, room: str, payload: bytes) -> None:
        await self.broker.publish(room, payload)

    async def announce_presence(self, room: str, user_id: str, username: str, state: str) -> None:
        """A user's presence started or ended cluster-wide: tell every node, record it."""
        await self.broker.publish(room, presence_payload(room, user_id, username, state))
        for hook in self.on_presence:
            self.spawn(hook(room, uuid.UUID(user_id), state == "join"))

    async def _expired(self, room: str, user_id: str, username: str) -> None:
        await self.announce_presence(room, user_id, username, "leave")

    async def _resync(self) -> None:
        for actor in list(self.rooms.values()):
            actor.post(("reassert",))

    def record_read(self, room: str, user_id: uuid.UUID, seq: int) -> None:
        for hook in self.on_read:
            self.spawn(hook(room, user_id, seq))

    # --- bookkeeping ---------------------------------------------------------------------

    def count_deliveries(self, n: int) -> None:
        if n:
            self.metrics.deliveries(n)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a background task, keep a reference until it ends, log its failure."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())
