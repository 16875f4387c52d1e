"""One websocket's outbound side: bounded queues of ready-made frames, written straight to the
socket's transport.

Fan-out builds a websocket frame once (header + payload) and hands the same bytes object to
every member. Nothing awaits per member. A lone frame (the room has no other mail this tick)
goes straight out: to each socket that is clear (nothing queued here, nothing waiting in its
transport's buffer, which the protocol reports through a high-water mark of 0; see `fd`) with
one send(2) in a C loop (`_fanout.c`), and what the kernel does not take goes to the transport,
which buffers it and pauses the straight sends. Otherwise `push` appends to the member's queue
and marks it dirty; once per event-loop tick the `Flusher` writes each dirty socket's queues in
one `transport.write` call (so frames that pile up in a tick go out in one send).

Two queues, because they are bounded differently:
* room traffic (messages, presence, typing, events) is bounded in **bytes** (`limit`). A socket
  whose kernel buffer is full keeps it queued; past the bound the queued room traffic is
  dropped and the socket is told to resync (the hub's `on_overflow`); falling behind again
  within `RESYNC_GRACE` closes it with 4008.
* control frames (`joined`, `ack`, `error`, `resync`, `left`, `pong`) are never dropped by an
  overflow: they answer what the client asked and are small. A client that keeps asking while
  reading nothing still cannot grow them without bound (`CONTROL_LIMIT` aborts it).

Replays (a resume) are paced by the room actor through `on_drain`, so a catch-up of any size
goes only as fast as the socket drains. Every close has a deadline and ends in
`transport.abort()`: a client that stops reading cannot pin its handler, rooms and buffers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..protocol import CLOSE_SLOW_CONSUMER, json_encoder, msgpack_encoder, server_json_decoder
from ..sio_protocol import room_packet

SendAll = Callable[[Iterable["Connection"], bytes], list[tuple["Connection", int]]]
send_all: SendAll | None
try:
    from ._fanout import send_all
except ImportError:  # pragma: no cover (built without a C compiler: every write is checked)
    send_all = None

log = logging.getLogger(__name__)

OP_TEXT = 0x1
OP_BINARY = 0x2
HIGH_WATER = 256 * 1024  # bytes in the transport's buffer before we stop writing to it
HARD_LIMIT = 4 * 1024 * 1024  # the client is not reading at all: drop it
CONTROL_LIMIT = 1024 * 1024  # control frames queued for a client that reads nothing
RESYNC_GRACE = 10.0  # seconds: a second overflow within this closes the socket
CLOSE_DEADLINE = 3.0  # seconds a close handshake may take before the connection is cut


_closing: set[asyncio.Future[None]] = set()  # close handshakes in flight (keeps them referenced)

# What a socket reads: the live protocol as JSON text frames or MessagePack binary frames, or
# Socket.IO event packets (the spec's event names; `sio_protocol`). Rooms keep their members by
# format and build each frame once per format.
JSON, MSGPACK, SOCKETIO = 0, 1, 2
FORMATS = (JSON, MSGPACK, SOCKETIO)


class ControlCodec(Protocol):
    """A socket's own encoding of control frames (a Socket.IO socket routes them to the
    acknowledgement callback of the request they answer)."""

    def control(self, frame: Any) -> bytes | None: ...


def ws_frame(payload: bytes, opcode: int) -> bytes:
    """A complete, unmasked, unfragmented server-to-client websocket frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def room_frame(fmt: int, payload: bytes) -> bytes | None:
    """The websocket frame of a room's JSON payload in format `fmt` (None: the format has
    nothing to say for it)."""
    if fmt == JSON:
        return ws_frame(payload, OP_TEXT)
    if fmt == MSGPACK:
        return ws_frame(msgpack_encoder.encode(server_json_decoder.decode(payload)), OP_BINARY)
    packet = room_packet(payload)
    return ws_frame(packet, OP_TEXT) if packet else None


def send_frame(conn: Connection, frame: Any) -> None:
    """Encode one control frame (a protocol Struct: joined, ack, error...) in the socket's
    format and queue it; it is never dropped by an overflow."""
    if conn.fmt == JSON:
        conn.push_control(ws_frame(json_encoder.encode(frame), OP_TEXT))
    elif conn.fmt == MSGPACK:
        conn.push_control(ws_frame(msgpack_encoder.encode(frame), OP_BINARY))
    elif conn.codec is not None:
        packet = conn.codec.control(frame)
        if packet is not None:
            conn.push_control(ws_frame(packet, OP_TEXT))


