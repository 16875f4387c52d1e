"""A small asyncio client for PeerSpark RT's live socket.

    async with LiveClient("ws://127.0.0.1:8080/ws", token) as live:
        await live.join("session:<id>")
        ack = await live.send("session:<id>", "hello")       # waits for the stored ack
        async for frame in live:                              # every frame from the server
            if isinstance(frame, protocol.Message): ...

What it takes care of:
* `send` gives each message a client id and retries it with the same id after a reconnect
  until the server acknowledges it, so a message is stored once however often it is sent.
* It remembers the last sequence seen per room; after a reconnect (`reconnect=True`) it joins
  its rooms again with `since`, so nothing is missed, and it drops anything it already has.
* `resync` frames (the socket fell behind) are answered with a resume automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from . import protocol
from .protocol import (
    Acked,
    ClientFrame,
    Error,
    Join,
    Joined,
    Leave,
    Message,
    Ping,
    Pong,
    Resume,
    Resync,
    ScreenShare,
    Send,
    ServerFrame,
    Typing,
)

log = logging.getLogger(__name__)


class LiveError(Exception):
    """The server refused a request (an `error` frame)."""

    def __init__(self, frame: Error) -> None:
        super().__init__(f"{frame.code}: {frame.message}")
        self.frame = frame
        self.code = frame.code


class LiveClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        binary: bool = False,
        reconnect: bool = True,
        session: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
        max_queue: int = 100_000,
        fallback_urls: tuple[str, ...] = (),
        on_frame: Callable[[ServerFrame], None] | None = None,
    ) -> None:
        self.url = url
        # Reconnects go round these in turn when one stops answering (no load balancer).
        self.urls = (url, *fallback_urls)
        self.token = token
        self.binary = binary
        self.reconnect = reconnect
        self.headers = headers or {}
        self.last_seq: dict[str, int] = {}
        self.rooms: dict[str, None] = {}
        self.close_code: int | None = None
        # the server's words with the last close ("restart: reconnect" when a node stops)
        self.close_reason = ""
        # messages the server sent twice (dropped here); the server promises this stays 0
        self.duplicates = 0
        self._own_session = session is None
        self._session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._frames: asyncio.Queue[ServerFrame | None] = asyncio.Queue(max_queue)
        self._acks: dict[str, asyncio.Future[Acked]] = {}
        self._unacked: dict[str, Send] = {}
        self._joins: dict[str, asyncio.Future[Joined]] = {}
        self._pings: dict[str, asyncio.Future[Pong]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        # When set, frames go to this callback as they arrive instead of to the queue that
        # `next()` and iteration read (the bench processes thousands of sockets this way).
        self._on_frame_cb = on_frame
        self._encoder = protocol.msgpack_encoder if binary else protocol.json_encoder
        self._decoder: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any] = (
            protocol.server_msgpack_decoder if binary else protocol.server_json_decoder
        )

    async def __aenter__(self) -> LiveClient:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- connection ----------------------------------------------------------------------

    async def connect(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await self._open()
        self._reader = asyncio.create_task(self._read_loop(), name="live-client")

    async def _open(self) -> None:
        if self._session is None:
            raise RuntimeError("self._session is missing")
        params = {"format": "msgpack"} if self.binary else {}
        self._ws = await self._session.ws_connect(
            self.url,
            params=params,
            headers={"Authorization": f"Bearer {self.token}", **self.headers},
            autoping=True,
            heartbeat=None,
            max_msg_size=0,
        )
        self.close_code = None
        self._connected.set()

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._own_session and self._session is not None:
            await self._session.close()
        self._fail_waiters(ConnectionError("client closed"))

    async def drop(self) -> None:
        """Lose the connection the way a network does, with no close handshake (tests and
        the bench use this; with reconnect=True the client comes back by itself)."""
        ws = self._ws
        if ws is None or ws.closed:
            return
        sock = ws.get_extra_info("socket")
        if sock is None:
            await ws.close()
            return
        # The event loop's socket object may not offer shutdown(); a duplicate of its file
        # descriptor does, and shutting the connection down ends it for both.
        with socket.socket(fileno=os.dup(sock.fileno())) as dup, contextlib.suppress(OSError):
            dup.shutdown(socket.SHUT_RDWR)

    def _fail_waiters(self, exc: Exception) -> None:
        for waiters in (self._joins, self._pings):
            for future in waiters.values():
                if not future.done():
                    future.set_exception(exc)
            waiters.clear()
        if self._closed:
            for ack in self._acks.values():
                if not ack.done():
                    ack.set_exception(exc)

    async def _read_loop(self) -> None:
        backoff = 0.05
        while True:
            ws = self._ws
            if ws is None:
                raise RuntimeError("ws is missing")
            reason = ""
            try:
                while True:
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        self._on_frame(self._decoder.decode(msg.data))
                        continue
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        reason = msg.extra or ""
                    break
            except (aiohttp.ClientError, OSError, msgspec.DecodeError) as exc:
                log.debug("live socket failed: %s", exc)
            self.close_code = ws.close_code
            self.close_reason = reason
            self._connected.clear()
            self._fail_waiters(ConnectionError(f"socket closed ({ws.close_code})"))
            if self._closed or not self.reconnect:
                await self._frames.put(None)
                return
            attempt = 0
            while not self._closed:
                # jittered, so the sockets of a node that stopped do not all come back at once
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                try:
                    await self._open()
                    await self._restore()
                    backoff = 0.05
                    break
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.debug("reconnect to %s failed: %s", self.url, exc)
                    attempt += 1
                    self.url = self.urls[attempt % len(self.urls)]
                    backoff = min(backoff * 2, 1.0)

    async def _restore(self) -> None:
        """After a reconnect: rejoin every room from the last sequence seen, resend unacked."""
        for room in list(self.rooms):
            await self._write(Join(room=room, since=self.last_seq.get(room)))
        for frame in list(self._unacked.values()):
            await self._write(frame)

    def _on_frame(self, frame: ServerFrame) -> None:
        match frame:
            case Message():
                if frame.seq <= self.last_seq.get(frame.room, 0):
                    self.duplicates += 1
                    return
                self.last_seq[frame.room] = frame.seq
            case Acked():
                self._unacked.pop(frame.cid, None)
                future = self._acks.pop(frame.cid, None)
                if future is not None and not future.done():
                    future.set_result(frame)
            case Joined():
                self.last_seq.setdefault(frame.room, frame.last_seq)
                join = self._joins.pop(frame.room, None)
                if join is not None and not join.done():
                    join.set_result(frame)
            case Pong():
                ping = self._pings.pop(str(frame.id), None)
                if ping is not None and not ping.done():
                    ping.set_result(frame)
            case Resync() if frame.room is not None and frame.room.startswith("session:"):
                since = self.last_seq.get(frame.room, 0)
                task = asyncio.ensure_future(self._write(Resume(room=frame.room, since=since)))
                task.add_done_callback(lambda t: t.exception())
            case Error():
                self._on_error(frame)
        if self._on_frame_cb is not None:
            self._on_frame_cb(frame)
            return
        try:
            self._frames.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("live client queue full; dropping %s", type(frame).__name__)

    def _on_error(self, frame: Error) -> None:
        if frame.ref is not None and frame.ref in self._acks:
            self._unacked.pop(frame.ref, None)
            future = self._acks.pop(frame.ref)
            if not future.done():
                future.set_exception(LiveError(frame))
        elif frame.room is not None and frame.room in self._joins:
            future_join = self._joins.pop(frame.room)
            self.rooms.pop(frame.room, None)
            if not future_join.done():
                future_join.set_exception(LiveError(frame))

    async def _write(self, frame: ClientFrame) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionError("not connected")
        data = self._encoder.encode(frame)
        if self.binary:
            await ws.send_bytes(data)
        else:
            await ws.send_str(data.decode())

    async def send_raw(self, data: str | bytes) -> None:
        """Write anything (tests use it to send malformed frames)."""
        if self._ws is None:
            raise RuntimeError("self._ws is missing")
        if isinstance(data, bytes):
            await self._ws.send_bytes(data)
        else:
            await self._ws.send_str(data)

    # --- requests ------------------------------------------------------------------------

    async def join(
        self, room: str, since: int | None = None, timeout: float = 10, *, enrol: bool = False
    ) -> Joined:
        """Enter a room; returns the `joined` frame (presence, last sequence). `enrol`: take
        part in a session first when not yet a participant."""
        future: asyncio.Future[Joined] = asyncio.get_running_loop().create_future()
        self._joins[room] = future
        self.rooms[room] = None
        if since is not None:
            self.last_seq[room] = since
        await self._write(Join(room=room, since=since, enrol=enrol))
        return await asyncio.wait_for(future, timeout)

    async def leave(self, room: str) -> None:
        self.rooms.pop(room, None)
        await self._write(Leave(room=room))

    async def send(
        self,
        room: str,
        body: str,
        *,
        kind: str = "text",
        cid: str | None = None,
        file_url: str | None = None,
        meta: dict[str, Any] | None = None,
        timeout: float = 30,
    ) -> Acked:
        """Send a message; returns once the server has stored it (its ack, with the seq).
        Reconnects in between resend it with the same client id."""
        cid = cid or uuid.uuid4().hex
        frame = Send(room=room, cid=cid, body=body, kind=kind, file_url=file_url, meta=meta)  # type: ignore[arg-type]
        future: asyncio.Future[Acked] = asyncio.get_running_loop().create_future()
        self._acks[cid] = future
        self._unacked[cid] = frame
        try:
            await self._write(frame)
        except ConnectionError:
            if not self.reconnect:
                raise
        return await asyncio.wait_for(future, timeout)

    async def typing(self, room: str, state: str = "start") -> None:
        await self._write(Typing(room=room, state=state))  # type: ignore[arg-type]

    async def screen_share(self, room: str, sharing: bool, stream_id: str | None = None) -> None:
        await self._write(ScreenShare(room=room, sharing=sharing, stream_id=stream_id))

    async def focus(self, room: str, op: str, **durations: int) -> None:
        """Command the room's focus timer (`start` with durations in seconds: work,
        short_break, long_break, long_every, blocks). The answer is a `focus` frame to every
        member, or an `error`."""
        await self._write(protocol.Focus(room=room, op=op, **durations))  # type: ignore[arg-type]

    async def ack(self, room: str, seq: int) -> None:
        await self._write(protocol.Ack(room=room, seq=seq))

    async def resume(self, room: str, since: int) -> None:
        await self._write(Resume(room=room, since=since))

    async def ping(self, timeout: float = 10) -> float:
        """Round trip time in seconds."""
        ident = uuid.uuid4().hex[:8]
        future: asyncio.Future[Pong] = asyncio.get_running_loop().create_future()
        self._pings[ident] = future
        started = asyncio.get_running_loop().time()
        await self._write(Ping(id=ident))
        await asyncio.wait_for(future, timeout)
        return asyncio.get_running_loop().time() - started

    async def wait_connected(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    # --- receiving -----------------------------------------------------------------------

    async def next(self, timeout: float = 10) -> ServerFrame:
        """The next frame from the server; ConnectionError once the client has stopped."""
        frame = await asyncio.wait_for(self._frames.get(), timeout)
        if frame is None:
            self._frames.put_nowait(None)
            raise ConnectionError(f"socket closed ({self.close_code})")
        return frame

    async def __aiter__(self) -> AsyncIterator[ServerFrame]:
        while True:
            frame = await self._frames.get()
            if frame is None:
                self._frames.put_nowait(None)
                return
            yield frame
