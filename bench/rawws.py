"""A minimal websocket client on an asyncio Protocol: just what a load generator needs.

A general client (aiohttp's) hands every message through a queue to a waiting task; with a
thousand sockets receiving tens of thousands of messages a second, those wake-ups are where
the load generator's CPU goes. Here frames are parsed in `data_received` and handed to a
callback straight away, so the generator stays far faster than the servers it measures.

Client frames are masked as RFC 6455 requires; server frames are expected unmasked and
unfragmented (continuations are reassembled anyway). Pings are answered with pongs.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(ConnectionError):
    def __init__(self, status: int, head: str) -> None:
        super().__init__(f"websocket upgrade refused: HTTP {status}")
        self.status = status
        self.head = head


def _masked(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    if not n:
        return header + key
    repeated = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return header + key + body


class RawWebSocket(asyncio.Protocol):
    """One client socket. `on_message(payload, opcode)` gets each text/binary message."""

    def __init__(self, on_message: Callable[[bytes, int], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._head = b""
        self._buf = b""
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self._request = b""

    # --- connecting ----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        on_message: Callable[[bytes, int], None],
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
        source: str | None = None,
    ) -> RawWebSocket:
        ws = cls(on_message)
        await ws.open(url, headers, timeout, source)
        return ws

    async def open(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
        source: str | None = None,
    ) -> None:
        """Connect and upgrade. Messages may reach `on_message` before this returns (a server
        may speak first), so a client that answers them should hold this object already."""
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        if parts.scheme == "wss":
            raise ValueError("the bench's raw client speaks ws:// only")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: self, host, port, local_addr=(source, 0) if source else None
            )
            await self.upgraded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one)
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(1006)

    # --- receiving -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end].decode("latin-1"), self._head[end + 4 :]
            self._head = b""
            status = int(head.split(" ", 2)[1])
            if status != 101:
                self.upgraded.set_exception(HandshakeError(status, head))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded.set_result(None)
            if not data:
                return
        buf = self._buf + data if self._buf else data
        pos, n = 0, len(buf)
        on_message = self.on_message
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            if b1 & 0x80:  # a masked server frame: not allowed, but cheap to read
                start += 4
            end = start + length
            if end > n:
                break
            payload = buf[start:end]
            if b1 & 0x80:
                key = buf[start - 4 : start]
                repeated = (key * (length // 4 + 1))[:length]
                payload = (
                    int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
                ).to_bytes(length, "big")
            pos = end
            opcode = b0 & 0x0F
            if opcode in (OP_TEXT, OP_BINARY):
                if b0 & 0x80:
                    on_message(payload, opcode)
                else:
                    self._fragment_op = opcode
                    self._fragments = [payload]
            elif opcode == OP_CONT:
                self._fragments.append(payload)
                if b0 & 0x80:
                    on_message(b"".join(self._fragments), self._fragment_op)
                    self._fragments = []
            elif opcode == OP_PING:
                self._write(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._write(OP_CLOSE, payload[:2])
                if not self.closed.done():
                    self.closed.set_result(code)
                assert self.transport is not None
                self.transport.close()
                return
        self._buf = buf[pos:] if pos < n else b""

    # --- sending -------------------------------------------------------------------------

    def _write(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionError("socket closed")
        transport.write(_masked(opcode, payload))

    def send_text(self, text: str | bytes) -> None:
        self._write(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data: bytes) -> None:
        self._write(OP_BINARY, data)

    async def close(self, code: int = 1000) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._write(OP_CLOSE, code.to_bytes(2, "big"))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        except TimeoutError:
            transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
