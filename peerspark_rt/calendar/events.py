"""The calendar: a user's own events (one-off or recurring), the study sessions they organize,
take part in or that belong to their pods, expanded into occurrences for a date range.

One piece because creating, changing one occurrence, changing the following ones and
expanding a range all share the series' validation and its reminder bookkeeping.

Rules:
* Calendars are private: an event is visible to its owner only (anyone else gets 404).
* Times are instants; each event also has its own IANA time zone, in which a recurring event's
  occurrences are computed (see calendar/recurrence.py). The range query renders instants in the
  viewer's zone (the `timezone` parameter, else the profile's).
* All-day events take dates, not times: `startTime`/`endTime` are the first and the last day
  (inclusive), e.g. "2026-05-12" and "2026-05-13" for a two-day event.
* One occurrence of a recurring event is changed or cancelled with `recurrenceId` and
  `scope=this`; `scope=following` cuts the series there and the change applies to a new series
  from that occurrence on (its id is returned).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..errors import Conflict, Invalid, NotFound
from ..infra import validation
from ..infra.dbtypes import Conn
from ..infra.pool import Database
from ..pods.service import PodService
from . import db as calendar_db
from . import recurrence as rec

log = logging.getLogger(__name__)

EVENT_TYPES = ("study", "exam", "assignment", "meeting", "deadline", "other")
SESSION_TYPE = "session"  # how study sessions show in the range query and its filter
STATUSES = ("scheduled", "tentative", "cancelled", "completed")
CHANNELS = ("in_app", "email")
MAX_REMINDERS = 5
MAX_REMINDER_MINUTES = 4 * 7 * 24 * 60  # four weeks
MAX_RANGE_DAYS = 400
# Occurrences one range response carries at most (the earliest ones; `truncated` says more
# were left out), and the events and sessions one response looks at.
MAX_RANGE_OCCURRENCES = 2000
MAX_RANGE_SOURCES = 5000
MAX_EVENTS_PER_USER = 5000  # more is a 409 calendar_full
Scope = Literal["this", "following", "all"]
# A stored row, or a dict shaped like one (the tail of a split series before it is stored).
RowLike = asyncpg.Record | Mapping[str, Any]


class ReminderSetting(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    minutes_before: int
    channels: list[str] = msgspec.field(default_factory=lambda: ["in_app"])


class EventCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str
    start_time: str
    timezone: str
    event_type: str = "study"
    description: str | None = None
    end_time: str | None = None
    location: str | None = None
    is_all_day: bool = False
    is_recurring: bool = False
    recurrence_pattern: Any = None
    reminder_settings: list[ReminderSetting] = []
    related_pod_id: str | None = None
    related_session_id: str | None = None
    status: str = "scheduled"


class EventUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str | msgspec.UnsetType = msgspec.UNSET
    start_time: str | msgspec.UnsetType = msgspec.UNSET
    end_time: str | msgspec.UnsetType | None = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    event_type: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    location: str | msgspec.UnsetType | None = msgspec.UNSET
    is_all_day: bool | msgspec.UnsetType = msgspec.UNSET
    is_recurring: bool | msgspec.UnsetType = msgspec.UNSET
    recurrence_pattern: Any = msgspec.UNSET
    reminder_settings: list[ReminderSetting] | msgspec.UnsetType = msgspec.UNSET
    related_pod_id: str | msgspec.UnsetType | None = msgspec.UNSET
    related_session_id: str | msgspec.UnsetType | None = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET


# Fields one occurrence may change on its own (scope=this).
_OCCURRENCE_FIELDS = ("title", "description", "location", "start_time", "end_time")


class OccurrenceQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    recurrence_id: str | None = None
    scope: Scope | None = None


class CalendarQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    start_date: str
    end_date: str
    timezone: str | None = None
    event_types: list[str] = []


class EventView(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    title: str
    description: str | None
    event_type: str
    # RFC 3339 instants in the event's zone, or plain dates (YYYY-MM-DD) for all-day events
    start_time: str
    end_time: str
    timezone: str
    location: str | None
    is_all_day: bool
    is_recurring: bool
    recurrence_pattern: dict[str, Any] | None
    reminder_settings: list[dict[str, Any]]
    related_pod_id: uuid.UUID | None
    related_session_id: uuid.UUID | None
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


class CalendarItem(msgspec.Struct, rename="camel"):
    id: str  # the event's or session's id
    source: str  # 'event' or 'session'
    occurrence_id: str  # unique in a response: id, or id/recurrenceId
    title: str
    event_type: str
    start_time: dt.datetime
    end_time: dt.datetime
    timezone: str
    is_all_day: bool
    is_recurring: bool
    status: str
    description: str | None = None
    location: str | None = None
    recurrence_id: str | None = None
    is_exception: bool = False
    start_date: str | None = None
    end_date: str | None = None
    related_pod_id: uuid.UUID | None = None
    related_session_id: uuid.UUID | None = None
    pod_id: uuid.UUID | None = None
    session_type: str | None = None
    meeting_url: str | None = None
    role: str | None = None


class CalendarRange(msgspec.Struct, rename="camel"):
    events: list[CalendarItem]
    start_date: dt.datetime
    end_date: dt.datetime
    timezone: str
    # True when the range holds more than MAX_RANGE_OCCURRENCES occurrences: `events` are the
    # earliest of them; ask for a shorter range (from the last one shown) for the rest.
    truncated: bool = False


# --------------------------------------------------------------------------- series <-> rows


def event_series(row: RowLike) -> rec.Series:
    """The series a stored event describes (its pattern only if it repeats)."""
    start = row["start_time"]
    end = row["end_time"] or start
    pattern = rec.load_pattern(row["recurrence_pattern"]) if row["is_recurring"] else None
    return rec.Series(start, end, row["timezone"] or "UTC", bool(row["is_all_day"]), pattern)


def session_series(row: asyncpg.Record) -> rec.Series:
    pattern = rec.load_pattern(row["recurrence_pattern"]) if row["is_recurring"] else None
    return rec.Series(row["start_time"], row["end_time"], row["timezone"] or "UTC", False, pattern)


def safe_occurrences(
    series: rec.Series, start: dt.datetime, end: dt.datetime, viewer_tz: str, what: str
) -> Iterator[rec.Occurrence]:
    """The occurrences in [start, end) in order of start, lazily, treating a stored rule
    dateutil cannot read as a one-off (logged): one broken row must not break a calendar."""
    shown = False
    try:
        for occ in rec.iter_occurrences(series, start, end, viewer_tz=viewer_tz):
            shown = True
            yield occ
    except (ValueError, TypeError, OverflowError) as exc:
        log.warning("cannot expand %s: %s", what, exc)
        if not shown:
            yield from rec.iter_occurrences(
                replace(series, pattern=None), start, end, viewer_tz=viewer_tz
            )


def _render_day(moment: dt.datetime) -> str:
    return moment.date().isoformat()


def event_view(row: RowLike) -> EventView:
    series = event_series(row)
    all_day = series.all_day
    if all_day:
        start = _render_day(series.start)
        end = _render_day(series.end - dt.timedelta(days=1))
    else:
        # the same text msgspec writes for a datetime
        start = msgspec.to_builtins(series.start.astimezone(series.zone))
        end = msgspec.to_builtins(series.end.astimezone(series.zone))
    pattern = series.pattern.to_json(all_day) if series.pattern else None
    return EventView(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        event_type=row["event_type"] or "study",
        start_time=start,
        end_time=end,
        timezone=series.timezone,
        location=row["location"],
        is_all_day=all_day,
        is_recurring=series.pattern is not None,
        recurrence_pattern=pattern,
        reminder_settings=list(row["reminder_settings"] or []),
        related_pod_id=row["related_pod_id"],
        related_session_id=row["related_session_id"],
        status=row["status"] or "scheduled",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def parse_reminders(values: list[ReminderSetting]) -> list[dict[str, Any]]:
    if len(values) > MAX_REMINDERS:
        raise Invalid("reminderSettings", f"at most {MAX_REMINDERS} reminders")
    merged: dict[int, list[str]] = {}
    for i, r in enumerate(values):
        where = f"reminderSettings[{i}]"
        if not 0 <= r.minutes_before <= MAX_REMINDER_MINUTES:
            raise Invalid(
                f"{where}.minutesBefore", f"must be from 0 to {MAX_REMINDER_MINUTES} minutes"
            )
        if not r.channels:
            raise Invalid(f"{where}.channels", "name at least one channel: in_app, email")
        for channel in r.channels:
            if channel not in CHANNELS:
                raise Invalid(f"{where}.channels", "each channel must be in_app or email")
        known = merged.setdefault(r.minutes_before, [])
        known.extend(c for c in r.channels if c not in known)
    return [
        {"minutesBefore": m, "channels": sorted(c)} for m, c in sorted(merged.items(), reverse=True)
    ]


def _times(
    start_raw: str, end_raw: str | None, tz: str, all_day: bool
) -> tuple[dt.datetime, dt.datetime]:
    start = rec.parse_instant(start_raw, "startTime", all_day=all_day, tz=tz)
    if all_day:
        last = rec.parse_instant(end_raw, "endTime", all_day=True, tz=tz) if end_raw else start
        if last < start:
            raise Invalid("endTime", "must not be before startTime")
        return start, last + dt.timedelta(days=1)
    end = rec.parse_instant(end_raw, "endTime", all_day=False, tz=tz) if end_raw else start
    if end < start:
        raise Invalid("endTime", "must not be before startTime")
    if end - start > dt.timedelta(days=366):
        raise Invalid("endTime", "an event lasts at most a year")
    return start, end


def _timezone_name(value: str) -> str:
    return validation.timezone(value, "timezone")


def reminder_due_at(
    series: rec.Series, reminders: list[dict[str, Any]], status: str, after: dt.datetime
) -> dt.datetime | None:
    """When the first of the event's reminders due at or after `after` comes due; None when
    none will (no reminders, cancelled, or the series is over). Kept on the row
    (`reminder_due_at`) so the reminder scan reads only events with something due."""
    if status == "cancelled" or not reminders:
        return None
    minutes = [int(r.get("minutesBefore", 0)) for r in reminders if isinstance(r, dict)]
    return rec.next_alarm(series, minutes, after - dt.timedelta(microseconds=1))


def _series_values(
    raw_pattern: Any,
    is_recurring: bool,
    series: rec.Series,
    reminders: list[dict[str, Any]],
    status: str,
    dropped: list[Invalid] | None = None,
) -> dict[str, Any]:
    """The recurrence columns of an event (pure, CPU-bound: run in a thread). With `dropped`
    the pattern keeps what it can (see recurrence.parse_pattern)."""
    pattern = None
    if raw_pattern is not None:
        pattern = rec.parse_pattern(raw_pattern, series, dropped=dropped)
    elif is_recurring:
        raise Invalid("recurrencePattern", "is required when isRecurring is true")
    series = replace(series, pattern=pattern)
    span_start, span_end = rec.series_span(series)
    return {
        "is_recurring": pattern is not None,
        "recurrence_pattern": pattern.to_json(series.all_day) if pattern else None,
        "span_start": span_start,
        "span_end": span_end,
        "reminder_due_at": reminder_due_at(series, reminders, status, dt.datetime.now(dt.UTC)),
    }


class CalendarService:
    def __init__(self, db: Database, pods: PodService) -> None:
        self.db = db
        self.pods = pods

    # ------------------------------------------------------------------ single events

    async def get(self, principal: Principal, event_id: uuid.UUID) -> EventView:
        row = await calendar_db.get_event(self.db.pool, principal.user_id, event_id)
        if row is None:
            raise NotFound("event not found")
        return event_view(row)

    async def create(self, principal: Principal, body: EventCreate) -> EventView:
        values = await self._validated(principal, body)
        async with self.db.transaction() as conn:
            await make_room(conn, principal.user_id)
            row = await calendar_db.insert_event(conn, {"user_id": principal.user_id, **values})
        return event_view(row)

    async def _validated(
        self, principal: Principal, body: EventCreate, dropped: list[Invalid] | None = None
    ) -> dict[str, Any]:
        """Column values for a full description of an event; Invalid names the bad field.
        With `dropped` (an import) the rdates, exdates and overrides that cannot be kept are
        left out and said there instead."""
        title = validation.text(body.title, "title", max_len=255)
        tz = _timezone_name(body.timezone)
        event_type = validation.one_of(body.event_type, "eventType", EVENT_TYPES)
        status = validation.one_of(body.status, "status", STATUSES)
        start, end = _times(body.start_time, body.end_time, tz, body.is_all_day)
        reminders = parse_reminders(body.reminder_settings)
        # Rules are bounded (recurrence.normalize_rule) but checking one still walks it: off
        # the event loop.
        recurrence = await asyncio.to_thread(
            _series_values,
            body.recurrence_pattern,
            body.is_recurring,
            rec.Series(start, end, tz, body.is_all_day),
            reminders,
            status,
            dropped,
        )
        pod_id = await self._related_pod(principal, body.related_pod_id)
        session_id = await self._related_session(principal, body.related_session_id)
        return {
            "title": title,
            "description": validation.optional_text(body.description, "description", 10_000),
            "event_type": event_type,
            "start_time": start,
            "end_time": end,
            "timezone": tz,
            "location": validation.optional_text(body.location, "location", 1000),
            "is_all_day": body.is_all_day,
            "reminder_settings": reminders,
            "related_pod_id": pod_id,
            "related_session_id": session_id,
            "status": status,
            **recurrence,
        }

    async def _related_pod(self, principal: Principal, raw: str | None) -> uuid.UUID | None:
        if raw is None:
            return None
        pod_id = validation.parse_uuid(raw, "relatedPodId")
        try:
            await self.pods.visible_pod(principal, pod_id)
        except NotFound:
            raise Invalid("relatedPodId", "no pod with this id") from None
        return pod_id

    async def _related_session(self, principal: Principal, raw: str | None) -> uuid.UUID | None:
        if raw is None:
            return None
        session_id = validation.parse_uuid(raw, "relatedSessionId")
        if not await calendar_db.session_visible(self.db.pool, principal.user_id, session_id):
            raise Invalid("relatedSessionId", "no study session of yours has this id")
        return session_id

    @staticmethod
    def _as_create(row: RowLike, body: EventUpdate) -> EventCreate:
        """The full description after applying `body` to the stored event."""
        series = event_series(row)
        current = event_view(row)

        def pick(name: str, default: Any) -> Any:
            value = getattr(body, name)
            return default if value is msgspec.UNSET else value

        all_day = pick("is_all_day", series.all_day)
        start_default = current.start_time
        end_default: Any = current.end_time
        if all_day != series.all_day:
            # switching between timed and all-day: keep the dates, drop the times
            start_default = _render_day(series.start.astimezone(series.zone))
            end_default = None
        start_raw = pick("start_time", start_default)
        end_raw = pick("end_time", end_default)
        if isinstance(start_raw, dt.datetime):
            start_raw = start_raw.isoformat()
        if isinstance(end_raw, dt.datetime):
            end_raw = end_raw.isoformat()
        if body.start_time is not msgspec.UNSET and body.end_time is msgspec.UNSET:
            # moving the start keeps the duration
            if not all_day and isinstance(start_raw, str) and not series.all_day:
                new_start = rec.parse_instant(
                    start_raw, "startTime", all_day=False, tz=pick("timezone", series.timezone)
                )
                end_raw = (new_start + series.duration).isoformat()
            elif all_day and series.all_day and isinstance(start_raw, str):
                new_start = rec.parse_instant(start_raw, "startTime", all_day=True)
                end_raw = _render_day(new_start + series.duration - dt.timedelta(days=1))
        pattern: Any = current.recurrence_pattern
        if body.recurrence_pattern is not msgspec.UNSET:
            pattern = body.recurrence_pattern
        is_recurring = pick("is_recurring", current.is_recurring)
        if body.is_recurring is False:
            pattern = None
        reminders = (
            [msgspec.convert(r, ReminderSetting) for r in current.reminder_settings]
            if isinstance(body.reminder_settings, msgspec.UnsetType)
            else body.reminder_settings
        )
        return EventCreate(
            title=pick("title", current.title),
            start_time=str(start_raw),
            end_time=None if end_raw is None else str(end_raw),
            timezone=pick("timezone", current.timezone),
            event_type=pick("event_type", current.event_type),
            description=pick("description", current.description),
            location=pick("location", current.location),
            is_all_day=all_day,
            is_recurring=bool(is_recurring) and pattern is not None,
            recurrence_pattern=pattern,
            reminder_settings=reminders,
            related_pod_id=_str_or_none(pick("related_pod_id", current.related_pod_id)),
            related_session_id=_str_or_none(pick("related_session_id", current.related_session_id)),
            status=pick("status", current.status),
        )

    async def update(
        self,
        principal: Principal,
        event_id: uuid.UUID,
        body: EventUpdate,
        where: OccurrenceQuery,
    ) -> EventView:
        """Change the whole series, one occurrence (scope=this) or an occurrence and every
        later one (scope=following: returns the new series)."""
        async with self.db.transaction() as conn:
            row = await calendar_db.get_event(conn, principal.user_id, event_id, lock=True)
            if row is None:
                raise NotFound("event not found")
            scope, rid = self._scope(row, where)
            if scope == "this":
                if rid is None:
                    raise RuntimeError("rid is missing")
                return event_view(await self._change_occurrence(conn, row, rid, body))
            if scope == "following":
                if rid is None:
                    raise RuntimeError("rid is missing")
                return await self._change_following(conn, principal, row, rid, body)
            wanted = self._as_create(row, body)
            if body.recurrence_pattern is msgspec.UNSET and wanted.recurrence_pattern is not None:
                wanted = await self._rebased(row, wanted)
            values = await self._validated(principal, wanted)
            return event_view(await calendar_db.update_event(conn, event_id, values))

    async def _rebased(self, row: RowLike, wanted: EventCreate) -> EventCreate:
        """When times change but the pattern is not restated, keep only the exceptions that
        still name occurrences of the moved series."""
        old = event_series(row)
        start, end = _times(wanted.start_time, wanted.end_time, wanted.timezone, wanted.is_all_day)
        if old.pattern is None or (start == old.start and wanted.timezone == old.timezone):
            return wanted
        moved = rec.Series(start, end, wanted.timezone, wanted.is_all_day)
        kept = rec.rebase(old.pattern, moved)
        return replace_struct(wanted, recurrence_pattern=kept.to_json(wanted.is_all_day))

    def _scope(self, row: asyncpg.Record, where: OccurrenceQuery) -> tuple[Scope, str | None]:
        if where.recurrence_id is None:
            if where.scope not in (None, "all"):
                raise Invalid("recurrenceId", f"is required with scope={where.scope}")
            return "all", None
        series = event_series(row)
        if series.pattern is None:
            raise Invalid("recurrenceId", "this event does not repeat")
        rid = rec.parse_recurrence_id(where.recurrence_id, all_day=series.all_day)
        if not rec.occurs(series, rid) or rid in series.pattern.exdates:
            raise NotFound("no such occurrence of this event")
        return where.scope or "this", rid

    async def _change_occurrence(
        self, conn: Conn, row: asyncpg.Record, rid: str, body: EventUpdate
    ) -> asyncpg.Record:
        series = event_series(row)
        if series.pattern is None:
            raise RuntimeError("series.pattern is missing")
        for name in EventUpdate.__struct_fields__:
            if name not in _OCCURRENCE_FIELDS and getattr(body, name) is not msgspec.UNSET:
                camel = EventUpdate.__struct_encode_fields__[
                    EventUpdate.__struct_fields__.index(name)
                ]
                raise Invalid(
                    camel, "cannot change for one occurrence; use scope=all or scope=following"
                )
        change: dict[str, Any] = {}
        for name in ("title", "description", "location"):
            value = getattr(body, name)
            if value is not msgspec.UNSET:
                if name == "title":
                    value = validation.text(value or "", "title", max_len=255)
                change[name] = value
        if body.start_time is not msgspec.UNSET:
            change["start"] = body.start_time
        if body.end_time is not msgspec.UNSET and body.end_time is not None:
            change["end"] = body.end_time
        override = rec.parse_override(change, series, "body")
        override = _check_override_times(override, series, rid)
        pattern = rec.with_override(series.pattern, rid, override)
        return await self._save_pattern(conn, row, series, pattern)

    async def _save_pattern(
        self, conn: Conn, row: asyncpg.Record, series: rec.Series, pattern: rec.Pattern
    ) -> asyncpg.Record:
        updated = replace(series, pattern=pattern)
        span_start, span_end = rec.series_span(updated)
        reminders = list(row["reminder_settings"] or [])
        due = reminder_due_at(
            updated, reminders, row["status"] or "scheduled", dt.datetime.now(dt.UTC)
        )
        return await calendar_db.update_event(
            conn,
            row["id"],
            {
                "recurrence_pattern": pattern.to_json(series.all_day),
                "span_start": span_start,
                "span_end": span_end,
                "reminder_due_at": due,
            },
        )

    async def _change_following(
        self,
        conn: Conn,
        principal: Principal,
        row: asyncpg.Record,
        rid: str,
        body: EventUpdate,
    ) -> EventView:
        series = event_series(row)
        if rid != rec.recurrence_id_of(series.start, series.all_day) and not rec.from_rule(
            series, rid
        ):
            # the rest of the series would carry on from a date the rule does not produce,
            # where the same rule (counted from its own start) no longer gives the same dates
            raise Invalid(
                "recurrenceId",
                "an occurrence added with rdates cannot start the rest of the series; change "
                "it alone (scope=this) or cut the series at an occurrence of its rule",
            )
        parts = rec.split(series, rid)
        # the tail starts as a copy of the series from the cut, with the tail's own rule
        tail_start = parts.cut
        tail_end = tail_start + series.duration
        tail_row = dict(row)
        tail_row.update(
            start_time=tail_start,
            end_time=tail_end,
            recurrence_pattern=parts.after.to_json(series.all_day),
            is_recurring=True,
        )
        wanted = self._as_create(tail_row, body)
        if body.recurrence_pattern is msgspec.UNSET:
            wanted = await self._rebased(tail_row, wanted)
        values = await self._validated(principal, wanted)
        if parts.before is None:  # cut at the first occurrence: the whole series changes
            return event_view(await calendar_db.update_event(conn, row["id"], values))
        await self._save_pattern(conn, row, series, parts.before)
        await make_room(conn, principal.user_id)
        created = await calendar_db.insert_event(conn, {"user_id": principal.user_id, **values})
        return event_view(created)

    async def delete(
        self, principal: Principal, event_id: uuid.UUID, where: OccurrenceQuery
    ) -> None:
        async with self.db.transaction() as conn:
            row = await calendar_db.get_event(conn, principal.user_id, event_id, lock=True)
            if row is None:
                raise NotFound("event not found")
            scope, rid = self._scope(row, where)
            series = event_series(row)
            if scope == "all":
                await calendar_db.delete_event(conn, principal.user_id, event_id)
                return
            if rid is None or series.pattern is None:
                raise RuntimeError("rid, series.pattern missing")
            if scope == "this":
                await self._save_pattern(conn, row, series, rec.with_exdate(series.pattern, rid))
                return
            before = rec.truncate(series, rid)
            if before is None:
                await calendar_db.delete_event(conn, principal.user_id, event_id)
            else:
                await self._save_pattern(conn, row, series, before)

    # ------------------------------------------------------------------ the range query

    async def range(self, principal: Principal, query: CalendarQuery) -> CalendarRange:
        tz = (
            _timezone_name(query.timezone)
            if query.timezone
            else await calendar_db.user_timezone(self.db.pool, principal.user_id)
        )
        start = rec.parse_instant(query.start_date, "startDate", all_day=False, tz=tz)
        end = rec.parse_instant(query.end_date, "endDate", all_day=False, tz=tz)
        if len(query.end_date.strip()) == 10:
            # a date as the end means through that whole day (its local midnight after)
            next_day = dt.date.fromisoformat(query.end_date.strip()) + dt.timedelta(days=1)
            end = rec.parse_instant(next_day.isoformat(), "endDate", all_day=False, tz=tz)
        if end <= start:
            raise Invalid("endDate", "must be after startDate")
        if end - start > dt.timedelta(days=MAX_RANGE_DAYS):
            raise Invalid("endDate", f"a range covers at most {MAX_RANGE_DAYS} days")
        types = list(dict.fromkeys(query.event_types))
        for t in types:
            validation.one_of(t, "eventTypes", (*EVENT_TYPES, SESSION_TYPE))
        event_types = [t for t in types if t != SESSION_TYPE] if types else None
        want_sessions = not types or SESSION_TYPE in types
        events: list[asyncpg.Record] = []
        sessions: list[asyncpg.Record] = []
        # all-day series need the dates the window touches, so widen the database filter
        margin = dt.timedelta(days=1)
        if event_types is None or event_types:
            events = await calendar_db.events_between(
                self.db.pool,
                principal.user_id,
                start - margin,
                end + margin,
                event_types,
                limit=MAX_RANGE_SOURCES + 1,
            )
        if want_sessions:
            sessions = await calendar_db.sessions_between(
                self.db.pool, principal.user_id, start, end, limit=MAX_RANGE_SOURCES + 1
            )
        cut = len(events) > MAX_RANGE_SOURCES or len(sessions) > MAX_RANGE_SOURCES
        # Expanding thousands of series is CPU work: off the event loop.
        items, more = await asyncio.to_thread(
            self._items,
            events[:MAX_RANGE_SOURCES],
            sessions[:MAX_RANGE_SOURCES],
            start,
            end,
            tz,
        )
        zone = rec.zone(tz)
        return CalendarRange(
            items, start.astimezone(zone), end.astimezone(zone), tz, truncated=more or cut
        )

    def _items(
        self,
        events: list[asyncpg.Record],
        sessions: list[asyncpg.Record],
        start: dt.datetime,
        end: dt.datetime,
        tz: str,
    ) -> tuple[list[CalendarItem], bool]:
        """The earliest MAX_RANGE_OCCURRENCES occurrences of all these series, and whether
        there were more. Each series yields its occurrences lazily in order of start and they
        are merged, so only what is shown (and each series' next one) is ever computed."""
        streams = [self._event_items(row, start, end, tz) for row in events]
        streams += [self._session_items(row, start, end, tz) for row in sessions]
        items: list[CalendarItem] = []
        more = False
        for item in heapq.merge(*streams, key=lambda i: i.start_time):
            # past the cap, keep taking only what starts at the same instant as the last one
            # taken, so the sort below cuts exactly where a sort of everything would
            if len(items) >= MAX_RANGE_OCCURRENCES and item.start_time > items[-1].start_time:
                more = True
                break
            items.append(item)
        items.sort(key=lambda i: (i.start_time, i.title, i.occurrence_id))
        if len(items) > MAX_RANGE_OCCURRENCES:
            del items[MAX_RANGE_OCCURRENCES:]
            more = True
        return items, more

    def _event_items(
        self, row: asyncpg.Record, start: dt.datetime, end: dt.datetime, tz: str
    ) -> Iterator[CalendarItem]:
        series = event_series(row)
        for occ in safe_occurrences(series, start, end, tz, f"event {row['id']}"):
            item = CalendarItem(
                id=str(row["id"]),
                source="event",
                occurrence_id=_occurrence_id(row["id"], occ.recurrence_id),
                title=str(occ.fields.get("title") or row["title"]),
                description=occ.fields.get("description", row["description"]),
                location=occ.fields.get("location", row["location"]),
                event_type=row["event_type"] or "study",
                start_time=occ.start,
                end_time=occ.end,
                timezone=series.timezone,
                is_all_day=series.all_day,
                is_recurring=series.pattern is not None,
                status=row["status"] or "scheduled",
                recurrence_id=occ.recurrence_id,
                is_exception=occ.overridden,
                related_pod_id=row["related_pod_id"],
                related_session_id=row["related_session_id"],
                role="owner",
            )
            yield _localize(item, occ, tz)

    def _session_items(
        self, row: asyncpg.Record, start: dt.datetime, end: dt.datetime, tz: str
    ) -> Iterator[CalendarItem]:
        series = session_series(row)
        for occ in safe_occurrences(series, start, end, tz, f"session {row['id']}"):
            item = CalendarItem(
                id=str(row["id"]),
                source="session",
                occurrence_id=_occurrence_id(row["id"], occ.recurrence_id),
                title=str(occ.fields.get("title") or row["title"]),
                description=occ.fields.get("description", row["description"]),
                event_type=SESSION_TYPE,
                start_time=occ.start,
                end_time=occ.end,
                timezone=series.timezone,
                is_all_day=False,
                is_recurring=series.pattern is not None,
                status=row["status"] or "scheduled",
                recurrence_id=occ.recurrence_id,
                is_exception=occ.overridden,
                pod_id=row["pod_id"],
                session_type=row["session_type"],
                meeting_url=row["meeting_url"],
                role=row["my_role"],
            )
            yield _localize(item, occ, tz)


async def make_room(conn: Conn, user_id: uuid.UUID) -> None:
    """Refuse a new event when the user's calendar is full. Holds a per-user lock until the
    caller's transaction ends, so two creations at once cannot both take the last place."""
    await calendar_db.lock_user_events(conn, user_id)
    if await calendar_db.count_events(conn, user_id, MAX_EVENTS_PER_USER) >= MAX_EVENTS_PER_USER:
        raise calendar_full()


def calendar_full() -> Conflict:
    return Conflict(
        f"a calendar holds at most {MAX_EVENTS_PER_USER} events: delete some first",
        code="calendar_full",
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def replace_struct(value: EventCreate, **changes: Any) -> EventCreate:
    return msgspec.structs.replace(value, **changes)


def _occurrence_id(ident: uuid.UUID, rid: str | None) -> str:
    return str(ident) if rid is None else f"{ident}/{rid}"


def _localize(item: CalendarItem, occ: rec.Occurrence, tz: str) -> CalendarItem:
    """Render the instants in the viewer's zone; all-day items get their dates (the last day
    inclusive) and start/end at the viewer's local midnights of those dates."""
    zone = rec.zone(tz)
    if item.is_all_day:
        first = occ.start.date()
        last = (occ.end - dt.timedelta(days=1)).date()
        item.start_date = first.isoformat()
        item.end_date = last.isoformat()
        item.start_time = dt.datetime.combine(first, dt.time(), zone)
        item.end_time = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone)
    else:
        item.start_time = occ.start.astimezone(zone)
        item.end_time = occ.end.astimezone(zone)
    return item


def _check_override_times(override: rec.Override, series: rec.Series, rid: str) -> rec.Override:
    original = rec.parse_instant(rid, "recurrenceId", all_day=series.all_day)
    start = override.start or original
    if series.all_day and override.end is not None:
        # the inclusive last day given by the client -> exclusive end
        override = rec.Override(
            override.start, override.end + dt.timedelta(days=1), override.fields
        )
    end = override.end or (start + series.duration)
    if end < start or (series.all_day and end <= start):
        raise Invalid("endTime", "must not be before startTime")
    return override


# the application's key for what this module provides (typed app state)
CALENDAR = web.AppKey("calendar", CalendarService)
