"""What platform admins see: the live counters streamed to the `admin:dashboard` room, and the
platform's figures by day (GET /api/admin/metrics).

Live counters, kept across nodes (README, "Admin dashboard"):
* events by kind, per second: each node counts the events it writes (an analytics listener)
  and adds them to Redis hashes, one per second, every FLUSH_EVERY; the last 60 seconds of
  them are the events per minute, the last 10 seconds' messages the messages per second;
* users online and active rooms: each node writes the user ids of its sockets and the rooms
  with members on it (Redis sets that expire unless refreshed), and the union over the live
  nodes is counted.
Without Redis all of it lives in this process (one node is the whole platform then).

Every ADMIN_DASHBOARD_INTERVAL seconds each node with admins in the room reads the counters
and tells its own members (a `metrics` event); a Redis that does not answer skips a beat
rather than showing zeros.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from typing import Any, Literal

import msgspec
from aiohttp import web

from ..actors.hub import Hub
from ..cluster.redis_client import RedisClient
from ..infra.pool import Database
from ..protocol import ADMIN_ROOM, Event, json_encoder
from . import db as analytics_db
from .cache import TtlCache
from .events import AnalyticsEvent

log = logging.getLogger(__name__)

FLUSH_EVERY = 1.0  # seconds between a node's counter writes to Redis
KEEP_SECONDS = 120  # per-second counters kept
MINUTE = 60
MPS_WINDOW = 10  # seconds the messages-per-second rate is averaged over
METRICS_TTL = 60.0  # seconds GET /api/admin/metrics answers from its cache


class LiveCounters:
    """Events per second by kind: this node's, added to the cluster's (Redis) or kept here."""

    def __init__(self, redis: RedisClient | None, prefix: str, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._prefix = prefix + "an:sec:"
        self._timeout = timeout
        self._pending: dict[int, collections.Counter[str]] = {}  # not yet in Redis
        self._local: dict[int, collections.Counter[str]] = {}  # (no Redis) the counters

    async def count(self, event: AnalyticsEvent) -> None:
        """The analytics listener: one more event of its kind this second."""
        second = int(time.time())
        bucket = self._pending.get(second)
        if bucket is None:
            bucket = self._pending[second] = collections.Counter()
        bucket[event.kind.value] += 1
        if self._redis is None:
            self._settle_local()

    def _settle_local(self) -> None:
        for second, counts in self._pending.items():
            self._local.setdefault(second, collections.Counter()).update(counts)
        self._pending.clear()
        oldest = int(time.time()) - KEEP_SECONDS
        for second in [s for s in self._local if s < oldest]:
            del self._local[second]

    async def flush(self) -> None:
        """Add this node's counts to Redis (kept for the next try if Redis does not answer,
        for as long as they matter)."""
        if self._redis is None or not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=False)
                for second, counts in pending.items():
                    key = f"{self._prefix}{second}"
                    for kind, n in counts.items():
                        pipe.hincrby(key, kind, n)
                    pipe.expire(key, KEEP_SECONDS)
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001 (kept and retried at the next flush)
            log.warning("live counters not written: %s", exc or type(exc).__name__)
            oldest = int(time.time()) - KEEP_SECONDS
            for second, counts in pending.items():
                if second >= oldest:
                    self._pending.setdefault(second, collections.Counter()).update(counts)

    async def last(self, seconds: int) -> list[collections.Counter[str]]:
        """The counts of the last `seconds` whole seconds, oldest first."""
        now = int(time.time())
        span = range(now - seconds, now)
        if self._redis is None:
            self._settle_local()
            return [self._local.get(s, collections.Counter()) for s in span]
        async with asyncio.timeout(self._timeout):
            pipe = self._redis.pipeline(transaction=False)
            for second in span:
                pipe.hgetall(f"{self._prefix}{second}")
            replies = await pipe.execute()
        return [
            collections.Counter({_text(k): int(v) for k, v in reply.items()}) for reply in replies
        ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class AdminStream:
    """This node's part of the admins' live dashboard (one task per node)."""

    def __init__(
        self,
        hub: Hub,
        counters: LiveCounters,
        redis: RedisClient | None,
        *,
        prefix: str,
        node_id: str,
        interval: float,
        timeout: float = 1.0,
    ) -> None:
        self.hub = hub
        self.counters = counters
        self._redis = redis
        self._prefix = prefix + "an:"
        self._node = node_id
        self.interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="admin-dashboard")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        flush_every = min(FLUSH_EVERY, self.interval)
        next_frame = time.monotonic()
        while True:
            await asyncio.sleep(flush_every)
            try:
                await self.counters.flush()
                if time.monotonic() < next_frame:
                    continue
                next_frame = time.monotonic() + self.interval
                await self._write_snapshot()
                actor = self.hub.rooms.get(ADMIN_ROOM)
                if actor is None or actor.member_count == 0:
                    continue
                data = await self.figures()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (unknown figures: this beat is skipped)
                log.warning("admin dashboard skipped a beat: %s", exc or type(exc).__name__)
                continue
            frame = Event(room=ADMIN_ROOM, kind="metrics", data=data)
            self.hub.deliver_local(ADMIN_ROOM, json_encoder.encode(frame))

    def _local_view(self) -> tuple[set[str], set[str]]:
        users = {str(c.user_id) for c in self.hub.connections}
        rooms = {
            room
            for room, actor in self.hub.rooms.items()
            if actor.member_count > 0 and not room.startswith("admin:")
        }
        return users, rooms

    async def _write_snapshot(self) -> None:
        """Who is on this node, for the other nodes' admins (expires if the node dies)."""
        if self._redis is None:
            return
        users, rooms = self._local_view()
        ttl = max(5, int(self.interval * 3) + 1)
        async with asyncio.timeout(self._timeout):
            pipe = self._redis.pipeline(transaction=True)
            for name, members in (("users", users), ("rooms", rooms)):
                key = f"{self._prefix}{name}:{self._node}"
                pipe.delete(key)
                if members:
                    pipe.sadd(key, *members)
                    pipe.expire(key, ttl)
            pipe.zadd(f"{self._prefix}nodes", {self._node: time.time()})
            await pipe.execute()

    async def _cluster_view(self) -> tuple[int, int, int]:
        """(users online, active rooms, live nodes) over every node that wrote lately."""
        if self._redis is None:
            users, rooms = self._local_view()
            return len(users), len(rooms), 1
        nodes_key = f"{self._prefix}nodes"
        fresh = time.time() - max(5.0, self.interval * 3)
        async with asyncio.timeout(self._timeout):
            await self._redis.zremrangebyscore(nodes_key, 0, fresh)
            nodes = [_text(n) for n in await self._redis.zrange(nodes_key, 0, -1)]  # type: ignore[arg-type]
            if not nodes:
                return 0, 0, 0
            scratch = f"{self._prefix}union:{self._node}"
            pipe = self._redis.pipeline(transaction=True)
            pipe.sunionstore(scratch, [f"{self._prefix}users:{n}" for n in nodes])
            pipe.sunionstore(scratch, [f"{self._prefix}rooms:{n}" for n in nodes])
            pipe.delete(scratch)
            users, rooms, _ = await pipe.execute()
        return int(users), int(rooms), len(nodes)

    async def figures(self) -> dict[str, Any]:
        seconds = await self.counters.last(MINUTE)
        minute: collections.Counter[str] = collections.Counter()
        for counts in seconds:
            minute.update(counts)
        messages = sum(c["message_sent"] for c in seconds[-MPS_WINDOW:])
        users, rooms, nodes = await self._cluster_view()
        return {
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "eventsPerMinute": dict(sorted(minute.items())),
            "eventsLastMinute": sum(minute.values()),
            "messagesPerSecond": round(messages / MPS_WINDOW, 2),
            "usersOnline": users,
            "activeRooms": rooms,
            "nodes": nodes,
        }


