"""Processes the harness owns (a product node, the Socket.IO and echo peers, the embedded
database) and how it measures a server: CPU time and resident memory from /proc when the
harness started the server (or was given its pid), else from the node's /metrics."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from peerspark_rt.infra.embedded import EmbeddedPostgres
from peerspark_rt.infra.pool import ensure_database

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
_LISTENING = re.compile(r"listening on (?P<url>https?://[^\s:]+:\d+)")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


# --- measuring a server ------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSample:
    """One node of a deployment (`--nodes`): its CPU seconds and the deliveries it counted."""

    name: str
    cpu_seconds: float
    deliveries: float


@dataclass(frozen=True)
class Sample:
    cpu_seconds: float
    rss_bytes: int
    at: float = field(default_factory=time.monotonic)  # when it was taken
    nodes: tuple[NodeSample, ...] = ()  # per node, for a deployment of several
    balancer_cpu_seconds: float | None = None  # nginx in front of them (every worker)


class Probe:
    """Reads a server's CPU seconds and resident memory."""

    source = ""

    async def sample(self) -> Sample:
        raise NotImplementedError

    async def detailed(self) -> Sample:
        """A sample with whatever costs more to read (per-node figures); the run takes few."""
        return await self.sample()


class ProcProbe(Probe):
    """From /proc/<pid>: utime + stime (user and kernel CPU time, not wall time), and RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.source = f"/proc/{pid}"

    def read(self) -> Sample:
        with open(f"/proc/{self.pid}/stat") as f:
            # the command name may contain spaces; fields after it are space separated
            fields = f.read().rpartition(")")[2].split()
        utime, stime = int(fields[11]), int(fields[12])
        with open(f"/proc/{self.pid}/statm") as f:
            resident = int(f.read().split()[1])
        return Sample((utime + stime) / _CLOCK_TICKS, resident * _PAGE)

    async def sample(self) -> Sample:
        return self.read()


_METRIC = re.compile(
    r"^(process_cpu_seconds_total|process_resident_memory_bytes)\s+([0-9.eE+-]+)$", re.M
)


class MetricsProbe(Probe):
    """From a node's /metrics (process_cpu_seconds_total, process_resident_memory_bytes)."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        self.source = self.url

    async def sample(self) -> Sample:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(self.url) as resp,
        ):
            text = await resp.text()
        values = dict(_METRIC.findall(text))
        if len(values) < 2:
            raise RuntimeError(f"{self.url} does not report process CPU and memory")
        return Sample(
            float(values["process_cpu_seconds_total"]),
            int(float(values["process_resident_memory_bytes"])),
        )


_DELIVERIES = re.compile(r"^peerspark_ws_deliveries_total\s+([0-9.eE+-]+)$", re.M)


class DeploymentProbe(Probe):
    """Several nodes the harness started: their CPU seconds and memory added up (from /proc),
    and per node its CPU and the deliveries its /metrics counted."""

    def __init__(self, nodes: list[ServerProcess], balancer_pid: int | None = None) -> None:
        self.nodes = nodes
        self.balancer_pid = balancer_pid
        self.source = "/proc of " + ", ".join(str(n.pid) for n in nodes)

    async def sample(self) -> Sample:
        """CPU and memory only (read every second: nothing that costs the nodes CPU)."""
        samples = [ProcProbe(node.pid).read() for node in self.nodes]
        return Sample(sum(x.cpu_seconds for x in samples), sum(x.rss_bytes for x in samples))

    async def detailed(self) -> Sample:
        parts = []
        total = Sample(0.0, 0)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for node in self.nodes:
                own = ProcProbe(node.pid).read()
                async with session.get(node.url + "/metrics") as resp:
                    found = _DELIVERIES.search(await resp.text())
                deliveries = float(found.group(1)) if found else 0.0
                parts.append(NodeSample(node.url, own.cpu_seconds, deliveries))
                total = Sample(total.cpu_seconds + own.cpu_seconds, total.rss_bytes + own.rss_bytes)
        balancer = children_cpu(self.balancer_pid) if self.balancer_pid else None
        return Sample(
            total.cpu_seconds, total.rss_bytes, nodes=tuple(parts), balancer_cpu_seconds=balancer
        )


