"""A small read-through cache for figures that are costly to compute and fine a minute old:
Redis when configured (shared by the nodes), else this process. Every Redis call has a
deadline; a cache that fails is skipped (the figures are computed), never an error."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ..cluster.redis_client import RedisClient

log = logging.getLogger(__name__)

MAX_LOCAL = 256  # entries kept in process


class TtlCache:
    def __init__(self, redis: RedisClient | None, prefix: str, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._timeout = timeout
        self._local: dict[str, tuple[float, bytes]] = {}

    async def get_or_make(
        self, key: str, ttl: float, make: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The cached value of `key`, or `make()`'s (kept `ttl` seconds)."""
        cached = await self._get(key)
        if cached is not None:
            return cached
        value = await make()
        await self._set(key, value, ttl)
        return value

    async def _get(self, key: str) -> bytes | None:
        if self._redis is None:
            entry = self._local.get(key)
            return entry[1] if entry is not None and entry[0] > time.monotonic() else None
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._redis.get(self._prefix + key)
        except Exception as exc:  # noqa: BLE001 (a cache that fails is skipped)
            log.warning("cache read failed: %s", exc or type(exc).__name__)
            return None
        return value.encode() if isinstance(value, str) else value

    async def _set(self, key: str, value: bytes, ttl: float) -> None:
        if self._redis is None:
            if len(self._local) >= MAX_LOCAL:
                now = time.monotonic()
                self._local = {k: v for k, v in self._local.items() if v[0] > now}
            if len(self._local) < MAX_LOCAL:
                self._local[key] = (time.monotonic() + ttl, value)
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(self._prefix + key, value, px=int(ttl * 1000))
        except Exception as exc:  # noqa: BLE001 (a cache that fails is skipped)
            log.warning("cache write failed: %s", exc or type(exc).__name__)
