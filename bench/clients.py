"""The simulated clients: one class per kind of server, all with the same small interface.

* `LiveProductClient` is the product's own `peerspark_rt.client.LiveClient` (reconnect, resume
  with `since`, resend unacknowledged messages with their cid, drop duplicates), with frames
  handed to the bench inline instead of through its queue. Burst runs use it: coming back
  after a drop is what they measure.
* `LeanProductClient`, `ProductSocketIOClient` (the product's /socket.io/ with the spec's
  events), `SocketIOClient` and `EchoClient` sit on `bench.rawws` (frames parsed
  in the protocol callback, no task per message), so that the load generator, with one core,
  stays faster than the servers it measures. `SocketIOClient` speaks Engine.IO 4 / Socket.IO 5
  text frames directly ("40" connect, `42[event,data]` events, `42<id>[...]`/`43<id>[...]`
  acks, "2"/"3" ping/pong). `EchoClient` sends the product's `send` frame to the bare echo
  peer (`bench/peers/echo.py`) and gets the same bytes back from the room.

Every received chat message goes to a `Sink` (the worker's tally) as (client, room, seq, body);
bodies start with the sender's `time.time()` so latency is measured on one clock.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient

from .rawws import RawWebSocket

TS_WIDTH = 17  # f"{time.time():.6f}" is 17 characters until the year 2286


def message_body(sender: int, n: int, size: int) -> str:
    """`<send time>|<sender>|<n>|` padded to `size` characters."""
    head = f"{time.time():.6f}|{sender}|{n}|"
    return head + "x" * (size - len(head)) if size > len(head) else head


def body_sender(body: str) -> tuple[int, int]:
    """(sender, n) from a bench message body."""
    _, sender, n, _ = body.split("|", 3)
    return int(sender), int(n)


class Sink(Protocol):
    def message(self, client: BenchClient, room: str, seq: int, body: str) -> None: ...

    def joined(self, client: BenchClient, room: str, last_seq: int) -> None: ...

    def note(self, what: str) -> None: ...


class BenchClient:
    """What the worker needs from a client. `seq` is 0 where the server has no sequence."""

    index: int
    rooms: list[str]

    async def connect(self) -> None:
        raise NotImplementedError

    async def join(self, room: str) -> int:
        """Enter `room`; returns the room's last sequence at the time."""
        raise NotImplementedError

    async def send(self, room: str, body: str, cid: str) -> int:
        """Send a message; returns its sequence once the server acknowledged it (0: no acks)."""
        raise NotImplementedError

    async def drop(self) -> None:
        """Lose the connection and come back by itself (only the product client can)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    @property
    def duplicates(self) -> int:
        return 0


# --- the product ---------------------------------------------------------------------------


class LiveProductClient(BenchClient):
    def __init__(
        self,
        index: int,
        url: str,
        token: str,
        rooms: list[str],
        sink: Sink,
        session: aiohttp.ClientSession,
        *,
        binary: bool = False,
        ack_timeout: float = 30,
    ) -> None:
        self.index = index
        self.rooms = rooms
        self.sink = sink
        self.ack_timeout = ack_timeout
        self.live = LiveClient(
            url, token, binary=binary, session=session, reconnect=True, on_frame=self._on_frame
        )

    def _on_frame(self, frame: protocol.ServerFrame) -> None:
        # The hot path of the whole load generator: one call per delivered message.
        if type(frame) is protocol.Message:
            self.sink.message(self, frame.room, frame.seq, frame.body)
        elif type(frame) is protocol.Joined:
            self.sink.joined(self, frame.room, frame.last_seq)
        elif type(frame) is protocol.Resync:
            self.sink.note("resync")
        elif type(frame) is protocol.Error:
            self.sink.note(f"error:{frame.code}")

    async def connect(self) -> None:
        await self.live.connect()

    async def join(self, room: str) -> int:
        return (await self.live.join(room)).last_seq

    async def send(self, room: str, body: str, cid: str) -> int:
        ack = await self.live.send(room, body, cid=cid, timeout=self.ack_timeout)
        return ack.seq

    async def drop(self) -> None:
        await self.live.drop()

    async def close(self) -> None:
        await self.live.close()

    @property
    def duplicates(self) -> int:
        return self.live.duplicates


# --- lean clients on the raw protocol --------------------------------------------------------


class Refused(Exception):
    """The server answered a request with an error."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class _ProductFrame(msgspec.Struct, rename="camel"):
    """The fields of a server frame the bench reads (everything else is skipped)."""

    t: str
    room: str | None = None
    seq: int = 0
    body: str = ""
    cid: str | None = None
    last_seq: int = 0
    code: str = ""
    message: str = ""
    ref: str | None = None