def children_cpu(pid: int) -> float:
    """CPU seconds of `pid` and every process below it (the embedded PostgreSQL's backends)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    total = 0.0
    for proc, seconds in cpu.items():
        p = proc
        while p and p != pid:
            p = parents.get(p, 0)
        if p == pid:
            total += seconds
    return total


# --- CPU placement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server and the load generator use (None: wherever the kernel likes)."""

    server: list[int] | None
    clients: list[int] | None

    @classmethod
    def default(cls, pin: bool = True) -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls(None, None)
        return cls([cpus[0]], cpus[1:])

    @classmethod
    def parse(cls, server: str | None, clients: str | None) -> Placement:
        def cpus(spec: str | None) -> list[int] | None:
            if not spec:
                return None
            out: list[int] = []
            for part in spec.split(","):
                lo, _, hi = part.partition("-")
                out.extend(range(int(lo), int(hi or lo) + 1))
            return out

        return cls(cpus(server), cpus(clients))

    def describe(self) -> str:
        if self.server is None:
            return "not pinned"
        return f"server on CPU {_cpus(self.server)}, load generator on CPU {_cpus(self.clients)}"


def _cpus(cpus: list[int] | None) -> str:
    return ",".join(map(str, cpus)) if cpus else "any"


def pin_to(cpus: list[int] | None) -> Callable[[], None] | None:
    if not cpus:
        return None
    chosen = set(cpus)

    def pin() -> None:  # runs in the child before exec; the affinity survives exec
        os.sched_setaffinity(0, chosen)

    return pin


# --- a server process --------------------------------------------------------------------------


class ServerProcess:
    """A server started by the harness; `url` once it printed 'listening on http://...'."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.url = ""
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"

    async def wait_listening(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout

        async def until_listening() -> None:
            while line := await stream.readline():
                text = line.decode(errors="replace").rstrip()
                self.output.append(text)
                m = _LISTENING.search(text)
                if m:
                    self.url = m.group("url")
                    return

        try:
            await asyncio.wait_for(until_listening(), timeout)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(f"{self.name} did not start:\n" + "\n".join(self.output)) from None
        if not self.url:
            await self.proc.wait()
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n" + "\n".join(self.output)
            )

        async def drain() -> None:  # keep reading so a chatty server never blocks on stdout
            while line := await stream.readline():
                self.output.append(line.decode(errors="replace").rstrip())

        self._pump = asyncio.create_task(drain())

    async def stop(self, timeout: float = 30) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._pump is not None:
            self._pump.cancel()

    def alive(self) -> bool:
        return self.proc.returncode is None


async def spawn(
    name: str,
    argv: list[str],
    *,
    env: Mapping[str, str],
    cpus: list[int] | None,
    cwd: Path = ROOT,
    timeout: float = 60,
) -> ServerProcess:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=pin_to(cpus),
    )
    server = ServerProcess(name, proc)
    await server.wait_listening(timeout)
    return server


@dataclass
class RedisProcess:
    """A redis-server of the harness's own, which it may pause (SIGSTOP) to show what a stalled
    Redis does to the product (never the shared one: pausing it would stall everything)."""

    proc: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()


async def start_redis(workdir: Path, timeout: float = 10) -> RedisProcess:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("--redis-stall-at needs redis-server on PATH (Debian: redis-server)")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--dir", str(workdir)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PING\r\n")
            if (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG"):
                writer.close()
                return RedisProcess(proc, port)
            writer.close()
        except (OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server on port {port} did not start")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """The harness's environment without database/redis settings (given explicitly)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}


@dataclass
class NodeConfig:
    """How the harness runs its own product node."""

    database_url: str
    redis_url: str | None
    data_dir: Path
    jwt_secret: str
    jwt_refresh_secret: str
    extra_env: dict[str, str]

    @classmethod
    def new(
        cls, database_url: str, redis_url: str | None, data_dir: Path, extra: dict[str, str]
    ) -> NodeConfig:
        return cls(
            database_url,
            redis_url,
            data_dir,
            secrets.token_urlsafe(48),
            secrets.token_urlsafe(48),
            extra,
        )


