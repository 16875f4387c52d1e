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
nobody's grants or ratings), which search/service.py gives a viewer only after checking that
they may see nothing more that matches (by their marks, cached per viewer like a page, or in
the database), and with their own grants on it.

Redis when configured (shared by the nodes; every call has a deadline and a cache that fails is
skipped, never an error), else a bounded dictionary in this process. Entries also expire after
`ttl` seconds, which bounds what no table records (signed file links' remaining lifetime); a
viewer's entry made from the shared page (above) can hold what that page held for up to `ttl`,
so its links are at most twice `ttl` old."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from ..cluster.redis_client import RedisClient
from .dbtypes import Executor

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", covariant=True)
V = TypeVar("V", contravariant=True)

MAX_LOCAL = 4096  # entries kept in process (least recently used go first)

# the reads that are cached (names in keys and metrics); one generation serves them all
# (schema.sql says why)
FEED = "feed"
RESOURCES = "resources"
# resource search pages as nobody sees them, shared by the viewers who see nothing more
# (search/service.py)
RESOURCES_PUBLIC = "resources-public"
# a viewer's grants, ratings and bookmarks, and what they may see beyond the public resources,
# which put a shared page in their view (search/service.py)
RESOURCES_MARKS = "resources-marks"

# (the sum of the counters only grows, by one with each committed write: schema.sql); as a
# scalar subquery so that another statement can select it too
GENERATION_EXPR = "(SELECT sum(generation)::bigint FROM read_generations WHERE name LIKE 'reads-%')"
_GENERATION_SQL = f"SELECT {GENERATION_EXPR}"


class CacheObserver(Protocol):
    def cache_lookup(self, cache: str, outcome: str) -> None:
        """One lookup: outcome hit, miss, joined (waited for the page another request of this
        process was making), or off (caching disabled or failed)."""


class _NoObserver:
    def cache_lookup(self, cache: str, outcome: str) -> None:
        return None


_JSON = msgspec.json.Encoder(decimal_format="number")  # (as responses are encoded)


def json_body(value: object) -> bytes:
    """`value` as a response body."""
    return _JSON.encode(value)


class Encoded(Generic[T]):
    """A page of `kind` as its JSON response body."""

    __slots__ = ("body", "kind")

    def __init__(self, body: bytes, kind: type[T]) -> None:
        self.body = body
        self.kind = kind

    def decode(self) -> T:
        """The page itself, for a caller that uses it rather than sending it."""
        return msgspec.json.decode(self.body, type=self.kind)


class _Codec(Protocol[V, R]):
    """How entries of one kind are stored (`encode`), read back (`decode`), and what a request
    that made one gets (`made`: the value and the bytes it was stored as)."""

    tag: str

    def encode(self, value: V) -> bytes: ...
    def decode(self, data: bytes) -> R: ...
    def made(self, value: V, data: bytes) -> R: ...


class _Values(Generic[T]):
    """Pages used as values (MessagePack, decoded on each hit)."""

    tag = "m"

    def __init__(self, kind: type[T]) -> None:
        self.kind = kind

    def encode(self, value: T) -> bytes:
        return msgspec.msgpack.encode(value)

    def decode(self, data: bytes) -> T:
        return msgspec.msgpack.decode(data, type=self.kind)

    def made(self, value: T, data: bytes) -> T:
        return value


class _Bodies(Generic[T]):
    """Pages sent as they are (their JSON bodies, never decoded on a hit)."""

    tag = "j"

    def __init__(self, kind: type[T]) -> None:
        self.kind = kind

    def encode(self, value: T | Encoded[T]) -> bytes:
        return value.body if isinstance(value, Encoded) else _JSON.encode(value)

    def decode(self, data: bytes) -> Encoded[T]:
        return Encoded(data, self.kind)

    def made(self, value: T | Encoded[T], data: bytes) -> Encoded[T]:
        return Encoded(data, self.kind)


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
        # pages being made, by key: a request that misses while another is making the same
        # page waits for that one (a cold cache under load would otherwise make each popular
        # page once per request that arrived before the first was done)
        self._making: dict[str, asyncio.Task[tuple[Any, bytes]]] = {}
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
        return await self._lookup(db, cache, viewer, query, _Values(kind), make, generation)

    async def get_or_make_encoded(
        self,
        db: Executor,
        cache: str,
        viewer: uuid.UUID,
        query: str,
        kind: type[T],
        make: Callable[[], Awaitable[T | Encoded[T]]],
        *,
        generation: int | None = None,
    ) -> Encoded[T]:
        """`get_or_make`, for a page that goes out as it is: kept as its JSON body, so a hit is
        sent as stored instead of being decoded and encoded again (`make` may return a body
        it already has)."""
        return await self._lookup(db, cache, viewer, query, _Bodies(kind), make, generation)

    async def _lookup(
        self,
        db: Executor,
        cache: str,
        viewer: uuid.UUID,
        query: str,
        codec: _Codec[T, R],
        make: Callable[[], Awaitable[T]],
        generation: int | None,
    ) -> R:
        if self.ttl <= 0:
            self.observer.cache_lookup(cache, "off")
            value = await make()
            return codec.made(value, codec.encode(value))
        if generation is None:
            # read before computing: see the module docstring
            generation = await self.generation(db)
        if generation is None:  # the schema's row is missing: never cache blind
            self.observer.cache_lookup(cache, "off")
            value = await make()
            return codec.made(value, codec.encode(value))
        digest = hashlib.blake2b(query.encode(), digest_size=16).hexdigest()
        # (the codec's tag: an entry is never read in another format, e.g. by an older node)
        key = f"{cache}:{codec.tag}:{generation}:{viewer}:{digest}"
        cached = await self._get(key)
        if cached is not None:
            try:
                found = codec.decode(cached)
            except msgspec.DecodeError as exc:  # e.g. a node of another version wrote it
                log.warning("cache entry %s unreadable: %s", cache, exc)
            else:
                self.observer.cache_lookup(cache, "hit")
                return found
        making = self._making.get(key)
        if making is not None:
            self.observer.cache_lookup(cache, "joined")
            # (shielded: a request that goes away does not cancel the others' page; and the
            # waiter reads its own copy, as a hit would)
            _, encoded = await asyncio.shield(making)
            return codec.decode(encoded)
        self.observer.cache_lookup(cache, "miss")
        making = asyncio.ensure_future(self._make(key, make, codec))
        self._making[key] = making
        making.add_done_callback(functools.partial(self._made, key))
        value, encoded = await asyncio.shield(making)
        return codec.made(value, encoded)

    def _made(self, key: str, task: asyncio.Task[tuple[Any, bytes]]) -> None:
        if self._making.get(key) is task:
            del self._making[key]
        if not task.cancelled():
            task.exception()  # (its waiters were given it; none left is no error to report)

    async def _make(
        self, key: str, make: Callable[[], Awaitable[T]], codec: _Codec[T, Any]
    ) -> tuple[T, bytes]:
        value = await make()
        encoded = codec.encode(value)
        await self._set(key, encoded)
        return value, encoded

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
