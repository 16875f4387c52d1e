"""The listening socket as `python -m peerspark_rt serve` runs it, against connections that never
finish: silent ones, half-sent headers, bodies that stop, and one address opening too many."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from peerspark_rt.app import GuardedSite, build_app, make_runner
from tests import rawhttp
from tests.conftest import make_settings

Node = Callable[..., Any]


@pytest.fixture
async def node(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Node]:
    """Start the app on a real socket with the node's own site and runner."""
    runners = []

    async def start(**overrides: Any) -> tuple[str, int]:
        settings = make_settings(pg_dsn, tmp_path, **overrides)
        runner = make_runner(build_app(settings), settings)
        await runner.setup()
        runners.append(runner)
        site = GuardedSite(runner, settings, "127.0.0.1", 0)
        await site.start()
        return "127.0.0.1", site.port

    yield start
    for runner in runners:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[float, bytes]:
    """How long until the server closed the connection, and what it sent before."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), seconds)
    return time.monotonic() - started, data


async def test_a_silent_connection_is_closed_after_the_header_timeout(node: Node) -> None:
    host, port = await node(http_header_timeout=0.5)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        took, data = await closed_within(reader, 5)
    finally:
        writer.close()
    assert data == b""
    assert took < 2


async def test_half_sent_headers_are_closed_after_the_header_timeout(node: Node) -> None:
    host, port = await node(http_header_timeout=0.5)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        for _ in range(3):  # trickling more header bytes does not buy more time
            await asyncio.sleep(0.2)
            writer.write(b"a")
            await writer.drain()
        took, _ = await closed_within(reader, 5)
    finally:
        writer.close()
    assert took < 2


async def test_a_body_that_stops_arriving_is_a_408(node: Node) -> None:
    host, port = await node(http_body_timeout=0.5)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"email": "a'
        )
        await writer.drain()
        took, data = await closed_within(reader, 5)
    finally:
        writer.close()
    response = rawhttp.parse(data)
    assert response.status == 408, data
    assert response.error_code == "request_timeout"
    assert took < 3


async def test_one_address_holds_a_bounded_number_of_connections(node: Node) -> None:
    host, port = await node(http_max_connections_per_address=4, http_header_timeout=10)
    idle = [await asyncio.open_connection(host, port) for _ in range(4)]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        _, data = await closed_within(reader, 5)
        writer.close()
        refused = rawhttp.parse(data)
        assert refused.status == 503
        assert refused.error_code == "too_many_connections"
        # one of them goes away: there is room again
        idle.pop()[1].close()
        await asyncio.sleep(0.1)
        ok = await rawhttp.send(host, port, "GET", "/health")
        assert ok.status == 200
    finally:
        for _, w in idle:
            w.close()


async def test_honest_clients_are_unaffected(node: Node) -> None:
    host, port = await node(http_header_timeout=0.5, http_max_connections_per_address=4)
    for _ in range(10):  # more requests than the cap, one connection at a time
        resp = await rawhttp.send(host, port, "GET", "/health")
        assert resp.status == 200
    # a keep-alive connection serves several requests, across the header timeout
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(3):
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(0.4)
    finally:
        writer.close()