async def start_product(config: NodeConfig, cpus: list[int] | None, **env: str) -> ServerProcess:
    full = base_env()
    full.update(
        {
            "HOST": "127.0.0.1",
            "PORT": "0",
            "PYTHONUNBUFFERED": "1",
            "PEERSPARK_ENV": "development",
            "PEERSPARK_DATA_DIR": str(config.data_dir),
            "DATABASE_URL": config.database_url,
            "JWT_SECRET": config.jwt_secret,
            "JWT_REFRESH_SECRET": config.jwt_refresh_secret,
            "LOG_LEVEL": "WARNING",
            # The bench's senders send far faster than a person; the per-socket chat rate
            # limit would refuse them. (Against --target nodes, set these on the node.)
            "WS_SEND_RATE": "100000",
            "WS_SEND_BURST": "100000",
            # Bench accounts post far more than 10 times an hour; the post-create scenario
            # measures the endpoint, not the moderation rule that would hold those posts.
            "MODERATION_POSTS_PER_HOUR": "100000",
            # A run registers its accounts from one address, which the per-address sign-up
            # limit would refuse after a few.
            "REGISTRATION_RATE_LIMIT": "1000000",
            # and opens thousands of sockets from that one address
            "HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0",
        }
    )
    if config.redis_url:
        full["REDIS_URL"] = config.redis_url
    full.update(config.extra_env)
    full.update(env)
    return await spawn(
        "product node", [sys.executable, "-m", "peerspark_rt", "serve"], env=full, cpus=cpus
    )


async def start_echo(cpus: list[int] | None, mode: str = "raw") -> ServerProcess:
    env = base_env()
    env["PYTHONUNBUFFERED"] = "1"
    return await spawn(
        "echo peer",
        [sys.executable, "-m", "bench.peers.echo", "--port", "0", "--mode", mode],
        env=env,
        cpus=cpus,
    )


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("the Socket.IO peer needs Node.js (`node` on PATH)")
    return found


async def install_peer_deps(log: Callable[[str], None]) -> None:
    """`npm ci` in bench/peers/ when node_modules is missing or older than the lock file."""
    modules = PEERS / "node_modules"
    lock = PEERS / "package-lock.json"
    stamp = modules / ".package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the Socket.IO peer needs npm to install its dependencies")
    log(f"installing the Socket.IO peer's dependencies: npm ci in {PEERS}")
    proc = await asyncio.create_subprocess_exec(
        npm,
        "ci",
        "--no-audit",
        "--no-fund",
        cwd=PEERS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"npm ci failed in {PEERS}:\n{output.decode(errors='replace')}")


async def start_socketio(cpus: list[int] | None, log: Callable[[str], None]) -> ServerProcess:
    await install_peer_deps(log)
    env = base_env()
    env["PORT"] = "0"
    return await spawn(
        "Socket.IO peer", [node_binary(), "socketio-server.js"], env=env, cpus=cpus, cwd=PEERS
    )


# --- the database --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database `name` if it exists, cutting any connection still open to it."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class BenchDatabase:
    """The PostgreSQL the harness's node uses: DATABASE_URL when given, else an embedded server
    whose data stays in the output folder between runs (so seeded accounts are reused)."""

    NAME = "peerspark_bench"

    def __init__(self, given_url: str | None, data_dir: Path) -> None:
        self.given_url = given_url
        self.data_dir = data_dir
        self.url = given_url or ""
        self._embedded: EmbeddedPostgres | None = None

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    async def start(self, *, fresh: bool = False) -> str:
        """The database's URL; `fresh`: the embedded one emptied first (never a given one)."""
        if self.given_url:
            return self.given_url
        self._embedded = EmbeddedPostgres(self.data_dir)
        admin = await asyncio.to_thread(self._embedded.start)
        if fresh:
            await drop_database(admin, self.NAME)
        await ensure_database(admin, self.NAME)
        self.url = self._embedded.dsn(self.NAME)
        return self.url

    def keep_to(self, cpus: list[int] | None) -> None:
        """Run the embedded server (the postmaster, its processes now, and the backends it
        forks later, which inherit its affinity) on `cpus`: the generator's, so the server's
        CPU is the server's alone, as it is for the peers, which store nothing. A database
        given by URL is not ours to move."""
        pid = self.postmaster_pid()
        if pid is None or not cpus:
            return
        for each in (pid, *_children(pid)):
            try:
                os.sched_setaffinity(each, set(cpus))
            except OSError:  # (a process that just ended)
                continue

    def postmaster_pid(self) -> int | None:
        if self._embedded is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    async def stop(self) -> None:
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None
