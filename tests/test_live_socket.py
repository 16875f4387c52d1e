"""/ws after its handshake is read by `LiveSocket`, not aiohttp: the websocket rules aiohttp
enforced, frame by frame on the wire (fragments, pings, close handshake, protocol errors, UTF-8,
the heartbeat), the bytes a client sends right behind its upgrade request, and the node's
per-address connection count once sockets end."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from peerspark_rt.actors.hub import HUB
from peerspark_rt.http.live_socket import LiveSocket
from tests.helpers import User, open_session
from tests.nodes import Node, node_env, start_node, user_with_room
from tests.wsraw import RawSocket, encode_frame

HEARTBEAT = 1.0


class World:
    def __init__(self, node: Node, user: User, room: str) -> None:
        self.node, self.user, self.room = node, user, room

    def socket(self) -> RawSocket:
        sock = RawSocket(self.node.host, self.node.port, f"/ws?token={self.user.token}")
        sock.sock.settimeout(10)
        assert sock.status == 101
        return sock


@pytest.fixture(scope="module")
def world(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = start_node(
        node_env(
            pg_dsn,
            tmp_path_factory.mktemp("live-socket"),
            WS_HEARTBEAT=str(HEARTBEAT),
            WS_MAX_MESSAGE_BYTES="4096",
            HTTP_MAX_CONNECTIONS_PER_ADDRESS="40",
        )
    )

    try:
        user, room = user_with_room(node)
        yield World(node, user, room)
    finally:
        node.stop()


def _until(sock: RawSocket, want: str) -> dict[str, Any]:
    while True:
        opcode, payload = sock.read_frame()
        assert opcode != 8, f"closed: {payload!r}"
        if opcode == 1:
            frame: dict[str, Any] = orjson.loads(payload)
            if frame.get("t") == want:
                return frame


def _close_code(sock: RawSocket) -> int | None:
    """The code of the server's close frame (None: the connection ended without one)."""
    try:
        while True:
            opcode, payload = sock.read_frame()
            if opcode == 8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005
    except ConnectionError:
        return None


def _ended(sock: RawSocket) -> bool:
    try:
        return sock.sock.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_fragments_pings_and_a_pipelined_first_frame(world: World) -> None:
    sock = RawSocket.__new__(RawSocket)
    sock.sock = socket.create_connection((world.node.host, world.node.port))
    sock.sock.settimeout(10)
    request = (
        f"GET /ws?token={world.user.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    join = orjson.dumps({"t": "join", "room": world.room})
    # the first frame rides in the same packet as the upgrade request
    sock.sock.sendall(request + encode_frame(1, join))
    sock.buffer = b""
    while b"\r\n\r\n" not in sock.buffer:
        sock.buffer += sock.sock.recv(4096)
    head, _, sock.buffer = sock.buffer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's example key and answer
    assert _until(sock, "joined")["room"] == world.room
    # a ping (with a payload) between the fragments of one text message
    ping = orjson.dumps({"t": "ping", "id": "frag"})
    sock.sock.sendall(encode_frame(1, ping[:5], fin=False))
    sock.sock.sendall(encode_frame(9, b"hello"))
    sock.sock.sendall(encode_frame(0, ping[5:9], fin=False) + encode_frame(0, ping[9:]))
    opcode, payload = sock.read_frame()
    while opcode == 1:  # (presence and such, sent since the join)
        opcode, payload = sock.read_frame()
    assert (opcode, payload) == (0xA, b"hello")
    assert _until(sock, "pong")["id"] == "frag"
    # a close frame from the client: answered with 1000, then the connection ends
    sock.sock.sendall(encode_frame(8, struct.pack("!H", 1000) + b"bye"))
    assert _close_code(sock) == 1000
    assert _ended(sock)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (encode_frame(1, b'{"t":"ping","id":"\xff"}'), 1007),  # text that is not UTF-8
        (encode_frame(1, b"{}", rsv=0x40), 1002),  # a reserved bit (no extension was agreed)
        (encode_frame(3, b"x"), 1002),  # an opcode RFC 6455 does not define
        (encode_frame(9, b"x", fin=False), 1002),  # a fragmented control frame
        (encode_frame(0, b"x"), 1002),  # a continuation of nothing
        (encode_frame(8, struct.pack("!H", 1004)), 1002),  # a reserved close code
        (encode_frame(1, b"x" * 5000), 1009),  # over WS_MAX_MESSAGE_BYTES
        (encode_frame(1, b"x" * 3000, fin=False) + encode_frame(0, b"x" * 3000), 1009),  # in pieces
    ],
    # (ids by name: the frames carry random masks, and every test process must collect the
    # same ids)
    ids=[
        "invalid-utf8",
        "reserved-bit",
        "unknown-opcode",
        "fragmented-control",
        "lone-continuation",
        "reserved-close-code",
        "too-big",
        "too-big-in-pieces",
    ],
)
def test_protocol_errors_close_with_their_code(world: World, frame: bytes, code: int) -> None:
    sock = world.socket()
    sock.sock.sendall(frame)
    assert _close_code(sock) == code
    sock.close()


