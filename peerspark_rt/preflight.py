"""Before a node starts: can it reach the services it is configured with? A person starting it
gets one line naming the service, where it was looked for and why it failed, instead of a
traceback from deep inside a driver. `migrate` also creates a database that does not exist."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from .config import redact_url

CONNECT_TIMEOUT = 10.0


class StartupError(Exception):
    """A service the node needs is missing or unreachable; the message is one line."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is it running, on that port?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _server(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _connect(url: str) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        return conn
    except asyncpg.InvalidCatalogNameError:
        raise
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise StartupError(
            f"PostgreSQL at {_server(url)} refused the login (DATABASE_URL): {_reason(exc)}"
        ) from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(
            f"cannot reach PostgreSQL at {redact_url(url)} (DATABASE_URL): {_reason(exc)}"
        ) from None


async def check_database(url: str, *, create: bool) -> str | None:
    """Check that the database at `url` answers. A database that does not exist is created
    when `create` (say so: the returned line), else a StartupError says how to create it."""
    name = _database_name(url)
    try:
        conn = await _connect(url)
    except asyncpg.InvalidCatalogNameError:
        if not create:
            raise StartupError(
                f'PostgreSQL at {_server(url)} has no database "{name}" (DATABASE_URL): '
                "create it with `python -m peerspark_rt migrate`"
            ) from None
        admin = await _connect(_with_database(url, "postgres"))
        try:
            quoted = '"' + name.replace('"', '""') + '"'
            await admin.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            pass  # another node created it a moment ago
        except asyncpg.PostgresError as exc:
            raise StartupError(
                f'cannot create database "{name}" on PostgreSQL at {_server(url)}: {_reason(exc)}'
            ) from None
        finally:
            await admin.close()
        return f'created database "{name}" on PostgreSQL at {_server(url)}'
    await conn.close()
    return None


async def check_redis(url: str) -> None:
    """Check that Redis at `url` answers a PING."""
    client = redis_asyncio.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        await asyncio.wait_for(client.ping(), CONNECT_TIMEOUT + 1)
    except (RedisError, OSError, TimeoutError) as exc:
        raise StartupError(
            f"cannot reach Redis at {redact_url(url)} (REDIS_URL): {_reason(exc)}"
        ) from None
    finally:
        await client.aclose()
