"""A room actor: the one task on this node that owns a room's live state.

It is fed by a mailbox: sockets joining and leaving, typing and screen-share changes from local
sockets, and frames arriving from the broker (from this node or others). Nothing else touches
its state. It fans each frame out by encoding it once per wire format and pushing the same
bytes to every local member.

For session rooms it also keeps chat messages in sequence order: a frame that arrives ahead of
a missing one waits briefly, then the gap is filled from the store, so every member sees each
message once, in order, without gaps. A short ring buffer of recent frames serves resumes
without touching the database.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ..cluster import envelope
from ..protocol import (
    Error,
    Joined,
    Left,
    Member,
    Presence,
    ScreenShareEvent,
    ScreenShareState,
    TypingEvent,
    json_encoder,
    msgpack_encoder,
    server_json_decoder,
)
from .connection import OP_BINARY, OP_TEXT, Connection, send_frame, ws_frame
from .mailbox import Mailbox

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger(__name__)

RECENT = 1024  # messages kept in memory for resumes
MAX_RESUME = 5000  # a resume further back than this must reload history over REST
GAP_WAIT = 0.15  # seconds a later message waits for a missing one before we fetch it
LINGER = 5.0  # seconds an empty room stays up (reconnects are cheap)
# (A user whose last socket was lost, rather than closed, stays present for the hub's
# `presence_grace` seconds: a reconnect within it is not a leave and a join.)
TYPING_THROTTLE = 2.0  # seconds between re-broadcasts of a user's "typing start"


_NO_MESSAGES: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=0)


def _to_msgpack(payload: bytes) -> bytes:
    return msgpack_encoder.encode(server_json_decoder.decode(payload))


class RoomActor:
    def __init__(self, hub: Hub, room: str) -> None:
        self.hub = hub
        self.room = room
        kind = room.partition(":")[0]
        self.sequenced = kind == "session"
        self.tracks_presence = kind in ("session", "pod")
        self.mailbox: Mailbox[tuple[Any, ...]] = Mailbox()
        self.task: asyncio.Task[None] | None = None
        # members, by wire format (so fan-out needs no per-member branch)
        self.text_members: dict[Connection, None] = {}
        self.binary_members: dict[Connection, None] = {}
        self.local_users: dict[str, int] = {}  # user id -> sockets here
        self.presence: dict[str, str] = {}  # user id -> username, on every node
        # `presence` as the joined frame lists it; rebuilt after a change (in a reconnect
        # storm thousands of joins in a row reuse one list)
        self._presence_list: list[Member] | None = None
        self.typing: dict[str, tuple[str, float]] = {}  # user id -> (username, expires)
        self.typing_sent: dict[str, float] = {}  # user id -> last broadcast (our users)
        self.sharing: dict[str, ScreenShareState] = {}
        self.last_seq = 0
        self.pending: dict[int, bytes] = {}
        # (only session rooms keep messages; others share one empty, never-filled deque: an
        # empty deque still costs ~0.7 KB, and there is a user room per connected user)
        self.recent: collections.deque[tuple[int, bytes]] = (
            collections.deque(maxlen=RECENT) if self.sequenced else _NO_MESSAGES
        )
        self.holding: dict[Connection, list[tuple[int, bytes]]] = {}
        # user id -> (username, timer): lost their last local socket; still present until
        # the timer fires, unless they come back first
        self.departing: dict[str, tuple[str, asyncio.TimerHandle]] = {}
        self._gap_timer: asyncio.TimerHandle | None = None
        self._gap_fetching = False
        self._typing_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._retired = False

    # --- plumbing ------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"room:{self.room}")

    def post(self, item: tuple[Any, ...]) -> None:
        self.mailbox.put_nowait(item)

    @property
    def member_count(self) -> int:
        return len(self.text_members) + len(self.binary_members)

    def _members(self) -> list[Connection]:
        return [*self.text_members, *self.binary_members]

    async def _run(self) -> None:
        try:
            await self._init()
            while True:
                item = await self.mailbox.get()
                if item[0] == "stop":
                    await self._depart_all()
                    break
                try:
                    await self._handle(item)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("room %s failed on %s", self.room, item[0])
                if self._retired:
                    break
        finally:
            self._cancel_timers()
            self._handoff()

    async def _init(self) -> None:
        try:
            if self.sequenced:
                self.last_seq = await self.hub.history.last_seq(self.room)
            if self.tracks_presence:
                self.presence = await self.hub.presence.members(self.room)
                self._presence_list = None
        except Exception:
            log.exception("room %s could not load its state", self.room)

    def _cancel_timers(self) -> None:
        for timer in (self._gap_timer, self._typing_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        for _, grace in self.departing.values():
            grace.cancel()

    def _handoff(self) -> None:
        """After retiring, joins that raced with it go to the room's next actor."""
        while not self.mailbox.empty():
            item = self.mailbox.get_nowait()
            if item[0] == "join":
                self.hub.redispatch_join(self.room, item)

    async def _handle(self, item: tuple[Any, ...]) -> None:
        match item[0]:
            case "wire":
                self._on_wire(item[1])
            case "join":
                await self._join(item[1], item[2], item[3])
            case "leave":
                await self._leave(item[1], lost=item[3])
                if item[2] is not None and not item[2].done():
                    item[2].set_result(None)
            case "depart":
                await self._grace_over(item[1])
            case "typing":
                await self._typing_from(item[1], item[2])
            case "share":
                await self._share_from(item[1], item[2], item[3])
            case "resume":
                self._resume(item[1], item[2])
            case "backfill":
                self._finish_backfill(item[1], item[2], item[3])
            case "gap":
                self._fill_gap()
            case "gapfill":
                self._gap_fetching = False
                for seq, payload in item[1]:
                    self._on_message(seq, payload)
                if self.pending:
                    self._arm_gap_timer()
            case "typing_expiry":
                self._expire_typing()
            case "evict":
                await self._evict(item[1])
            case "reassert":
                await self._reassert_presence()
            case "idle":
                await self._maybe_retire()
            case other:
                log.warning("room %s got unknown mail %r", self.room, other)

    # --- fan-out -------------------------------------------------------------------------

    def _fanout(self, payload: bytes) -> None:
        """Encode once per format, push the same bytes to every local member."""
        if self.text_members:
            frame = ws_frame(payload, OP_TEXT)
            for conn in self.text_members:
                conn.push(frame)
        if self.binary_members:
            frame = ws_frame(_to_msgpack(payload), OP_BINARY)
            for conn in self.binary_members:
                conn.push(frame)
        self.hub.count_deliveries(self.member_count)

    def send_to(self, conn: Connection, frame: msgspec.Struct) -> None:
        """One frame to one socket, in its format."""
        send_frame(conn, frame)

    def _send_payload(self, conn: Connection, payload: bytes) -> None:
        if conn.binary:
            conn.push(ws_frame(_to_msgpack(payload), OP_BINARY))
        else:
            conn.push(ws_frame(payload, OP_TEXT))

    # --- frames from the broker ----------------------------------------------------------

    def _on_wire(self, payload: bytes) -> None:
        kind = payload[0]
        if kind == envelope.EVENT:
            self._fanout(payload[1:])
        elif kind == envelope.MESSAGE:
            seq, frame = envelope.split_message(payload)
            self._on_message(seq, frame)
        elif kind == envelope.PRESENCE:
            self._on_presence(payload[1:])
        elif kind == envelope.TYPING:
            self._on_typing(payload[1:])
        elif kind == envelope.SCREEN:
            self._on_share(payload[1:])

    def _on_message(self, seq: int, payload: bytes) -> None:
        if not self.sequenced or seq <= self.last_seq or seq in self.pending:
            return  # already delivered (a retry's re-publication, or a gap we filled)
        if seq != self.last_seq + 1:
            self.pending[seq] = payload
            self._arm_gap_timer()
            return
        self._deliver(seq, payload)
        while self.last_seq + 1 in self.pending:
            nxt = self.last_seq + 1
            self._deliver(nxt, self.pending.pop(nxt))
        if not self.pending and self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def _deliver(self, seq: int, payload: bytes) -> None:
        self.last_seq = seq
        self.recent.append((seq, payload))
        if self.holding:
            for waiting in self.holding.values():
                waiting.append((seq, payload))
            held = self.holding
            text = [c for c in self.text_members if c not in held]
            binary = [c for c in self.binary_members if c not in held]
            if text:
                frame = ws_frame(payload, OP_TEXT)
                for conn in text:
                    conn.push(frame)
            if binary:
                frame = ws_frame(_to_msgpack(payload), OP_BINARY)
                for conn in binary:
                    conn.push(frame)
            self.hub.count_deliveries(len(text) + len(binary))
            return
        self._fanout(payload)

    def _arm_gap_timer(self) -> None:
        if self._gap_timer is None and not self._gap_fetching:
            loop = asyncio.get_running_loop()
            self._gap_timer = loop.call_later(GAP_WAIT, self.post, ("gap",))

    def _fill_gap(self) -> None:
        self._gap_timer = None
        if not self.pending or self._gap_fetching:
            return
        upto = min(self.pending) - 1
        after = self.last_seq
        self._gap_fetching = True
        self.hub.spawn(self._fetch_gap(after, upto))

    async def _fetch_gap(self, after: int, upto: int) -> None:
        frames: list[tuple[int, bytes]] = []
        try:
            frames = await self.hub.history.since(self.room, after, upto, upto - after)
        except Exception:
            log.exception("room %s could not fetch messages %d..%d", self.room, after + 1, upto)
        self.post(("gapfill", frames))

    # --- joining and leaving -------------------------------------------------------------

    async def _join(
        self, conn: Connection, since: int | None, done: asyncio.Future[None] | None
    ) -> None:
        try:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if conn.closing:
                return
            already = conn in self.text_members or conn in self.binary_members
            if not already:
                (self.binary_members if conn.binary else self.text_members)[conn] = None
                conn.rooms.add(self.room)
                await self._arrive(conn)
            self.send_to(conn, self._joined())
            if since is not None:
                self._resume(conn, since)
        finally:
            if done is not None and not done.done():
                done.set_result(None)

    def _joined(self) -> Joined:
        typing_now = time.monotonic()
        return Joined(
            room=self.room,
            last_seq=self.last_seq,
            presence=self._presence_members(),
            typing=[
                Member(user_id=u, username=n)
                for u, (n, expires) in self.typing.items()
                if expires > typing_now
            ],
            screen_shares=list(self.sharing.values()),
        )

    def _presence_members(self) -> list[Member]:
        if self._presence_list is None:
            self._presence_list = [Member(user_id=u, username=n) for u, n in self.presence.items()]
        return self._presence_list

    async def _arrive(self, conn: Connection) -> None:
        user = str(conn.user_id)
        count = self.local_users.get(user, 0) + 1
        self.local_users[user] = count
        if count == 1 and self.tracks_presence:
            departing = self.departing.pop(user, None)
            if departing is not None:
                departing[1].cancel()  # back within the grace: they never left
                return
            self.presence[user] = conn.username
            self._presence_list = None
            try:
                first = await self.hub.presence.add(self.room, user, conn.username)
                if first:
                    await self.hub.announce_presence(self.room, user, conn.username, "join")
            except Exception:  # Redis away: the room works, presence catches up on resync
                log.exception("room %s could not record presence", self.room)

    async def _depart(self, user: str, username: str) -> None:
        """The user's last local socket is gone: drop them from presence, on every node."""
        try:
            last = await self.hub.presence.remove(self.room, user)
            if last:
                await self.hub.announce_presence(self.room, user, username, "leave")
        except Exception:  # Redis away: the departure is swept when this node's entries are
            log.exception("room %s could not record a departure", self.room)

    async def _grace_over(self, user: str) -> None:
        departing = self.departing.pop(user, None)
        if departing is not None and user not in self.local_users:
            await self._depart(user, departing[0])
        self._arm_idle()

    async def _depart_all(self) -> None:
        for user, (username, grace) in list(self.departing.items()):
            grace.cancel()
            del self.departing[user]
            await self._depart(user, username)

    def _arm_idle(self) -> None:
        if self.member_count == 0 and self._idle_timer is None:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(LINGER, self.post, ("idle",))

    async def _leave(self, conn: Connection, *, lost: bool = False) -> None:
        """The socket leaves the room. A socket that was `lost` (no close from the client)
        keeps its user present for the grace period, so a reconnect does not flap presence
        for everyone in the room (nor rewrite attendance)."""
        removed = conn in self.text_members or conn in self.binary_members
        self.text_members.pop(conn, None)
        self.binary_members.pop(conn, None)
        conn.rooms.discard(self.room)
        self.holding.pop(conn, None)
        if removed:
            user = str(conn.user_id)
            count = self.local_users.get(user, 0) - 1
            if count > 0:
                self.local_users[user] = count
            else:
                self.local_users.pop(user, None)
                self.typing_sent.pop(user, None)
                if self.tracks_presence:
                    grace = self.hub.presence_grace
                    if lost and grace > 0 and user not in self.departing:
                        loop = asyncio.get_running_loop()
                        timer = loop.call_later(grace, self.post, ("depart", user))
                        self.departing[user] = (conn.username, timer)
                    elif user not in self.departing:
                        await self._depart(user, conn.username)
            if conn.acked.get(self.room):
                self.hub.record_read(self.room, conn.user_id, conn.acked.pop(self.room))
        self._arm_idle()

    async def _evict(self, user_id: str) -> None:
        for conn in self._members():
            if str(conn.user_id) == user_id:
                await self._leave(conn)
                self.send_to(conn, Left(room=self.room))
                self.send_to(
                    conn,
                    Error(code="removed", message="you are no longer in this room", room=self.room),
                )

    async def _maybe_retire(self) -> None:
        self._idle_timer = None
        if self.member_count or self.departing or not self.mailbox.empty():
            return  # (the last departure re-arms the idle timer)
        self._retired = True
        await self.hub.retire(self)

    async def _reassert_presence(self) -> None:
        if not self.tracks_presence:
            return
        for user in list(self.local_users):
            conn = next((c for c in self._members() if str(c.user_id) == user), None)
            if conn is not None and await self.hub.presence.add(self.room, user, conn.username):
                await self.hub.announce_presence(self.room, user, conn.username, "join")

    # --- resuming ------------------------------------------------------------------------

    def _resume(self, conn: Connection, since: int) -> None:
        if conn not in self.text_members and conn not in self.binary_members:
            return
        if not self.sequenced or since >= self.last_seq:
            return
        if since < self.last_seq - MAX_RESUME:
            self.send_to(
                conn,
                Error(
                    code="resume_too_old",
                    message=f"more than {MAX_RESUME} messages were missed; reload the history "
                    f"over REST (last seq {self.last_seq})",
                    room=self.room,
                ),
            )
            return
        if self.recent and self.recent[0][0] <= since + 1:
            for seq, payload in self.recent:
                if seq > since:
                    self._send_payload(conn, payload)
            return
        # Too far back for memory: fetch from the store; hold live frames until it arrives.
        self.holding[conn] = []
        self.hub.spawn(self._fetch_backfill(conn, since, self.last_seq))

    async def _fetch_backfill(self, conn: Connection, since: int, upto: int) -> None:
        frames: list[tuple[int, bytes]] | None = None
        try:
            frames = await self.hub.history.since(self.room, since, upto, upto - since)
        except Exception:
            log.exception("room %s could not load history for a resume", self.room)
        self.post(("backfill", conn, frames, upto))

    def _finish_backfill(
        self, conn: Connection, frames: list[tuple[int, bytes]] | None, upto: int
    ) -> None:
        held = self.holding.pop(conn, None)
        if held is None:
            return  # the socket left meanwhile
        if frames is None:
            self.send_to(
                conn,
                Error(code="resume_failed", message="could not load history", room=self.room),
            )
            return
        for _, payload in frames:
            self._send_payload(conn, payload)
        for seq, payload in held:
            if seq > upto:
                self._send_payload(conn, payload)

    # --- presence, typing, screen share --------------------------------------------------

    def _on_presence(self, payload: bytes) -> None:
        frame = server_json_decoder.decode(payload)
        if not isinstance(frame, Presence):
            return
        if frame.state == "join":
            self.presence[frame.user_id] = frame.username
            self._presence_list = None
        else:
            self.presence.pop(frame.user_id, None)
            self._presence_list = None
            if self.typing.pop(frame.user_id, None) is not None:
                self._fanout(self._typing_payload(frame.user_id, frame.username, "stop"))
            if self.sharing.pop(frame.user_id, None) is not None:
                stop = ScreenShareEvent(
                    room=self.room, user_id=frame.user_id, username=frame.username, sharing=False
                )
                self._fanout(json_encoder.encode(stop))
        self._fanout(payload)

    def _typing_payload(self, user: str, username: str, state: str) -> bytes:
        return json_encoder.encode(
            TypingEvent(room=self.room, user_id=user, username=username, state=state)  # type: ignore[arg-type]
        )

    async def _typing_from(self, conn: Connection, state: str) -> None:
        if self.room not in conn.rooms:
            return
        user = str(conn.user_id)
        now = time.monotonic()
        if state == "start":
            still_typing = user in self.typing
            if still_typing and now - self.typing_sent.get(user, 0.0) < TYPING_THROTTLE:
                # Refresh our own expiry; other nodes refresh on the next broadcast.
                self.typing[user] = (conn.username, now + self.hub.typing_ttl)
                self._arm_typing_timer()
                return
            self.typing_sent[user] = now
        else:
            self.typing_sent.pop(user, None)
        await self.hub.broadcast(
            self.room,
            envelope.state(envelope.TYPING, self._typing_payload(user, conn.username, state)),
        )

    def _on_typing(self, payload: bytes) -> None:
        frame = server_json_decoder.decode(payload)
        if not isinstance(frame, TypingEvent):
            return
        if frame.state == "start":
            fresh = frame.user_id not in self.typing
            self.typing[frame.user_id] = (frame.username, time.monotonic() + self.hub.typing_ttl)
            self._arm_typing_timer()
            if not fresh:
                return  # still typing: members already know
        elif self.typing.pop(frame.user_id, None) is None:
            return
        self._fanout(payload)

    def _arm_typing_timer(self) -> None:
        if self._typing_timer is None and self.typing:
            soonest = min(expires for _, expires in self.typing.values())
            delay = max(0.0, soonest - time.monotonic()) + 0.01
            loop = asyncio.get_running_loop()
            self._typing_timer = loop.call_later(delay, self.post, ("typing_expiry",))

    def _expire_typing(self) -> None:
        """Typing that nobody stopped ends by itself."""
        self._typing_timer = None
        now = time.monotonic()
        for user, (username, expires) in list(self.typing.items()):
            if expires <= now:
                del self.typing[user]
                self._fanout(self._typing_payload(user, username, "stop"))
        self._arm_typing_timer()

    async def _share_from(self, conn: Connection, sharing: bool, stream_id: str | None) -> None:
        if self.room not in conn.rooms:
            return
        frame = ScreenShareEvent(
            room=self.room,
            user_id=str(conn.user_id),
            username=conn.username,
            sharing=sharing,
            stream_id=stream_id,
        )
        await self.hub.broadcast(
            self.room, envelope.state(envelope.SCREEN, json_encoder.encode(frame))
        )

    def _on_share(self, payload: bytes) -> None:
        frame = server_json_decoder.decode(payload)
        if not isinstance(frame, ScreenShareEvent):
            return
        if frame.sharing:
            self.sharing[frame.user_id] = ScreenShareState(
                user_id=frame.user_id, username=frame.username, stream_id=frame.stream_id
            )
        elif self.sharing.pop(frame.user_id, None) is None:
            return
        self._fanout(payload)


def presence_payload(room: str, user_id: str, username: str, state: str) -> bytes:
    frame = Presence(room=room, user_id=user_id, username=username, state=state)  # type: ignore[arg-type]
    return envelope.state(envelope.PRESENCE, json_encoder.encode(frame))
