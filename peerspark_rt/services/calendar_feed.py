"""iCalendar (RFC 5545) in and out: a private feed per user that calendar clients subscribe to,
and import of .ics files. Built and parsed with the `icalendar` package.

The feed URL carries a random token; only its SHA-256 is stored. Creating a new token replaces
the old one (the old URL stops working at once); revoking deletes it. The feed is a @public
route: the token in the path is its only credential, as calendar clients cannot send headers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import secrets
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg
import icalendar
import msgspec

from .. import __version__
from ..db import calendar as calendar_db
from ..db.pool import Database
from ..errors import AppError, BadRequest, NotFound
from . import recurrence as rec
from .auth import Principal
from .calendar import (
    MAX_EVENTS_PER_USER,
    CalendarService,
    EventCreate,
    calendar_full,
    event_series,
    event_view,
    session_series,
)

log = logging.getLogger(__name__)

FEED_HISTORY = dt.timedelta(days=180)  # past events a feed still carries
FEED_MAX_EVENTS = MAX_EVENTS_PER_USER  # events and sessions one feed carries at most
FEED_MAX_SESSIONS = 2000
MAX_IMPORT_EVENTS = 1000


class Unusable(ValueError):
    """An event this importer cannot use, in words meant for the person importing it."""


# What an importer is told of an event the parser choked on (the parser's own words are logged)
UNREADABLE_EVENT = "cannot be read: a property is malformed"
# What a malformed calendar may make the parser or the checks raise: a reason to skip one
# event, never an error for the whole import.
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)
PRODID = f"-//PeerSpark//PeerSpark RT {__version__}//EN"
_STATUS_OUT = {"scheduled": "CONFIRMED", "completed": "CONFIRMED", "tentative": "TENTATIVE",
               "cancelled": "CANCELLED"}  # fmt: skip
_STATUS_IN = {"CONFIRMED": "scheduled", "TENTATIVE": "tentative", "CANCELLED": "cancelled"}
_TYPES_IN = {"study", "exam", "assignment", "meeting", "deadline"}


class FeedToken(msgspec.Struct, rename="camel"):
    url: str
    webcal_url: str
    token: str
    created_at: dt.datetime


class FeedStatus(msgspec.Struct, rename="camel"):
    active: bool
    created_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None


class ImportProblem(msgspec.Struct, rename="camel"):
    uid: str
    reason: str


class ImportResult(msgspec.Struct, rename="camel"):
    imported: int
    updated: int
    skipped: list[ImportProblem]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --------------------------------------------------------------------------- building


def _moment(value: dt.datetime, series: rec.Series) -> dt.datetime | dt.date:
    if series.all_day:
        return value.date()
    if series.timezone == "UTC":
        return value.astimezone(dt.UTC)
    return value.astimezone(series.zone)


def _event_component(
    uid: str,
    series: rec.Series,
    *,
    title: str,
    description: str | None,
    location: str | None,
    status: str,
    category: str,
    stamp: dt.datetime,
    created: dt.datetime | None,
    url: str | None = None,
) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp.astimezone(dt.UTC))
    if created is not None:
        event.add("created", created.astimezone(dt.UTC))
    event.add("last-modified", stamp.astimezone(dt.UTC))
    event.add("summary", title)
    event.add("dtstart", _moment(series.start, series))
    if series.end > series.start:
        event.add("dtend", _moment(series.end, series))
    if description:
        event.add("description", description)
    if location:
        event.add("location", location)
    if url:
        event.add("url", url)
    event.add("status", _STATUS_OUT.get(status, "CONFIRMED"))
    event.add("categories", [category])
    return event


def _series_components(uid: str, series: rec.Series, base: dict[str, Any]) -> list[icalendar.Event]:
    """The master VEVENT with RRULE/EXDATE, plus one VEVENT per changed occurrence."""
    master = _event_component(uid, series, **base)
    out = [master]
    pattern = series.pattern
    if pattern is None:
        return out
    master.add("rrule", icalendar.vRecur.from_ical(pattern.rrule))
    exdates = [
        _moment(rec.parse_instant(x, "exdate", all_day=series.all_day), series)
        for x in pattern.exdates
    ]
    if exdates:
        master.add("exdate", exdates)
    for rid, change in pattern.overrides.items():
        original = rec.parse_instant(rid, "recurrenceId", all_day=series.all_day)
        start = change.start or original
        end = change.end or (start + series.duration)
        fields = {**base}
        for name in ("title", "description", "location"):
            if name in change.fields:
                fields[name] = change.fields[name] or (base[name] if name == "title" else None)
        one = rec.Series(start, end, series.timezone, series.all_day)
        exception = _event_component(uid, one, **fields)
        exception.add("recurrence-id", _moment(original, series))
        out.append(exception)
    return out


def _alarms(event: icalendar.Event, reminders: Iterable[dict[str, Any]]) -> None:
    """A display alarm per reminder, so subscribed clients remind on their own too."""
    for r in reminders:
        minutes = int(r.get("minutesBefore", 0))
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", "Reminder")
        alarm.add("trigger", dt.timedelta(minutes=-minutes))
        event.add_component(alarm)


def build_feed(
    name: str,
    events: list[asyncpg.Record],
    sessions: list[asyncpg.Record],
    base_url: str,
) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"PeerSpark: {name}")
    cal.add("x-published-ttl", "PT15M")  # how often clients should refresh
    cal.add("refresh-interval", dt.timedelta(minutes=15), parameters={"VALUE": "DURATION"})
    for row in events:
        series = event_series(row)
        view = event_view(row)
        base = {
            "title": row["title"],
            "description": row["description"],
            "location": row["location"],
            "status": view.status,
            "category": view.event_type,
            "stamp": row["updated_at"],
            "created": row["created_at"],
        }
        uid = row["ical_uid"] or f"event-{row['id']}@peerspark"
        try:
            components = _series_components(uid, series, base)
        except _UNREADABLE as exc:
            log.warning("event %s left out of the feed: %s", row["id"], exc)
            continue
        _alarms(components[0], row["reminder_settings"] or [])
        for component in components:
            cal.add_component(component)
    for row in sessions:
        series = session_series(row)
        base = {
            "title": row["title"],
            "description": row["description"],
            "location": row["meeting_url"],
            "status": row["status"] or "scheduled",
            "category": "session",
            "stamp": row["updated_at"] or row["created_at"],
            "created": row["created_at"],
            "url": f"{base_url}/sessions/{row['id']}",
        }
        try:
            components = _series_components(f"session-{row['id']}@peerspark", series, base)
        except _UNREADABLE as exc:
            log.warning("session %s left out of the feed: %s", row["id"], exc)
            continue
        for component in components:
            cal.add_component(component)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


# --------------------------------------------------------------------------- parsing


def _zone_of(value: dt.datetime, fallback: str) -> tuple[dt.datetime, str]:
    """An imported date-time and the IANA zone to keep for it."""
    if value.tzinfo is None:  # floating time: read it in the importer's zone
        return value.replace(tzinfo=rec.zone(fallback)), fallback
    key = getattr(value.tzinfo, "key", None)
    if isinstance(key, str) and rec.zone(key).key == key:
        return value, key
    if value.utcoffset() == dt.timedelta(0):
        return value.astimezone(dt.UTC), "UTC"
    return value.astimezone(dt.UTC), fallback


def _decoded(component: icalendar.cal.Component, name: str) -> Any:
    try:
        return component.decoded(name)
    except KeyError:
        return None


def _dates_of(prop: Any) -> list[Any]:
    """The values of an EXDATE property, which may repeat and may hold several values."""
    if prop is None:
        return []
    props = prop if isinstance(prop, list) else [prop]
    out = []
    for p in props:
        for value in getattr(p, "dts", []):
            out.append(value.dt)
    return out


def _stamp(value: Any, all_day: bool, tz: str) -> str:
    if isinstance(value, dt.datetime):
        if all_day:
            return value.date().isoformat()
        moment, _ = _zone_of(value, tz)
        return moment.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise Unusable(f"not a date: {value!r}")


def drafts_from_ics(
    data: bytes, default_tz: str
) -> tuple[list[tuple[str, EventCreate]], list[ImportProblem]]:
    """(uid, event) for each importable series in `data`, and what was skipped and why."""
    try:
        calendars = icalendar.Calendar.from_ical(data, multiple=True)
    except _UNREADABLE as exc:
        log.info("calendar import refused: %r", exc)
        raise BadRequest("not an iCalendar file", code="invalid_ics") from None
    masters: dict[str, icalendar.cal.Component] = {}
    exceptions: dict[str, list[icalendar.cal.Component]] = {}
    problems: list[ImportProblem] = []
    for cal in calendars:
        for component in cal.walk("VEVENT"):
            uid = str(component.get("UID") or "").strip()
            if not uid:
                uid = "sha1-" + hashlib.sha1(component.to_ical()).hexdigest()
            if len(uid) > 255:
                problems.append(
                    ImportProblem(uid[:60] + "...", "UID is longer than 255 characters")
                )
                continue
            if component.get("RECURRENCE-ID") is not None:
                exceptions.setdefault(uid, []).append(component)
            else:
                masters[uid] = component
    if len(masters) > MAX_IMPORT_EVENTS:
        raise BadRequest(f"at most {MAX_IMPORT_EVENTS} events per import", code="too_many_events")
    drafts: list[tuple[str, EventCreate]] = []
    for uid, component in masters.items():
        try:
            drafts.append((uid, _draft(component, exceptions.get(uid, []), default_tz)))
        except Unusable as exc:
            problems.append(ImportProblem(uid, str(exc)))
        except _UNREADABLE as exc:
            log.info("imported event %s unreadable: %r", uid, exc)
            problems.append(ImportProblem(uid, UNREADABLE_EVENT))
    for uid in exceptions.keys() - masters.keys():
        problems.append(ImportProblem(uid, "a changed occurrence without its series"))
    return drafts, problems


def _draft(
    component: icalendar.cal.Component, changes: list[icalendar.cal.Component], default_tz: str
) -> EventCreate:
    start = _decoded(component, "DTSTART")
    if start is None:
        raise Unusable("no DTSTART")
    all_day = not isinstance(start, dt.datetime)
    tz = default_tz
    if isinstance(start, dt.datetime):
        start, tz = _zone_of(start, default_tz)
    end = _decoded(component, "DTEND")
    if end is None:
        duration = _decoded(component, "DURATION")
        if isinstance(duration, dt.timedelta):
            end = start + duration
    end_text: str | None = None
    if end is not None:
        if all_day:
            last = (end if not isinstance(end, dt.datetime) else end.date()) - dt.timedelta(days=1)
            end_text = max(last, start).isoformat()
        else:
            end_text = _stamp(end, False, tz)
    pattern: dict[str, Any] | None = None
    rule = component.get("RRULE")
    if rule is not None:
        if isinstance(rule, list):
            rule = rule[0]
        exdates = [_stamp(x, all_day, tz) for x in _dates_of(component.get("EXDATE"))]
        overrides: dict[str, Any] = {}
        for change in changes:
            rid = _stamp(_decoded(change, "RECURRENCE-ID"), all_day, tz)
            if str(change.get("STATUS", "")).upper() == "CANCELLED":
                exdates.append(rid)
                continue
            entry: dict[str, Any] = {}
            new_start = _decoded(change, "DTSTART")
            if new_start is not None:
                entry["start"] = _stamp(new_start, all_day, tz)
            new_end = _decoded(change, "DTEND")
            if new_end is not None and not all_day:
                entry["end"] = _stamp(new_end, False, tz)
            for prop, name in (
                ("SUMMARY", "title"),
                ("DESCRIPTION", "description"),
                ("LOCATION", "location"),
            ):
                if change.get(prop) is not None:
                    entry[name] = str(change.get(prop))[: 255 if name == "title" else 10_000]
            overrides[rid] = entry
        pattern = {"rrule": rule.to_ical().decode(), "exdates": exdates, "overrides": overrides}
    categories = component.get("CATEGORIES")
    event_type = "study"
    if categories is not None:
        cats = categories if isinstance(categories, list) else [categories]
        for c in cats:
            for name in getattr(c, "cats", []):
                if str(name).lower() in _TYPES_IN:
                    event_type = str(name).lower()
    status = _STATUS_IN.get(str(component.get("STATUS", "CONFIRMED")).upper(), "scheduled")
    return EventCreate(
        title=str(component.get("SUMMARY") or "(no title)")[:255],
        start_time=_stamp(start, all_day, tz),
        end_time=end_text,
        timezone=tz,
        event_type=event_type,
        description=str(component["DESCRIPTION"])[:10_000]
        if component.get("DESCRIPTION")
        else None,
        location=str(component["LOCATION"])[:1000] if component.get("LOCATION") else None,
        is_all_day=all_day,
        is_recurring=pattern is not None,
        recurrence_pattern=pattern,
        status=status,
    )


# --------------------------------------------------------------------------- the service


class CalendarFeed:
    def __init__(self, db: Database, calendar: CalendarService, base_url: str) -> None:
        self.db = db
        self.calendar = calendar
        self.base_url = base_url

    async def create_token(self, principal: Principal) -> FeedToken:
        """A new secret feed URL (the previous one, if any, stops working)."""
        token = secrets.token_urlsafe(32)
        row = await calendar_db.set_feed_token(self.db.pool, principal.user_id, token_hash(token))
        url = f"{self.base_url}/api/calendar/feed/{token}.ics"
        webcal = "webcal://" + url.split("://", 1)[1]
        return FeedToken(url, webcal, token, row["created_at"])

    async def status(self, principal: Principal) -> FeedStatus:
        row = await calendar_db.feed_token_info(self.db.pool, principal.user_id)
        if row is None:
            return FeedStatus(active=False)
        return FeedStatus(True, row["created_at"], row["last_used_at"])

    async def revoke(self, principal: Principal) -> None:
        if not await calendar_db.delete_feed_token(self.db.pool, principal.user_id):
            raise NotFound("no calendar feed to revoke")

    async def render(self, token: str) -> bytes:
        if not token or len(token) > 128:
            raise NotFound("calendar feed not found")
        owner = await calendar_db.feed_owner(self.db.pool, token_hash(token))
        if owner is None:
            raise NotFound("calendar feed not found")
        since = dt.datetime.now(dt.UTC) - FEED_HISTORY
        events = await calendar_db.feed_events(
            self.db.pool, owner["id"], since, limit=FEED_MAX_EVENTS
        )
        sessions = await calendar_db.feed_sessions(
            self.db.pool, owner["id"], since, limit=FEED_MAX_SESSIONS
        )
        name = f"{owner['first_name']} {owner['last_name']}".strip() or owner["username"]
        # building thousands of components is CPU work: off the event loop
        return await asyncio.to_thread(build_feed, name, events, sessions, self.base_url)

    async def import_ics(self, principal: Principal, data: bytes) -> ImportResult:
        """Create (or, for a UID imported before, update) an event per series in the file. An
        event that cannot be imported is skipped with its reason; the others still are."""
        tz = await calendar_db.user_timezone(self.db.pool, principal.user_id)
        # parsing up to 2 MB of iCalendar is CPU work: off the event loop
        drafts, problems = await asyncio.to_thread(drafts_from_ics, data, tz)
        imported = updated = 0
        for uid, draft in drafts:
            try:
                values = await self.calendar._validated(principal, draft)
            except AppError as exc:
                problems.append(ImportProblem(uid, exc.message))
                continue
            except _UNREADABLE as exc:
                log.info("imported event %s skipped: %r", uid, exc)
                problems.append(ImportProblem(uid, UNREADABLE_EVENT))
                continue
            try:
                async with self.db.transaction() as conn:
                    await calendar_db.lock_user_events(conn, principal.user_id)
                    _row, inserted = await calendar_db.upsert_imported_event(
                        conn, {"user_id": principal.user_id, "ical_uid": uid, **values}
                    )
                    if (
                        inserted
                        and await calendar_db.count_events(
                            conn, principal.user_id, MAX_EVENTS_PER_USER + 1
                        )
                        > MAX_EVENTS_PER_USER
                    ):
                        raise calendar_full()  # rolls this one event back
            except AppError as exc:
                problems.append(ImportProblem(uid, exc.message))
                continue
            if inserted:
                imported += 1
            else:
                updated += 1
        return ImportResult(imported, updated, problems)


def new_uid() -> str:
    return f"{uuid.uuid4()}@peerspark"
