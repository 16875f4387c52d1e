"""Fixed-window rate limits, in-process for one node or in Redis across nodes.

A window opens at the first hit on a key and lasts `window` seconds; `retry_after` is the time
left in it. That is exactly "N per window" as the spec states its limits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import RateLimited

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateState:
    count: int
    limit: int
    retry_after: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    limit: int
    window: int  # seconds


class RateLimiter(Protocol):
    async def hit(self, limit: Limit, key: str) -> RateState:
        """Count one event under `key` and return the state after it."""

    async def peek(self, limit: Limit, key: str) -> RateState:
        """The state without counting anything."""

    async def reset(self, limit: Limit, key: str) -> None: ...


async def enforce(limiter: RateLimiter, limit: Limit, key: str, message: str) -> RateState:
    """Count one event; raise RateLimited (429 with Retry-After) when it is over the limit."""
    state = await limiter.hit(limit, key)
    if state.exceeded:
        raise RateLimited(message, retry_after=state.retry_after)
    return state


class LocalRateLimiter:
    """Windows kept in this process's memory (single-node deployments and development)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}

    def _get(self, full_key: str, now: float) -> tuple[int, float] | None:
        entry = self._windows.get(full_key)
        if entry is not None and entry[1] <= now:
            del self._windows[full_key]
            return None
        return entry

    def _purge(self, now: float) -> None:
        if len(self._windows) > 10_000:
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}

    async def hit(self, limit: Limit, key: str) -> RateState:
        now = time.monotonic()
        self._purge(now)
        full_key = f"{limit.name}:{key}"
        entry = self._get(full_key, now)
        count, ends = (entry[0] + 1, entry[1]) if entry else (1, now + limit.window)
        self._windows[full_key] = (count, ends)
        return RateState(count, limit.limit, math.ceil(ends - now))

    async def peek(self, limit: Limit, key: str) -> RateState:
        now = time.monotonic()
        entry = self._get(f"{limit.name}:{key}", now)
        if entry is None:
            return RateState(0, limit.limit, 0)
        return RateState(entry[0], limit.limit, math.ceil(entry[1] - now))

    async def reset(self, limit: Limit, key: str) -> None:
        self._windows.pop(f"{limit.name}:{key}", None)


class RedisRateLimiter:
    """Windows kept in Redis, so a limit holds across every node."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}rl:"

    async def hit(self, limit: Limit, key: str) -> RateState:
        full_key = f"{self._prefix}{limit.name}:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(full_key)
            pipe.expire(full_key, limit.window, nx=True)
            pipe.ttl(full_key)
            count, _, ttl = await pipe.execute()
        return RateState(int(count), limit.limit, max(1, int(ttl)))

    async def peek(self, limit: Limit, key: str) -> RateState:
        full_key = f"{self._prefix}{limit.name}:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(full_key)
            pipe.ttl(full_key)
            raw, ttl = await pipe.execute()
        return RateState(int(raw or 0), limit.limit, max(0, int(ttl)))

    async def reset(self, limit: Limit, key: str) -> None:
        await self._redis.delete(f"{self._prefix}{limit.name}:{key}")


class FallbackRateLimiter:
    """Redis-backed limits that keep working when Redis does not answer: each call has a
    deadline, and while Redis is away this node counts in its own memory (per node, so a user
    spread over nodes gets a little more). /health says which is in use."""

    def __init__(self, primary: RateLimiter, fallback: RateLimiter, *, timeout: float) -> None:
        self._primary = primary
        self._fallback = fallback
        self._timeout = timeout
        self.degraded_since: float | None = None  # time.time() when the fallback took over

    async def _call(self, method: str, limit: Limit, key: str) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                result = await getattr(self._primary, method)(limit, key)
        except (RedisError, OSError, TimeoutError) as exc:
            if self.degraded_since is None:
                self.degraded_since = time.time()
                log.warning("rate limits fall back to this node's memory: %s", exc or type(exc))
            return await getattr(self._fallback, method)(limit, key)
        if self.degraded_since is not None:
            log.info("rate limits are kept in Redis again")
            self.degraded_since = None
        return result

    async def hit(self, limit: Limit, key: str) -> RateState:
        state: RateState = await self._call("hit", limit, key)
        return state

    async def peek(self, limit: Limit, key: str) -> RateState:
        state: RateState = await self._call("peek", limit, key)
        return state

    async def reset(self, limit: Limit, key: str) -> None:
        await self._call("reset", limit, key)
        await self._fallback.reset(limit, key)

    def health(self) -> str:
        if self.degraded_since is None:
            return "redis"
        return "in-process fallback (Redis not answering)"


# the application's key for what this module provides (typed app state)
LIMITER = web.AppKey("limiter", RateLimiter)
