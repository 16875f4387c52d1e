"""The bench's C receiver (bench/lean/receiver.c) against a scripted websocket server that
writes frames the awkward ways a real one may: several in one write, one across writes, a
fragmented message, a masked frame, a ping, a duplicate, a gap. It must count exactly what the
Python sink would (bench/worker.py) and answer the ping."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import time
from pathlib import Path

import pytest

from bench import lean, wire
from bench.stats import Histogram
from tests.wsraw import encode_frame

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

ROOM = "session:abc"


def frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True, mask: bool = False) -> bytes:
    """A frame as the scripted server sends it (unmasked unless `mask`: the receiver must
    read a masked one too)."""
    return encode_frame(opcode, payload, fin=fin, masked=mask)


def one_listener(kind: wire.Kind, url: str, client: wire.ClientSpec) -> wire.WsPlan:
    """A plan of one client that only listens (what the receiver is given)."""
    return wire.WsPlan.listening(kind, url, [client], connect_concurrency=4)


def message(seq: int, *, padding: int = 100) -> bytes:
    body = f"{time.time():.6f}|7|{seq}|" + "x" * padding
    return json.dumps(
        {
            "t": "message",
            "room": ROOM,
            "seq": seq,
            "id": "m",
            "sender": {"id": "a", "username": 'quo"te "body": "9"'},
            "kind": "text",
            "body": body,
        },
        separators=(",", ":"),
    ).encode()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    assert b1 & 0x80, "client frames must be masked"
    key = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.pong: asyncio.Future[bytes] | None = None
        self.go = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pong = asyncio.get_running_loop().create_future()
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.requests.append(head)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        opcode, join = await read_frame(reader)
        assert opcode == 0x1
        assert json.loads(join) == {"t": "join", "room": ROOM}
        # a big joined frame (presence of many members), split over two writes
        joined = json.dumps(
            {"t": "joined", "room": ROOM, "lastSeq": 5, "presence": [{"u": "x" * 50}] * 400}
        ).encode()
        data = frame(joined)
        writer.write(data[:7])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(data[7:])
        await self.go.wait()
        # 6 and 7 in one write, then 7 again (a duplicate), 9 (a gap), 8 (late: a duplicate
        # by arithmetic), 10 fragmented and split mid-header, 11 masked, a ping
        writer.write(frame(message(6)) + frame(message(7)) + frame(message(7)))
        writer.write(frame(message(9)) + frame(message(8)))
        ten = message(10, padding=300)
        pieces = frame(ten[:50], fin=False) + frame(ten[50:], opcode=0x0)
        writer.write(pieces[:1])
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(pieces[1:])
        writer.write(frame(message(11), mask=True) + frame(b"are you there", opcode=0x9))
        await writer.drain()
        opcode, payload = await read_frame(reader)
        assert self.pong is not None
        self.pong.set_result(payload if opcode == 0xA else b"opcode %d" % opcode)
        await reader.read()  # until the receiver hangs up
        writer.close()


async def test_counts_what_the_python_sink_would(tmp_path: Path) -> None:
    binary = lean.build(tmp_path)
    assert isinstance(binary, Path), binary
    script = ScriptedServer()
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    plan = one_listener(
        "product",
        f"ws://127.0.0.1:{port}/ws",
        wire.ClientSpec(token="tok-1", name="u", rooms=[ROOM]),
    )
    receiver = lean.LeanReceiver(str(binary), plan, plan.clients)
    try:
        ready = await asyncio.wait_for(receiver.bring_up(), 10)
        assert (ready.connected, ready.failed, ready.errors) == (1, 0, {})
        assert ready.connect.n == ready.join.n == 1
        assert "Authorization: Bearer tok-1" in script.requests[0]
        await receiver.go(time.time())
        script.go.set()
        assert script.pong is not None
        assert await asyncio.wait_for(script.pong, 10) == b"are you there"
        done = await asyncio.wait_for(receiver.drain({ROOM: 11}, 1.0), 10)
        ticks = receiver.take_ticks()
        delivered = done.deliveries + sum(t.deliveries for t in ticks)
        assert delivered == 7  # every message frame, duplicates included
        latency = Histogram.from_wire(done.latency)
        for tick in ticks:
            latency.merge(Histogram.from_wire(tick.latency))
        assert latency.n == 7
        assert 0 <= latency.min <= latency.max < 5
        # distinct and in order: 6, 7, 9, 10, 11 of 6..11 -> 8 is missing (it came late)
        assert (done.missing, done.extra) == (1, 0)
        assert (done.duplicates, done.gaps, done.resync) == (2, 1, 0)
        assert done.errors == {}
        assert receiver.cpu_seconds() >= 0
    finally:
        await receiver.close()
        server.close()
        await server.wait_closed()


async def test_speaks_engine_io_to_the_socketio_peer(tmp_path: Path) -> None:
    binary = lean.build(tmp_path)
    assert isinstance(binary, Path), binary
    heard: list[bytes] = []
    go = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("GET /socket.io/?EIO=4&transport=websocket ")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        writer.write(frame(b'0{"sid":"s1","pingInterval":25000}'))
        heard.append((await read_frame(reader))[1])  # CONNECT
        writer.write(frame(b'40{"sid":"n1"}'))
        heard.append((await read_frame(reader))[1])  # join, with an ack id
        ack = heard[-1][2 : heard[-1].index(b"[")]
        writer.write(frame(b"43" + ack + b'[{"t":"joined","room":"room-0","lastSeq":3}]'))
        await go.wait()
        for seq in (4, 5, 6):
            payload = json.loads(message(seq))
            payload["room"] = "room-0"
            event = json.dumps(["message", payload], separators=(",", ":")).encode()
            writer.write(frame(b"42" + event))
        writer.write(frame(b"2"))
        heard.append((await read_frame(reader))[1])  # pong
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    plan = one_listener(
        "socketio",
        f"http://127.0.0.1:{port}",
        wire.ClientSpec(token="", name="user7", rooms=["room-0"]),
    )
    receiver = lean.LeanReceiver(str(binary), plan, plan.clients)
    try:
        ready = await asyncio.wait_for(receiver.bring_up(), 10)
        assert (ready.connected, ready.failed) == (1, 0), ready.errors
        await receiver.go(time.time())
        go.set()
        done = await asyncio.wait_for(receiver.drain({"room-0": 6}, 2.0), 10)
        assert (done.missing, done.duplicates, done.gaps, done.errors) == (0, 0, 0, {})
        assert done.deliveries + sum(t.deliveries for t in receiver.take_ticks()) == 3
        assert heard[0] == b'40{"user":"user7"}'
        assert heard[1].startswith(b"42")
        assert heard[1].endswith(b'["join",{"room":"room-0"}]')
        assert heard[2] == b"3"
    finally:
        await receiver.close()
        server.close()
        await server.wait_closed()
