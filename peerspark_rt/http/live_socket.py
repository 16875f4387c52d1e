"""A /ws socket after its handshake: the connection taken off aiohttp and read by a protocol of
ours.

aiohttp keeps, for as long as a websocket lives, the parsed upgrade request, its HTTP parser,
the handler's task and every middleware frame suspended in it, a reader queue and a heartbeat
timer per socket: ~17 of the ~21 KiB an idle joined socket cost (bench.conn_memory). Once
the 101 answer is out none of it is needed (everything a socket receives is written by
`Connection` straight to the transport), so the transport is handed to `LiveSocket`, aiohttp
forgets the connection without closing it, and an idle joined socket costs its transport, its
`Connection` and this object.

What the socket reads is held to what aiohttp enforced: frames as RFC 6455 has them (reserved
bits, opcodes, control frames unfragmented and <= 125 bytes, continuations, close codes),
`max_msg_size` per message (1009), UTF-8 text (1007), other protocol errors 1002; pings are
answered, and a socket silent for a heartbeat is pinged and closed (1006) if it still says
nothing within half a heartbeat. Messages are handled one after the other by a task that
exists only while there are some (reading pauses while too many wait).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from aiohttp import hdrs, web

from .. import logs
from ..actors.connection import CLOSE_DEADLINE, Connection, abort_if_stuck
from .transport import GuardedProtocol

if TYPE_CHECKING:
    from .ws import Inbound

log = logging.getLogger(__name__)

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_OPCODES: Final = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))
CLOSE_NORMAL, CLOSE_ABNORMAL = 1000, 1006
CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_TEXT, CLOSE_TOO_BIG = 1002, 1007, 1009
# Close codes a client may send below the registered range (RFC 6455 7.4.1, as aiohttp has it).
_CLIENT_CODES: Final = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)
QUEUE_LIMIT = 128 * 1024  # bytes of messages waiting to be handled before reading pauses
MSG_OVERHEAD = 128  # counted per waiting message, so tiny ones are bounded too


class Fail(Exception):
    """The client broke the protocol: the socket closes with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return bytes((0x80 | OP_CLOSE, 2 + len(reason))) + struct.pack("!H", code) + reason


def handshake_headers(request: web.Request) -> dict[str, str]:
    """The 101 answer's headers, or 400 for a request that is not a websocket upgrade (the
    checks aiohttp's `WebSocketResponse` makes; no subprotocols, no compression)."""
    headers = request.headers
    if headers.get(hdrs.UPGRADE, "").lower().strip() != "websocket":
        raise web.HTTPBadRequest(text='Can "Upgrade" only to "WebSocket".')
    tokens = {t.strip().lower() for t in headers.get(hdrs.CONNECTION, "").split(",")}
    if "upgrade" not in tokens:
        raise web.HTTPBadRequest(text="No CONNECTION upgrade hdr")
    if headers.get(hdrs.SEC_WEBSOCKET_VERSION, "") not in ("13", "8", "7"):
        raise web.HTTPBadRequest(text="Unsupported version")
    key = headers.get(hdrs.SEC_WEBSOCKET_KEY, "")
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        raise web.HTTPBadRequest(text="Handshake error: bad Sec-WebSocket-Key")
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    return {
        hdrs.UPGRADE: "websocket",
        hdrs.CONNECTION: "upgrade",
        hdrs.SEC_WEBSOCKET_ACCEPT: accept,
    }


def take_over(request: web.Request, socket: LiveSocket) -> None:
    """Hand the connection of an upgrade whose 101 is written to `socket`. aiohttp's request
    handler forgets it without closing it: with no transport, the end of the handler closes
    nothing, and its server drops the handler (parser, queues, request) once it has returned."""
    transport = request.transport
    handler = request.protocol
    if transport is None or handler is None or transport.is_closing():
        raise ConnectionResetError("the connection went away during the handshake")
    outer = transport.get_protocol()
    # Bytes the client sent after its upgrade request, which aiohttp kept for a parser it was
    # never given.
    tail, handler._message_tail = handler._message_tail, b""
    if isinstance(outer, GuardedProtocol):
        outer.release_inner()  # it still counts the connection against its address
        socket.outer = outer
    transport.set_protocol(socket)
    socket.transport = transport
    handler.transport = None
    handler.connection_lost(None)
    if not transport.is_reading():  # (paused while aiohttp's buffers were full)
        transport.resume_reading()
    if tail:
        socket.data_received(tail)


