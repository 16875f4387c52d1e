"""Faults as production has them, for tests: a Redis of the test's own that can be paused
(SIGSTOP) or killed and brought back, and a TCP proxy in front of PostgreSQL that can cut or
stall connections. Never the shared Redis on 6379: pausing that would stall every other test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis as redis_sync


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A `redis-server` this test owns."""

    def __init__(self, workdir: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on PATH (install Debian's redis-server package)"
            )
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                redis_sync.Redis.from_url(self.url, socket_connect_timeout=1).ping()
                return self
            except redis_sync.RedisError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def pause(self) -> None:
        """Connected but not answering: what a stalled server looks like to its clients."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Gone: connections reset, new ones refused (and its data lost, as on a restart)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free and valid too."""
    for _ in range(100):
        with socket.socket() as sock, socket.socket() as bus:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port + 10000 > 65535:
                continue
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisClusterServers:
    """A Redis Cluster of `shards` primaries (no replicas) on free ports, made the way an
    operator makes one: redis-server --cluster-enabled, then redis-cli --cluster create."""

    def __init__(self, workdir: Path, shards: int = 3) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH (install Debian's redis-tools)")
        self.cli = cli
        self.servers: list[RedisServer] = []
        for i in range(shards):
            folder = workdir / f"shard{i}"
            folder.mkdir()
            self.servers.append(
                RedisServer(
                    folder,
                    port=free_cluster_port(),
                    args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(folder / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                    ),
                )
            )

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 20) -> RedisClusterServers:
        for server in self.servers:
            server.start()
        made = subprocess.run(
            [self.cli, "--cluster", "create",
             *(f"127.0.0.1:{s.port}" for s in self.servers),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if made.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{made.stdout}{made.stderr}")
        deadline = time.monotonic() + timeout
        for server in self.servers:
            client = redis_sync.Redis(port=server.port, socket_timeout=2)
            while cluster_state(client) != "ok":
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        return self

    def owner(self, key: str) -> int:
        """The port of the primary that owns `key`'s hash slot."""
        client = redis_sync.Redis(port=self.servers[0].port, socket_timeout=2)
        slot = int(client.execute_command("CLUSTER KEYSLOT", key))  # type: ignore[no-untyped-call]
        for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
            if start <= slot <= end:
                return int(primary[1])
        raise AssertionError(f"no shard owns slot {slot}")

    def shard_subscribers(self, port: int, channel: str) -> int:
        """How many connections of the shard on `port` are subscribed to `channel`."""
        client = redis_sync.Redis(port=port, socket_timeout=2)
        ((_, count),) = client.execute_command("PUBSUB SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
        return int(count)

    def calls(self, port: int, command: str) -> int:
        """How often the shard on `port` has run `command` (INFO commandstats)."""
        client = redis_sync.Redis(port=port, socket_timeout=2)
        stats = client.info("commandstats").get(f"cmdstat_{command.lower()}")
        return int(stats["calls"]) if stats else 0

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target, in the test's event loop. `cut()` resets every
    connection and refuses new ones until `restore()`; `stall()` keeps connections open but
    forwards nothing until `restore()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._open = asyncio.Event()
        self._open.set()
        self.refusing = False

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def dsn(self, dsn: str) -> str:
        """`dsn` with its host and port replaced by the proxy's."""
        head, _, rest = dsn.partition("://")
        creds, _, hostpart = rest.rpartition("@")
        _, _, path = hostpart.partition("/")
        return f"{head}://{creds + '@' if creds else ''}127.0.0.1:{self.port}/{path}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self._conns.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._conns.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await self._open.wait()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def cut(self) -> None:
        self.refusing = True
        for writer in list(self._conns):
            _reset(writer)
        self._conns.clear()

    def stall(self) -> None:
        self._open.clear()

    def restore(self) -> None:
        self.refusing = False
        self._open.set()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    with contextlib.suppress(OSError, RuntimeError):
        transport.abort()


def cluster_state(client: redis_sync.Redis) -> str:
    info: dict[str, str] = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    return info.get("cluster_state", "")
