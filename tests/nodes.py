"""Start real server processes (`python -m peerspark_rt serve`) for tests."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.helpers import METRICS_TOKEN, Api, User, open_session

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"node (?P<node_id>\S+) listening on http://(?P<host>[^:]+):(?P<port>\d+)")


@dataclass
class Node:
    proc: subprocess.Popen[str]
    host: str
    port: int
    node_id: str
    env: Mapping[str, str]
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(
                f"node did not stop within {timeout}s:\n" + "".join(self.output[-50:])
            ) from None

    def kill(self) -> None:
        """kill -9: no clean-up at all, as when a machine dies."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def respawn(self) -> Node:
        """A new process on the same port (a restart behind a load balancer), once this one
        has exited."""
        assert not self.alive, "stop or kill the node first"
        return start_node(self.env, port=self.port)


def start_node(
    env: Mapping[str, str], *, timeout: float = 60, args: tuple[str, ...] = (), port: int = 0
) -> Node:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    # every test client signs up from 127.0.0.1: the per-address sign-up limit is not the point
    full_env.update(
        {"HOST": "127.0.0.1", "PORT": str(port), "PYTHONUNBUFFERED": "1",
         "REGISTRATION_RATE_LIMIT": "1000000", "HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0", **env}
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "peerspark_rt", "serve", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = _LISTENING.search(line)
            if m and not ready.is_set():
                found.update(m.groupdict())
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("node did not start:\n" + "".join(output))
    if not found:
        proc.wait(10)
        raise RuntimeError(f"node exited with {proc.returncode}:\n" + "".join(output))
    return Node(proc, found["host"], int(found["port"]), found["node_id"], env, output)


def node_env(
    database_url: str, data_dir: Path, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a test node: its database (and Redis), secrets and a Redis key
    prefix of its own, quiet logs, no job worker, senders faster than people; `extra` (upper-
    case variable names) adds or overrides."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_KEY_PREFIX": f"n{secrets.token_hex(4)}:",
        "JWT_SECRET": secrets.token_urlsafe(40),
        "JWT_REFRESH_SECRET": secrets.token_urlsafe(40),
        "AUTO_MIGRATE": "false",
        "PEERSPARK_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "RUN_WORKER": "false",
        "WS_SEND_RATE": "1000",
        "WS_SEND_BURST": "1000",
        "METRICS_TOKEN": METRICS_TOKEN,
        # OWASP's argon2id floor (~4x cheaper than the default): tests sign up thousands
        "PASSWORD_HASH_TIME_COST": "2",
        "PASSWORD_HASH_MEMORY_KIB": "19456",
        "PASSWORD_HASH_PARALLELISM": "1",
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def start_nodes(env: Mapping[str, str], count: int) -> list[Node]:
    """`count` nodes with one environment, started side by side."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: start_node(env), range(count)))


@asynccontextmanager
async def node_apis(nodes: list[Node]) -> AsyncIterator[list[Api]]:
    """An `Api` for each node (REST over aiohttp, and its websocket address)."""
    sessions = [aiohttp.ClientSession(base_url=n.url) for n in nodes]
    made = [Api(s, ws_url=n.ws_url) for s, n in zip(sessions, nodes, strict=True)]
    try:
        yield made
    finally:
        for api in made:
            await api.aclose()
        for s in sessions:
            await s.close()


def user_with_room(node: Node) -> tuple[User, str]:
    """A user signed up on `node` and a study session of theirs (its room name), for a
    module's fixture (outside any event loop)."""

    async def setup() -> tuple[User, str]:
        async with node_apis([node]) as (api,):
            user = await api.register()
            return user, await open_session(api, user)

    return asyncio.run(setup())
