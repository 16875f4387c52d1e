"""One load-generator process: `python -m bench.worker`, driven by the coordinator.

It reads a plan (one JSON line) and then commands from stdin, and writes events to stdout (see
`bench.wire`). A websocket plan: connect and join every client (bounded concurrency), report
`Ready`, wait for `Go`, send at the planned rate for the duration (and, for a burst, drop every
client at the planned moment), report one `Tick` per second and `Sent` when sending stops, then
wait for every member to receive what its rooms' senders got acknowledged (`Expect`) and
report `Done`. A REST plan: closed-loop requests from `concurrency` tasks for the duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import resource
import sys
import time
import traceback
import uuid

import aiohttp

from . import wire
from .clients import (
    TS_WIDTH,
    BenchClient,
    EchoClient,
    LeanProductClient,
    LiveProductClient,
    ProductSocketIOClient,
    SocketIOClient,
    body_sender,
    message_body,
)
from .lean import LeanReceiver, ReceiverDone, ReceiverTick
from .rawhttp import HttpClient, HttpError
from .rawws import HandshakeError
from .stats import Histogram


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_open_file_limit() -> int:
    """Lift this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Out:
    def __init__(self) -> None:
        self._stream = sys.stdout.buffer

    def emit(self, event: wire.Event) -> None:
        self._stream.write(wire.encoder.encode(event) + b"\n")
        self._stream.flush()


def _session() -> aiohttp.ClientSession:
    # No pool limit: every websocket holds its connection for the whole run.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
    )


