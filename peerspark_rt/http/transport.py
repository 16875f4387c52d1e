"""The listening socket and what every connection must do to keep its place on it.

A node has a descriptor limit, and a connection that never finishes its request holds a
descriptor (and a handler) for as long as it likes unless something ends it. So:

* a new connection must send its request's headers whole within HTTP_HEADER_TIMEOUT, or it is
  closed (a silent or half-sent connection costs at most that long);
* a body must keep arriving: each piece within HTTP_BODY_TIMEOUT (see `render.body_piece`),
  or the request ends with 408;
* a reused (keep-alive) connection may sit idle, or with a half-sent next request, for
  HTTP_KEEPALIVE_TIMEOUT before it is closed;
* one client address holds at most HTTP_MAX_CONNECTIONS_PER_ADDRESS connections at once
  (0: no cap); the next is answered 503 and closed. Behind a trusted proxy
  (TRUST_PROXY_HEADERS) every connection comes from the proxy, so the cap is not applied:
  the proxy limits its clients (config/nginx.conf does, with `limit_conn`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import cast

from aiohttp import web

from ..config import Settings
from .health import metrics_app

log = logging.getLogger(__name__)

_TOO_MANY_BODY = (
    b'{"error":{"code":"too_many_connections","message":"too many connections from this address"}}'
)
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 5\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_TOO_MANY_BODY), _TOO_MANY_BODY)
)


class ConnectionGuard:
    """Counts connections per client address and hands out the protocol wrapper that keeps
    each connection to its deadlines."""

    def __init__(self, settings: Settings) -> None:
        self.header_timeout = settings.http_header_timeout
        cap = settings.http_max_connections_per_address
        self.cap = 0 if settings.trust_proxy_headers else cap
        self.open: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        if self.cap and self.open[address] >= self.cap:
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]

    def wrap(self, inner: asyncio.Protocol) -> GuardedProtocol:
        return GuardedProtocol(self, inner)


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the guard: admission by address, and the
    deadline for the first request's headers. Everything else passes straight through."""

    __slots__ = ("_address", "_guard", "_inner", "_tail", "_timer", "_transport")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = inner
        self._address: str | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen while the headers are not yet whole

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one)
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "-"
        if not self._guard.admit(address):
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._address = address
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.header_timeout, self._headers_late)
        if self._inner is not None:
            self._inner.connection_made(transport)

    def _headers_late(self) -> None:
        self._timer = None
        if self._transport is not None:
            log.debug("closing a connection from %s: no request headers in time", self._address)
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return  # refused: the 503 is on its way out
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._timer.cancel()
                self._timer = None
            self._tail = seen[-3:]
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._address is None or self._inner is None:
            return None
        return self._inner.eof_received()

    def release_inner(self) -> None:
        """The connection was taken off aiohttp (a websocket after its handshake, see
        `live_socket`): keep only its place in the count, which `connection_lost` gives up."""
        self._inner = None
        self._transport = None
        self._tail = b""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None
        if self._address is None:
            return
        self._guard.release(self._address)
        self._address = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        settings: Settings,
        host: str,
        port: int,
        *,
        backlog: int = 4096,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self.guard = ConnectionGuard(settings)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        sockets = getattr(self._server, "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("server is missing")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self.guard.wrap(server()),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        # requests in flight at a stop get this long (within SHUTDOWN_TIMEOUT as a whole)
        shutdown_timeout=min(10.0, settings.shutdown_timeout / 2),
        keepalive_timeout=settings.http_keepalive_timeout,
        # after an answer given before its body was read (413, 408), how long the rest of the
        # body is read and dropped so the client sees the answer rather than a reset
        lingering_time=1.0,
    )


async def start_metrics_listener(app: web.Application, settings: Settings) -> web.AppRunner | None:
    """With METRICS_ADDRESS, serve /metrics (and the full /health) on that address only."""
    if settings.metrics_address is None:
        return None
    host, port = settings.metrics_address
    runner = web.AppRunner(metrics_app(app), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