async def closes_done(timeout: float) -> None:
    """Wait (at most `timeout` seconds) for the close handshakes in flight."""
    if _closing:
        await asyncio.wait(list(_closing), timeout=timeout)


def abort_if_stuck(transport: asyncio.Transport) -> None:
    """Cut a connection that a graceful close left holding unsent bytes (a client that stopped
    reading keeps a closed transport, and its kernel buffers, alive forever)."""
    if not transport.is_closing() or _write_buffer(transport):
        transport.abort()


def _write_buffer(transport: asyncio.Transport) -> int:
    try:
        return transport.get_write_buffer_size()
    except (AttributeError, RuntimeError):  # (a transport already torn down)
        return 0


class Flusher:
    """Writes every dirty connection's queue once per loop tick; retries congested ones."""

    __slots__ = ("_congested", "_dirty", "_loop", "_retry_scheduled", "_scheduled")

    def __init__(self) -> None:
        self._loop = asyncio.get_event_loop()
        self._dirty: list[Connection] = []
        self._congested: set[Connection] = set()
        self._scheduled = False
        self._retry_scheduled = False

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            if not conn.flush():
                self._congested.add(conn)
        if self._congested and not self._retry_scheduled:
            self._retry_scheduled = True
            self._loop.call_later(0.01, self._retry)

    def _retry(self) -> None:
        self._retry_scheduled = False
        congested, self._congested = self._congested, set()
        for conn in congested:
            if not conn.flush():
                self._congested.add(conn)
        if self._congested:
            self._retry_scheduled = True
            self._loop.call_later(0.01, self._retry)


