"""A cache of hot reads (the feed, resource search), one entry per viewer and query.

Invalidation is explicit and complete by construction: every write to a table a cached read
depends on bumps the reads' generation in PostgreSQL (triggers in schema.sql, at the writing
transaction's commit, whichever code path or node wrote), and an entry is only found under the
generation read *before* the page was computed. So a write is seen by the next read after its
commit, on every node; an entry computed from older data can only sit under an older generation.
A request may read the generation in the statement that checks its session (`GENERATION_EXPR`),
before its handler computes anything, and hand it to `get_or_make`: one round trip per cached
hit instead of two. A write that committed before the request began is still seen; the one
thing a generation read that early must not serve is the request's own earlier writes, so only
handlers that write nothing first may pass it (the GET handlers of the cached reads).

Never across users: the viewer's id is part of every key (a page depends on who asks: private
pods, shares, likes), and the caller authorizes before it asks the cache. The one shared page
is resource search's as nobody sees it (a viewer id no account has: public, active resources,
nobody's grants or ratings), which search/service.py gives a viewer only after checking, in
the database, that they may see nothing more that matches, and with their own grants on it.

Redis when configured (shared by the nodes; every call has a deadline and a cache that fails is
skipped, never an error), else a bounded dictionary in this process. Entries also expire after
`ttl` seconds, which bounds what no table records (signed file links' remaining lifetime); a
viewer's entry made from the shared page (above) can hold what that page held for up to `ttl`,
so its links are at most twice `ttl` old."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import msgspec

from ..cluster.redis_client import RedisClient
from .dbtypes import Executor

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_LOCAL = 4096  # entries kept in process (least recently used go first)

# the reads that are cached (names in keys and metrics); one generation serves them all
# (schema.sql says why)
FEED = "feed"
RESOURCES = "resources"
# resource search pages as nobody sees them, shared by the viewers who see nothing more
# (search/service.py)
RESOURCES_PUBLIC = "resources-public"

# (the sum of the counters only grows, by one with each committed write: schema.sql); as a
# scalar subquery so that another statement can select it too
GENERATION_EXPR = "(SELECT sum(generation)::bigint FROM read_generations WHERE name LIKE 'reads-%')"
_GENERATION_SQL = f"SELECT {GENERATION_EXPR}"


class CacheObserver(Protocol):
    def cache_lookup(self, cache: str, outcome: str) -> None:
        """One lookup: outcome hit, miss, or off (caching disabled or failed)."""


class _NoObserver:
    def cache_lookup(self, cache: str, outcome: str) -> None:
        return None


class ReadCache:
    def __init__(
        self,
        redis: RedisClient | None,
        prefix: str,
        *,
        ttl: float,
        timeout: float = 0.25,
        observer: CacheObserver | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix + "rc:"
        self.ttl = ttl
        self._timeout = timeout
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.observer: CacheObserver = observer or _NoObserver()

    async def generation(self, db: Executor) -> int | None:
        """The reads' generation now (None: caching is off, or the schema's rows are missing),
        for a caller that makes one page from several entries: each is looked up under the
        generation read before any of them was computed."""
        if self.ttl <= 0:
            return None
        value = await db.fetchval(_GENERATION_SQL)
        return None if value is None else int(value)

    async def get_or_make(
        self,
        db: Executor,
        cache: str,
        viewer: uuid.UUID,
        query: str,
        kind: type[T],
        make: Callable[[], Awaitable[T]],
        *,
        generation: int | None = None,
    ) -> T:
        """`viewer`'s page for `query` (any string that identifies the request completely),
        from the cache when nothing it depends on was written since, else `make()`'s.
        `generation`: the one this request read before it computed or wrote anything (with its
        session check); None reads it now."""
        if self.ttl <= 0:
            self.observer.cache_lookup(cache, "off")
            return await make()
        if generation is None:
            # read before computing: see the module docstring
            generation = await self.generation(db)
        if generation is None:  # the schema's row is missing: never cache blind
            self.observer.cache_lookup(cache, "off")
            return await make()
        digest = hashlib.blake2b(query.encode(), digest_size=16).hexdigest()
        key = f"{cache}:{generation}:{viewer}:{digest}"
        cached = await self._get(key)
        if cached is not None:
            try:
                value = msgspec.msgpack.decode(cached, type=kind)
            except msgspec.DecodeError as exc:  # e.g. a node of another version wrote it
                log.warning("cache entry %s unreadable: %s", cache, exc)
            else:
                self.observer.cache_lookup(cache, "hit")
                return value
        self.observer.cache_lookup(cache, "miss")
        value = await make()
        await self._set(key, msgspec.msgpack.encode(value))
        return value

    async def _get(self, key: str) -> bytes | None:
        if self._redis is None:
            entry = self._local.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._local[key]
                return None
            self._local.move_to_end(key)
            return entry[1]
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._redis.get(self._prefix + key)
        except Exception as exc:  # noqa: BLE001 (a cache that fails is skipped)
            log.warning("cache read failed: %s", exc or type(exc).__name__)
            return None
        return value.encode() if isinstance(value, str) else value

    async def _set(self, key: str, value: bytes) -> None:
        if self._redis is None:
            self._local[key] = (time.monotonic() + self.ttl, value)
            self._local.move_to_end(key)
            while len(self._local) > MAX_LOCAL:
                self._local.popitem(last=False)
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(self._prefix + key, value, px=int(self.ttl * 1000))
        except Exception as exc:  # noqa: BLE001 (a cache that fails is skipped)
            log.warning("cache write failed: %s", exc or type(exc).__name__)
