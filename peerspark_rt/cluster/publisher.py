"""One publisher per node: room traffic to Redis, pipelined, off every room's path.

Nothing that delivers to local members or acknowledges a message waits for Redis: publishing
only appends to a buffer bounded in bytes, and one task sends what has gathered in one
pipeline (one connection, one round trip per batch), with a deadline. A Redis that stalls or
goes away therefore slows cross-node delivery and never a room. What cannot be sent is dropped
and counted (logged once per interval, not per frame): chat messages are not lost by that, as
every node checks its rooms' positions against the store and fetches what it missed; presence,
typing and events are live signals.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Protocol

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import TimeoutError as RedisTimeout

from .redis_client import RedisClient

log = logging.getLogger(__name__)

BATCH = 512  # publishes per pipeline
BATCH_BYTES = 1024 * 1024
LOG_EVERY = 10.0  # seconds between reports of dropped publishes
MAX_BACKOFF = 1.0


class PublisherMetrics(Protocol):
    def redis_publish(self, seconds: float, count: int) -> None: ...

    def redis_publish_dropped(self, reason: str, count: int) -> None: ...


class Publisher:
    def __init__(
        self,
        redis: RedisClient,
        *,
        max_bytes: int,
        timeout: float,
        metrics: PublisherMetrics | None = None,
    ) -> None:
        self._redis = redis
        # a cluster: SPUBLISH, so each publication goes to its channel's shard only (the
        # cluster pipeline sends each shard its part, all at once)
        self._sharded = isinstance(redis, RedisCluster)
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._metrics = metrics
        self._buffer: collections.deque[tuple[str, bytes]] = collections.deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._dropped: collections.Counter[str] = collections.Counter()
        self._last_report = time.monotonic()
        self.healthy = True  # the last pipeline went through

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-publisher")

    def publish(self, channel: str, data: bytes) -> None:
        """Queue one publication; never waits. Dropped (and counted) when the buffer is full."""
        if self._bytes + len(data) > self._max_bytes:
            self._drop("buffer_full", 1)
            return
        self._buffer.append((channel, data))
        self._bytes += len(data)
        if not self._wake.is_set():
            self._idle.clear()
            self._wake.set()

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    async def close(self, timeout: float = 2.0) -> None:
        """Send what is buffered (within `timeout`), then stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            self._drop("shutdown", len(self._buffer))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._report(force=True)

    def _drop(self, reason: str, count: int) -> None:
        if count <= 0:
            return
        self._dropped[reason] += count
        if self._metrics is not None:
            self._metrics.redis_publish_dropped(reason, count)
        self._report()

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._dropped and (force or now - self._last_report >= LOG_EVERY):
            summary = ", ".join(f"{n} {reason}" for reason, n in self._dropped.items())
            log.warning(
                "redis publishes dropped in the last %.0fs: %s (cross-node delivery catches up "
                "from the store)",
                now - self._last_report,
                summary,
            )
            self._dropped.clear()
            self._last_report = now

    def _take(self) -> list[tuple[str, bytes]]:
        batch: list[tuple[str, bytes]] = []
        size = 0
        buffer = self._buffer
        while buffer and len(batch) < BATCH and size < BATCH_BYTES:
            item = buffer.popleft()
            batch.append(item)
            size += len(item[1])
        self._bytes -= size
        return batch

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    if self._sharded:
                        for channel, data in batch:
                            pipe.spublish(channel, data)
                    else:
                        for channel, data in batch:
                            pipe.publish(channel, data)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure drops this batch, counted)
                if self.healthy:
                    log.warning("redis publish failed (%s)", exc or type(exc).__name__)
                self.healthy = False
                timed_out = isinstance(exc, (TimeoutError, RedisTimeout))
                self._drop("timeout" if timed_out else "error", len(batch))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if not self.healthy:
                log.info("redis publishes go through again")
            self.healthy = True
            backoff = 0.05
            if self._metrics is not None:
                self._metrics.redis_publish(time.perf_counter() - started, len(batch))
            self._report()
