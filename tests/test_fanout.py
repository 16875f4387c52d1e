"""Fan-out's straight sends (actors/_fanout.c) and the way back to the transport: a room frame
goes to a socket with one send(2) while nothing waits for that socket, and to the transport or
the socket's queue otherwise, so a reader that falls behind still gets everything, in order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from peerspark_rt.actors import room as room_module
from peerspark_rt.actors._fanout import send_all
from tests.helpers import messages_from, open_session
from tests.wsraw import RawSocket


class Member:
    def __init__(self, fd: int) -> None:
        self.fd = fd


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(3)]
    for ours, _ in made:
        ours.setblocking(False)
    yield made
    for ours, theirs in made:
        ours.close()
        theirs.close()


def test_every_clear_member_gets_the_frame_whole(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    members = [Member(ours.fileno()) for ours, _ in pairs]
    assert send_all(members, b"frame") == []
    assert [theirs.recv(100) for _, theirs in pairs] == [b"frame"] * 3


def test_a_member_that_is_not_clear_is_not_tried(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    waiting = Member(-1)
    members = [Member(pairs[0][0].fileno()), waiting, Member(pairs[2][0].fileno())]
    assert send_all(members, b"frame") == [(waiting, -1)]
    pairs[1][1].setblocking(False)
    with pytest.raises(BlockingIOError):
        pairs[1][1].recv(100)  # nothing went to it
    assert pairs[2][1].recv(100) == b"frame"  # and its neighbours got theirs


def test_a_full_socket_says_how_much_went(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    full, _ = pairs[0]
    while True:  # fill its buffers
        try:
            full.send(b"x" * 65536)
        except BlockingIOError:
            break
    member, clear = Member(full.fileno()), Member(pairs[1][0].fileno())
    frame = b"y" * 200_000
    left = send_all([member, clear], frame)
    assert len(left) == 1
    assert left[0][0] is member
    assert 0 <= left[0][1] < len(frame)


def test_a_peer_that_is_gone_fails_only_its_own_send(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    pairs[0][1].close()  # the reader went away: a send gets EPIPE, not a SIGPIPE
    gone, clear = Member(pairs[0][0].fileno()), Member(pairs[1][0].fileno())
    assert send_all([gone, clear], b"frame") == [(gone, 0)]
    assert pairs[1][1].recv(100) == b"frame"


def test_what_is_not_a_member_or_a_frame_is_refused() -> None:
    with pytest.raises(AttributeError):
        send_all([object()], b"frame")  # type: ignore[type-var]
    with pytest.raises(TypeError):
        send_all([], "frame")  # type: ignore[arg-type]


@pytest.mark.parametrize("way", ["send_all", "python"])
async def test_a_reader_that_falls_behind_then_reads_gets_everything_in_order(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    if way == "python":  # a node built without a C compiler
        monkeypatch.setattr(room_module, "send_all", None)
    api = await make_client(
        ws_outbound_bytes=32 * 1024 * 1024, ws_send_rate=10_000, ws_send_burst=10_000
    )
    sender, reader_user = await api.register(), await api.register()
    room = await open_session(api, sender, reader_user)
    host, port = api.client.host, api.client.port
    reader = await asyncio.to_thread(
        RawSocket, host, port, f"/ws?token={reader_user.token}", rcvbuf=4096
    )
    reader.send_json({"t": "join", "room": room})
    _, payload = await asyncio.to_thread(reader.read_frame)
    assert orjson.loads(payload)["t"] == "joined"
    s = await api.live(sender)
    await s.join(room)

    # ~6 MB while the reader reads nothing: more than the kernel buffers between server and
    # client hold (4 MB at most for the server's send buffer here), so the sends come back
    # short, the transport buffers, and the socket's frames queue until it reads again.
    body = "x" * 7900
    count = 760
    for i in range(count):
        await s.send(room, f"{i}:{body}")
    await messages_from(s, count, timeout=30)  # (the sender's own copies: all fanned out)

    seqs: list[int] = []
    reader.sock.settimeout(20)
    while len(seqs) < count:
        opcode, payload = await asyncio.to_thread(reader.read_frame)
        assert opcode == 1, (opcode, payload)  # not closed
        frame = orjson.loads(payload)
        assert frame["t"] != "resync", frame  # nothing was dropped
        if frame["t"] == "message":
            seqs.append(frame["seq"])
    reader.close()
    assert seqs == list(range(1, count + 1))
