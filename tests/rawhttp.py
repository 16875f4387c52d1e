"""HTTP/1.1 over a plain socket, for what client libraries hide: a body that arrives in pieces
with pauses between them (a slow or mobile link), chunked transfer encoding written by hand,
and connections that stall half-way."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error_code(self) -> str | None:
        if not self.headers.get("content-type", "").startswith("application/json"):
            return None
        body = self.json()
        return body.get("error", {}).get("code") if isinstance(body, dict) else None


def pieces(data: bytes, count: int) -> list[bytes]:
    """`data` cut into `count` pieces of about the same size (none empty)."""
    count = max(1, min(count, len(data)))
    step = -(-len(data) // count)
    return [data[i : i + step] for i in range(0, len(data), step)]


async def send(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Sequence[bytes] = (),
    pause: float = 0.05,
    chunked: bool = False,
    timeout: float = 30,
) -> RawResponse:
    """Send one request with its body written piece by piece, `pause` seconds apart (each piece
    a chunk of its own when `chunked`), and read the whole response (the server closes)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        all_headers = dict(headers or {})
        if chunked:
            all_headers["Transfer-Encoding"] = "chunked"
        elif body or method in ("POST", "PUT", "PATCH"):
            all_headers["Content-Length"] = str(sum(len(p) for p in body))
        head += [f"{k}: {v}" for k, v in all_headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        for piece in body:
            await asyncio.sleep(pause)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        if chunked:
            await asyncio.sleep(pause)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse(raw)


def parse(raw: bytes) -> RawResponse:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        rest = body
    return RawResponse(status, headers, rest)
