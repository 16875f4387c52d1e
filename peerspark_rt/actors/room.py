"""A room actor: the one task on this node that owns a room's live state.

One piece on purpose: everything that mutates a room's state is here and nowhere else (the
actor model), so ordering, replay, gaps and presence can be read in one file.

It is fed by a mailbox (see `mail`): sockets joining and leaving, typing and screen-share
changes from local sockets, frames arriving from the broker, and the results of work it handed
off. It never awaits the network: loading its state, presence writes and store fetches run
elsewhere and come back as mail, so a stalled Redis or PostgreSQL slows what depends on them
and never freezes the room. It fans each frame out by encoding it once per wire format and
pushing the same bytes to every local member.

Session rooms also keep chat messages in sequence order: a frame that arrives ahead of a
missing one waits briefly, then the gap is filled from the store, so every member sees each
message once, in order, without gaps. The hub's periodic position check tells the room the
store's latest sequence, so a message whose publication was lost is fetched even when the room
then falls silent. A ring of recent frames serves resumes without touching the database; a
resume is replayed only as fast as the socket drains.

A room whose state cannot be loaded (its sequence, who is present) does not guess: it holds
joins, answers them `unavailable` when a load attempt fails, and retries with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from ..cluster import envelope
from ..protocol import (
    Error,
    FocusState,
    FocusUpdate,
    Joined,
    Left,
    Member,
    Presence,
    Resync,
    ScreenShareEvent,
    ScreenShareState,
    TypingEvent,
    json_encoder,
    server_json_decoder,
)
from . import mail
from .connection import FORMATS, Connection, room_frame, send_all, send_frame
from .focus import RoomFocus
from .mailbox import Mailbox

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger(__name__)

RECENT = 1024  # messages kept in memory for resumes
GAP_WAIT = 0.15  # seconds a later message waits for a missing one before we fetch it
GAP_RETRY = 1.0  # seconds before a failed gap fetch is tried again
LINGER = 5.0  # seconds an empty room stays up (reconnects are cheap)
# (A user whose last socket was lost, rather than closed, stays present for the hub's
# `presence_grace` seconds: a reconnect within it is not a leave and a join.)
TYPING_THROTTLE = 2.0  # seconds between re-broadcasts of a user's "typing start"
REPLAY_CHUNK = 64 * 1024  # bytes of a replay handed to a socket before waiting for it to drain
REPLAY_PAGE = 200  # stored messages fetched at a time for a replay
LOAD_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between attempts to load the room's state
FOCUS_RECHECK = 1.0  # seconds after loading (several nodes) to read the timer again
FOCUS_RETRY = 5.0  # seconds before a timer that could not be read is read again
# Presence news closer together than this goes out together, one write per member: in a
# storm of arrivals (a class starting, a node's sockets moving over) each arrival would
# otherwise cost a write to every member. A lone arrival still goes out at once.
NEWS_WINDOW = 0.05


_NO_MESSAGES: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=0)


@dataclass(slots=True)
class _News:
    """Presence news held back until the window ends."""

    payloads: list[bytes]
    # members who joined meanwhile: the first payload that is news to them (their `joined`
    # frame already listed who was present)
    late: dict[Connection, int]
    timer: asyncio.TimerHandle


@dataclass(slots=True)
class _Replay:
    """Where one socket's catch-up stands: the next sequence it needs, and a fetched page of
    stored messages when the ring no longer holds them."""

    next: int
    page: dict[int, bytes] | None = None
    fetching: bool = False


class RoomActor:
    def __init__(self, hub: Hub, room: str) -> None:
        self.hub = hub
        self.room = room
        kind = room.partition(":")[0]
        self.sequenced = kind == "session"
        self.tracks_presence = kind in ("session", "pod")
        # session and user rooms can run a focus timer (kept by RoomFocus, fed from here)
        self.focus: RoomFocus | None = None
        if kind in ("session", "user") and hub.focus is not None:
            self.focus = RoomFocus(
                room,
                fanout=self._fanout,
                here=self._is_here,
                wake=lambda: self.post(mail.FocusDue()),
                credit=hub.focus_credit,
            )
        # user rooms have no state to load
        self.ready = not (self.sequenced or self.tracks_presence)
        self.mailbox: Mailbox[mail.Mail] = Mailbox()
        self.task: asyncio.Task[None] | None = None
        # members, by wire format (`connection.FORMATS`: fan-out builds each frame once per
        # format and needs no per-member branch)
        self.members: tuple[dict[Connection, None], ...] = tuple({} for _ in FORMATS)
        self.local_users: dict[str, int] = {}  # user id -> sockets here
        self.presence: dict[str, str] = {}  # user id -> username, on every node
        # `presence` as the joined frame lists it; rebuilt after a change (in a reconnect
        # storm thousands of joins in a row reuse one list)
        self._presence_list: list[Member] | None = None
        self.typing: dict[str, tuple[str, float]] = {}  # user id -> (username, expires)
        self.typing_sent: dict[str, float] = {}  # user id -> last broadcast (our users)
        self.sharing: dict[str, ScreenShareState] = {}
        self.last_seq = 0  # the last message delivered here, in order
        self.known_seq = 0  # the latest message known to exist (live frames, positions)
        self.pending: dict[int, bytes] = {}
        # (only session rooms keep messages; others share one empty, never-filled deque: an
        # empty deque still costs ~0.7 KB, and there is a user room per connected user)
        self.recent: collections.deque[tuple[int, bytes]] = (
            collections.deque(maxlen=RECENT) if self.sequenced else _NO_MESSAGES
        )
        self.replaying: dict[Connection, _Replay] = {}
        # sockets that resumed from further than this room has got (they saw messages on a
        # node that died before this one learned of them): the last sequence each has seen
        self.ahead: dict[Connection, int] = {}
        # user id -> (username, timer): lost their last local socket; still present until
        # the timer fires, unless they come back first
        self.departing: dict[str, tuple[str, asyncio.TimerHandle]] = {}
        self.waiting: list[mail.Join] = []  # joins that came before the state was loaded
        self._early: list[bytes] = []  # room state frames that came before it was loaded
        self._loads = 0
        self._gap_timer: asyncio.TimerHandle | None = None
        self._gap_fetching = False
        self._typing_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._load_timer: asyncio.TimerHandle | None = None
        self._focus_rechecked = False
        # who is present was asked to be read again while the room was loading (that read may
        # predate the room's subscription): read again once loaded
        self._reread_presence = False
        # Announcements heard while a read of the registry is under way are newer than (or as
        # new as) what it returns: the snapshot leaves those users as the announcement said.
        self._heard = 0
        self._heard_from: dict[str, int] = {}
        self._reads = 0
        self._news: _News | None = None
        self._news_sent = 0.0  # when presence news last went out
        self._retired = False

    # --- plumbing ------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"room:{self.room}")
        if not self.ready:
            self.hub.spawn(self._load())
        elif self.focus is not None:
            # (a user room serves at once; its timer, if any, follows in a `focus` frame)
            self.hub.spawn(self._reload_focus())

    def post(self, item: mail.Mail) -> None:
        self.mailbox.put_nowait(item)

    @property
    def member_count(self) -> int:
        return sum(map(len, self.members))

    def _members(self) -> list[Connection]:
        return [conn for members in self.members for conn in members]

    def _is_member(self, conn: Connection) -> bool:
        return conn in self.members[conn.fmt]

    async def _run(self) -> None:
        try:
            while True:
                item = await self.mailbox.get()
                if type(item) is mail.Stop:
                    self._depart_all()
                    break
                try:
                    self._handle(item)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("room %s failed on %s", self.room, type(item).__name__)
                if self._retired:
                    break
        finally:
            self._cancel_timers()
            self._handoff()

    def _cancel_timers(self) -> None:
        for timer in (self._gap_timer, self._typing_timer, self._idle_timer, self._load_timer):
            if timer is not None:
                timer.cancel()
        for _, grace in self.departing.values():
            grace.cancel()
        if self._news is not None:
            self._news.timer.cancel()
        if self.focus is not None:
            self.focus.close()

    def _handoff(self) -> None:
        """After retiring, joins that raced with it go to the room's next actor."""
        for join in self.waiting:
            self.hub.redispatch_join(self.room, join)
        self.waiting.clear()
        while not self.mailbox.empty():
            item = self.mailbox.get_nowait()
            if type(item) is mail.Join:
                self.hub.redispatch_join(self.room, item)
            elif type(item) is mail.Leave and item.done is not None and not item.done.done():
                item.done.set_result(None)

    def _handle(self, item: mail.Mail) -> None:
        match item:
            case mail.Wire(payload=payload):
                self._on_wire(payload)
            case mail.Join():
                self._join(item)
            case mail.Leave(conn=conn, done=done, lost=lost):
                self._leave(conn, lost=lost)
                if done is not None and not done.done():
                    done.set_result(None)
            case mail.Depart(user_id=user):
                self._grace_over(user)
            case mail.TypingFrom(conn=conn, state=state):
                self._typing_from(conn, state)
            case mail.ShareFrom(conn=conn, sharing=sharing, stream_id=stream_id):
                self._share_from(conn, sharing, stream_id)
            case mail.Resume(conn=conn, since=since):
                self._resume(conn, since)
            case mail.ReplayMore(conn=conn):
                self._replay_step(conn)
            case mail.ReplayPage(conn=conn, frames=frames):
                self._replay_page(conn, frames)
            case mail.GapDue():
                self._fill_gap()
            case mail.GapFill(frames=frames, upto=upto):
                self._gap_filled(frames, upto)
            case mail.Position(seq=seq):
                self._position(seq)
            case mail.Loaded(last_seq=seq, presence=present, focus=focus, focus_known=known):
                self._loaded(seq, present, focus, known)
            case mail.LoadFailed(reason=reason):
                self._load_failed(reason)
            case mail.Reload():
                self._load_timer = None
                self.hub.spawn(self._load())
            case mail.PresenceGone(user_id=user, username=username):
                self._presence_gone(user, username)
            case mail.RefreshPresence():
                if not self.tracks_presence:
                    pass
                elif self.ready:
                    self._reread()
                else:
                    self._reread_presence = True
            case mail.PresenceSnapshot(presence=present, asked=asked):
                self._presence_snapshot(present, asked)
            case mail.TypingExpiry():
                self._expire_typing()
            case mail.NewsDue():
                self._send_news()
            case mail.FocusDue():
                if self.focus is not None:
                    self.focus.due()
            case mail.FocusReload():
                if self.focus is not None:
                    self.hub.spawn(self._reload_focus())
            case mail.FocusLoaded(payload=payload, known=known):
                self._focus_loaded(payload, known)
            case mail.Evict(user_id=user):
                self._evict(user)
            case mail.Overflowed(conn=conn):
                self._overflowed(conn)
            case mail.Reassert():
                self._reassert_presence()
            case mail.Idle():
                self._maybe_retire()
            case _:
                log.warning("room %s got unknown mail %r", self.room, item)

    # --- loading the room's state --------------------------------------------------------

    async def _load(self) -> None:
        """Read the room's sequence and who is present (off the actor; the answer is mail)."""
        self._loads += 1
        try:
            async with asyncio.timeout(self.hub.load_timeout):
                seq = await self.hub.history.last_seq(self.room) if self.sequenced else 0
                present = await self.hub.presence.members(self.room) if self.tracks_presence else {}
                focus = None
                if self.focus is not None and self.hub.focus is not None:
                    focus = await self.hub.focus.focus_of(self.room)
        except Exception as exc:  # noqa: BLE001 (any failure leaves the state unknown: joins wait)
            self.post(mail.LoadFailed(str(exc) or type(exc).__name__))
        else:
            self.post(mail.Loaded(seq, present, focus))

    def _loaded(
        self, seq: int, present: dict[str, str], focus: bytes | None, focus_known: bool
    ) -> None:
        if self.ready:
            return
        self.ready = True
        self._loads = 0
        self.last_seq = seq
        self.known_seq = max(self.known_seq, seq)
        self.presence = present
        self._presence_list = None
        if self._reread_presence:
            self._reread_presence = False
            self._reread()
        self._focus_loaded(focus, focus_known)
        for payload in self._early:
            self._on_wire(payload)
        self._early.clear()
        waiting, self.waiting = self.waiting, []
        for join in waiting:
            self._join(join)
        # Live messages that came while loading: what the store already had is dropped.
        early = sorted(s for s in self.pending if s <= self.last_seq)
        for s in early:
            del self.pending[s]
        self._drain_pending()
        if self.pending or self.known_seq > self.last_seq:
            self._arm_gap_timer()
        self._arm_idle()

    def _load_failed(self, reason: str) -> None:
        log.warning("room %s could not load its state (%s); retrying", self.room, reason)
        self.hub.metrics.room_load_failed()
        waiting, self.waiting = self.waiting, []
        for join in waiting:
            _answer(join, "unavailable")
        delay = LOAD_BACKOFF[min(self._loads, len(LOAD_BACKOFF)) - 1]
        loop = asyncio.get_running_loop()
        self._load_timer = loop.call_later(delay, self.post, mail.Reload())
        self._arm_idle()

    # --- fan-out -------------------------------------------------------------------------

    def _fanout(self, payload: bytes) -> None:
        """Encode once per format, push the same bytes to every local member."""
        if self._news is not None:
            self._send_news()  # (members see everything in the order it happened)
        # With more mail waiting (a burst), frames are queued and each socket gets them in one
        # write at the end of the tick; a lone frame goes straight out.
        lone = self.mailbox.empty()
        delivered = 0
        for fmt, members in enumerate(self.members):
            if members:
                frame = room_frame(fmt, payload)
                if frame is None:
                    continue
                if lone and send_all is not None:
                    for conn, sent in send_all(members, frame):
                        conn.write_rest(frame, sent)
                elif lone:
                    for conn in members:
                        conn.write_now(frame)
                else:
                    for conn in members:
                        conn.push(frame)
                delivered += len(members)
        self.hub.count_deliveries(delivered)

    def send_to(self, conn: Connection, frame: object) -> None:
        """One control frame to one socket, in its format."""
        send_frame(conn, frame)

    def _announce(self, payload: bytes) -> None:
        """Presence news: out at once, unless news went out less than `NEWS_WINDOW` ago;
        then it waits for the window's end and goes out with whatever news follows."""
        news = self._news
        if news is not None:
            news.payloads.append(payload)
            return
        now = time.monotonic()
        wait = self._news_sent + NEWS_WINDOW - now
        if wait <= 0:
            self._fanout(payload)
            self._news_sent = now
            return
        timer = asyncio.get_running_loop().call_later(wait, self.post, mail.NewsDue())
        self._news = _News([payload], {}, timer)

    def _send_news(self) -> None:
        news, self._news = self._news, None
        if news is None:
            return
        news.timer.cancel()
        self._news_sent = time.monotonic()
        delivered = 0
        for fmt, members in enumerate(self.members):
            if not members:
                continue
            frames = [room_frame(fmt, payload) for payload in news.payloads]
            # (bytes and frame count by where a member's news starts: all of it, for most)
            parts: dict[int, tuple[bytes, int]] = {}
            for conn in members:
                start = news.late.get(conn, 0)
                part = parts.get(start)
                if part is None:
                    ready = [frame for frame in frames[start:] if frame is not None]
                    part = parts[start] = (b"".join(ready), len(ready))
                if part[1]:
                    conn.push(part[0])
                    delivered += part[1]
        self.hub.count_deliveries(delivered)

    def _send_payload(self, conn: Connection, payload: bytes) -> None:
        if self._news is not None:
            self._send_news()
        frame = room_frame(conn.fmt, payload)
        if frame is not None:
            conn.push(frame)

    # --- frames from the broker ----------------------------------------------------------

    def _on_wire(self, payload: bytes) -> None:
        kind = payload[0]
        if kind == envelope.EVENT:
            self._fanout(payload[1:])
        elif kind == envelope.MESSAGE:
            seq, frame = envelope.split_message(payload)
            self._on_message(seq, frame)
        elif kind == envelope.REPLACE:
            self._on_replace(payload)
        elif not self.ready:
            self._early.append(payload)  # applied once the room knows its state
        elif kind == envelope.PRESENCE:
            self._on_presence(payload[1:])
        elif kind == envelope.TYPING:
            self._on_typing(payload[1:])
        elif kind == envelope.SCREEN:
            self._on_share(payload[1:])
        elif kind == envelope.FOCUS and self.focus is not None:
            frame = server_json_decoder.decode(payload[1:])
            if isinstance(frame, FocusUpdate):
                self.focus.incoming(frame.timer, frame.reason)

    def _on_message(self, seq: int, payload: bytes) -> None:
        if not self.sequenced or seq <= self.last_seq or seq in self.pending:
            return  # already delivered (a retry's re-publication, or a gap we filled)
        self.known_seq = max(self.known_seq, seq)
        if not self.ready or seq != self.last_seq + 1:
            self.pending[seq] = payload
            if self.ready:
                self._arm_gap_timer()
            return
        self._deliver(seq, payload)
        self._drain_pending()

    def _drain_pending(self) -> None:
        while self.last_seq + 1 in self.pending:
            nxt = self.last_seq + 1
            self._deliver(nxt, self.pending.pop(nxt))
        if self.last_seq >= self.known_seq and not self.pending and self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def _deliver(self, seq: int, payload: bytes) -> None:
        self.last_seq = seq
        self.recent.append((seq, payload))
        if not self.replaying and not self.ahead:
            self._fanout(payload)
            return
        if self._news is not None:
            self._send_news()  # (as `_fanout`: news held back must not be overtaken)
        # Sockets catching up get this one from their replay, in its turn; sockets that have
        # it already (they resumed here from a node that was ahead) do not get it again.
        skip: set[Connection] | dict[Connection, _Replay] = self.replaying
        if self.ahead:
            skip = set(self.replaying)
            for conn, seen in list(self.ahead.items()):
                if seq <= seen:
                    skip.add(conn)
                if seq >= seen:
                    del self.ahead[conn]
        delivered = 0
        for fmt, members in enumerate(self.members):
            live = [c for c in members if c not in skip]
            if live:
                frame = room_frame(fmt, payload)
                if frame is not None:
                    for conn in live:
                        conn.push(frame)
                    delivered += len(live)
        self.hub.count_deliveries(delivered)

    def _on_replace(self, payload: bytes) -> None:
        """A delivered message changed (retracted, restored): the ring now holds what history
        holds, and members get the notice."""
        seq, replacement, notice = envelope.split_replace(payload)
        if self.recent and self.recent[0][0] <= seq <= self.recent[-1][0]:
            self.recent[seq - self.recent[0][0]] = (seq, replacement)
        if seq in self.pending:
            self.pending[seq] = replacement
        self._fanout(notice)

    def _position(self, seq: int) -> None:
        if not self.ready or seq <= self.known_seq:
            return
        self.known_seq = seq
        if seq > self.last_seq:
            self._arm_gap_timer()

    def _arm_gap_timer(self, delay: float = GAP_WAIT) -> None:
        if self._gap_timer is None and not self._gap_fetching:
            loop = asyncio.get_running_loop()
            self._gap_timer = loop.call_later(delay, self.post, mail.GapDue())

    def _fill_gap(self) -> None:
        self._gap_timer = None
        if self._gap_fetching or not self.ready:
            return
        upto = min(self.pending) - 1 if self.pending else self.known_seq
        after = self.last_seq
        if upto <= after:
            self._drain_pending()
            return
        if upto - after > self.hub.max_resume:
            self._skip_to(upto)
            return
        self._gap_fetching = True
        self.hub.metrics.gap_fetch()
        self.hub.spawn(self._fetch_gap(after, upto))

    def _skip_to(self, upto: int) -> None:
        """More is missing than a gap fetch may bring: members resume on their own (and get
        'too old' if they are that far behind)."""
        log.warning(
            "room %s missed %d messages; members must resync", self.room, upto - self.last_seq
        )
        self.last_seq = upto
        self.recent.clear()
        for conn in self._members():
            self.replaying.pop(conn, None)
            self.send_to(conn, Resync(room=self.room, reason="gap"))
        self._drain_pending()
        if self.pending:
            self._arm_gap_timer()

    async def _fetch_gap(self, after: int, upto: int) -> None:
        frames: list[tuple[int, bytes]] | None = None
        try:
            async with asyncio.timeout(self.hub.load_timeout):
                frames = await self.hub.history.since(self.room, after, upto, upto - after)
        except Exception:  # noqa: BLE001 (any failure is retried by the gap timer)
            log.warning("room %s could not fetch messages %d..%d", self.room, after + 1, upto)
        self.post(mail.GapFill(frames, upto))

    def _gap_filled(self, frames: list[tuple[int, bytes]] | None, upto: int) -> None:
        self._gap_fetching = False
        for seq, payload in frames or ():
            self._on_message(seq, payload)
        if frames is not None and self.last_seq < upto:
            # The store has nothing between: those numbers were never used. (Sequences are
            # handed out in the committing transaction, so this should not happen; if it
            # does, a missing number must not stall the room forever.) The ring holds
            # consecutive messages only.
            log.warning(
                "room %s: the store has no messages %d..%d", self.room, self.last_seq + 1, upto
            )
            self.last_seq = upto
            self.recent.clear()
            self._drain_pending()
        if self.pending or self.known_seq > self.last_seq:
            self._arm_gap_timer(GAP_WAIT if frames is not None else GAP_RETRY)

    # --- joining and leaving -------------------------------------------------------------

    def _join(self, join: mail.Join) -> None:
        if join.cancelled:
            return
        if not self.ready:
            self.waiting.append(join)
            return
        conn = join.conn
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if conn.closing:
            _answer(join, "unavailable")
            return
        already = self._is_member(conn)
        announce = False
        if not already:
            self.members[conn.fmt][conn] = None
            if self._news is not None:
                self._news.late[conn] = len(self._news.payloads)
            conn.rooms.add(self.room)
            announce = self._arrive(conn)
        self.send_to(conn, self._joined())
        if announce:
            user = str(conn.user_id)
            self._announce(self._presence_payload(user, conn.username, "join"))
        if join.since is not None:
            self._resume(conn, join.since)
        _answer(join, None)

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
            focus=self.focus.state if self.focus is not None else None,
        )

    def _presence_members(self) -> list[Member]:
        if self._presence_list is None:
            self._presence_list = [Member(user_id=u, username=n) for u, n in self.presence.items()]
        return self._presence_list

    def _arrive(self, conn: Connection) -> bool:
        """Count the socket; True when its user is new to the room's presence (members are
        told at once; the cluster registry is written off the actor)."""
        user = str(conn.user_id)
        count = self.local_users.get(user, 0) + 1
        self.local_users[user] = count
        if count > 1:
            return False
        departing = self.departing.pop(user, None)
        if departing is not None:
            departing[1].cancel()  # back within the grace: they never left
            return False
        if self.focus is not None:
            self.focus.arrived(user)
        if not self.tracks_presence:
            return False
        self.hub.presence_add(self.room, user, conn.username)
        if user in self.presence:
            return False  # present on another node already
        self.presence[user] = conn.username
        self._presence_list = None
        return True

    def _depart(self, user: str, username: str) -> None:
        """The user's last local socket is gone: the registry decides whether they are gone
        everywhere (then every node hears `PresenceGone`)."""
        if self.focus is not None:
            self.focus.left_here(user)
            if not self.tracks_presence:
                self.focus.gone(user)  # (a user room: here is everywhere it knows of)
        if self.tracks_presence:
            self.hub.presence_remove(self.room, user, username)

    def _is_here(self, user: str) -> bool:
        return user in self.local_users or user in self.departing

    async def _reload_focus(self) -> None:
        payload: bytes | None = None
        known = False
        if self.hub.focus is not None:
            try:
                async with asyncio.timeout(self.hub.load_timeout):
                    payload = await self.hub.focus.focus_of(self.room)
                known = True
            except Exception:  # noqa: BLE001 (unknown: kept as it is, read again later)
                log.warning("room %s could not read its focus timer", self.room)
        self.post(mail.FocusLoaded(payload, known))

    def _focus_loaded(self, payload: bytes | None, known: bool) -> None:
        if self.focus is None:
            return
        loop = asyncio.get_running_loop()
        if not known:
            loop.call_later(FOCUS_RETRY, self.post, mail.FocusReload())
            return
        state = msgspec.json.decode(payload, type=FocusState) if payload else None
        self.focus.incoming(state, "state", quiet=True)
        if self.hub.position_interval > 0 and not self._focus_rechecked:
            # A command published before this node's subscription took effect was not heard:
            # once it surely has, read the timer again.
            self._focus_rechecked = True
            loop.call_later(FOCUS_RECHECK, self.post, mail.FocusReload())

    def _grace_over(self, user: str) -> None:
        departing = self.departing.pop(user, None)
        if departing is not None and user not in self.local_users:
            self._depart(user, departing[0])
        self._arm_idle()

    def _depart_all(self) -> None:
        for user, (username, grace) in list(self.departing.items()):
            grace.cancel()
            del self.departing[user]
            self._depart(user, username)

    def _arm_idle(self) -> None:
        if self.member_count == 0 and not self.waiting and self._idle_timer is None:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(LINGER, self.post, mail.Idle())

    def _leave(self, conn: Connection, *, lost: bool = False) -> None:
        """The socket leaves the room. A socket that was `lost` (no close from the client)
        keeps its user present for the grace period, so a reconnect does not flap presence
        for everyone in the room (nor rewrite attendance)."""
        members = self.members[conn.fmt]
        removed = conn in members
        members.pop(conn, None)
        conn.rooms.discard(self.room)
        self.replaying.pop(conn, None)
        self.ahead.pop(conn, None)
        if removed:
            user = str(conn.user_id)
            count = self.local_users.get(user, 0) - 1
            if count > 0:
                self.local_users[user] = count
            else:
                self.local_users.pop(user, None)
                self.typing_sent.pop(user, None)
                if self.tracks_presence or self.focus is not None:
                    grace = self.hub.presence_grace
                    if lost and grace > 0 and user not in self.departing:
                        loop = asyncio.get_running_loop()
                        timer = loop.call_later(grace, self.post, mail.Depart(user))
                        self.departing[user] = (conn.username, timer)
                    elif user not in self.departing:
                        self._depart(user, conn.username)
            if conn.acked.get(self.room):
                self.hub.record_read(self.room, conn.user_id, conn.acked.pop(self.room))
        self._arm_idle()

    def _evict(self, user_id: str) -> None:
        for conn in self._members():
            if str(conn.user_id) == user_id:
                self._leave(conn)
                self.send_to(conn, Left(room=self.room))
                self.send_to(
                    conn,
                    Error(code="removed", message="you are no longer in this room", room=self.room),
                )

    def _overflowed(self, conn: Connection) -> None:
        if self._is_member(conn):
            self.replaying.pop(conn, None)
            self.ahead.pop(conn, None)
            self.send_to(conn, Resync(room=self.room))

    def _maybe_retire(self) -> None:
        self._idle_timer = None
        if self.member_count or self.departing or self.waiting or not self.mailbox.empty():
            return  # (the last departure re-arms the idle timer)
        self._retired = True
        self.hub.retire(self)

    def _reassert_presence(self) -> None:
        if not self.tracks_presence:
            return
        names = {str(c.user_id): c.username for c in self._members()}
        for user in self.local_users:
            if user in names:
                self.hub.presence_add(self.room, user, names[user])

    # --- resuming ------------------------------------------------------------------------

    def _resume(self, conn: Connection, since: int) -> None:
        if not self._is_member(conn):
            return
        self.ahead.pop(conn, None)
        if not self.sequenced or since >= self.last_seq:
            self.replaying.pop(conn, None)
            if self.sequenced and since > self.last_seq:
                # The client saw messages on a node that died before this room heard of
                # them: they arrive here later (position check, gap fill) and must not
                # reach this socket twice.
                self.ahead[conn] = since
            return
        if since < self.last_seq - self.hub.max_resume:
            self.hub.metrics.resume("too_old")
            self.replaying.pop(conn, None)
            self.send_to(
                conn,
                Error(
                    code="resume_too_old",
                    message=f"more than {self.hub.max_resume} messages were missed; load the "
                    f"history over REST and join without since (last seq {self.last_seq})",
                    room=self.room,
                ),
            )
            return
        in_memory = bool(self.recent) and self.recent[0][0] <= since + 1
        self.hub.metrics.resume("hit" if in_memory else "miss")
        self.replaying[conn] = _Replay(next=since + 1)
        self._replay_step(conn)

    def _from_ring(self, seq: int) -> bytes | None:
        recent = self.recent
        if recent and recent[0][0] <= seq <= recent[-1][0]:
            return recent[seq - recent[0][0]][1]
        return None

    def _replay_step(self, conn: Connection) -> None:
        """Hand the socket the next part of its catch-up, as much as fits in one chunk, then
        wait for it to drain (`ReplayMore`). Live messages reach it through the replay until
        it has caught up."""
        replay = self.replaying.get(conn)
        if replay is None or conn.closing:
            self.replaying.pop(conn, None)
            return
        # (a chunk stays well inside the socket's bound, whatever else is queued for it)
        budget = min(REPLAY_CHUNK, conn.limit // 4) - conn.queued_bytes
        while replay.next <= self.last_seq and budget > 0:
            payload = self._from_ring(replay.next)
            if payload is None and replay.page is not None:
                payload = replay.page.pop(replay.next, None)
            if payload is None:
                if not replay.fetching:
                    replay.fetching = True
                    replay.page = None
                    upto = min(replay.next - 1 + REPLAY_PAGE, self.last_seq)
                    self.hub.spawn(self._fetch_page(conn, replay.next - 1, upto))
                return
            self._send_payload(conn, payload)
            replay.next += 1
            budget -= len(payload)
        if replay.next > self.last_seq:
            del self.replaying[conn]
            return
        conn.on_drain(lambda: self.post(mail.ReplayMore(conn)))

    async def _fetch_page(self, conn: Connection, after: int, upto: int) -> None:
        frames: list[tuple[int, bytes]] | None = None
        try:
            async with asyncio.timeout(self.hub.load_timeout):
                frames = await self.hub.history.since(self.room, after, upto, upto - after)
        except Exception:  # noqa: BLE001 (any failure is told to the client)
            log.warning("room %s could not load history for a resume", self.room)
        self.post(mail.ReplayPage(conn, frames))

    def _replay_page(self, conn: Connection, frames: list[tuple[int, bytes]] | None) -> None:
        replay = self.replaying.get(conn)
        if replay is None:
            return  # the socket left or fell behind meanwhile
        replay.fetching = False
        if not frames:
            del self.replaying[conn]
            self.send_to(
                conn,
                Error(code="resume_failed", message="could not load history", room=self.room),
            )
            return
        replay.page = dict(frames)
        self._replay_step(conn)

    # --- presence, typing, screen share --------------------------------------------------

    def _presence_payload(self, user: str, username: str, state: str) -> bytes:
        frame = Presence(room=self.room, user_id=user, username=username, state=state)  # type: ignore[arg-type]
        return json_encoder.encode(frame)

    def _on_presence(self, payload: bytes) -> None:
        """Another node says a user's presence started or ended: tell members only what
        changes (announcements may repeat after a Redis hiccup)."""
        frame = server_json_decoder.decode(payload)
        if not isinstance(frame, Presence):
            return
        if self._reads:
            self._heard += 1
            self._heard_from[frame.user_id] = self._heard
        if frame.state == "join":
            if frame.user_id in self.presence:
                return
            self.presence[frame.user_id] = frame.username
            self._presence_list = None
            self._announce(payload)
        else:
            self._presence_gone(frame.user_id, frame.username)

    def _reread(self) -> None:
        self._reads += 1
        self.hub.spawn(self._read_presence(self._heard))

    async def _read_presence(self, asked: int) -> None:
        present: dict[str, str] | None = None
        try:
            async with asyncio.timeout(self.hub.load_timeout):
                present = await self.hub.presence.members(self.room)
        except Exception:  # noqa: BLE001 (the next reconnect reads again)
            log.warning("room %s could not read presence again", self.room)
        # (a failed read is mail too: the count of reads under way must come down)
        self.post(mail.PresenceSnapshot(present, asked))

    def _presence_snapshot(self, present: dict[str, str] | None, asked: int) -> None:
        """Bring the room's view in line with the registry: members hear only the changes."""
        self._reads -= 1
        if present is not None:
            newer = {u for u, heard in self._heard_from.items() if heard > asked}
            for user, username in present.items():
                if user not in self.presence and user not in newer:
                    self.presence[user] = username
                    self._presence_list = None
                    self._announce(self._presence_payload(user, username, "join"))
            for user, username in list(self.presence.items()):
                if user not in present and user not in newer:
                    self._presence_gone(user, username)
        if not self._reads:
            self._heard_from.clear()

    def _presence_gone(self, user: str, username: str) -> None:
        if user in self.local_users or self.presence.pop(user, None) is None:
            return  # (back here meanwhile: the registry hears of it and tells the others)
        if self.focus is not None:
            self.focus.gone(user)
        self._presence_list = None
        if self.typing.pop(user, None) is not None:
            self._fanout(self._typing_payload(user, username, "stop"))
        if self.sharing.pop(user, None) is not None:
            stop = ScreenShareEvent(room=self.room, user_id=user, username=username, sharing=False)
            self._fanout(json_encoder.encode(stop))
        self._announce(self._presence_payload(user, username, "leave"))

    def _typing_payload(self, user: str, username: str, state: str) -> bytes:
        return json_encoder.encode(
            TypingEvent(room=self.room, user_id=user, username=username, state=state)  # type: ignore[arg-type]
        )

    def _typing_from(self, conn: Connection, state: str) -> None:
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
        payload = self._typing_payload(user, conn.username, state)
        self._on_typing(payload)
        self.hub.publish_remote(self.room, envelope.state(envelope.TYPING, payload))

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
            self._typing_timer = loop.call_later(delay, self.post, mail.TypingExpiry())

    def _expire_typing(self) -> None:
        """Typing that nobody stopped ends by itself."""
        self._typing_timer = None
        now = time.monotonic()
        for user, (username, expires) in list(self.typing.items()):
            if expires <= now:
                del self.typing[user]
                self._fanout(self._typing_payload(user, username, "stop"))
        self._arm_typing_timer()

    def _share_from(self, conn: Connection, sharing: bool, stream_id: str | None) -> None:
        if self.room not in conn.rooms:
            return
        frame = ScreenShareEvent(
            room=self.room,
            user_id=str(conn.user_id),
            username=conn.username,
            sharing=sharing,
            stream_id=stream_id,
        )
        payload = json_encoder.encode(frame)
        self._on_share(payload)
        self.hub.publish_remote(self.room, envelope.state(envelope.SCREEN, payload))

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


def _answer(join: mail.Join, error: str | None) -> None:
    if join.done is not None and not join.done.done():
        join.done.set_result(error)


def presence_payload(room: str, user_id: str, username: str, state: str) -> bytes:
    frame = Presence(room=room, user_id=user_id, username=username, state=state)  # type: ignore[arg-type]
    return envelope.state(envelope.PRESENCE, json_encoder.encode(frame))
