"""/socket.io/: the live socket for Socket.IO clients (Engine.IO 4 / Socket.IO 5 over the
websocket transport), written against the spec's events.

The same room core as /ws with another codec (`sio_protocol`): events become the live
protocol's frames and go through the same `Inbound` and realtime service; rooms build each
Socket.IO packet once and share its bytes, as they do for /ws. PROTOCOL.md ("Socket.IO") has
the events and what differs from /ws.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from ..accounts.auth import AUTH, Principal
from ..actors.connection import (
    CLOSE_DEADLINE,
    OP_TEXT,
    SOCKETIO,
    Connection,
    abort_if_stuck,
    ws_frame,
)
from ..actors.hub import HUB
from ..config import SETTINGS
from ..errors import AppError, Forbidden, Invalid, Unauthorized
from ..protocol import CLOSE_SLOW_CONSUMER, Join, Send
from ..sessions.realtime import REALTIME, RealtimeService
from ..sio_protocol import (
    EIO_CLOSE,
    EIO_MESSAGE,
    EIO_NOOP,
    EIO_PING,
    EIO_PONG,
    PING,
    PONG,
    SIO_CONNECT,
    SIO_DISCONNECT,
    SIO_EVENT,
    SioError,
    SioReplies,
    client_frame,
    connect_error_packet,
    connected_packet,
    open_packet,
    parse_packet,
)
from .contract import Raw, access, operation
from .metrics import METRICS, Metrics
from .middleware import bearer_token
from .origins import origin_allowed
from .ws import Inbound

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CONNECT_DEADLINE = 10.0  # seconds from the upgrade to an accepted CONNECT packet
CONNECT_ATTEMPTS = 3  # refused CONNECT packets before the socket is closed
PING_TIMEOUT = 20.0  # seconds (Engine.IO's pingTimeout, told to the client)
_PING_FRAME = ws_frame(PING, OP_TEXT)
_PONG_FRAME = ws_frame(PONG, OP_TEXT)


@routes.get("/socket.io/")
@operation(
    tag="realtime",
    summary="The live socket for Socket.IO clients (see PROTOCOL.md, Socket.IO)",
    status=101,
    errors=(400, 401, 403, 422),
    raw={101: Raw("application/json", "switches to the websocket protocol (Engine.IO 4)")},
    # without a token the upgrade succeeds and the CONNECT packet must carry one
    access=access(101),
)
async def socketio(request: web.Request) -> web.StreamResponse:
    """Engine.IO 4 / Socket.IO 5 over the websocket transport (`?EIO=4&transport=websocket`);
    HTTP long-polling is not offered. The access token goes in the CONNECT packet
    (`auth: {token}`), the Authorization header or `?token=`: one sent with the upgrade is
    checked before it (401), one in the CONNECT packet after it (a CONNECT_ERROR, which the
    clients raise as `connect_error`)."""
    settings = request.app[SETTINGS]
    query = request.query
    if query.get("EIO") != "4":
        raise Invalid(
            "EIO",
            "must be 4: Engine.IO 4 / Socket.IO 5 clients (socket.io-client 3 or later, "
            "python-socketio 5 or later)",
        )
    if query.get("transport") != "websocket":
        raise Invalid(
            "transport",
            "must be websocket: HTTP long-polling is not offered; configure the client with "
            "transports: ['websocket']",
        )
    if "sid" in query:
        raise Invalid("sid", "sessions are not upgraded: connect with the websocket transport")
    origin = request.headers.get("Origin")
    if not origin_allowed(request, origin):
        raise Forbidden(f"origin {origin} is not allowed", code="origin_not_allowed")
    token = bearer_token(request) or query.get("token")
    handshake = await request.app[AUTH].authenticate(token) if token else None
    transport = request.transport
    if transport is None:
        raise web.HTTPBadRequest()

    ws = web.WebSocketResponse(
        timeout=CLOSE_DEADLINE,
        heartbeat=None,  # Engine.IO's own ping ("2"/"3") keeps the connection alive
        max_msg_size=settings.ws_max_message_bytes,
        compress=False,  # packets are pre-built once and written to every member as they are
    )
    await ws.prepare(request)
    try:
        await ws.send_str(
            open_packet(
                secrets.token_urlsafe(15),
                settings.ws_heartbeat,
                min(PING_TIMEOUT, settings.ws_heartbeat),
                settings.ws_max_message_bytes,
            )
        )
        principal = await _connect(request, ws, handshake)
    except (ConnectionError, RuntimeError):  # the client went away during the handshake
        principal = None
    if principal is None:
        if not ws.closed:
            try:
                async with asyncio.timeout(CLOSE_DEADLINE):
                    await ws.close()
            except TimeoutError:
                transport.abort()
        return ws
    session = _Session(request, ws, transport, principal)
    await session.run()
    return ws


async def _connect(
    request: web.Request, ws: web.WebSocketResponse, handshake: Principal | None
) -> Principal | None:
    """Wait for the client's CONNECT packet to the main namespace and sign it in; None when
    it does not come in time, or keeps being refused."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_DEADLINE
    refused = 0
    while refused < CONNECT_ATTEMPTS:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        try:
            msg = await ws.receive(timeout=remaining)
        except TimeoutError:
            return None
        if msg.type is WSMsgType.BINARY:
            continue
        if msg.type is not WSMsgType.TEXT:
            return None
        text: str = msg.data
        if text == EIO_PING:
            await ws.send_str(EIO_PONG)
            continue
        if text[:1] == EIO_CLOSE:
            return None
        if text[:1] != EIO_MESSAGE:
            continue
        try:
            packet = parse_packet(text[1:])
        except SioError as exc:
            await ws.send_str(connect_error_packet(exc.message, exc.code).decode())
            refused += 1
            continue
        if packet.kind != SIO_CONNECT:
            continue  # (Socket.IO servers ignore what comes before the CONNECT)
        if packet.namespace != "/":
            await ws.send_str(
                connect_error_packet(
                    "Invalid namespace", "invalid_namespace", packet.namespace
                ).decode()
            )
            refused += 1
            continue
        try:
            return await _sign_in(request, packet.data, handshake)
        except AppError as exc:
            await ws.send_str(connect_error_packet(exc.message, exc.code).decode())
            refused += 1
    return None