def test_a_big_frame_in_small_pieces_is_read_whole(world: World) -> None:
    sock = world.socket()
    body = "y" * 3000
    frame = encode_frame(1, orjson.dumps({"t": "ping", "id": body}))
    for i in range(0, len(frame), 7):
        sock.sock.sendall(frame[i : i + 7])
    assert _until(sock, "pong")["id"] == body
    sock.close()


def test_a_silent_socket_is_pinged_then_closed(world: World) -> None:
    """It does not answer the heartbeat's ping: the connection ends within 1.5 heartbeats."""
    sock = world.socket()
    started = time.monotonic()
    opcode, _ = sock.read_frame()
    assert opcode == 9
    assert _close_code(sock) is None  # cut, no close frame (aiohttp's 1006 as well)
    assert time.monotonic() - started < HEARTBEAT * 1.5 + 0.5
    sock.close()


def test_a_socket_that_answers_pings_stays(world: World) -> None:
    sock = world.socket()
    deadline = time.monotonic() + HEARTBEAT * 3
    pings = 0
    while time.monotonic() < deadline:
        opcode, payload = sock.read_frame()
        if opcode == 9:
            pings += 1
            sock.sock.sendall(encode_frame(0xA, payload))
    assert pings >= 2
    sock.send_json({"t": "ping", "id": "alive"})
    assert _until(sock, "pong")["id"] == "alive"
    sock.close()


def test_ended_sockets_give_back_their_place_in_the_address_count(world: World) -> None:
    """HTTP_MAX_CONNECTIONS_PER_ADDRESS counts a socket taken off aiohttp until it ends."""
    for _ in range(3):
        socks = [world.socket() for _ in range(30)]
        for sock in socks:
            sock.send_json({"t": "ping", "id": "n"})
            assert _until(sock, "pong")["id"] == "n"
        for sock in socks:
            sock.close()
        time.sleep(0.3)


def test_a_flood_of_frames_is_handled_whole_and_in_order(world: World) -> None:
    """More than the socket lets wait at once (reading pauses, then resumes): every frame is
    answered, in the order sent."""
    sock = world.socket()
    count = 3000
    sock.sock.sendall(
        b"".join(encode_frame(1, orjson.dumps({"t": "ping", "id": f"f{i}"})) for i in range(count))
    )
    got = [_until(sock, "pong")["id"] for _ in range(count)]
    assert got == [f"f{i}" for i in range(count)]
    sock.close()


async def test_aiohttp_keeps_nothing_of_a_live_socket(make_client: Any) -> None:
    """Once the handshake is answered the connection is the LiveSocket's alone: aiohttp's
    server holds no handler for it (nor, through it, the request, parser and task), and the
    hub's connection writes to the very transport the socket reads."""
    api = await make_client()
    user = await api.register()
    room = await open_session(api, user)
    server = api.client.server.runner.server
    before = len(server.connections)  # (the REST client's keep-alive connection)
    live = await api.live(user)
    await live.join(room)
    await live.ping()
    hub = api.client.server.app[HUB]
    (conn,) = hub.connections
    assert isinstance(conn.ws, LiveSocket)
    assert conn.transport.get_protocol() is conn.ws
    assert conn.ws.transport is conn.transport
    assert len(server.connections) <= before
    await live.close()
    for _ in range(50):
        if not hub.connections:
            break
        await asyncio.sleep(0.02)
    assert not hub.connections


def test_text_that_is_not_ascii_does_not_wedge_reading(world: World) -> None:
    """What waits is counted in and out in the same unit: a socket that has sent a lot of
    text with multi-byte characters (over its lifetime, never much at once) is still read."""
    sock = world.socket()
    body = "\u20ac" * 1200  # 3,600 bytes of UTF-8, 1,200 characters
    for i in range(80):  # ~290 KB in all, one message at a time
        sock.send_json({"t": "ping", "id": f"{i}{body}"})
        assert _until(sock, "pong")["id"] == f"{i}{body}", i
    sock.close()


async def test_empty_continuation_frames_do_not_grow_memory(make_client: Any) -> None:
    """A message sent as endless empty fragments never reaches WS_MAX_MESSAGE_BYTES: what its
    fragments cost while it is incomplete is bounded by its bytes, as with aiohttp (which
    appended them to one buffer), not by how many frames there were."""
    api = await make_client()
    user = await api.register()
    host, port = api.client.server.host, api.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /ws?token={user.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    empty = encode_frame(0, b"", fin=False)
    tracemalloc.start()
    try:
        writer.write(encode_frame(1, b"x", fin=False))
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            writer.write(empty * 10_000)
            await writer.drain()
        await asyncio.sleep(0.5)  # (all of it read)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        writer.close()
    # 200,000 frames, 1.2 MB on the wire: a list slot each would be 1.6 MB
    assert grown < 400_000, grown
