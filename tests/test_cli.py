"""The command line as operators use it: --help, serve, migrate, bad configuration, and
`make run`'s path (an embedded PostgreSQL in the data folder, shut down on Ctrl-C)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

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