async def _sign_in(request: web.Request, auth: Any, handshake: Principal | None) -> Principal:
    token = auth.get("token") if isinstance(auth, dict) else None
    if token is None:
        if handshake is not None:
            return handshake
        raise Unauthorized(
            "an access token is required: auth: {token} in the connect packet, or the "
            "Authorization header",
            code="token_required",
        )
    if not isinstance(token, str) or not token:
        raise Unauthorized("auth.token must be the access token (a string)", code="invalid_token")
    return await request.app[AUTH].authenticate(token)


class _Heartbeat:
    """Engine.IO's ping: one timer per socket (no task); a ping left unanswered until the
    next one cuts the connection."""

    __slots__ = ("_conn", "_handle", "_interval", "answered")

    def __init__(self, conn: Connection, interval: float) -> None:
        self._conn = conn
        self._interval = interval
        self.answered = True
        self._handle = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        if self._conn.closing:
            return
        if not self.answered:
            self._conn.close(CLOSE_SLOW_CONSUMER, "ping timeout", abort=True)
            return
        self.answered = False
        self._conn.push_control(_PING_FRAME)
        self._handle = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def stop(self) -> None:
        self._handle.cancel()


class _Session:
    """One signed-in Socket.IO socket: reads packets, hands events to the realtime core."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        principal: Principal,
    ) -> None:
        app = request.app
        self.ws = ws
        self.transport = transport
        self.principal = principal
        self.hub = app[HUB]
        self.realtime: RealtimeService = app[REALTIME]
        self.metrics: Metrics = app[METRICS]
        self.replies = SioReplies()
        self.conn = self.hub.connection(
            ws=ws,
            transport=transport,
            user_id=principal.user_id,
            username=principal.username,
            session_id=principal.session_id,
            fmt=SOCKETIO,
            codec=self.replies,
        )
        self.inbound = Inbound(self.realtime, self.conn, principal, self.metrics.ws_ack)
        self.heartbeat = _Heartbeat(self.conn, app[SETTINGS].ws_heartbeat)

    async def run(self) -> None:
        conn = self.conn
        conn.push_control(ws_frame(connected_packet(conn.id), OP_TEXT))
        closed_by_client = False
        try:
            # The user's own room: the spec's clients get notification:new without joining.
            await self._request(None, Join(room=f"user:{self.principal.user_id}"), silent=True)
            while True:
                msg = await self.ws.receive()
                if msg.type is WSMsgType.TEXT:
                    if await self._text(msg.data):
                        closed_by_client = True
                        conn.close(1000, "disconnected")
                        break
                elif msg.type is WSMsgType.BINARY:
                    self.realtime.error(
                        conn, "invalid_frame", "binary attachments are not supported"
                    )
                else:
                    # as on /ws: a close frame is a leave; a lost connection may come back
                    closed_by_client = msg.type is WSMsgType.CLOSE and not conn.closing
                    break
        finally:
            self.heartbeat.stop()
            self.metrics.ws_closed(self.ws.close_code)
            await self.hub.disconnect(conn, lost=not closed_by_client)
            asyncio.get_running_loop().call_later(CLOSE_DEADLINE, abort_if_stuck, self.transport)

    async def _text(self, text: str) -> bool:
        """Handle one Engine.IO packet; True when the client said it is leaving."""
        head = text[:1]
        if head == EIO_MESSAGE:
            return await self._packet(text[1:])
        if head == EIO_PONG:
            self.heartbeat.answered = True
        elif head == EIO_PING:
            self.conn.push_control(_PONG_FRAME)
        elif head == EIO_CLOSE:
            return True
        elif head != EIO_NOOP:
            self.realtime.error(self.conn, "bad_frame", "not an Engine.IO 4 packet")
        return False

    async def _packet(self, text: str) -> bool:
        try:
            packet = parse_packet(text)
        except SioError as exc:
            self.realtime.error(self.conn, exc.code, exc.message)
            return False
        if packet.kind == SIO_DISCONNECT:
            return packet.namespace == "/"
        if packet.kind == SIO_CONNECT:
            if packet.namespace != "/":
                packet_bytes = connect_error_packet(
                    "Invalid namespace", "invalid_namespace", packet.namespace
                )
                self.conn.push_control(ws_frame(packet_bytes, OP_TEXT))
            return False  # (already connected to the main namespace)
        if packet.kind != SIO_EVENT:
            return False  # acknowledgements of ours: the server asks for none
        try:
            if packet.namespace != "/":
                raise SioError("invalid_frame", f"not connected to namespace {packet.namespace}")
            data = packet.data
            if not isinstance(data, list) or not data or not isinstance(data[0], str):
                raise SioError("invalid_frame", "an event is a list: [name, ...arguments]")
            frame = client_frame(data[0], data[1:])
        except SioError as exc:
            self.replies.begin(packet.ack, None)
            self.realtime.error(self.conn, exc.code, exc.message)
            self._end()
            return False
        self.metrics.ws_frames_in.labels(type(frame).__name__.lower()).inc()
        if type(frame) is Send and frame.kind != "system":
            self.replies.begin(packet.ack, frame)
            await self.inbound.handle(frame)
        else:
            await self._request(packet.ack, frame)
        return False

    async def _request(self, ack: int | None, frame: Any, *, silent: bool = False) -> None:
        await self.inbound.settle()  # after this socket's chat messages, as on /ws
        self.replies.begin(ack, frame, silent=silent)
        await self.inbound.handle(frame)
        self._end()

    def _end(self) -> None:
        packet = self.replies.end()
        if packet is not None:
            self.conn.push_control(ws_frame(packet, OP_TEXT))