class LiveSockets:
    """This node's /ws sockets: what they share, and the heartbeat, one sweep for all of them
    (a per-socket timer is ~240 bytes a socket)."""

    __slots__ = (
        "_sweeper",
        "closed",
        "disconnect",
        "handle",
        "heartbeat",
        "max_msg_size",
        "sockets",
    )

    def __init__(
        self,
        *,
        handle: Callable[[Inbound, str | bytes], Awaitable[None]],
        disconnect: Callable[[Connection, bool], Awaitable[None]],
        closed: Callable[[int | None], None],
        max_msg_size: int,
        heartbeat: float,
    ) -> None:
        self.handle = handle  # one text (str) or binary message, in its socket's order
        self.disconnect = disconnect  # (conn, lost): the socket is gone
        self.closed = closed  # (close code): counted
        self.max_msg_size = max_msg_size
        self.heartbeat = heartbeat
        self.sockets: set[LiveSocket] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def add(self, socket: LiveSocket) -> None:
        self.sockets.add(socket)
        if self._sweeper is None and self.heartbeat > 0:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name="ws-heartbeat"
            )

    def discard(self, socket: LiveSocket) -> None:
        self.sockets.discard(socket)

    async def _sweep(self) -> None:
        """Every half heartbeat: a socket heard from since the last sweep is fine; one that
        was not is pinged; one pinged at the last sweep and still silent is cut. (A silent
        socket is pinged after 0.5-1 heartbeat and cut half a heartbeat later: no later than
        aiohttp's 1.5.)"""
        try:
            while self.sockets:
                await asyncio.sleep(self.heartbeat / 2)
                for socket in list(self.sockets):
                    socket.beat()
        finally:
            self._sweeper = None

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()


_OPEN, _ENDING, _GONE = 0, 1, 2  # reading frames / an end queued / transport gone too
_LOST, _BY_CLIENT, _ERROR = 0, 1, 2  # how a socket ended


