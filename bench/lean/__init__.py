"""The lean receiver: a worker's listening sockets handed to a small C program.

A Python receiver costs ~9 us of CPU per delivery, so 100 msg/s to 1,000 listeners keeps the
load generator's one core ~90 % busy and the run is generator-bound. `receiver.c` (epoll, libc
only) connects, joins and checks the listeners for a fraction of that. A worker
(`bench.worker`) keeps its senders, which need acknowledgements and send timing, in Python and
runs one receiver process for the rest; what the receiver reports (connect and join times,
each second's deliveries and latency, lost, duplicated and out-of-order messages) is folded
into the worker's own events, so the coordinator sees the same worker as before.

The program is compiled with the machine's `gcc -O2` the first time a run needs it and kept
under the output folder by the hash of its source; without a compiler the runs use the Python
receivers and say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, urlsplit

import msgspec

from ..scenarios import WsConfig
from ..stats import HistogramWire
from ..wire import ClientSpec, WsPlan

SOURCE = Path(__file__).with_name("receiver.c")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def unsupported(config: WsConfig) -> str | None:
    """Why the C receiver cannot take this run's listeners (None: it can)."""
    if config.kind == "product":
        if config.client != "lean":
            return f"the product's {config.client} client is Python's"
        if config.binary:
            return "MessagePack frames are read in Python"
    if config.drop_at is not None:
        return "drops and resumes are LiveClient's"
    return None


def build(out_root: Path) -> Path | str:
    """The compiled receiver (built once per version of its source), or why there is none."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return "no C compiler (gcc) on PATH"
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = out_root / "lean" / f"receiver-{digest}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    proc = subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(partial), str(SOURCE), "-lm"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        return f"{compiler} could not build {SOURCE.name}: {proc.stderr.strip()[-400:]}"
    os.replace(partial, binary)  # atomic: concurrent runs never see half a binary
    return binary


# --- what the receiver prints ----------------------------------------------------------------


class ReceiverReady(msgspec.Struct, tag_field="e", tag="ready"):
    connected: int
    failed: int
    connect: HistogramWire
    join: HistogramWire
    errors: dict[str, int]


class ReceiverTick(msgspec.Struct, tag_field="e", tag="tick"):
    second: int
    deliveries: int
    latency: HistogramWire


class ReceiverDone(msgspec.Struct, tag_field="e", tag="done"):
    deliveries: int  # since the last tick
    latency: HistogramWire
    missing: int
    extra: int
    duplicates: int
    gaps: int
    resync: int
    errors: dict[str, int]


_events = msgspec.json.Decoder(ReceiverReady | ReceiverTick | ReceiverDone)


def _setup(plan: WsPlan, specs: list[ClientSpec]) -> bytes:
    """The receiver's input: how to reach the server and who each listener is."""
    url = urlsplit(plan.url)
    host = url.hostname or "127.0.0.1"
    port = url.port or 80
    base = url.path or "/"
    lines = [
        f"kind {plan.kind}",
        f"target {host} {port}",
        f"limits {plan.connect_concurrency} 30 {plan.ack_timeout:g}",
    ]
    for i, spec in enumerate(specs):
        if plan.kind == "socketio":
            path = "/socket.io/?EIO=4&transport=websocket"
        elif plan.kind == "echo":
            path = f"{base}?room={quote(spec.rooms[0])}"
        else:
            path = base + (f"?{url.query}" if url.query else "")
        name = spec.name or f"user{i}"
        words = [path, spec.token or "-", name, spec.source or "-", *spec.rooms]
        if any(not w or " " in w or "\n" in w for w in words):
            raise ValueError(f"the C receiver cannot take {words!r}")
        lines.append("client " + " ".join(words))
    lines.append("start")
    return ("\n".join(lines) + "\n").encode()


class LeanReceiver:
    """One receiver process for one worker's listeners."""

    def __init__(self, binary: str, plan: WsPlan, specs: list[ClientSpec]) -> None:
        self.binary = binary
        self.plan = plan
        self.specs = specs
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[ReceiverReady] | None = None
        self.done: asyncio.Future[ReceiverDone] | None = None
        self.ticks: list[ReceiverTick] = []
        self._tick_arrived = asyncio.Event()
        self._stderr: list[str] = []
        self._readers: list[asyncio.Task[None]] = []
        self._cpu = 0.0

    async def bring_up(self) -> ReceiverReady:
        """Start the process; it connects and joins every listener and says how it went."""
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.done = loop.create_future()
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        self._readers = [
            asyncio.create_task(self._read_events()),
            asyncio.create_task(self._read_stderr()),
        ]
        await self._write(_setup(self.plan, self.specs))
        return await self.ready

    async def _write(self, data: bytes) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def _read_events(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            event = _events.decode(line)
            if isinstance(event, ReceiverTick):
                self.ticks.append(event)
                self._tick_arrived.set()
            elif isinstance(event, ReceiverReady):
                assert self.ready is not None
                self.ready.set_result(event)
            else:
                assert self.done is not None
                self.done.set_result(event)
        code = await self.proc.wait()
        failure = RuntimeError(
            f"the C receiver exited with {code}:\n" + "".join(self._stderr[-20:])
        )
        for waiter in (self.ready, self.done):
            if waiter is not None and not waiter.done():
                waiter.set_exception(failure)
        self._tick_arrived.set()

    async def _read_stderr(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace"))
            del self._stderr[:-50]

    async def go(self, start: float) -> None:
        await self._write(f"go {start!r}\n".encode())

    async def ticks_until(self, second: int, timeout: float = 0.5) -> list[ReceiverTick]:
        """The receiver's ticks up to `second` (it ticks on the same wall-clock seconds as the
        worker: wait a moment for that one); a tick later than that waits for the next call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(t.second >= second for t in self.ticks) and not self._ended():
            self._tick_arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._tick_arrived.wait(), left)
            except TimeoutError:
                break
        taken = [t for t in self.ticks if t.second <= second]
        self.ticks = [t for t in self.ticks if t.second > second]
        return taken

    def _ended(self) -> bool:
        return (self.done is not None and self.done.done()) or (
            self.proc is not None and self.proc.returncode is not None
        )

    def take_ticks(self) -> list[ReceiverTick]:
        taken, self.ticks = self.ticks, []
        return taken

    async def drain(self, finals: dict[str, int], seconds: float) -> ReceiverDone:
        """Wait until every listener has what its rooms acknowledged (or `seconds` pass)."""
        words = " ".join(f"{room} {final}" for room, final in finals.items())
        await self._write(f"expect {seconds:g} {words}\n".encode())
        assert self.done is not None
        return await self.done

    def cpu_seconds(self) -> float:
        """The receiver's CPU time so far (user + system, from /proc)."""
        if self.proc is None or self.proc.returncode is not None:
            return self._cpu  # (what it had used when last asked)
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return self._cpu
        fields = stat.rsplit(")", 1)[1].split()
        self._cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return self._cpu

    async def close(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(b"quit\n")
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
