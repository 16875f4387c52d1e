"""What every run shares: where results go, CPU placement, the target (or the servers and the
database the harness starts itself), and how it reports progress."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from .procs import (
    BenchDatabase,
    MetricsProbe,
    NodeConfig,
    Placement,
    Probe,
    ProcProbe,
    ServerProcess,
    children_cpu,
    start_echo,
    start_product,
    start_socketio,
)
from .seed import DirectSeeder, RestApi, RestSeeder
from .wire import Kind

DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def machine_load() -> dict[str, float | int]:
    one, five, fifteen = os.getloadavg()
    return {
        "load1": round(one, 2),
        "load5": round(five, 2),
        "load15": round(fifteen, 2),
        "cpus": os.cpu_count() or 1,
    }


@dataclass
class Target:
    """A server a run talks to: its URLs and how to measure it."""

    kind: Kind
    base_url: str
    ws_url: str
    probe: Probe | None
    owned: ServerProcess | None = None

    @property
    def where(self) -> str:
        return "started by the harness" if self.owned else "given with --target"

    async def stop(self) -> None:
        if self.owned is not None:
            await self.owned.stop()


@dataclass
class Context:
    out_root: Path = DEFAULT_OUT
    placement: Placement = field(default_factory=Placement.default)
    target: str | None = None
    server_pid: int | None = None
    database_url: str | None = None
    redis_url: str | None = None
    workers: int = 4
    quiet: bool = False
    echo_mode: str = "raw"
    db: BenchDatabase | None = None
    node: NodeConfig | None = None
    _started: float = field(default_factory=time.monotonic)

    def log(self, text: str) -> None:
        if not self.quiet:
            stamp = f"{time.monotonic() - self._started:6.1f}s"
            print(f"[bench {stamp}] {text}", file=sys.stderr, flush=True)

    def run_dir(self, name: str) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.out_root / f"{stamp}-{name}"
        n = 1
        while path.exists():
            n += 1
            path = self.out_root / f"{stamp}-{name}-{n}"
        path.mkdir(parents=True)
        return path

    # --- the product's database and node (when the harness runs them) -----------------------

    async def node_config(self) -> NodeConfig:
        if self.node is None:
            self.db = BenchDatabase(self.database_url, self.out_root / "pgdata")
            if not self.database_url:
                self.log(f"starting the embedded PostgreSQL in {self.db.data_dir}")
            url = await self.db.start()
            data_dir = self.out_root / "node-data"
            data_dir.mkdir(parents=True, exist_ok=True)
            self.node = NodeConfig.new(url, self.redis_url, data_dir, {})
        return self.node

    async def open_target(self, kind: Kind, **node_env: str) -> Target:
        """The server for one run: --target, or a fresh one started (and pinned) here."""
        if self.target:
            base = self.target.rstrip("/")
            if base.startswith("ws"):
                base = "http" + base[2:]
            base = base.removesuffix("/ws")
            probe: Probe | None = None
            if self.server_pid:
                probe = ProcProbe(self.server_pid)
            elif kind == "product":
                probe = MetricsProbe(base)
            ws = base.replace("http", "ws", 1)
            return Target(kind, base, ws + "/ws" if kind != "socketio" else base, probe)
        cpus = self.placement.server
        server: ServerProcess
        if kind == "product":
            config = await self.node_config()
            server = await start_product(config, cpus, **node_env)
        elif kind == "socketio":
            server = await start_socketio(cpus, self.log)
        else:
            server = await start_echo(cpus, self.echo_mode)
        ws_url = server.ws_url if kind != "socketio" else server.url
        return Target(kind, server.url, ws_url, ProcProbe(server.pid), server)

    def seeder(self, api: RestApi) -> DirectSeeder | RestSeeder:
        if not self.target and self.node is not None:
            return DirectSeeder(
                self.node.database_url, self.node.jwt_secret, self.node.jwt_refresh_secret
            )
        key = api.base.split("://", 1)[-1].replace("/", "_").replace(":", "_")
        return RestSeeder(api, self.out_root / "accounts" / f"{key}.json")

    async def database_settings(self) -> dict[str, str] | None:
        """How durable the database of a node started here is (None for --target)."""
        if self.target or self.node is None:
            return None
        conn = await asyncpg.connect(self.node.database_url)
        try:
            return {
                "fsync": await conn.fetchval("SHOW fsync"),
                "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
                "where": "embedded (bench/out/pgdata)" if self.db and self.db.embedded else "given",
            }
        finally:
            await conn.close()

    def db_cpu(self) -> float | None:
        """CPU seconds of the embedded PostgreSQL so far (None when it is not ours)."""
        if self.db is None:
            return None
        pid = self.db.postmaster_pid()
        return children_cpu(pid) if pid else None

    async def close(self) -> None:
        if self.db is not None:
            await self.db.stop()


def rest_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=120),
    )
