"""The command line as operators use it: --help, serve, migrate, bad configuration, and
`make run`'s path (an embedded PostgreSQL in the data folder, shut down on Ctrl-C)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

from tests.conftest import searchable_tmpdir
from tests.helpers import METRICS_TOKEN
from tests.nodes import ROOT, start_node


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peerspark_rt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_explains_both_commands() -> None:
    out = run_cli("--help").stdout
    assert "serve" in out
    assert "migrate" in out
    assert "DATABASE_URL" in out
    assert "REDIS_URL" in out
    serve_help = run_cli("serve", "--help").stdout
    assert "--host" in serve_help
    assert "--port" in serve_help


def test_bad_configuration_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", env={"PORT": "eighty", "PEERSPARK_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["configuration error: PORT: expected an integer, got 'eighty'"]
    result = run_cli(
        "serve", env={"PEERSPARK_ENV": "production", "PEERSPARK_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "JWT_SECRET: required when PEERSPARK_ENV=production" in result.stderr


def test_migrate_applies_the_schema_twice_harmlessly(pg_dsn: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": pg_dsn, "PEERSPARK_DATA_DIR": str(tmp_path)}
    for _ in range(2):
        result = run_cli("migrate", env=env)
        assert result.returncode == 0, result.stderr
        assert "schema applied" in result.stdout


async def test_serve_prints_where_it_listens_and_stops_cleanly(pg_dsn: str, tmp_path: Path) -> None:
    node = start_node({"DATABASE_URL": pg_dsn, "PEERSPARK_DATA_DIR": str(tmp_path)})
    try:
        listening = [line for line in node.output if "listening on" in line]
        assert len(listening) == 1
        async with aiohttp.ClientSession() as http, http.get(f"{node.url}/health") as resp:
            assert resp.status == 200
    finally:
        assert node.stop(signal.SIGINT) == 0


async def test_embedded_database_starts_serves_and_stops() -> None:
    """What `make run` does on a fresh machine: no DATABASE_URL, no REDIS_URL."""
    folder = searchable_tmpdir()
    data = folder / "data"
    node = start_node(
        {"PEERSPARK_DATA_DIR": str(data), "METRICS_TOKEN": METRICS_TOKEN}, timeout=120
    )
    operator = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    try:
        assert any("embedded PostgreSQL" in line for line in node.output)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.url}/health", headers=operator) as resp:
                body = await resp.json()
                assert resp.status == 200
                assert body["services"]["database"]["version"].startswith("18")
                assert body["services"]["redis"]["mode"] == "in-process"
            async with http.post(
                f"{node.url}/api/auth/register",
                json={
                    "email": "first@example.com",
                    "username": "first",
                    "password": "Pass-word-1",
                    "firstName": "F",
                    "lastName": "L",
                },
            ) as resp:
                assert resp.status == 201
    finally:
        assert node.stop(signal.SIGINT) == 0
    # Ctrl-C stopped the embedded server too (its pid file is removed on a clean stop).
    deadline = time.monotonic() + 10
    while (data / "postgres" / "postmaster.pid").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not (data / "postgres" / "postmaster.pid").exists()
    assert (data / "jwt-secrets.json").exists()
    shutil.rmtree(folder, ignore_errors=True)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_migrate_creates_a_missing_database_and_serve_says_how(pg_admin_dsn: str) -> None:
    base, _, _ = pg_admin_dsn.rpartition("/")
    name = f"peerspark_cli_{secrets.token_hex(4)}"
    env = {"DATABASE_URL": f"{base}/{name}", "PEERSPARK_DATA_DIR": str(searchable_tmpdir())}
    served = run_cli("serve", env=env)
    assert served.returncode == 1
    assert served.stderr.strip().splitlines() == [
        f'PostgreSQL at {base.rpartition("@")[2]} has no database "{name}" (DATABASE_URL): '
        "create it with `python -m peerspark_rt migrate`"
    ]
    try:
        migrated = run_cli("migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert f'created database "{name}"' in migrated.stdout
        assert "schema applied" in migrated.stdout
    finally:
        asyncio.run(_drop(pg_admin_dsn, name))


async def _drop(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_unreachable_services_are_named_in_one_line(pg_dsn: str, tmp_path: Path) -> None:
    port = _dead_port()
    no_pg = run_cli(
        "serve",
        env={
            "DATABASE_URL": f"postgresql://postgres:secret@127.0.0.1:{port}/peerspark",
            "PEERSPARK_DATA_DIR": str(tmp_path),
        },
    )
    assert no_pg.returncode == 1
    assert no_pg.stderr.strip().splitlines() == [
        f"cannot reach PostgreSQL at postgresql://postgres:***@127.0.0.1:{port}/peerspark "
        "(DATABASE_URL): connection refused (is it running, on that port?)"
    ]
    no_redis = run_cli(
        "serve",
        env={
            "DATABASE_URL": pg_dsn,
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "PEERSPARK_DATA_DIR": str(tmp_path),
        },
    )
    assert no_redis.returncode == 1
    lines = no_redis.stderr.strip().splitlines()
    assert len(lines) == 1, no_redis.stderr
    assert lines[0].startswith(f"cannot reach Redis at redis://127.0.0.1:{port}/0 (REDIS_URL): ")


def _postmaster_gone(folder: Path, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while (folder / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not (folder / "postmaster.pid").exists()


def test_the_embedded_database_never_outlives_its_node() -> None:
    """A closed terminal (SIGHUP) stops it; one a killed node left behind is taken over by the
    next start, or stopped by `python -m peerspark_rt stop` (make stop)."""
    folder = searchable_tmpdir()
    env = {"PEERSPARK_DATA_DIR": str(folder / "data")}
    postgres = folder / "data" / "postgres"
    try:
        node = start_node(env, timeout=120)
        node.kill()  # kill -9: nothing cleaned up
        assert (postgres / "postmaster.pid").exists()
        stopped = run_cli("stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped the embedded PostgreSQL" in stopped.stdout
        assert _postmaster_gone(postgres)

        node = start_node(env, timeout=120)
        assert node.stop(signal.SIGHUP) == 0
        assert _postmaster_gone(postgres)

        node = start_node(env, timeout=120)
        node.kill()
        node = start_node(env, timeout=120)  # finds the orphan and takes it over
        assert any("left running by an earlier run" in line for line in node.output)
        assert node.stop(signal.SIGINT) == 0
        assert _postmaster_gone(postgres)
    finally:
        run_cli("stop", env=env)
        shutil.rmtree(folder, ignore_errors=True)
