"""Fixtures that start real services.

PostgreSQL: TEST_DATABASE_URL, else the server on 127.0.0.1:5432, else an embedded server
started here. Each test session gets a fresh database with schema.sql applied.
Redis: TEST_REDIS_URL, else 127.0.0.1:6379, else a `redis-server` from PATH started here.
A test that needs a service that cannot be found fails with a message saying what is missing.
TEST_STANDALONE=1 skips the local servers, to check the suite on a machine without them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis as redis_sync
from aiohttp.test_utils import TestClient

from peerspark_rt.app import build_app
from peerspark_rt.config import Settings
from peerspark_rt.infra.embedded import EmbeddedPostgres, EmbeddedPostgresError
from peerspark_rt.infra.pool import apply_schema
from tests.fake_openai import FakeOpenAI
from tests.helpers import METRICS_TOKEN, Api
from tests.lb import INSTALL_HINT, Nginx, nginx_binary, start_nginx
from tests.nodes import Node, node_env, start_node

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
STANDALONE = os.environ.get("TEST_STANDALONE") == "1"


# Folders searchable_tmpdir made in this run: removed when the run ends (an embedded
# PostgreSQL's alone is 50-180 MB, and used to be left in the temp folder by every run).
_MADE_FOLDERS: list[Path] = []


def searchable_tmpdir() -> Path:
    """A temporary folder every user can traverse: pytest's own are 0700, and under root the
    embedded PostgreSQL runs as an unprivileged user that must reach its data folder. It is
    removed at the end of the test run."""
    path = Path(tempfile.mkdtemp(prefix="peerspark-test-"))
    path.chmod(0o755)
    _MADE_FOLDERS.append(path)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the temporary folders of this run (servers in them were stopped by their
    fixtures, which end before this)."""
    for path in _MADE_FOLDERS:
        shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _try_connect(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _with_database(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if not STANDALONE and asyncio.run(_try_connect(LOCAL_PG)):
        yield LOCAL_PG
        return
    try:
        server = EmbeddedPostgres(searchable_tmpdir() / "data")
        dsn = server.start()
    except EmbeddedPostgresError as exc:
        pytest.fail(
            "PostgreSQL is needed: none at TEST_DATABASE_URL or 127.0.0.1:5432, and the "
            f"embedded server could not start: {exc}"
        )
    yield dsn
    server.stop()


@pytest.fixture(scope="session")
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh database with the schema applied, for this test session."""
    name = f"peerspark_test_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_create_database(pg_admin_dsn, name))
    dsn = _with_database(pg_admin_dsn, name)
    asyncio.run(apply_schema(dsn))
    yield dsn
    asyncio.run(_drop_database(pg_admin_dsn, name))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    candidates = [os.environ["TEST_REDIS_URL"]] if os.environ.get("TEST_REDIS_URL") else []
    if not STANDALONE:
        candidates.append(LOCAL_REDIS)
    for url in candidates:
        try:
            redis_sync.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis_sync.RedisError:
            continue
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "Redis is needed: none at TEST_REDIS_URL or 127.0.0.1:6379 and no redis-server on "
            "PATH (install Debian's redis-server package)"
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis_sync.Redis.from_url(url).ping()
            break
        except redis_sync.RedisError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def cluster_env(
    pg_dsn: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment of the shared multi-node cluster (and of extra nodes tests add)."""
    return node_env(
        pg_dsn,
        tmp_path_factory.mktemp("cluster"),
        redis_url,
        # nginx (tests/lb.py) appends the client's address; direct clients send none
        TRUST_PROXY_HEADERS="true",
        SHUTDOWN_TIMEOUT="15",
        # these nodes live for the whole session: they must not take other tests' jobs
        RUN_WORKER="false",
        ADMIN_DASHBOARD_INTERVAL="0.5",
    )


@pytest.fixture(scope="session")
def nodes(cluster_env: dict[str, str]) -> Iterator[list[Node]]:
    """Three real node processes on fixed ports, shared by the multi-node tests (those that
    kill or restart one put a live one back in its place, on the same port)."""
    ports = [_free_port() for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        started = list(pool.map(lambda port: start_node(cluster_env, port=port), ports))
    yield started
    for node in started:
        node.stop()


@pytest.fixture(scope="session")
def nginx(nodes: list[Node], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """Debian's nginx with config/nginx.conf in front of the shared nodes."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip(f"no nginx binary: {INSTALL_HINT}")
    lb = start_nginx(
        binary,
        listen=_free_port(),
        upstreams=[n.port for n in nodes],
        workdir=tmp_path_factory.mktemp("nginx"),
    )
    yield lb
    lb.stop()


TEST_PASSWORD_HASHING: dict[str, Any] = {
    "password_hash_time_cost": 2,
    "password_hash_memory_kib": 19456,
    "password_hash_parallelism": 1,
}


def make_settings(pg_dsn: str, data_dir: Path, **overrides: Any) -> Settings:
    base = Settings(
        env="test",
        database_url=pg_dsn,
        data_dir=data_dir,
        jwt_secret=secrets.token_urlsafe(40),
        jwt_refresh_secret=secrets.token_urlsafe(40),
        auto_migrate=False,
        database_pool_size=10,
        allowed_origins=("http://localhost:3000",),
        # a prefix per test keeps rate limits and channels of parallel runs apart in one Redis
        redis_key_prefix=f"t{secrets.token_hex(4)}:",
        # Tests that need the job worker ask for it (run_worker=True), so the other tests' apps
        # do not pick up jobs from the shared test database.
        run_worker=False,
        # Every test client is 127.0.0.1: tests that are about the per-address sign-up limit
        # set their own.
        registration_rate_limit=100_000,
        metrics_token=METRICS_TOKEN,
        # OWASP's argon2id floor (~4x cheaper than the default): tests sign up thousands
        **TEST_PASSWORD_HASHING,
    )
    return base.replace(**overrides)


@pytest.fixture
def settings(pg_dsn: str, tmp_path: Path) -> Settings:
    return make_settings(pg_dsn, tmp_path)


AppFactory = Callable[..., Any]


@pytest.fixture
async def make_client(
    aiohttp_client: Any, pg_dsn: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start an app with settings overrides and return an `Api` over a test client."""

    made: list[Api] = []

    async def factory(**overrides: Any) -> Api:
        settings = make_settings(pg_dsn, tmp_path, **overrides)
        client: TestClient[Any, Any] = await aiohttp_client(build_app(settings))
        api = Api(client)
        made.append(api)
        return api

    yield factory
    for api in made:
        await api.aclose()


@pytest.fixture
async def api(make_client: Callable[..., Any]) -> Api:
    """The product on in-process defaults (no Redis), over a real socket."""
    result: Api = await make_client()
    return result


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, to check what the product stored."""
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def fake_ai() -> AsyncIterator[FakeOpenAI]:
    """A local OpenAI-compatible server (chat completions, streaming, moderations)."""
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


def ai_settings(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    """Settings that point the product's AI at the fake server, with short timeouts."""
    return {
        "openai_api_key": "sk-test",
        "openai_base_url": fake.url,
        "openai_model": "test-model",
        "openai_timeout": 1.0,
        "openai_max_retries": 0,
        "moderation_timeout": 0.5,
        **overrides,
    }


@pytest.fixture
async def ai_api(make_client: Callable[..., Any], fake_ai: FakeOpenAI) -> Api:
    """The product with AI configured against the fake OpenAI server."""
    result: Api = await make_client(**ai_settings(fake_ai))
    return result


_SUMMARIES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect what tests record as "summary" (also from xdist workers: user properties travel
    with their reports to the controller)."""
    if report.when == "call":
        _SUMMARIES.extend(str(v) for k, v in report.user_properties if k == "summary")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Counts tests record for the run's summary (the contract fuzzer's operations, examples,
    statuses and 5xx), passed or failed."""
    for line in _SUMMARIES:
        terminalreporter.write_line(line)
