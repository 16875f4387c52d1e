"""/ws: the live socket. Authenticates the handshake, answers it, then hands the connection to a
`LiveSocket`, which reads its frames and hands them to the realtime service. Everything a
socket receives is written by the hub's room actors."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import Histogram

from .. import logs
from ..accounts.auth import AUTH, Principal
from ..actors.connection import JSON, MSGPACK, Connection
from ..actors.hub import HUB, Hub
from ..config import Settings
from ..errors import Forbidden, Invalid, Unauthorized
from ..protocol import Send, client_json_decoder, client_msgpack_decoder
from ..sessions.chat import SendOrder
from ..sessions.realtime import REALTIME, RealtimeService
from .contract import Raw, operation, signed_in
from .live_socket import LiveSocket, LiveSockets, handshake_headers, take_over
from .metrics import METRICS, Metrics
from .middleware import REQUEST_ID, bearer_token
from .origins import origin_allowed

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

SEND_PIPELINE = 64  # chat messages of one socket waiting for their commit at once


@routes.get("/ws")
@operation(
    tag="realtime",
    summary="The live socket (see PROTOCOL.md)",
    status=101,
    errors=(400, 401, 403, 422),
    raw={101: Raw("application/json", "switches to the websocket protocol (?token=, ?format=)")},
    access=signed_in(101),
)
async def websocket(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if not origin_allowed(request, origin):
        raise Forbidden(f"origin {origin} is not allowed", code="origin_not_allowed")
    token = bearer_token(request) or request.query.get("token")
    if not token:
        raise Unauthorized(
            "an access token is required (Authorization header or ?token=)", code="token_required"
        )
    principal = await request.app[AUTH].authenticate(token)
    logs.user_id.set(str(principal.user_id))  # every line this socket's handler logs
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "msgpack"):
        raise Invalid("format", "must be json or msgpack")
    if request.transport is None:
        raise web.HTTPBadRequest()
    upgrade = web.StreamResponse(status=101, headers=handshake_headers(request))
    upgrade.force_close()
    await upgrade.prepare(request)
    live = request.app[LIVE_SOCKETS]
    socket = LiveSocket(live, request.get(REQUEST_ID))
    take_over(request, socket)
    if socket.transport is None:  # pragma: no cover (take_over sets it or raises)
        raise ConnectionResetError
    conn = request.app[HUB].connection(
        ws=socket,
        transport=socket.transport,
        user_id=principal.user_id,
        username=principal.username,
        session_id=principal.session_id,
        fmt=MSGPACK if fmt == "msgpack" else JSON,
    )
    realtime, metrics = request.app[REALTIME], request.app[METRICS]
    socket.start(Inbound(realtime, conn, principal, metrics.ws_ack))
    # The handler returns now: the socket lives on in `socket`, and no request, task or
    # middleware frame of this handshake is kept.
    return upgrade


def live_sockets(
    hub: Hub, realtime: RealtimeService, metrics: Metrics, settings: Settings
) -> LiveSockets:
    """What this node's /ws sockets share: how a message is handled, how a socket ends."""

    async def handle(inbound: Inbound, message: str | bytes) -> None:
        binary = not isinstance(message, str)
        try:
            if isinstance(message, str):
                frame = client_json_decoder.decode(message)
            else:
                frame = client_msgpack_decoder.decode(message)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            realtime.bad_frame(inbound.conn, exc, binary=binary)
            return
        metrics.ws_frames_in.labels(type(frame).__name__.lower()).inc()
        await inbound.handle(frame)

    async def disconnect(conn: Connection, lost: bool) -> None:
        await hub.disconnect(conn, lost=lost)

    return LiveSockets(
        handle=handle,
        disconnect=disconnect,
        closed=metrics.ws_closed,
        max_msg_size=settings.ws_max_message_bytes,
        heartbeat=settings.ws_heartbeat,
    )


# the application's key for what this module provides (typed app state)
LIVE_SOCKETS = web.AppKey("live_sockets", LiveSockets)


class Inbound:
    """One socket's client frames, handed to the realtime service in the order they came
    (the same for /ws and /socket.io/: the codecs differ, the rules do not)."""

    __slots__ = ("_last_turn", "_sending", "conn", "latency", "principal", "realtime")

    def __init__(
        self,
        realtime: RealtimeService,
        conn: Connection,
        principal: Principal,
        latency: Histogram | None = None,
    ) -> None:
        self.realtime = realtime
        self.conn = conn
        self.principal = principal
        self.latency = latency  # how long each frame took to handle (sends: to their ack)
        # this socket's chat messages waiting for their commit (made on the first one: an
        # empty deque is ~0.7 KB, and most sockets never send)
        self._sending: collections.deque[asyncio.Future[None]] | None = None
        self._last_turn: asyncio.Future[None] | None = None  # the latest send's place in line

    async def handle(self, frame: Any) -> None:
        """Handle one frame; returns once it is handled, except for chat messages, which
        wait for their commit in the background (at most `SEND_PIPELINE` at once)."""
        if type(frame) is Send and frame.kind != "system":
            # A chat message waits for its commit before it is acknowledged. Handing it over
            # without waiting lets the next ones from this socket join the same group commit;
            # each is handed to the store only after the one before it (`SendOrder`), so they
            # are numbered in the order they came, whatever each waited for on the way
            # (moderation).
            sending = self._sending
            if sending is None:
                # (the connection sees it too: a stopping node waits for sends in flight)
                sending = self._sending = self.conn.sending = collections.deque()
            order = SendOrder(self._last_turn)
            self._last_turn = order.mine
            sending.append(asyncio.ensure_future(self._handle(frame, order)))
            while sending and sending[0].done():
                sending.popleft()
            if len(sending) >= SEND_PIPELINE:
                await asyncio.wait([sending.popleft()])
            return
        await self.settle()  # anything else happens after this socket's messages are stored
        await self._handle(frame)

    async def settle(self) -> None:
        """Wait until this socket's chat messages are stored (or refused)."""
        if self._sending:
            await asyncio.wait(self._sending)
            self._sending.clear()

    async def _handle(self, frame: Any, order: SendOrder | None = None) -> None:
        started = time.perf_counter()
        try:
            await self.realtime.handle(self.conn, self.principal, frame, order)
        except Exception:
            log.exception("websocket frame %s failed", type(frame).__name__)
            self.realtime.error(
                self.conn,
                "internal_error",
                "the server failed on this frame",
                ref=frame.cid if type(frame) is Send else None,
            )
        finally:
            if order is not None:
                order.release()
            if self.latency is not None and order is not None:
                self.latency.observe(time.perf_counter() - started)
