"""The asyncpg pool and schema migration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson
from aiohttp import web
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from ..config import project_file
from ..errors import Unavailable
from .dbtypes import Conn

log = logging.getLogger(__name__)

SCHEMA_FILE = project_file("schema.sql")
# Any constant works; it only has to be the same on every node.
_MIGRATION_LOCK = 0x5045_4552  # "PEER"
# How long anything waits for a free connection before it is refused (503). A pool that stays
# exhausted this long is overloaded, or code holds a connection while waiting for another:
# failing loudly (and letting go of the held connection) beats requests that hang for good.
ACQUIRE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 10.0  # seconds a shutdown waits for busy connections
# For connections kept however long they idle: the server probes a quiet one after a minute
# (well inside the idle timeouts of NATs and load balancers: 350 s and more) and gives it up
# after three unanswered probes.
KEEPALIVES = {
    "tcp_keepalives_idle": "60",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}

if TYPE_CHECKING:
    _PoolBase: TypeAlias = asyncpg.Pool[asyncpg.Record]
    _AcquireBase: TypeAlias = PoolAcquireContext[asyncpg.Record]
    _Proxy: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:  # not subscriptable at run time
    _PoolBase = asyncpg.Pool
    _AcquireBase = PoolAcquireContext


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    # JSON columns come back as Python objects and go in from Python objects.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
        )
    # citext (usernames, emails) is an extension's type: without a codec, a connection's first
    # statement that shows one has asyncpg walk the catalog for it (8-16 ms of the database,
    # on whichever request opened the connection), where naming it here costs ~1 ms
    try:
        await conn.set_type_codec("citext", encoder=str, decoder=str, format="text")
    except ValueError:  # not in public (managed services keep extensions in a schema of their own)
        schema = await conn.fetchval(
            "SELECT n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE t.oid = to_regtype('citext')"
        )
        if schema is not None:  # (none yet: the schema is not applied; asyncpg asks later)
            await conn.set_type_codec(
                "citext", schema=schema, encoder=str, decoder=str, format="text"
            )


def _then(
    warm: Callable[[Conn], Awaitable[None]],
) -> Callable[[asyncpg.Connection[asyncpg.Record]], Coroutine[Any, Any, None]]:
    async def init(conn: asyncpg.Connection[asyncpg.Record]) -> None:
        await _init_connection(conn)
        await warm(conn)

    return init


def _busy(timeout: float | None) -> Unavailable:
    return Unavailable(
        f"the server is too busy: no database connection became free within {timeout:g} s; "
        "try again shortly",
        code="database_busy",
    )


class _AcquireOrBusy(_AcquireBase):
    """`pool.acquire()` that turns running out of time into a 503."""

    __slots__ = ()

    async def __aenter__(self) -> _Proxy:
        try:
            return await super().__aenter__()
        except TimeoutError:
            log.warning("no database connection free within %ss", self.timeout)
            raise _busy(self.timeout) from None

    def __await__(self) -> Generator[Any, None, _Proxy]:
        try:
            return (yield from super().__await__())
        except TimeoutError:
            log.warning("no database connection free within %ss", self.timeout)
            raise _busy(self.timeout) from None


class TimedPool(_PoolBase):
    """An asyncpg pool whose every acquisition, also the implicit one of `pool.fetch(...)`,
    waits at most `acquire_timeout` seconds (bounding only our own `transaction()` would not
    do: in a pool deadlock the holders are stuck in such inner acquisitions), and whose callers
    are served in the order they came.

    asyncpg's queue of free connections is not fair: a connection handed back wakes the first
    waiter, but a caller that runs before that waiter does takes it, and the waiter queues
    again at the back. Under load a request's session check waited up to 0.5 s while the
    median waited 5 ms. So callers first pass a first-come-first-served gate with a place per
    connection (asyncio's Semaphore hands a released place to the next waiter, and lets no
    newcomer past one); whoever passes it is next for a connection (one free, or on its way
    back, or to be opened), within what is left of `acquire_timeout`."""

    __slots__ = ("_gate", "_placed", "acquire_timeout")
    acquire_timeout: float
    _gate: asyncio.Semaphore
    _placed: set[Any]  # the connections handed out through the gate, each holding a place

    def acquire(self, *, timeout: float | None = None) -> _AcquireBase:
        return _AcquireOrBusy(self, self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> _Proxy:
        # (asyncpg's own step of both `async with pool.acquire()` and `await pool.acquire()`)
        gate = self._gate
        loop = asyncio.get_running_loop()
        started = loop.time()
        if gate.locked():
            async with asyncio.timeout(timeout):
                await gate.acquire()
        else:
            await gate.acquire()  # (returns at once)
        try:
            left = None if timeout is None else max(0.001, timeout - (loop.time() - started))
            proxy: _Proxy = await super()._acquire(left)  # type: ignore[misc]
        except BaseException:
            gate.release()
            raise
        self._placed.add(proxy)
        return proxy

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        # (a place once per connection handed out: a second release of it, which asyncpg
        # ignores, or one of a connection from elsewhere, which it refuses, gives back none)
        placed = connection in self._placed
        self._placed.discard(connection)
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if placed:
                self._gate.release()


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
        cls,
        dsn: str,
        *,
        max_size: int = 20,
        statement_timeout_ms: int = 30000,
        acquire_timeout: float = ACQUIRE_TIMEOUT,
        lock_timeout_ms: int | None = None,
        application_name: str = "peerspark-rt",
        warm: Callable[[Conn], Awaitable[None]] | None = None,
        max_inactive: float = 300.0,
        min_size: int = 1,
    ) -> Database:
        """A pool whose statements end after `statement_timeout_ms` (the server cancels them,
        and asyncpg's own `command_timeout` gives up a little later should the server not
        answer at all), whose lock waits end after `lock_timeout_ms`, and whose acquisitions
        end after `acquire_timeout` (503). `warm` runs on each new connection (after the
        codecs are set); `min_size` connections are opened at once; `max_inactive` seconds
        idle close a connection (0: never, and the server then probes idle connections with
        TCP keepalives, so a NAT or load balancer on the way does not drop one unseen)."""
        settings = {
            "statement_timeout": str(statement_timeout_ms),
            "application_name": application_name,
        }
        if lock_timeout_ms is not None:
            settings["lock_timeout"] = str(lock_timeout_ms)
        if max_inactive <= 0:
            settings.update(KEEPALIVES)
        # What asyncpg.create_pool does, with our pool class.
        pool = TimedPool(
            dsn,
            min_size=min(min_size, max_size),
            max_size=max_size,
            max_queries=50000,
            max_inactive_connection_lifetime=max_inactive,
            init=_init_connection if warm is None else _then(warm),
            loop=None,
            connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
            reset=_keep_session,
            server_settings=settings,
            command_timeout=statement_timeout_ms / 1000 + 5,
        )
        pool.acquire_timeout = acquire_timeout
        pool._gate = asyncio.Semaphore(max_size)
        pool._placed = set()
        await pool
        return cls(pool)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close gracefully (connections are handed back first), or cut them after `timeout`:
        asyncpg's close waits for every connection, and one stuck in a query would hold a
        shutdown forever."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            log.warning("database connections still busy after %.0fs; cut", timeout)
            self.pool.terminate()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A connection in a transaction; 503 (Unavailable) when none becomes free in time."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A connection of the pool; 503 (Unavailable) when none becomes free in time."""
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


# the application's key for what this module provides (typed app state)
DB = web.AppKey("db", Database)
CHAT_DB = web.AppKey("chat_db", Database)  # the chat store's own connections
