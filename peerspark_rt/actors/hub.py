"""The hub: this node's registry of room actors and open sockets.

It starts a room's actor on the first local join, routes broker traffic to actors, retires
idle actors, applies node-wide control messages (evict a user from a room, close the sockets of
a revoked login session) and closes everything with "going away" on shutdown.

It also runs what the actors hand off, so that none of them awaits the network:
* presence writes go through one `PresenceWriter`, whose answers (first arrival anywhere, last
  departure everywhere) the hub announces to the other nodes and to the room;
* the position check: now and then (with several nodes) one query asks the store for the
  latest sequence of every session room here, so a room that missed a publication fetches it
  within a bounded time even if the room then falls silent;
* presence and read hooks (attendance, read markers) go through one bounded queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from ..cluster import envelope
from ..cluster.broker import CONTROL_ROOM, Broker
from ..cluster.presence import Presence
from ..cluster.presence_writer import PresenceWriter
from ..protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_SESSION_REVOKED,
    CLOSE_SLOW_CONSUMER,
    RESTART_REASON,
)
from . import mail
from .connection import CLOSE_DEADLINE, Connection, Flusher, closes_done, send_all
from .focus import FocusCredit
from .room import RoomActor, presence_payload

log = logging.getLogger(__name__)

HOOK_QUEUE = 10_000  # presence/read hook calls waiting to run; more are dropped (and counted)
HOOK_TIMEOUT = 10.0  # seconds one hook call may take
PRESENCE_BATCH = 500  # presence changes handed to the hooks in one call, at most
PRESENCE_REFRESH_DELAY = 1.5  # seconds after a broker reconnect before rooms re-read presence
SEND_DRAIN = 2.0  # seconds a stopping node waits for chat messages in flight before closing


class History(Protocol):
    """Where a session room's stored messages come from (implemented by the services)."""

    async def last_seq(self, room: str) -> int: ...

    async def since(self, room: str, after: int, upto: int, limit: int) -> list[tuple[int, bytes]]:
        """Encoded message frames with after < seq <= upto, in order."""

    async def positions(self, rooms: list[str]) -> dict[str, int]:
        """The latest stored sequence of each room."""


class FocusStore(Protocol):
    """Where rooms' focus timers are kept (implemented by the services)."""

    async def focus_of(self, room: str) -> bytes | None:
        """The room's timer (FocusState JSON), None when it has none."""


# (room, user_id, present) when a user's presence in a room starts or ends cluster-wide
PresenceChange = tuple[str, uuid.UUID, bool]
# called with the changes in the order they happened, as many at a time as came meanwhile
PresenceHook = Callable[[list[PresenceChange]], Awaitable[None]]
# (room, user_id, seq) the furthest message a user acknowledged when they left
ReadHook = Callable[[str, uuid.UUID, int], Awaitable[None]]
# members who completed (or abandoned) a focus block here
FocusHook = Callable[[FocusCredit], Awaitable[None]]


class HubMetrics(Protocol):
    def deliveries(self, n: int) -> None: ...

    def rooms(self, n: int) -> None: ...

    def connections(self, n: int) -> None: ...

    def slow_consumer(self, action: str) -> None: ...

    def resume(self, outcome: str) -> None: ...

    def gap_fetch(self) -> None: ...

    def room_load_failed(self) -> None: ...

    def hook_dropped(self) -> None: ...