class LiveSocket(asyncio.Protocol):
    """One /ws connection after the handshake."""

    __slots__ = (
        "_buf",
        "_close_code",
        "_close_reason",
        "_end",
        "_frag",
        "_frag_len",
        "_frag_op",
        "_gone",
        "_heard",
        "_paused",
        "_pending",
        "_pending_bytes",
        "_pinged",
        "_state",
        "_worker",
        "inbound",
        "live",
        "outer",
        "request_id",
        "transport",
    )

    def __init__(self, live: LiveSockets, request_id: str | None) -> None:
        self.live = live
        self.request_id = request_id  # the upgrade's, on every line this socket logs
        self.inbound: Inbound | None = None
        self.transport: asyncio.Transport | None = None
        self.outer: GuardedProtocol | None = None
        self._state = _OPEN
        self._end = _LOST
        self._close_code: int | None = None
        self._close_reason = ""
        self._buf: bytearray | None = None  # an incomplete frame's bytes
        # a fragmented message's bytes so far (one buffer: empty fragments cost nothing, so
        # what a message in pieces holds is bounded by max_msg_size, not by its frame count)
        self._frag: bytearray | None = None
        self._frag_op = OP_CONTINUATION
        self._frag_len = 0
        # messages waiting for their turn (None: the end); made when the first one comes
        self._pending: collections.deque[str | bytes | None] | None = None
        self._pending_bytes = 0
        self._worker: asyncio.Task[None] | None = None
        self._paused = False
        self._gone: asyncio.Future[None] | None = None  # made by a close that waits for it
        self._heard = True
        self._pinged = False

    def __repr__(self) -> str:
        return f"<LiveSocket {self.inbound.conn if self.inbound else '-'}>"

    def start(self, inbound: Inbound) -> None:
        self.inbound = inbound
        self.live.add(self)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # Told the moment anything waits in the transport's buffer (and when it is empty
            # again): while nothing does, room frames are written straight to it.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                transport.set_write_buffer_limits(high=0)
                inbound.conn.writes_straight(sock.fileno())
                inbound.conn.flowing(not transport.get_write_buffer_size())

    # --- the transport's calls -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._state != _OPEN:
            return
        self._heard = True
        buf: bytes | bytearray = data
        if self._buf is not None:
            self._buf += data
            buf = self._buf
        try:
            used = self._parse(buf)
        except Fail as exc:
            self._buf = None
            self._fail(exc.code, exc.reason)
            return
        if used == len(buf) or self._state != _OPEN:  # (nothing is read after a close)
            self._buf = None
        elif buf is self._buf:
            del self._buf[:used]
        else:
            self._buf = bytearray(buf[used:])

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost ends the socket

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _OPEN:
            self._queue_end(_LOST, CLOSE_ABNORMAL, "")
        self._state = _GONE
        self._stop_writing()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        self.live.discard(self)
        outer, self.outer = self.outer, None
        if outer is not None:
            outer.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inbound is not None:
            self.inbound.conn.flowing(False)

    def resume_writing(self) -> None:
        if (
            self.inbound is not None
            and self._state == _OPEN
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self.inbound.conn.flowing(True)

    def _stop_writing(self) -> None:
        """The transport is closing or gone: nothing more is written straight to it."""
        if self.inbound is not None:
            self.inbound.conn.flowing(False)

    # --- what the rest of the product calls ----------------------------------------------

    async def close(self, *, code: int, message: bytes = b"") -> bool:
        """Close from our side (Connection.close: what was queued is already written): the
        close frame, then the connection; returns once what was buffered is sent and the
        connection closed (Connection cuts it if that takes longer than CLOSE_DEADLINE)."""
        transport = self.transport
        self._stop_writing()
        if transport is not None and not transport.is_closing():
            transport.write(close_frame(code, message[:123]))
            transport.close()
        if self._state == _OPEN:
            self._queue_end(_LOST, code, "")
        if self._state != _GONE:
            if self._gone is None:
                self._gone = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._gone)
        return True

    def beat(self) -> None:
        """The heartbeat's sweep (see `LiveSockets._sweep`)."""
        if self._state != _OPEN or self.transport is None or self.transport.is_closing():
            return
        if self._heard:
            self._heard = self._pinged = False
        elif not self._pinged:
            self._pinged = True
            self.transport.write(b"\x89\x00")
        else:
            log.debug("%s: no pong within half a heartbeat; closed", self)
            self._queue_end(_LOST, CLOSE_ABNORMAL, "")
            self._stop_writing()
            self.transport.close()

    # --- frames --------------------------------------------------------------------------

    def _parse(self, buf: bytes | bytearray) -> int:
        """Handle the complete frames at the start of `buf`; how many bytes they took."""
        pos, n = 0, len(buf)
        max_size = self.live.max_msg_size
        while n - pos >= 2 and self._state == _OPEN:
            first, second = buf[pos], buf[pos + 1]
            opcode = first & 0x0F
            if first & 0x70:
                raise Fail(CLOSE_PROTOCOL_ERROR, "Received frame with non-zero reserved bits")
            if opcode not in _OPCODES:
                raise Fail(CLOSE_PROTOCOL_ERROR, f"Unexpected opcode={opcode!r}")
            fin = first & 0x80
            length = second & 0x7F
            if opcode > 0x7:
                if not fin:
                    raise Fail(CLOSE_PROTOCOL_ERROR, "Received fragmented control frame")
                if length > 125:
                    raise Fail(
                        CLOSE_PROTOCOL_ERROR,
                        "Control frame payload cannot be larger than 125 bytes",
                    )
            head = pos + 2
            if length == 126:
                if n - head < 2:
                    break
                length = (buf[head] << 8) | buf[head + 1]
                head += 2
            elif length == 127:
                if n - head < 8:
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            if max_size and opcode <= 0x7 and length >= max_size - self._frag_len:
                raise Fail(
                    CLOSE_TOO_BIG,
                    f"Message size {length + self._frag_len} exceeds limit {max_size}",
                )
            mask = b""
            if second & 0x80:
                if n - head < 4:
                    break
                mask = bytes(buf[head : head + 4])
                head += 4
            end = head + length
            if end > n:
                break
            payload = bytes(buf[head:end])
            if mask and payload:
                payload = _unmask(mask, payload)
            pos = end
            self._frame(bool(fin), opcode, payload)
        return pos

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode <= OP_BINARY:
            if opcode == OP_CONTINUATION:
                if self._frag is None:
                    raise Fail(CLOSE_PROTOCOL_ERROR, "Continuation frame for non started message")
                self._frag += payload
                self._frag_len += len(payload)
                if not fin:
                    return
                opcode, payload = self._frag_op, bytes(self._frag)
                self._frag, self._frag_len = None, 0
            elif self._frag is not None:
                raise Fail(
                    CLOSE_PROTOCOL_ERROR,
                    f"The opcode in non-fin frame is expected to be zero, got {opcode!r}",
                )
            elif not fin:
                self._frag, self._frag_op, self._frag_len = bytearray(payload), opcode, len(payload)
                return
            if opcode == OP_TEXT:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise Fail(CLOSE_INVALID_TEXT, "Invalid UTF-8 text message") from None
                # counted as `_work` takes it back off (len of the str): bytes in and
                # characters out would leave what waits growing until reading never resumes
                self._queue(text, len(text))
            else:
                self._queue(payload, len(payload))
        elif opcode == OP_CLOSE:
            code = 0
            reason = ""
            if len(payload) >= 2:
                code = (payload[0] << 8) | payload[1]
                if code < 3000 and code not in _CLIENT_CODES:
                    raise Fail(CLOSE_PROTOCOL_ERROR, f"Invalid close code: {code}")
                try:
                    reason = payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise Fail(CLOSE_INVALID_TEXT, "Invalid UTF-8 text message") from None
            elif payload:
                raise Fail(CLOSE_PROTOCOL_ERROR, f"Invalid close frame: {payload!r}")
            self._queue_end(_BY_CLIENT, code, reason)
        elif opcode == OP_PING and self.transport and not self.transport.is_closing():
            self.transport.write(bytes((0x80 | OP_PONG, len(payload))) + payload)
        # (a pong only says the client is there: `_heard` is set)

    def _fail(self, code: int, reason: str) -> None:
        log.debug("%s: %s; closing with %d", self, reason, code)
        self._queue_end(_ERROR, code, reason)
        if self.transport is not None and not self._paused:
            self._paused = True  # nothing more is read from it
            self.transport.pause_reading()

    # --- handling, in order --------------------------------------------------------------

    def _queue(self, message: str | bytes | None, size: int) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = collections.deque()
        pending.append(message)
        self._pending_bytes += size + MSG_OVERHEAD
        if self._pending_bytes > QUEUE_LIMIT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def _queue_end(self, how: int, code: int | None, reason: str) -> None:
        """The socket ends once the messages before this are handled."""
        self._state = _ENDING
        self._end = how
        self._close_code = code
        self._close_reason = reason
        self._queue(None, -MSG_OVERHEAD)

    async def _work(self) -> None:
        inbound = self.inbound
        if inbound is None:  # pragma: no cover (started before any byte is read)
            raise RuntimeError("a socket without its connection")
        conn = inbound.conn
        logs.request_id.set(self.request_id)
        logs.user_id.set(str(conn.user_id))
        pending = self._pending
        try:
            while pending:
                message = pending.popleft()
                if message is None:
                    await self._ended(conn)
                    return
                self._pending_bytes -= len(message) + MSG_OVERHEAD
                if self._paused and self._state == _OPEN and self._pending_bytes < QUEUE_LIMIT:
                    self._paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                try:
                    await self.live.handle(inbound, message)
                except Exception:
                    log.exception("%s: a message's handling failed; closing", conn)
                    self._state = _ENDING
                    conn.close(1011, "internal error")
                    await self._ended(conn)
                    return
        except Exception:
            log.exception("%s: ending the socket failed", conn)
        finally:
            self._worker = None
            if not pending:
                self._pending = None  # (an idle socket keeps no queue)

    async def _ended(self, conn: Connection) -> None:
        by_client = self._end == _BY_CLIENT and not conn.closing
        if self._end == _BY_CLIENT:
            conn.close(CLOSE_NORMAL, "")  # the close handshake's answer
        elif self._end == _ERROR and self._close_code is not None:
            conn.close(self._close_code, self._close_reason)
        self.live.discard(self)
        self.live.closed(self._close_code)
        # A close frame is a leave; anything else (the connection dropped, the heartbeat went
        # unanswered, we closed it) may come back.
        await self.live.disconnect(conn, not by_client)
        if self.transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_DEADLINE, abort_if_stuck, self.transport)


def _unmask(mask: bytes, payload: bytes) -> bytes:
    """XOR with the client's mask, the whole payload at once as one integer."""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