class Connection:
    """A client's socket as the rest of the realtime core sees it."""

    __slots__ = (
        "__weakref__",
        "_ctl",
        "_ctl_bytes",
        "_dirty",
        "_drain",
        "_fileno",
        "_flowing",
        "_flusher",
        "_last_overflow",
        "_out",
        "_out_bytes",
        "acked",
        "closing",
        "codec",
        "errors",
        "fd",
        "fmt",
        "id",
        "limit",
        "on_overflow",
        "rooms",
        "sending",
        "session_id",
        "transport",
        "user_id",
        "username",
        "ws",
    )

    def __init__(
        self,
        *,
        ws: Any,
        transport: asyncio.Transport,
        user_id: uuid.UUID,
        username: str,
        session_id: uuid.UUID,
        flusher: Flusher,
        limit: int,
        fmt: int = JSON,
        codec: ControlCodec | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.ws = ws
        self.transport = transport
        self.user_id = user_id
        self.username = username
        self.session_id = session_id
        self.fmt = fmt
        self.codec = codec
        self.rooms: set[str] = set()
        self.acked: dict[str, int] = {}
        self.errors = 0
        self.closing = False
        # this socket's chat messages waiting for their commit (set by the socket's handler
        # on its first send), so a node that stops can let them finish and ack first
        self.sending: collections.deque[asyncio.Future[None]] | None = None
        self.limit = limit  # bytes of room traffic that may wait for this socket
        # called with (conn, hard) when the room traffic overflows; set by the hub
        self.on_overflow: Callable[[Connection, bool], None] | None = None
        self._flusher = flusher
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._ctl: list[bytes] = []
        self._ctl_bytes = 0
        self._drain: list[Callable[[], None]] | None = None
        self._dirty = False
        self._last_overflow = 0.0
        # The transport's descriptor, given by a protocol that tells when bytes wait in the
        # transport's buffer (`flowing`); -1 for one that does not, whose sockets take the
        # checked way (`write_now`).
        self._fileno = -1
        self._flowing = False
        # `_fileno` while a room's frame may be sent straight to the socket (nothing queued
        # here, nothing waiting in the transport, not closing), else -1: what the fan-out's
        # C loop reads per member (`_fanout.send_all`).
        self.fd = -1

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.username}>"

    @property
    def queued_bytes(self) -> int:
        return self._out_bytes + self._ctl_bytes

    def push(self, frame: bytes) -> None:
        """Queue a ready-made frame of room traffic; never blocks, never awaits."""
        if self.closing:
            return
        if self._out_bytes + len(frame) > self.limit and self._out:
            self._overflow()
            return
        self._out.append(frame)
        self._out_bytes += len(frame)
        self.fd = -1
        self._mark()

    def write_now(self, frame: bytes) -> None:
        """Room traffic when the room has nothing else to send this tick: straight to the
        transport when nothing waits for this socket and the kernel has room (no queue, no
        flush pass: what a bare server does), else queued like `push`."""
        transport = self.transport
        if (
            self._out
            or self._ctl
            or self.closing
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            self.push(frame)
        else:
            transport.write(frame)

    def push_control(self, frame: bytes) -> None:
        """Queue a control frame: it survives overflows of room traffic."""
        if self.closing:
            return
        self._ctl.append(frame)
        self._ctl_bytes += len(frame)
        self.fd = -1
        if self._ctl_bytes > CONTROL_LIMIT:
            # It asks and asks and reads nothing.
            self.close(CLOSE_SLOW_CONSUMER, "not reading", abort=True)
            return
        self._mark()

    def writes_straight(self, fileno: int) -> None:
        """The transport's protocol will tell `flowing`: from now on room frames may be sent
        straight to descriptor `fileno` while nothing waits (see `_fanout.c`)."""
        self._fileno = fileno

    def flowing(self, flowing: bool) -> None:
        """Told by the transport's protocol: whether its buffer is empty (`resume_writing`)
        or holds bytes the kernel did not take (`pause_writing`, with a high-water mark of
        0), or the transport is going away (False for good: before its descriptor closes)."""
        self._flowing = flowing
        self._update_fd()

    def _update_fd(self) -> None:
        clear = self._flowing and not (self._out or self._ctl or self.closing)
        self.fd = self._fileno if clear else -1

    def write_rest(self, frame: bytes, sent: int) -> None:
        """A room frame `_fanout.send_all` did not send whole: `sent` bytes went (-1: it was
        not tried, the socket is not clear). The rest goes to the transport, which buffers
        what the kernel does not take (and so pauses this socket's straight sends), or to
        the queue."""
        if sent < 0:
            self.write_now(frame)
        else:
            self.transport.write(frame[sent:] if sent else frame)

    def on_drain(self, callback: Callable[[], None]) -> None:
        """Call `callback` once what is queued now has been handed to the transport (and the
        transport had room for it): the pace of a replay."""
        if self.closing:
            return
        if self._drain is None:
            self._drain = []
        self._drain.append(callback)
        self._mark()

    def _mark(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._flusher.mark(self)

    def flush(self) -> bool:
        """Write what is queued. False when the socket is congested and frames remain."""
        self._dirty = False
        if self.closing or self.transport.is_closing():
            self._clear()
            return True
        if self._ctl or self._out:
            buffered = self.transport.get_write_buffer_size()
            if buffered > HIGH_WATER:
                if buffered > HARD_LIMIT:
                    # Megabytes unread: a close frame would sit behind them forever.
                    self.close(CLOSE_SLOW_CONSUMER, "too slow", abort=True)
                    self._overflowed(hard=True)
                    return True
                return False
            frames = self._ctl + self._out if self._ctl else self._out
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
            self._ctl.clear()
            self._out.clear()
            self._ctl_bytes = self._out_bytes = 0
            self._update_fd()  # (the write above may have told it the kernel is full)
        drain, self._drain = self._drain, None
        if drain:
            for callback in drain:
                callback()
        return True

    def _clear(self) -> None:
        self._out.clear()
        self._ctl.clear()
        self._out_bytes = self._ctl_bytes = 0
        self._drain = None

    def _overflow(self) -> None:
        now = time.monotonic()
        hard = now - self._last_overflow < RESYNC_GRACE
        self._last_overflow = now
        if not hard:
            # Told to resync: queued room traffic is dropped (control frames stay).
            self._out.clear()
            self._out_bytes = 0
            self._drain = None
        self._overflowed(hard=hard)

    def _overflowed(self, *, hard: bool) -> None:
        if self.on_overflow is not None:
            self.on_overflow(self, hard)

    def close(self, code: int, reason: str, *, abort: bool = False) -> None:
        """Close with `code`: the close frame follows what is queued, and the connection is
        cut if the client has not completed the close within `CLOSE_DEADLINE`. `abort` cuts it
        at once (for a client that reads nothing at all)."""
        if self.closing:
            return
        self.closing = True
        self.fd = -1
        if abort:
            self.transport.abort()
        elif (self._ctl or self._out) and not self.transport.is_closing():
            # What is queued (bounded: e.g. a resync notice) goes out before the close frame.
            self.transport.write(b"".join(self._ctl + self._out))
        self._clear()
        task = asyncio.ensure_future(self._close_ws(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _close_ws(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_DEADLINE):
                await self.ws.close(code=code, message=reason.encode())
        except TimeoutError:
            log.info("%s did not complete its close within %.0fs; cut", self, CLOSE_DEADLINE)
            self.transport.abort()
        except Exception:  # the peer may already be gone
            log.debug("close of %s failed", self, exc_info=True)
            self.transport.abort()
        else:
            abort_if_stuck(self.transport)
