"""The asyncpg pool and schema migration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from ..config import project_file
from .types import Conn

log = logging.getLogger(__name__)

SCHEMA_FILE = project_file("schema.sql")
# Any constant works; it only has to be the same on every node.
_MIGRATION_LOCK = 0x5045_4552  # "PEER"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    # JSON columns come back as Python objects and go in from Python objects.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
        )


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """What the pool runs on a connection it takes back (after asyncpg's own rollback of a
    transaction left open): nothing. asyncpg's default resets the whole session with a query
    (`RESET ALL; UNLISTEN *; CLOSE ALL; ...`) on every release, a round trip that doubled the
    statements of each one-query request; nothing here leaves session state behind: settings
    are given at connect time, locks are transaction-scoped, there is no LISTEN and no
    cursor outside a transaction."""


class Database:
    """A pool of connections plus the helpers services use to run SQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(
        cls, dsn: str, *, max_size: int = 20, statement_timeout_ms: int = 30000
    ) -> Database:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            server_settings={
                "statement_timeout": str(statement_timeout_ms),
                "application_name": "peerspark-rt",
            },
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn:
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self.pool.execute(query, *args)

    def stats(self) -> dict[str, int]:
        return {
            "size": self.pool.get_size(),
            "idle": self.pool.get_idle_size(),
            "max": self.pool.get_max_size(),
        }


async def apply_schema(dsn: str, schema_file: Path = SCHEMA_FILE) -> None:
    """Apply schema.sql once, under an advisory lock so concurrent nodes do not race."""
    sql = await asyncio.to_thread(schema_file.read_text)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(sql)
    finally:
        await conn.close()
    log.info("schema applied", extra={"schema": str(schema_file)})


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database `name` if it does not exist (used for the embedded server)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