# --- GET /api/admin/metrics -----------------------------------------------------------------


class MetricsQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    timeframe: Literal["today", "week", "month"] = "today"


class PlatformDay(msgspec.Struct, rename="camel"):
    date: dt.date
    new_users: int
    active_users: int
    study_hours: float
    posts_created: int
    messages_sent: int
    sessions_completed: int
    events: dict[str, int]


class PlatformTotals(msgspec.Struct, rename="camel"):
    total_users: int
    new_users: int
    active_users: int
    study_hours: float
    posts_created: int
    messages_sent: int
    sessions_completed: int
    ai_queries: int
    focus_blocks_completed: int
    events: int


class PlatformMetrics(msgspec.Struct, rename="camel"):
    timeframe: str
    start: dt.date  # UTC days, today included
    end: dt.date
    totals: PlatformTotals
    daily_breakdown: list[PlatformDay]
    generated_at: dt.datetime


_DAYS = {"today": 1, "week": 7, "month": 30}


class Platform:
    """The platform's figures by UTC day, from the event log (cached METRICS_TTL seconds)."""

    def __init__(self, db: Database, cache: TtlCache) -> None:
        self.db = db
        self.cache = cache

    async def metrics(self, query: MetricsQuery) -> PlatformMetrics:
        encoded = await self.cache.get_or_make(
            f"an:metrics:{query.timeframe}",
            METRICS_TTL,
            lambda: self._compute(query.timeframe),
        )
        return msgspec.json.decode(encoded, type=PlatformMetrics)

    async def _compute(self, timeframe: str) -> bytes:
        now = dt.datetime.now(dt.UTC)
        end = now.date()
        start = end - dt.timedelta(days=_DAYS[timeframe] - 1)
        since = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
        until = since + dt.timedelta(days=_DAYS[timeframe])
        got = await analytics_db.platform_days(self.db.pool, since, until)
        days = [start + dt.timedelta(days=i) for i in range(_DAYS[timeframe])]
        kinds: dict[dt.date, dict[str, int]] = {d: {} for d in days}
        for r in got["kinds"]:
            kinds.setdefault(r["day"], {})[r["event"]] = int(r["n"])
        # (the ROLLUP's row without a day counts each user once over the whole time)
        active = {r["day"]: int(r["n"]) for r in got["active"] if r["day"] is not None}
        overall = next((int(r["n"]) for r in got["active"] if r["day"] is None), 0)
        study = {r["day"]: int(r["seconds"]) for r in got["study"]}
        sessions = {r["day"]: int(r["n"]) for r in got["sessions"]}
        breakdown = [
            PlatformDay(
                date=d,
                new_users=kinds[d].get("registered", 0),
                active_users=active.get(d, 0),
                study_hours=round(study.get(d, 0) / 3600, 2),
                posts_created=kinds[d].get("post_created", 0),
                messages_sent=kinds[d].get("message_sent", 0),
                sessions_completed=sessions.get(d, 0),
                events=dict(sorted(kinds[d].items())),
            )
            for d in days
        ]

        def total(kind: str) -> int:
            return sum(k.get(kind, 0) for k in kinds.values())

        totals = PlatformTotals(
            total_users=int(got["users"][0]["n"]),
            new_users=total("registered"),
            active_users=overall,
            study_hours=round(sum(study.values()) / 3600, 2),
            posts_created=total("post_created"),
            messages_sent=total("message_sent"),
            sessions_completed=sum(sessions.values()),
            ai_queries=total("ai_query"),
            focus_blocks_completed=total("focus_block_completed"),
            events=sum(sum(k.values()) for k in kinds.values()),
        )
        return json_encoder.encode(
            PlatformMetrics(
                timeframe=timeframe,
                start=start,
                end=end,
                totals=totals,
                daily_breakdown=breakdown,
                generated_at=now,
            )
        )


# the application's keys for what this module provides (typed app state)
PLATFORM = web.AppKey("platform", Platform)
ADMIN_STREAM = web.AppKey("admin_stream", AdminStream)
