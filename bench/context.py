"""What every run shares: where results go, CPU placement, the target (or the servers and the
database the harness starts itself), and how it reports progress."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from .nginx import NginxProcess, start_nginx
from .procs import (
    BenchDatabase,
    DeploymentProbe,
    MetricsProbe,
    NodeConfig,
    Placement,
    Probe,
    ProcProbe,
    RedisProcess,
    ServerProcess,
    children_cpu,
    free_port,
    start_echo,
    start_product,
    start_redis,
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
class Deployment:
    """Several product nodes behind nginx (the shipped config/nginx.conf), sharing the
    harness's database and a Redis (its own redis-server unless one was given)."""

    nodes: list[ServerProcess]
    nginx: NginxProcess | None = None
    redis: RedisProcess | None = None

    async def stop(self) -> None:
        if self.nginx is not None:
            await self.nginx.stop()
        await asyncio.gather(*(node.stop() for node in self.nodes))
        if self.redis is not None:
            self.redis.stop()


@dataclass
class Target:
    """A server a run talks to: its URLs and how to measure it."""

    kind: Kind
    base_url: str
    ws_url: str
    probe: Probe | None
    owned: ServerProcess | Deployment | None = None
    # clients connect from many local addresses (127.0.N.1), so that a balancer hashing
    # client addresses (nginx's ip_hash) spreads them over its nodes
    spread_sources: bool = False

    @property
    def where(self) -> str:
        if isinstance(self.owned, Deployment):
            return f"{len(self.owned.nodes)} nodes behind nginx, started by the harness"
        return "started by the harness" if self.owned else "given with --target"

    @property
    def nodes(self) -> int:
        return len(self.owned.nodes) if isinstance(self.owned, Deployment) else 1

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
    fresh_database: bool = False
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
            url = await self.db.start(fresh=self.fresh_database)
            self.db.keep_to(self.placement.clients)
            data_dir = self.out_root / "node-data"
            if self.fresh_database and self.db.embedded:
                self.log("the product database starts empty (--fresh-database)")
                shutil.rmtree(data_dir, ignore_errors=True)
            elif self.fresh_database:
                self.log("--fresh-database: a database given by URL is not emptied")
            data_dir.mkdir(parents=True, exist_ok=True)
            self.node = NodeConfig.new(url, self.redis_url, data_dir, {})
        return self.node

    async def open_target(
        self,
        kind: Kind,
        *,
        nodes: int = 1,
        balancer: bool = False,
        env: dict[str, str] | None = None,
    ) -> Target:
        """The server for one run: --target, or a fresh one started (and pinned) here with
        `env` added to its environment; `balancer`: `nodes` product nodes behind nginx."""
        node_env = env or {}
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
        if kind == "product" and (balancer or nodes > 1):
            return await self._deployment(nodes, cpus, node_env)
        if kind == "product":
            config = await self.node_config()
            server = await start_product(config, cpus, **node_env)
        elif kind == "socketio":
            server = await start_socketio(cpus, self.log)
        else:
            server = await start_echo(cpus, self.echo_mode)
        ws_url = server.ws_url if kind != "socketio" else server.url
        return Target(kind, server.url, ws_url, ProcProbe(server.pid), server)

    async def _deployment(
        self, count: int, cpus: list[int] | None, node_env: dict[str, str]
    ) -> Target:
        config = await self.node_config()
        deployment = Deployment([])
        try:
            env = dict(node_env)
            if count > 1 and not config.redis_url:
                deployment.redis = await start_redis(self.run_dir("redis"))
                env["REDIS_URL"] = deployment.redis.url
                self.log(f"own redis-server at {deployment.redis.url} for the nodes")
            # (the nodes share the server CPUs, so together they have what one node had; one
            # node alone runs as a single node does: in-process unless --redis-url)
            deployment.nodes = list(
                await asyncio.gather(*(start_product(config, cpus, **env) for _ in range(count)))
            )
            ports = [int(n.url.rsplit(":", 1)[1]) for n in deployment.nodes]
            deployment.nginx = await start_nginx(
                self.run_dir("nginx"),
                listen=free_port(),
                upstreams=ports,
                # every bench socket comes from this one machine
                per_address_limit=65_000,
                cpus=cpus,
            )
        except BaseException:
            await deployment.stop()
            raise
        nginx = deployment.nginx
        self.log(f"{count} nodes on ports {ports} behind nginx at {nginx.url}")
        probe = DeploymentProbe(deployment.nodes, balancer_pid=nginx.pid)
        ws = nginx.url.replace("http", "ws", 1) + "/ws"
        return Target("product", nginx.url, ws, probe, deployment, spread_sources=True)

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
