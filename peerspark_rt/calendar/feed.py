"""iCalendar (RFC 5545) in and out: a private feed per user that calendar clients subscribe to,
and import of .ics files (read by calendar/ical_import.py). Built with the `icalendar` package,
its VTIMEZONEs by calendar/vtimezone.py.

The feed URL carries a random token; only its SHA-256 is stored. Creating a new token replaces
the old one (the old URL stops working at once); revoking deletes it. The feed is a @public
route: the token in the path is its only credential, as calendar clients cannot send headers.
It carries the series that are not over or ended at most FEED_HISTORY ago.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import asyncpg
import icalendar
import msgspec
from aiohttp import web

from .. import __version__
from ..accounts.auth import Principal
from ..errors import AppError, Invalid, NotFound
from ..infra.pool import Database
from . import db as calendar_db
from . import recurrence as rec
from .events import (
    MAX_EVENTS_PER_USER,
    CalendarService,
    calendar_full,
    event_series,
    event_view,
    session_series,
)
from .ical_import import UNREADABLE, UNREADABLE_EVENT, ImportNotes, ImportProblem, drafts_from_ics
from .vtimezone import vtimezone

log = logging.getLogger(__name__)

FEED_HISTORY = dt.timedelta(days=180)  # a series over for longer is left out of the feed
FEED_MAX_EVENTS = MAX_EVENTS_PER_USER  # events and sessions one feed carries at most
FEED_MAX_SESSIONS = 2000
# A series that never ends gets its time zone's changes listed this many years ahead of now.
FEED_ZONE_YEARS_AHEAD = 20
PRODID = f"-//PeerSpark//PeerSpark RT {__version__}//EN"
_STATUS_OUT = {"scheduled": "CONFIRMED", "completed": "CONFIRMED", "tentative": "TENTATIVE",
               "cancelled": "CANCELLED"}  # fmt: skip


class FeedToken(msgspec.Struct, rename="camel"):
    url: str
    webcal_url: str
    token: str
    created_at: dt.datetime


class FeedStatus(msgspec.Struct, rename="camel"):
    active: bool
    created_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None


class ImportResult(msgspec.Struct, rename="camel"):
    imported: int
    updated: int
    skipped: list[ImportProblem]  # not imported, and why
    incomplete: list[ImportNotes]  # imported, less what is listed


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --------------------------------------------------------------------------- building


def _moment(value: dt.datetime, series: rec.Series) -> dt.datetime | dt.date:
    if series.all_day:
        return value.date()
    if series.zone.key == "UTC":
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
    rdates = [
        _moment(rec.parse_instant(x, "rdate", all_day=series.all_day), series)
        for x in pattern.rdates
    ]
    if rdates:
        master.add("rdate", rdates)
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
    out: list[icalendar.Event] = []
    zones = _ZoneYears(dt.datetime.now(dt.UTC))
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
        except UNREADABLE as exc:
            log.warning("event %s left out of the feed: %s", row["id"], exc)
            continue
        _alarms(components[0], row["reminder_settings"] or [])
        out += components
        zones.add(series, row["span_start"], row["span_end"])
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
        except UNREADABLE as exc:
            log.warning("session %s left out of the feed: %s", row["id"], exc)
            continue
        out += components
        moved = [o.start for o in series.pattern.overrides.values()] if series.pattern else []
        zones.add(
            series, min([series.start, *(x for x in moved if x is not None)]), row["span_end"]
        )
    # every TZID used gets its VTIMEZONE, before the events that use it
    for zone, (first, last) in sorted(zones.years.items()):
        cal.add_component(vtimezone(zone, first, last))
    for component in out:
        cal.add_component(component)
    return bytes(cal.to_ical())


class _ZoneYears:
    """The UTC years each time zone the feed uses must cover: those its series' instants fall
    in, up to FEED_ZONE_YEARS_AHEAD years ahead for a series that never ends."""

    def __init__(self, now: dt.datetime) -> None:
        self.horizon = now.year + FEED_ZONE_YEARS_AHEAD
        self.years: dict[str, tuple[int, int]] = {}

    def add(self, series: rec.Series, first: dt.datetime | None, last: dt.datetime | None) -> None:
        key = series.zone.key
        if series.all_day or key == "UTC":  # dates and UTC times name no zone
            return
        start = min(first or series.start, series.start).astimezone(dt.UTC).year
        if last is None and series.pattern is None:
            last = series.end
        end = self.horizon if last is None else last.astimezone(dt.UTC).year
        known = self.years.get(key)
        if known is not None:
            start, end = min(start, known[0]), max(end, known[1])
        self.years[key] = (start, max(start, end))


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
        event that cannot be imported is skipped with its reason; the others still are. An
        event imported without something it had is listed with what it lost."""
        tz = await calendar_db.user_timezone(self.db.pool, principal.user_id)
        # parsing up to 2 MB of iCalendar is CPU work: off the event loop
        drafts, problems = await asyncio.to_thread(drafts_from_ics, data, tz)
        imported = updated = 0
        incomplete: list[ImportNotes] = []
        for draft in drafts:
            uid = draft.uid
            left_out: list[Invalid] = []
            try:
                values = await self.calendar._validated(principal, draft.event, left_out)
            except AppError as exc:
                problems.append(ImportProblem(uid, exc.message))
                continue
            except UNREADABLE as exc:
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
            draft.note_pattern_problems(left_out)
            if draft.dropped:
                incomplete.append(ImportNotes(uid, draft.dropped))
        return ImportResult(imported, updated, problems, incomplete)


# the application's key for what this module provides (typed app state)
CALENDAR_FEED = web.AppKey("calendar_feed", CalendarFeed)
