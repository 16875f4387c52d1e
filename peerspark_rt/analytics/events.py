"""The event log: one `analytics_events` row per meaningful act, written in the act's own
transaction, and the listeners that hear of it once that transaction has committed.

Recording (what every domain calls, inside its transaction):

    event = await analytics.record(
        conn, user_id, Kind.POST_CREATED,
        occurred_at=now, pod_id=pod_id, meta={"postId": str(post_id)},
        dedupe_key=str(post_id), after=effects,
    )

* One row per act, rolled back with the act. `dedupe_key` (unique per user and kind) makes a
  retried act write it once: the second call returns None and announces nothing. Every kind
  below says what its key is; callers must give it.
* An event of a session given without a pod gets the session's pod.
* `occurred_at` is when the act happened (a mobile client's offline act: when it was done, not
  when it was synced). The row keeps the user's local date and hour in their zone of that
  moment (`users.timezone`), so days are the user's own and never move afterwards.
* Kinds with a duration (`session_left`, `focus_block_completed`) give `started_at`: the time
  between it and `occurred_at` is cut at the user's local hours into `analytics_spans` rows
  (with `subject`), which the daily rollup sums for study time, subjects and productive hours.
* `after` is the transaction's after-commit queue (`notifications.effects.AfterCommit`, or
  `infra.aftercommit.Deferred` / `unit(db)` for code below notifications); None records
  without announcing (back-fills).

Listening (the gamification engine, the admins' live counters):

    analytics.subscribe(listener)   # async def listener(event: AnalyticsEvent) -> None

Listeners hear each newly written event once, on the node that wrote it, after its commit, in
the order written, from one background task (an act's response never waits for them; a
listener that fails or takes longer than LISTENER_TIMEOUT is logged and the next event goes
on). A node that dies between a commit and the announcement loses the announcement, not the
row: listeners must be idempotent and able to catch up from `analytics_events` (by
`(user_id, event, dedupe_key)`, which is unique). More than QUEUE_LIMIT events waiting drops
the newest announcements (counted in /metrics), never the rows.

Kinds (the `event` column; value, ids and dedupe key as each is recorded):

| kind                  | whose           | ids     | value        | dedupe_key                  |
|-----------------------|-----------------|---------|--------------|-----------------------------|
| registered            | the new user    |         |              | "registered"                |
| login                 | who logged in   |         |              | login session id            |
| session_joined        | the participant | pod,ses |              | "<session>:<since>"         |
| session_left          | the participant | pod,ses | minutes      | "<session>:<since>"         |
| message_sent          | the sender      | pod,ses |              | message id                  |
| post_created          | the author      | pod     |              | post id                     |
| comment_created       | the commenter   | pod     |              | comment id                  |
| comment_received      | the post author | pod     |              | comment id                  |
| like_given            | who liked       | pod     |              | "post:<id>", "comment:<id>" |
| like_received         | the author      | pod     |              | "post:<id>:<liker>", ...    |
| answer_accepted       | the answerer    | pod     |              | comment id                  |
| resource_viewed       | the reader      | pod     |              | "<resource>:<UTC hour>"     |
| resource_downloaded   | the reader      | pod     |              | "<resource>:<UTC hour>"     |
| resource_shared       | who shared      | pod     |              | share id                    |
| resource_rated        | the rater       | pod     | rating 1-5   | resource id                 |
| ai_query              | who asked       | ses     | tokens used  | the question's message id   |
| focus_block_completed | the member      | ses     | minutes      | "<timer>:<block>"           |
| focus_block_abandoned | the member      | ses     | minutes done | "<timer>:<block>"           |
| pod_joined            | the new member  | pod     |              | "<pod>:<membership start>"  |
| pod_left              | who left / went | pod     |              | "<pod>:<membership start>"  |
| card_reviewed         | the reviewer    | pod,ses | rating 1-4   | the client's review id      |

(`since`: when the stretch of presence began, ISO 8601; a membership's start likewise. Being
removed or banned from a pod is a `pod_left` too. A like, a comment's receipt or a view
counts once per key, so liking, unliking and liking again is one like given.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import uuid
import zoneinfo
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from ..infra.aftercommit import OnCommit
from ..infra.dbtypes import Conn
from . import db as analytics_db

log = logging.getLogger(__name__)

QUEUE_LIMIT = 100_000  # announcements waiting for the listeners; more are dropped (counted)
LISTENER_TIMEOUT = 10.0  # seconds one listener may take over one event
MAX_META_BYTES = 4096


class Kind(enum.StrEnum):
    REGISTERED = "registered"
    LOGIN = "login"
    SESSION_JOINED = "session_joined"
    SESSION_LEFT = "session_left"
    MESSAGE_SENT = "message_sent"
    POST_CREATED = "post_created"
    COMMENT_CREATED = "comment_created"
    COMMENT_RECEIVED = "comment_received"
    LIKE_GIVEN = "like_given"
    LIKE_RECEIVED = "like_received"
    ANSWER_ACCEPTED = "answer_accepted"
    RESOURCE_VIEWED = "resource_viewed"
    RESOURCE_DOWNLOADED = "resource_downloaded"
    RESOURCE_SHARED = "resource_shared"
    RESOURCE_RATED = "resource_rated"
    AI_QUERY = "ai_query"
    FOCUS_BLOCK_COMPLETED = "focus_block_completed"
    FOCUS_BLOCK_ABANDONED = "focus_block_abandoned"
    POD_JOINED = "pod_joined"
    POD_LEFT = "pod_left"
    CARD_REVIEWED = "card_reviewed"


# Kinds whose [started_at, occurred_at] is time spent studying (cut into spans).
TIMED_KINDS = frozenset({Kind.SESSION_LEFT, Kind.FOCUS_BLOCK_COMPLETED})


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to record (see `Analytics.record` for the fields)."""

    user_id: uuid.UUID
    kind: Kind
    occurred_at: dt.datetime
    pod_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    started_at: dt.datetime | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class AnalyticsEvent:
    """A recorded event, as listeners receive it."""

    id: int
    user_id: uuid.UUID
    kind: Kind
    occurred_at: dt.datetime
    local_date: dt.date
    local_hour: int
    pod_id: uuid.UUID | None
    session_id: uuid.UUID | None
    value: float | None
    meta: dict[str, Any]
    dedupe_key: str | None