class Hub:
    def __init__(
        self,
        *,
        broker: Broker,
        presence: Presence,
        history: History,
        metrics: HubMetrics,
        focus: FocusStore | None = None,
        typing_ttl: float = 6.0,
        outbound_limit: int = 1024 * 1024,
        presence_grace: float = 5.0,
        max_resume: int = 5000,
        load_timeout: float = 5.0,
        join_timeout: float = 10.0,
        redis_timeout: float = 1.0,
        position_interval: float = 1.0,
    ) -> None:
        if send_all is None:  # pragma: no cover (the test machines have a compiler)
            log.warning(
                "the fan-out's send loop (actors/_fanout.c) was not built when the package was "
                "installed (no C compiler?): room frames take the slower Python path"
            )
        self.broker = broker
        self.presence = presence
        self.history = history
        self.focus = focus
        self.metrics = metrics
        self.typing_ttl = typing_ttl
        self.outbound_limit = outbound_limit
        # seconds a user whose last socket was lost (not closed) stays present
        self.presence_grace = presence_grace
        self.max_resume = max_resume
        self.load_timeout = load_timeout
        self.join_timeout = join_timeout
        # 0: no position checks (a single node misses nothing)
        self.position_interval = position_interval if broker.distributed else 0.0
        self.rooms: dict[str, RoomActor] = {}
        self.connections: set[Connection] = set()
        self.on_presence: list[PresenceHook] = []
        self.on_read: list[ReadHook] = []
        self.on_focus: list[FocusHook] = []
        self.presence_writer = PresenceWriter(
            presence, self._presence_result, timeout=redis_timeout
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        # (call, whether HOOK_TIMEOUT bounds it: not a call that bounds itself)
        self._hooks: collections.deque[tuple[Awaitable[None], bool]] = collections.deque()
        self._hooks_wake = asyncio.Event()
        self._hooks_idle = asyncio.Event()
        self._hooks_idle.set()
        # presence changes not yet handed to the hooks; one call is queued for all of them
        self._changes: list[PresenceChange] = []
        self._changes_queued = False
        self._workers: list[asyncio.Task[None]] = []
        self._flusher: Flusher | None = None
        self._closing = False

    async def start(self) -> None:
        self._flusher = Flusher()
        self.broker.set_handler(self._on_broker)
        self.broker.on_reconnected(self._broker_reconnected)
        self.broker.on_subscribed(self._room_subscribed)
        self.presence.on_expired(self._expired)
        self.presence.on_resync(self._resync)
        self.presence_writer.start()
        self._workers.append(asyncio.create_task(self._run_hooks(), name="hub-hooks"))
        if self.position_interval > 0:
            self._workers.append(asyncio.create_task(self._check_positions(), name="positions"))

    @property
    def flusher(self) -> Flusher:
        if self._flusher is None:
            raise RuntimeError("hub not started")
        return self._flusher

    async def close(self) -> None:
        """Close every socket with 'going away' and the restart hint, all at once, and let
        the rooms process the leaves; every wait has a deadline.

        Chat messages that sockets have in flight are given `SEND_DRAIN` seconds to be
        stored first, so their acks go out before the close frame (a client that still
        misses one resends it with the same id after reconnecting: it is stored once)."""
        if self._closing:
            return
        self._closing = True  # joins are refused from now on
        conns = list(self.connections)
        in_flight = [
            send for conn in conns if conn.sending for send in conn.sending if not send.done()
        ]
        if in_flight:
            await asyncio.wait(in_flight, timeout=SEND_DRAIN)
        for conn in conns:
            conn.close(CLOSE_GOING_AWAY, RESTART_REASON)
        if conns:
            await asyncio.gather(*(self.disconnect(c) for c in conns))
            # (the close frames must be out before aiohttp's shutdown and the loop's end)
            await closes_done(CLOSE_DEADLINE)
        for actor in list(self.rooms.values()):
            actor.post(mail.Stop())
        actors = [a.task for a in self.rooms.values() if a.task is not None]
        if actors:
            await asyncio.wait(actors, timeout=CLOSE_DEADLINE)
        await self.presence_writer.close(timeout=CLOSE_DEADLINE)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_DEADLINE):
                await self._hooks_idle.wait()
        for worker in self._workers:
            worker.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_DEADLINE)

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
                actor.post(mail.Leave(conn, done, lost))
                waits.append(done)
        if waits:
            await asyncio.wait(waits, timeout=self.join_timeout)

    def _overflow(self, conn: Connection, hard: bool) -> None:
        if hard:
            self.metrics.slow_consumer("closed")
            conn.close(CLOSE_SLOW_CONSUMER, "too slow: reconnect and resume")
            return
        self.metrics.slow_consumer("resync")
        for room in conn.rooms:
            actor = self.rooms.get(room)
            if actor is not None:
                actor.post(mail.Overflowed(conn))

    # --- rooms ---------------------------------------------------------------------------

    def _actor(self, room: str) -> RoomActor:
        actor = self.rooms.get(room)
        if actor is None:
            actor = RoomActor(self, room)
            self.rooms[room] = actor
            # (not awaited: what is published before the subscription takes effect is caught
            # up by the room's gap fill and position checks)
            self.broker.subscribe(room)
            actor.start()
            self.metrics.rooms(len(self.rooms))
        return actor

    async def join(self, conn: Connection, room: str, since: int | None) -> str | None:
        """Put the socket in the room (authorization was checked by the caller). None when it
        joined, else an error code (`unavailable`: the room cannot serve joins now; retry)."""
        if self._closing:
            return "unavailable"
        done: mail.JoinResult = asyncio.get_running_loop().create_future()
        item = mail.Join(conn, since, done)
        self._actor(room).post(item)
        try:
            async with asyncio.timeout(self.join_timeout):
                return await asyncio.shield(done)
        except TimeoutError:
            item.cancelled = True
            return "unavailable"

    def redispatch_join(self, room: str, item: mail.Join) -> None:
        """A join that reached an actor as it retired: hand it to the room's next actor."""

        async def again() -> None:
            result: str | None = "unavailable"
            try:
                if not item.cancelled:
                    result = await self.join(item.conn, room, item.since)
            finally:
                if item.done is not None and not item.done.done():
                    item.done.set_result(result)

        self.spawn(again())

    async def leave(self, conn: Connection, room: str) -> None:
        actor = self.rooms.get(room)
        if actor is None or room not in conn.rooms:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        actor.post(mail.Leave(conn, done))
        await asyncio.wait([done], timeout=self.join_timeout)

    def post(self, conn: Connection, room: str, item: mail.Mail) -> bool:
        """Send a local socket's request (typing, share, resume) to its room's actor."""
        actor = self.rooms.get(room)
        if actor is None or room not in conn.rooms:
            return False
        actor.post(item)
        return True

    def retire(self, actor: RoomActor) -> None:
        if self.rooms.get(actor.room) is actor:
            del self.rooms[actor.room]
            self.metrics.rooms(len(self.rooms))
            self.broker.unsubscribe(actor.room)

    # --- broker traffic ------------------------------------------------------------------

    def _on_broker(self, room: str, payload: bytes) -> None:
        if room == CONTROL_ROOM:
            self._control(payload)
            return
        actor = self.rooms.get(room)
        if actor is not None:
            actor.post(mail.Wire(payload))

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
                actor.post(mail.Evict(body.get("userId", "")))
        elif body.get("op") == "revoke":
            session = body.get("sessionId")
            for conn in list(self.connections):
                if str(conn.session_id) == session:
                    conn.close(CLOSE_SESSION_REVOKED, "session revoked")

    def publish_remote(self, room: str, payload: bytes) -> None:
        """State a room has applied locally, for the other nodes (never waits)."""
        self.broker.publish_remote(room, payload)

    # --- presence ------------------------------------------------------------------------

    def presence_add(self, room: str, user_id: str, username: str) -> None:
        self.presence_writer.add(room, user_id, username)

    def presence_remove(self, room: str, user_id: str, username: str) -> None:
        self.presence_writer.remove(room, user_id, username)

    def _presence_result(
        self, op: str, room: str, user_id: str, username: str, changed: bool
    ) -> None:
        """The registry's answer to a presence write: announce a first arrival or a last
        departure to the other nodes (the room here already knows of an arrival)."""
        if not changed:
            return
        state = "join" if op == "add" else "leave"
        self.broker.publish_remote(room, presence_payload(room, user_id, username, state))
        if state == "leave":
            actor = self.rooms.get(room)
            if actor is not None:
                actor.post(mail.PresenceGone(user_id, username))
        self._run_presence_hooks(room, user_id, state == "join")

    def _run_presence_hooks(self, room: str, user_id: str, present: bool) -> None:
        """Queue the change for the hooks: the changes that come while earlier hook calls run
        go to the hooks together (a class arriving at once is written in a few statements)."""
        if not self.on_presence:
            return
        if len(self._changes) >= HOOK_QUEUE:
            # (only one hook call waits for all of them: HOOK_QUEUE bounds them here, as it
            # bounded the calls one per change)
            self.metrics.hook_dropped()
            log.warning("presence changes waiting for the hooks full; dropping one")
            return
        self._changes.append((room, uuid.UUID(user_id), present))
        if not self._changes_queued:
            self._changes_queued = self._queue_hook(self._presence_hooks(), bounded=False)

    async def _presence_hooks(self) -> None:
        changes, self._changes = self._changes[:PRESENCE_BATCH], self._changes[PRESENCE_BATCH:]
        self._changes_queued = bool(self._changes) and self._queue_hook(
            self._presence_hooks(), bounded=False
        )
        # The batch has the time its changes had one by one (and one more share, for a hook
        # that retries them one by one once the batch failed): a change stuck past
        # HOOK_TIMEOUT must not cost the changes batched with it theirs.
        budget = HOOK_TIMEOUT * (len(changes) + 1)
        for hook in self.on_presence:
            try:
                async with asyncio.timeout(budget):
                    await hook(changes)
            except Exception:
                log.exception("presence hook %s failed on %d changes", hook, len(changes))

    async def _expired(self, room: str, user_id: str, username: str) -> None:
        """A dead node's user left the room: every node (this one too) hears it."""
        self.broker.publish(room, presence_payload(room, user_id, username, "leave"))
        self._run_presence_hooks(room, user_id, False)

    def _broker_reconnected(self) -> None:
        """Announcements made while this node could not hear were lost: once the other nodes
        have had time to re-register their presence (their next heartbeat), rooms read it."""
        loop = asyncio.get_running_loop()
        loop.call_later(PRESENCE_REFRESH_DELAY, self._refresh_presence)

    def _room_subscribed(self, room: str) -> None:
        """A room's subscription took effect: an arrival announced on another node before
        it was not heard, so the room reads who is present (a later one will be heard)."""
        actor = self.rooms.get(room)
        if actor is not None and actor.tracks_presence:
            actor.post(mail.RefreshPresence())

    def _refresh_presence(self) -> None:
        for actor in list(self.rooms.values()):
            if actor.tracks_presence:
                actor.post(mail.RefreshPresence())
            if actor.focus is not None:
                actor.post(mail.FocusReload())

    async def _resync(self) -> None:
        for actor in list(self.rooms.values()):
            actor.post(mail.Reassert())

    def record_read(self, room: str, user_id: uuid.UUID, seq: int) -> None:
        for hook in self.on_read:
            self._queue_hook(hook(room, user_id, seq))

    def focus_credit(self, credit: FocusCredit) -> None:
        for hook in self.on_focus:
            self._queue_hook(hook(credit))

    def deliver_local(self, room: str, frame: bytes) -> None:
        """A frame for this node's members of `room` only (each node tells its own)."""
        actor = self.rooms.get(room)
        if actor is not None:
            actor.post(mail.Wire(envelope.event(frame)))

    # --- handed-off work -----------------------------------------------------------------

    def _queue_hook(self, call: Awaitable[None], *, bounded: bool = True) -> bool:
        if len(self._hooks) >= HOOK_QUEUE:
            self.metrics.hook_dropped()
            log.warning("hook queue full; dropping %s", call)
            if asyncio.iscoroutine(call):
                call.close()
            return False
        self._hooks.append((call, bounded))
        self._hooks_idle.clear()
        self._hooks_wake.set()
        return True

    async def _run_hooks(self) -> None:
        while True:
            if not self._hooks:
                self._hooks_idle.set()
                self._hooks_wake.clear()
                await self._hooks_wake.wait()
                continue
            call, bounded = self._hooks.popleft()
            try:
                async with asyncio.timeout(HOOK_TIMEOUT if bounded else None):
                    await call
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence/read hook failed")

    async def _check_positions(self) -> None:
        """Tell each session room the store's latest sequence (see the module docstring)."""
        while True:
            await asyncio.sleep(self.position_interval)
            actors = [a for a in self.rooms.values() if a.sequenced and a.ready]
            if not actors:
                continue
            try:
                async with asyncio.timeout(self.load_timeout):
                    positions = await self.history.positions([a.room for a in actors])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (the next check tries again)
                log.warning("position check failed: %s", exc or type(exc).__name__)
                continue
            for actor in actors:
                seq = positions.get(actor.room)
                if seq is not None and seq > actor.last_seq:
                    actor.post(mail.Position(seq))

    # --- bookkeeping ---------------------------------------------------------------------

    def count_deliveries(self, n: int) -> None:
        if n:
            self.metrics.deliveries(n)

    def deepest_mailbox(self) -> int:
        return max((len(a.mailbox) for a in self.rooms.values()), default=0)

    def queued_bytes(self) -> int:
        return sum(c.queued_bytes for c in self.connections)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a background task, keep a reference until it ends, log its failure."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())


# the application's key for what this module provides (typed app state)
HUB = web.AppKey("hub", Hub)