_product_json = msgspec.json.Decoder(_ProductFrame)
_product_msgpack = msgspec.msgpack.Decoder(_ProductFrame)


class LeanProductClient(BenchClient):
    def __init__(
        self,
        index: int,
        url: str,
        token: str,
        rooms: list[str],
        sink: Sink,
        *,
        binary: bool = False,
        ack_timeout: float = 30,
        source: str | None = None,
    ) -> None:
        self.index = index
        self.rooms = rooms
        self.sink = sink
        self.source = source
        self.url = url + ("?format=msgpack" if binary else "")
        self.token = token
        self.binary = binary
        self.ack_timeout = ack_timeout
        self._ws: RawWebSocket | None = None
        self._decode = (_product_msgpack if binary else _product_json).decode
        self._encode = (protocol.msgpack_encoder if binary else protocol.json_encoder).encode
        self._acks: dict[str, asyncio.Future[int]] = {}
        self._joins: dict[str, asyncio.Future[int]] = {}

    async def connect(self) -> None:
        self._ws = await RawWebSocket.connect(
            self.url,
            self._on_message,
            {"Authorization": f"Bearer {self.token}"},
            source=self.source,
        )

    def _on_message(self, payload: bytes, opcode: int) -> None:
        frame = self._decode(payload)
        t = frame.t
        if t == "message":
            assert frame.room is not None
            self.sink.message(self, frame.room, frame.seq, frame.body)
        elif t == "ack":
            future = self._acks.pop(frame.cid or "", None)
            if future is not None and not future.done():
                future.set_result(frame.seq)
        elif t == "joined":
            assert frame.room is not None
            self.sink.joined(self, frame.room, frame.last_seq)
            join = self._joins.pop(frame.room, None)
            if join is not None and not join.done():
                join.set_result(frame.last_seq)
        elif t == "error":
            refused = Refused(frame.code, frame.message)
            waiter = self._acks.pop(frame.ref or "", None) or self._joins.pop(
                frame.room or "", None
            )
            if waiter is not None and not waiter.done():
                waiter.set_exception(refused)
            else:
                self.sink.note(f"error:{frame.code}")
        elif t == "resync":
            self.sink.note("resync")

    def _write(self, frame: protocol.ClientFrame) -> None:
        assert self._ws is not None
        data = self._encode(frame)
        if self.binary:
            self._ws.send_binary(data)
        else:
            self._ws.send_text(data)

    async def join(self, room: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._joins[room] = future
        self._write(protocol.Join(room=room))
        return await asyncio.wait_for(future, self.ack_timeout)

    async def send(self, room: str, body: str, cid: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks[cid] = future
        self._write(protocol.Send(room=room, cid=cid, body=body))
        return await asyncio.wait_for(future, self.ack_timeout)

    async def drop(self) -> None:
        raise NotImplementedError("the lean client does not resume: use --client live")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


class _Lite(msgspec.Struct):
    """The fields of a chat message the bench reads from the peers."""

    room: str = ""
    body: str = ""
    seq: int = 0


class _Ack(msgspec.Struct, rename="camel"):
    """An acknowledgement from the Socket.IO peer: `lastSeq` for a join, `seq` for a send."""

    t: str = ""
    last_seq: int = 0
    seq: int = 0
    code: str = ""
    message: str = ""


_sio_event = msgspec.json.Decoder(tuple[str, _Lite])
_sio_ack = msgspec.json.Decoder(tuple[_Ack])
_json = msgspec.json.Encoder()


AckT = TypeVar("AckT")


class _EngineIOClient(BenchClient, Generic[AckT]):
    """Socket.IO 5 over Engine.IO 4 text frames on one raw websocket: the open, CONNECT, ping
    and acknowledgement packets. Subclasses say what the CONNECT carries, what an event means
    and how an acknowledgement reads."""

    def __init__(
        self, index: int, url: str, rooms: list[str], sink: Sink, *, ack_timeout: float
    ) -> None:
        self.index = index
        self.rooms = rooms
        self.sink = sink
        self.url = url
        self.ack_timeout = ack_timeout
        self._ws: RawWebSocket | None = None
        self._ids = itertools.count(1)
        self._acks: dict[int, asyncio.Future[AckT]] = {}
        self._connected: asyncio.Future[None] | None = None

    def _connect_data(self) -> dict[str, Any]:
        raise NotImplementedError

    def _on_event(self, packet: memoryview) -> None:
        raise NotImplementedError

    def _settle(self, future: asyncio.Future[AckT], packet: memoryview) -> None:
        raise NotImplementedError

    async def connect(self) -> None:
        self._connected = asyncio.get_running_loop().create_future()
        # The server speaks first (the Engine.IO open packet): hold the socket before opening.
        self._ws = RawWebSocket(self._on_message)
        await self._ws.open(self.url)
        await asyncio.wait_for(self._connected, 30)

    def _on_message(self, payload: bytes, opcode: int) -> None:
        if payload[:2] == b"42":
            self._on_event(memoryview(payload)[2:])
        elif payload[:2] == b"43":
            cut = 2
            while 48 <= payload[cut] <= 57:
                cut += 1
            future = self._acks.pop(int(payload[2:cut]), None)
            if future is not None and not future.done():
                self._settle(future, memoryview(payload)[cut:])
        elif payload == b"2":
            assert self._ws is not None
            self._ws.send_text(b"3")
        elif payload[:1] == b"0":  # Engine.IO open: connect to the default namespace
            assert self._ws is not None
            self._ws.send_text(b"40" + _json.encode(self._connect_data()))
        elif payload[:2] == b"40":
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(None)
        elif payload[:2] == b"44" and self._connected is not None and not self._connected.done():
            self._connected.set_exception(Refused("connect_error", payload.decode()[:200]))

    async def _emit(self, event: str, data: dict[str, Any]) -> AckT:
        assert self._ws is not None
        ident = next(self._ids)
        future: asyncio.Future[AckT] = asyncio.get_running_loop().create_future()
        self._acks[ident] = future
        self._ws.send_text(f"42{ident}".encode() + _json.encode([event, data]))
        return await asyncio.wait_for(future, self.ack_timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


class SocketIOClient(_EngineIOClient[_Ack]):
    """The Node Socket.IO peer's client: `join` and `send` with acknowledgements, `message`
    events."""

    def __init__(
        self,
        index: int,
        base_url: str,
        name: str,
        rooms: list[str],
        sink: Sink,
        *,
        ack_timeout: float = 30,
    ) -> None:
        base = base_url.rstrip("/").replace("http", "ws", 1)
        url = base + "/socket.io/?EIO=4&transport=websocket"
        super().__init__(index, url, rooms, sink, ack_timeout=ack_timeout)
        self.name = name

    def _connect_data(self) -> dict[str, Any]:
        return {"user": self.name}

    def _on_event(self, packet: memoryview) -> None:
        name, lite = _sio_event.decode(packet)
        if name == "message":
            self.sink.message(self, lite.room, lite.seq, lite.body)

    def _settle(self, future: asyncio.Future[_Ack], packet: memoryview) -> None:
        ack = _sio_ack.decode(packet)[0]
        if ack.t == "error":
            future.set_exception(Refused(ack.code, ack.message))
        else:
            future.set_result(ack)

    async def join(self, room: str) -> int:
        ack = await self._emit("join", {"room": room})
        self.sink.joined(self, room, ack.last_seq)
        return ack.last_seq

    async def send(self, room: str, body: str, cid: str) -> int:
        ack = await self._emit("send", {"room": room, "cid": cid, "body": body})
        return ack.seq

    async def drop(self) -> None:
        raise NotImplementedError("the Socket.IO peer has no resume: burst runs the product only")


class _SpecMessage(msgspec.Struct, rename="camel"):
    """The fields of the product's `session:message` event the bench reads."""

    session_id: str = ""
    message: str = ""
    seq: int = 0


class _SpecAck(msgspec.Struct, rename="camel"):
    """An acknowledgement from the product's /socket.io/: `{ok, lastSeq | seq | code}`."""

    ok: bool = False
    last_seq: int = 0
    seq: int = 0
    code: str = ""
    message: str = ""


_spec_event = msgspec.json.Decoder(tuple[str, _SpecMessage])
_spec_ack = msgspec.json.Decoder(tuple[_SpecAck])


class ProductSocketIOClient(_EngineIOClient[_SpecAck]):
    """The product's /socket.io/ as an app written against the spec uses it: the token in
    the CONNECT packet, `session:join` and `session:message` with acknowledgements, and
    `session:message` events."""

    def __init__(
        self,
        index: int,
        ws_url: str,
        token: str,
        rooms: list[str],
        sink: Sink,
        *,
        ack_timeout: float = 30,
    ) -> None:
        url = ws_url.removesuffix("/ws") + "/socket.io/?EIO=4&transport=websocket"
        super().__init__(index, url, rooms, sink, ack_timeout=ack_timeout)
        self.token = token

    def _connect_data(self) -> dict[str, Any]:
        return {"token": self.token}

    def _on_event(self, packet: memoryview) -> None:
        name, msg = _spec_event.decode(packet)
        if name == "session:message":
            self.sink.message(self, "session:" + msg.session_id, msg.seq, msg.message)

    def _settle(self, future: asyncio.Future[_SpecAck], packet: memoryview) -> None:
        ack = _spec_ack.decode(packet)[0]
        if ack.ok:
            future.set_result(ack)
        else:
            future.set_exception(Refused(ack.code, ack.message))

    async def join(self, room: str) -> int:
        kind, _, ident = room.partition(":")
        if kind == "user":
            self.sink.joined(self, room, 0)  # joined at connect, as the spec's clients expect
            return 0
        event = "session:join" if kind == "session" else "pod:join"
        field = "sessionId" if kind == "session" else "podId"
        ack = await self._emit(event, {field: ident})
        self.sink.joined(self, room, ack.last_seq)
        return ack.last_seq

    async def send(self, room: str, body: str, cid: str) -> int:
        session = room.partition(":")[2]
        data = {"sessionId": session, "message": body, "cid": cid}
        ack = await self._emit("session:message", data)
        return ack.seq

    async def drop(self) -> None:
        raise NotImplementedError("the bench's Socket.IO client does not resume: use --client live")


_echo_frame = msgspec.json.Decoder(_Lite)


class EchoClient(BenchClient):
    def __init__(self, index: int, url: str, rooms: list[str], sink: Sink) -> None:
        if len(rooms) != 1:
            raise ValueError("an echo client is in exactly one room (given at connect)")
        self.index = index
        self.rooms = rooms
        self.sink = sink
        self.url = f"{url}?room={quote(rooms[0])}"
        self._ws: RawWebSocket | None = None

    async def connect(self) -> None:
        self._ws = await RawWebSocket.connect(self.url, self._on_message)

    def _on_message(self, payload: bytes, opcode: int) -> None:
        lite = _echo_frame.decode(payload)
        self.sink.message(self, lite.room, 0, lite.body)

    async def join(self, room: str) -> int:
        self.sink.joined(self, room, 0)
        return 0

    async def send(self, room: str, body: str, cid: str) -> int:
        assert self._ws is not None
        self._ws.send_text(
            protocol.json_encoder.encode(protocol.Send(room=room, cid=cid, body=body))
        )
        return 0

    async def drop(self) -> None:
        raise NotImplementedError("the echo peer has no resume: burst runs the product only")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