def _error_name(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    if isinstance(exc, aiohttp.WSServerHandshakeError | HandshakeError):
        return f"http_{exc.status}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


class _Room:
    """One client's view of one room."""

    __slots__ = ("base", "count", "last", "senders")

    def __init__(self, last: int) -> None:
        self.base = last  # the room's sequence when the client joined
        self.last = last
        self.count = 0  # distinct messages received
        self.senders: dict[int, int] = {}  # for servers without sequences: sender -> last n


class WsWorker:
    def __init__(self, plan: wire.WsPlan, commands: asyncio.Queue[wire.Command], out: Out) -> None:
        self.plan = plan
        self.commands = commands
        self.out = out
        self.clients: list[BenchClient] = []
        self.state: dict[int, dict[str, _Room]] = {}
        self.dropped_at: dict[int, float] = {}
        self.back_pending: dict[int, set[str]] = {}
        self.resume = Histogram()
        self.errors: dict[str, int] = {}
        # the current second's figures (reset by the ticker) and the run's totals
        self.sec_latency = Histogram()
        self.sec_deliveries = 0
        self.sec_sent = 0
        self.sec_acked = 0
        self.sec_errors = 0
        self.latency = Histogram()
        self.deliveries = 0
        self.duplicates = 0
        self.gaps = 0
        self.resyncs = 0
        self.sent = 0
        self.acked = 0
        self.ack_latency = Histogram()
        self.max_seq: dict[str, int] = {}
        self.sent_count: dict[str, int] = {}
        self._pending: set[asyncio.Future[int]] = set()
        self.lean: LeanReceiver | None = None

    def cpu_seconds(self) -> float:
        """This worker's CPU time, its C receiver's included."""
        return cpu_seconds() + (self.lean.cpu_seconds() if self.lean is not None else 0.0)

    def _fold(self, ticks: list[ReceiverTick]) -> None:
        """The C receiver's seconds into the current one."""
        for tick in ticks:
            self.sec_deliveries += tick.deliveries
            self.sec_latency.merge(Histogram.from_wire(tick.latency))

    # --- the Sink: called for every frame ---------------------------------------------------

    def message(self, client: BenchClient, room: str, seq: int, body: str) -> None:
        self.sec_latency.record(time.time() - float(body[:TS_WIDTH]))
        self.sec_deliveries += 1
        state = self.state[client.index].get(room)
        if state is None:
            return
        if seq:
            if seq > state.last:
                if seq != state.last + 1:
                    self.gaps += 1
                state.last = seq
                state.count += 1
            else:
                self.duplicates += 1
        else:
            sender, n = body_sender(body)
            last = state.senders.get(sender, 0)
            if n > last:
                if n != last + 1:
                    self.gaps += 1
                state.senders[sender] = n
                state.count += 1
            else:
                self.duplicates += 1

    def joined(self, client: BenchClient, room: str, last_seq: int) -> None:
        rooms = self.state[client.index]
        if room not in rooms:
            rooms[room] = _Room(last_seq)
            return
        pending = self.back_pending.get(client.index)
        if pending is not None:
            pending.discard(room)
            if not pending:
                del self.back_pending[client.index]
                self.resume.record(time.time() - self.dropped_at[client.index])

    def note(self, what: str) -> None:
        if what == "resync":
            self.resyncs += 1
        else:
            self._error(what)

    def _error(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1
        self.sec_errors += 1

    # --- phases ----------------------------------------------------------------------------

    def _make(self, i: int, spec: wire.ClientSpec, session: aiohttp.ClientSession) -> BenchClient:
        plan = self.plan
        if plan.kind == "product" and plan.client == "live":
            return LiveProductClient(
                i,
                plan.url,
                spec.token,
                spec.rooms,
                self,
                session,
                binary=plan.binary,
                ack_timeout=plan.ack_timeout,
            )
        if plan.kind == "product" and plan.client == "socketio":
            return ProductSocketIOClient(
                i, plan.url, spec.token, spec.rooms, self, ack_timeout=plan.ack_timeout
            )
        if plan.kind == "product":
            return LeanProductClient(
                i,
                plan.url,
                spec.token,
                spec.rooms,
                self,
                binary=plan.binary,
                ack_timeout=plan.ack_timeout,
                source=spec.source,
            )
        if plan.kind == "socketio":
            return SocketIOClient(
                i, plan.url, spec.name, spec.rooms, self, ack_timeout=plan.ack_timeout
            )
        return EchoClient(i, plan.url, spec.rooms, self)

    async def run(self) -> None:
        plan = self.plan
        # Listeners go to the C receiver when there is one; senders stay here (they time
        # their sends and wait for acknowledgements).
        listeners = [s for s in plan.clients if not s.sends_to] if plan.receiver else []
        if plan.receiver and listeners:
            self.lean = LeanReceiver(plan.receiver, plan, listeners)
        async with _session() as session:
            clients = [
                self._make(i, s, session)
                for i, s in enumerate(plan.clients)
                if self.lean is None or s.sends_to
            ]
            for c in clients:
                self.state[c.index] = {}
            try:
                up = await self._bring_up(clients)
                await self._go(up, [plan.clients[c.index] for c in up])
            finally:
                for task in self._pending:
                    task.cancel()
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
                if self.lean is not None:
                    await self.lean.close()

    async def _bring_up(self, clients: list[BenchClient]) -> list[BenchClient]:
        connect, join = Histogram(), Histogram()
        gate = asyncio.Semaphore(self.plan.connect_concurrency)
        up: list[BenchClient] = []

        async def one(client: BenchClient) -> None:
            async with gate:
                started = time.monotonic()
                try:
                    await client.connect()
                except Exception as exc:  # noqa: BLE001 (every failure is counted by its name)
                    self._error(f"connect:{_error_name(exc)}")
                    return
                connect.record(time.monotonic() - started)
                for room in client.rooms:
                    started = time.monotonic()
                    try:
                        await client.join(room)
                    except Exception as exc:  # noqa: BLE001 (every failure is counted by its name)
                        self._error(f"join:{_error_name(exc)}")
                        return
                    join.record(time.monotonic() - started)
                up.append(client)

        connected, failed = 0, 0
        if self.lean is not None:
            _, lean = await asyncio.gather(
                asyncio.gather(*(one(c) for c in clients)), self.lean.bring_up()
            )
            connected, failed = lean.connected, lean.failed
            connect.merge(Histogram.from_wire(lean.connect))
            join.merge(Histogram.from_wire(lean.join))
            for name, n in lean.errors.items():
                self.errors[name] = self.errors.get(name, 0) + n
        else:
            await asyncio.gather(*(one(c) for c in clients))
        up.sort(key=lambda c: c.index)
        self.sec_errors = 0
        self.out.emit(
            wire.Ready(
                worker=self.plan.worker,
                connected=len(up) + connected,
                failed=len(clients) - len(up) + failed,
                connect=connect.to_wire(),
                join=join.to_wire(),
                errors=dict(self.errors),
                cpu_seconds=self.cpu_seconds(),
            )
        )
        return up

    async def _go(self, clients: list[BenchClient], specs: list[wire.ClientSpec]) -> None:
        command = await self.commands.get()
        if not isinstance(command, wire.Go):
            return
        plan = self.plan
        loop = asyncio.get_running_loop()
        # Wall clock -> loop clock once, so every worker starts at the same instant.
        start = loop.time() + (command.start - time.time())
        if self.lean is not None:
            await self.lean.go(command.start)
        ticker = asyncio.create_task(self._ticker(start))
        jobs = [asyncio.create_task(self._send_loop(clients, specs, start))]
        if plan.drop_at is not None:
            jobs.append(asyncio.create_task(self._drop_all(clients, start + plan.drop_at)))
        await asyncio.gather(*jobs)
        # Sends still waiting for their ack count as long as they are worth waiting for.
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=plan.ack_timeout)
        self.out.emit(
            wire.Sent(
                worker=plan.worker,
                max_seq=self.max_seq,
                sent_count=self.sent_count,
                sent=self.sent,
                acked=self.acked,
                ack_latency=self.ack_latency.to_wire(),
                cpu_seconds=self.cpu_seconds(),
                at=time.time(),
            )
        )
        expect = await self.commands.get()
        missing = extra = 0
        lean: ReceiverDone | None = None
        if isinstance(expect, wire.Expect):
            if self.lean is not None:
                (missing, extra), lean = await asyncio.gather(
                    self._drain(clients, expect), self.lean.drain(expect.finals, expect.drain)
                )
            else:
                missing, extra = await self._drain(clients, expect)
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if self.lean is not None:
            self._fold(self.lean.take_ticks())
        if lean is not None:
            self.sec_deliveries += lean.deliveries
            self.sec_latency.merge(Histogram.from_wire(lean.latency))
            missing += lean.missing
            extra += lean.extra
            self.duplicates += lean.duplicates
            self.gaps += lean.gaps
            self.resyncs += lean.resync
            for name, n in lean.errors.items():
                self.errors[name] = self.errors.get(name, 0) + n
        self._roll_second()
        self.out.emit(
            wire.Done(
                worker=plan.worker,
                deliveries=self.deliveries,
                latency=self.latency.to_wire(),
                missing=missing,
                extra=extra,
                duplicates=self.duplicates + sum(c.duplicates for c in clients),
                gaps=self.gaps,
                resync=self.resyncs,
                errors=self.errors,
                resume=self.resume.to_wire(),
                not_back=len(self.back_pending),
                cpu_seconds=self.cpu_seconds(),
            )
        )

    def _roll_second(self) -> wire.Tick:
        """Fold the current second into the totals; returns its tick (second 0: set it)."""
        tick = wire.Tick(
            worker=self.plan.worker,
            second=0,
            deliveries=self.sec_deliveries,
            latency=self.sec_latency.to_wire(),
            sent=self.sec_sent,
            acked=self.sec_acked,
            errors=self.sec_errors,
        )
        self.latency.merge(self.sec_latency)
        self.deliveries += self.sec_deliveries
        self.sec_latency = Histogram()
        self.sec_deliveries = self.sec_sent = self.sec_acked = self.sec_errors = 0
        return tick

    async def _ticker(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        second = 0
        while True:
            await asyncio.sleep(max(0.0, start + second + 1 - loop.time()))
            if self.lean is not None:
                self._fold(await self.lean.ticks_until(second))
            tick = self._roll_second()
            tick.second = second
            self.out.emit(tick)
            second += 1

    async def _send_loop(
        self, clients: list[BenchClient], specs: list[wire.ClientSpec], start: float
    ) -> None:
        plan = self.plan
        senders = [(c, s.sends_to) for c, s in zip(clients, specs, strict=True) if s.sends_to]
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start - loop.time()))
        if not senders or plan.rate <= 0:
            await asyncio.sleep(max(0.0, start + plan.duration - loop.time()))
            return
        counters = [0] * len(senders)
        end = start + plan.duration
        nap = min(0.005, max(0.0005, 1 / plan.rate))
        issued = 0
        base = plan.worker * 1_000_000
        while True:
            now = loop.time()
            if now >= end:
                break
            due = int((now - start) * plan.rate) + 1
            while issued < due:
                k = issued % len(senders)
                client, room = senders[k]
                assert room is not None
                counters[k] += 1
                n = counters[k]
                body = message_body(base + client.index, n, plan.size)
                self._send(client, room, body, f"b{plan.worker}-{client.index}-{n}")
                issued += 1
            await asyncio.sleep(nap)

    def _send(self, client: BenchClient, room: str, body: str, cid: str) -> None:
        task = asyncio.ensure_future(client.send(room, body, cid))
        self._pending.add(task)
        task.add_done_callback(functools.partial(self._sent, room, time.monotonic()))
        self.sent += 1
        self.sec_sent += 1
        self.sent_count[room] = self.sent_count.get(room, 0) + 1

    def _sent(self, room: str, started: float, task: asyncio.Future[int]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._error(f"send:{_error_name(exc)}")
            return
        self.acked += 1
        self.sec_acked += 1
        self.ack_latency.record(time.monotonic() - started)
        seq = task.result()
        if seq > self.max_seq.get(room, 0):
            self.max_seq[room] = seq

    async def _drop_all(self, clients: list[BenchClient], at: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, at - loop.time()))
        now = time.time()
        for client in clients:
            self.dropped_at[client.index] = now
            self.back_pending[client.index] = set(client.rooms)
        results = await asyncio.gather(*(c.drop() for c in clients), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                self._error(f"drop:{_error_name(result)}")

    async def _drain(self, clients: list[BenchClient], expect: wire.Expect) -> tuple[int, int]:
        """Wait until every member has every message its rooms acknowledged (or time runs
        out); returns (missing, extra)."""
        count_based = self.plan.kind == "echo"

        def shortfall() -> tuple[int, int]:
            missing = extra = 0
            for client in clients:
                for room, state in self.state[client.index].items():
                    final = expect.finals.get(room, 0)
                    want = final if count_based else max(0, final - state.base)
                    if state.count < want:
                        missing += want - state.count
                    else:
                        extra += state.count - want
            return missing, extra

        deadline = time.monotonic() + expect.drain
        missing, extra = shortfall()
        while (missing or self.back_pending) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            missing, extra = shortfall()
        return missing, extra


# --- REST ------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class RestWorker:
    def __init__(self, plan: wire.RestPlan, out: Out) -> None:
        self.plan = plan
        self.out = out
        self.sec_latency = Histogram()
        self.sec_requests = 0
        self.sec_failures = 0
        self.latency = Histogram()
        self.requests = 0
        self.failures = 0
        self.statuses: dict[str, int] = {}
        self.sample_error: str | None = None
        self._n = 0

    def _fill(self, template: str, rng: random.Random) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "uuid":
                return uuid.uuid4().hex
            if name == "n":
                self._n += 1
                return f"{self.plan.worker}-{self._n}"
            return rng.choice(self.plan.pools[name])

        return _PLACEHOLDER.sub(one, template)

    async def run(self) -> None:
        plan = self.plan
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + plan.duration
        clients = [HttpClient(plan.base_url) for _ in range(plan.concurrency)]
        ticker = asyncio.create_task(self._ticker(start))
        try:
            await asyncio.gather(*(self._loop(c, k, end) for k, c in enumerate(clients)))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            for client in clients:
                client.close()
        self._roll(0)
        self.out.emit(
            wire.RestDone(
                worker=plan.worker,
                requests=self.requests,
                latency=self.latency.to_wire(),
                statuses=self.statuses,
                failures=self.failures,
                sample_error=self.sample_error,
                cpu_seconds=cpu_seconds(),
            )
        )

    async def _loop(self, client: HttpClient, k: int, end: float) -> None:
        """One request in flight at a time on its own keep-alive connection (the lean client:
        aiohttp's cost a request kept the generator busier than the server it measured)."""
        plan = self.plan
        rng = random.Random(plan.worker * 10_000 + k)
        loop = asyncio.get_running_loop()
        while loop.time() < end:
            request = rng.choice(plan.requests)
            path = self._fill(request.path, rng)
            body = self._fill(request.body, rng).encode() if request.body is not None else None
            headers = {"Authorization": f"Bearer {rng.choice(plan.tokens)}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            started = time.perf_counter()
            status: str
            try:
                async with asyncio.timeout(60):
                    resp = await client.request(request.method, path, headers, body)
                status = str(resp.status)
                if resp.status >= 400 and self.sample_error is None:
                    self.sample_error = (
                        f"{request.method} {path} -> {resp.status}: {resp.body[:300]!r}"
                    )
            except (HttpError, OSError, TimeoutError) as exc:
                client.close()  # (a fresh connection for the next request)
                status = f"error:{type(exc).__name__}"
                if self.sample_error is None:
                    self.sample_error = f"{request.method} {path}: {exc!r}"
            self.sec_latency.record(time.perf_counter() - started)
            self.sec_requests += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if not status.startswith(("2", "3")):
                self.sec_failures += 1

    def _roll(self, second: int) -> wire.RestTick:
        tick = wire.RestTick(
            worker=self.plan.worker,
            second=second,
            requests=self.sec_requests,
            latency=self.sec_latency.to_wire(),
            failures=self.sec_failures,
        )
        self.latency.merge(self.sec_latency)
        self.requests += self.sec_requests
        self.failures += self.sec_failures
        self.sec_latency = Histogram()
        self.sec_requests = self.sec_failures = 0
        return tick

    async def _ticker(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        second = 0
        while True:
            await asyncio.sleep(max(0.0, start + second + 1 - loop.time()))
            self.out.emit(self._roll(second))
            second += 1


# --- process entry ---------------------------------------------------------------------------


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _pump(reader: asyncio.StreamReader, commands: asyncio.Queue[wire.Command]) -> None:
    while line := await reader.readline():
        commands.put_nowait(wire.command_decoder.decode(line))
    commands.put_nowait(wire.Quit())  # the coordinator went away


async def _main() -> None:
    out = Out()
    reader = await _stdin()
    plan = wire.plan_decoder.decode(await reader.readline())
    if plan.cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, plan.cpus)
    commands: asyncio.Queue[wire.Command] = asyncio.Queue()
    pump = asyncio.create_task(_pump(reader, commands))
    try:
        if isinstance(plan, wire.WsPlan):
            await WsWorker(plan, commands, out).run()
        else:
            await RestWorker(plan, out).run()
    except Exception:  # noqa: BLE001 (the harness hears of any failure)
        out.emit(wire.Failed(worker=plan.worker, message=traceback.format_exc()))
    finally:
        pump.cancel()


def main() -> None:
    raise_open_file_limit()
    try:
        import uvloop

        uvloop.run(_main())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(_main())


if __name__ == "__main__":
    main()
