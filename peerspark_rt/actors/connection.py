"""One websocket's outbound side: a bounded queue of ready-made frames, written straight to the
socket's transport.

Fan-out builds a websocket frame once (header + payload) and hands the same bytes object to
every member's `push`. Nothing awaits per member: `push` appends to the member's queue and
marks it dirty; once per event-loop tick the `Flusher` writes each dirty socket's queue in one
`transport.write` call (so frames that pile up in a tick go out in one send). A socket whose
kernel buffer is full keeps its frames queued; if the queue passes its bound the socket is told
to resync (its queue is dropped) and, if it keeps falling behind, closed with 4008. A slow
reader therefore costs a bounded amount of memory and never slows its rooms.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..protocol import CLOSE_SLOW_CONSUMER, json_encoder, msgpack_encoder

log = logging.getLogger(__name__)

OP_TEXT = 0x1
OP_BINARY = 0x2
HIGH_WATER = 256 * 1024  # bytes in the transport's buffer before we stop writing to it
HARD_LIMIT = 4 * 1024 * 1024  # the client is not reading at all: drop it
RESYNC_GRACE = 10.0  # seconds: a second overflow within this closes the socket


_closing: set[asyncio.Future[None]] = set()  # close handshakes in flight (keeps them referenced)


def ws_frame(payload: bytes, opcode: int) -> bytes:
    """A complete, unmasked, unfragmented server-to-client websocket frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def send_frame(conn: Connection, frame: Any) -> None:
    """Encode one server frame (a protocol Struct) in the socket's format and queue it."""
    if conn.binary:
        conn.push(ws_frame(msgpack_encoder.encode(frame), OP_BINARY))
    else:
        conn.push(ws_frame(json_encoder.encode(frame), OP_TEXT))


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
        "_dirty",
        "_flusher",
        "_last_overflow",
        "_out",
        "_queued_bytes",
        "acked",
        "binary",
        "closing",
        "errors",
        "id",
        "limit",
        "on_overflow",
        "rooms",
        "send_allowance",
        "send_checked",
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
        binary: bool,
        flusher: Flusher,
        limit: int,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.ws = ws
        self.transport = transport
        self.user_id = user_id
        self.username = username
        self.session_id = session_id
        self.binary = binary
        self.rooms: set[str] = set()
        self.acked: dict[str, int] = {}
        self.errors = 0
        self.closing = False
        self.limit = limit
        self.send_allowance = 0.0
        self.send_checked = 0.0
        # called with (conn, hard) when the queue overflows; set by the hub
        self.on_overflow: Callable[[Connection, bool], None] | None = None
        self._flusher = flusher
        self._out: list[bytes] = []
        self._queued_bytes = 0
        self._dirty = False
        self._last_overflow = 0.0

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.username}>"

    def push(self, frame: bytes) -> None:
        """Queue a ready-made websocket frame; never blocks, never awaits."""
        if self.closing:
            return
        if len(self._out) >= self.limit:
            self._overflow()
            return
        self._out.append(frame)
        self._queued_bytes += len(frame)
        if not self._dirty:
            self._dirty = True
            self._flusher.mark(self)

    def flush(self) -> bool:
        """Write what is queued. False when the socket is congested and frames remain."""
        self._dirty = False
        if self.closing or self.transport.is_closing():
            self._out.clear()
            self._queued_bytes = 0
            return True
        if not self._out:
            return True
        buffered = self.transport.get_write_buffer_size()
        if buffered > HIGH_WATER:
            if buffered > HARD_LIMIT:
                # Megabytes unread: a close frame would sit behind them forever.
                self.close(CLOSE_SLOW_CONSUMER, "too slow", abort=True)
                self._drop(hard=True)
                return True
            return False
        out = self._out
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        self._queued_bytes = 0
        return True

    def _overflow(self) -> None:
        now = time.monotonic()
        hard = now - self._last_overflow < RESYNC_GRACE
        self._last_overflow = now
        self._drop(hard=hard)

    def _drop(self, *, hard: bool) -> None:
        if not hard:
            # Told to resync: what was queued is dropped, the notice goes first in line.
            self._out.clear()
            self._queued_bytes = 0
        # (When closing, the bounded queue, resync notice included, goes out before the close.)
        if self.on_overflow is not None:
            self.on_overflow(self, hard)

    def close(self, code: int, reason: str, *, abort: bool = False) -> None:
        """Close with `code`: the close frame follows what the socket already buffered, and
        aiohttp drops the connection if the client does not answer it in time. `abort` cuts
        the connection at once (for a client that reads nothing at all)."""
        if self.closing:
            return
        self.closing = True
        if abort:
            self.transport.abort()
        elif self._out and not self.transport.is_closing():
            # What is queued (at most `limit` frames, e.g. a resync notice) goes out before
            # the close frame.
            self.transport.write(b"".join(self._out))
        self._out.clear()
        task = asyncio.ensure_future(self._close_ws(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _close_ws(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code=code, message=reason.encode())
        except Exception:  # the peer may already be gone
            log.debug("close of %s failed", self, exc_info=True)