Listener = Callable[[AnalyticsEvent], Awaitable[None]]


def local_spans(
    start: dt.datetime, end: dt.datetime, zone: str | None
) -> list[tuple[dt.date, int, int]]:
    """[start, end) cut at the local hours of `zone`: (local date, hour, seconds) pieces, in
    order. Every zone's offset is a whole number of quarter hours, so every local hour begins
    on a UTC quarter hour: stepping by quarter hours finds each boundary (DST changes too)."""
    tz = _zone(zone)
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    out: dict[tuple[dt.date, int], int] = {}
    cursor = start
    while cursor < end:
        quarter = cursor.replace(minute=cursor.minute - cursor.minute % 15, second=0, microsecond=0)
        boundary = quarter + dt.timedelta(minutes=15)
        while boundary < end and boundary.astimezone(tz).minute != 0:
            boundary += dt.timedelta(minutes=15)
        stop = min(boundary, end)
        local = cursor.astimezone(tz)
        key = (local.date(), local.hour)
        out[key] = out.get(key, 0) + round((stop - cursor).total_seconds())
        cursor = stop
    return [(day, hour, seconds) for (day, hour), seconds in out.items() if seconds > 0]


def _zone(name: str | None) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC  # as the database does (schema.sql: peerspark_zones)


class Analytics:
    """Records events in the caller's transaction and announces them after its commit."""

    def __init__(self, *, queue_limit: int = QUEUE_LIMIT) -> None:
        self._listeners: list[Listener] = []
        self._queue: deque[AnalyticsEvent] = deque()
        self._queue_limit = queue_limit
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # announcements lost to a full queue

    # --- recording -----------------------------------------------------------------------

    async def record(
        self,
        conn: Conn,
        user_id: uuid.UUID,
        kind: Kind,
        *,
        occurred_at: dt.datetime,
        after: OnCommit | None,
        pod_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        value: float | None = None,
        meta: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        started_at: dt.datetime | None = None,
        subject: str | None = None,
    ) -> AnalyticsEvent | None:
        """Write one event in `conn`'s transaction. None when `dedupe_key` was recorded before
        for this user and kind (a retried act): nothing is written or announced then."""
        events = await self.record_many(
            conn,
            [
                NewEvent(
                    user_id=user_id,
                    kind=kind,
                    occurred_at=occurred_at,
                    pod_id=pod_id,
                    session_id=session_id,
                    value=value,
                    meta=meta or {},
                    dedupe_key=dedupe_key,
                    started_at=started_at,
                    subject=subject,
                )
            ],
            after=after,
        )
        return events[0] if events else None

    @staticmethod
    async def warm(conn: Conn) -> None:
        """Prepare `record_many`'s statement on a new connection (with no events: nothing is
        written), for a connection that records events with each commit (the chat store's)."""
        await analytics_db.insert_events(conn, [])

    async def record_many(
        self, conn: Conn, events: Sequence[NewEvent], *, after: OnCommit | None
    ) -> list[AnalyticsEvent]:
        """Write many events in one statement (a chat batch); returns those newly written."""
        for candidate in events:
            if candidate.occurred_at.tzinfo is None:
                raise ValueError("occurred_at must be timezone-aware")
            if candidate.started_at is not None and candidate.started_at.tzinfo is None:
                raise ValueError("started_at must be timezone-aware")
        if not events:
            return []
        rows = await analytics_db.insert_events(conn, events)
        written: list[AnalyticsEvent] = []
        spans: list[tuple[int, uuid.UUID, dt.date, int, int, str | None]] = []
        span_days: set[tuple[uuid.UUID, dt.date]] = set()
        for index, row in rows:
            new = events[index]
            event = _as_written(new, row)
            written.append(event)
            if new.started_at is not None and new.kind in TIMED_KINDS:
                for day, hour, seconds in local_spans(
                    new.started_at, new.occurred_at, row["timezone"]
                ):
                    spans.append((event.id, new.user_id, day, hour, seconds, new.subject))
                    if day != event.local_date:
                        span_days.add((new.user_id, day))
        if spans:
            await analytics_db.insert_spans(conn, spans)
        if span_days:  # (the events' own days were marked with them)
            await analytics_db.mark_dirty(conn, sorted(span_days))
        if written and after is not None:
            after.add(lambda: self._announce(written))
        return written

    def written_with(
        self, events: Sequence[tuple[NewEvent, Mapping[str, Any]]], *, after: OnCommit
    ) -> list[AnalyticsEvent]:
        """Events a statement of another domain wrote along with what they are about (with
        `analytics.db.events_ctes`; each with its row as `EVENTS_WRITTEN` has it, and no
        spans: not a timed kind), announced once `after` runs."""
        written = [_as_written(new, row) for new, row in events]
        if written:
            after.add(lambda: self._announce(written))
        return written

    # --- listening -----------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Hear every event this node writes, after its commit (see the module docstring)."""
        self._listeners.append(listener)

    async def _announce(self, events: list[AnalyticsEvent]) -> None:
        if not self._listeners:
            return
        room = self._queue_limit - len(self._queue)
        if room < len(events):
            self.dropped += len(events) - max(room, 0)
            log.warning("analytics listeners are behind; %d announcements dropped", self.dropped)
            events = events[: max(room, 0)]
        if not events:
            return
        self._queue.extend(events)
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver(), name="analytics-listeners")

    async def _deliver(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._queue.popleft()
            for listener in self._listeners:
                try:
                    async with asyncio.timeout(LISTENER_TIMEOUT):
                        await listener(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("analytics listener failed on %s #%d", event.kind, event.id)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (at most `timeout` seconds) until every announcement was delivered."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def close(self) -> None:
        try:
            await self.drain(5.0)
        except TimeoutError:
            log.warning("closing with %d analytics announcements undelivered", len(self._queue))
        if self._task is not None:
            self._task.cancel()


# the application's key for what this module provides (typed app state)
ANALYTICS = web.AppKey("analytics", Analytics)


def _as_written(new: NewEvent, row: asyncpg.Record | Mapping[str, Any]) -> AnalyticsEvent:
    return AnalyticsEvent(
        id=row["id"],
        user_id=new.user_id,
        kind=new.kind,
        occurred_at=new.occurred_at,
        local_date=row["local_date"],
        local_hour=row["local_hour"],
        pod_id=row["pod_id"],
        session_id=new.session_id,
        value=new.value,
        meta=new.meta,
        dedupe_key=new.dedupe_key,
    )
