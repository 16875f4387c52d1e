"""Reminders: each (occurrence, offset, channel) fires exactly once.

* Every node's worker scans every REMINDER_SCAN_INTERVAL seconds and enqueues a `fire_reminder`
  job for each reminder that has come due, with a dedupe key naming the occurrence and offset:
  several nodes scanning at once enqueue it once.
* The job inserts one `reminder_deliveries` row per channel (unique on source, user,
  occurrence, offset, channel) in the same transaction as the notification and the email job.
  A retried or duplicated job finds the rows and does nothing: the database, not timing, makes
  it exactly once.
* A scan does work in proportion to what has come due, not to how many events exist:
  - each calendar event keeps `reminder_due_at`, when its next reminder comes due (computed by
    the calendar service whenever the event is written). A scan reads, page by page through an
    index, only events whose `reminder_due_at` has passed, enqueues the reminders due between
    that time and now, and moves `reminder_due_at` on to the next one;
  - study sessions belong to another service, so for them the scan keeps a watermark (table
    `scan_watermarks`, the last instant scanned) and looks only at reminders due since then
    (less SCAN_OVERLAP, for sessions committed while a scan ran and for clocks that disagree):
    sessions that do not repeat by their start time (an index range), recurring ones paged.
* A reminder that came due while no node was running is found by the first scan after start-up
  and fires then, marked late (fired more than REMINDER_GRACE seconds after it was due), if it
  came due within REMINDER_LOOKBACK_HOURS: the event's `reminder_due_at` or the sessions'
  watermark is still where the last scan left it. With no watermark (the first start) sessions
  are scanned over the whole look-back window.
* A reminder due before its event was last written (created or edited) does not fire: adding
  an event that starts in 5 minutes with a 10-minute reminder does not send a stale reminder.

Event reminders use the event's `reminderSettings` (minutes before; in-app and/or email).
Study sessions remind their organizer and accepted participants `sessionReminderMinutes` before
(each person's notification preference, default 15), on the channels of their
`session_reminder` preference.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from ..config import Settings
from ..infra import jobs_db
from ..infra.dbtypes import Conn
from ..infra.jobs import Job, JobQueue, PermanentError
from ..infra.pool import Database
from ..notifications.prefs import MAX_SESSION_REMINDER_MINUTES, Channels, Preferences
from ..notifications.service import NewNotification, NotificationService
from . import db as calendar_db
from . import recurrence as rec
from .events import event_series, reminder_due_at, session_series

log = logging.getLogger(__name__)
LATE_NOTE = "This reminder is late: the server was down when it was due."
PAGE = 200  # events read and planned at a time
SESSION_PAGE = 1000  # (session, person) rows read and planned at a time
MAX_EVENT_PAGES = 50  # per scan; events still due wait for the next scan
SCAN_OVERLAP = dt.timedelta(minutes=5)
SESSION_WATERMARK = "session_reminders"
_BROKEN = (ValueError, TypeError, OverflowError)


def _when(start: dt.datetime, timezone: str, all_day: bool) -> str:
    if all_day:
        return start.strftime("%a %d %b %Y") + " (all day)"
    return start.astimezone(rec.zone(timezone)).strftime("%a %d %b %Y, %H:%M")


def _dedupe_key(p: dict[str, Any]) -> str:
    return (
        f"reminder:{p['source']}:{p['sourceId']}:{p['userId']}:"
        f"{p['occurrenceStart']}:{p['minutesBefore']}"
    )


@dataclass(frozen=True, slots=True)
class _EventPlan:
    """What one scan does for one event: the reminders to enqueue and when the next is due."""

    event_id: uuid.UUID
    seen_updated_at: dt.datetime
    due: list[dict[str, Any]]
    next_due: dt.datetime | None


class Reminders:
    def __init__(
        self,
        db: Database,
        jobs: JobQueue,
        notifications: NotificationService,
        settings: Settings,
        on_fired: Callable[[str, bool], None] = lambda source, late: None,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.notifications = notifications
        self.settings = settings
        self.on_fired = on_fired

    # ------------------------------------------------------------------ scanning

    async def scan(self, now: dt.datetime | None = None) -> int:
        """Enqueue a job for every reminder that has come due since the last scan (or was
        missed within the look-back window). Returns how many new jobs were enqueued."""
        now = now or dt.datetime.now(dt.UTC)
        floor = now - dt.timedelta(hours=self.settings.reminder_lookback_hours)
        enqueued = await self._scan_events(now, floor)
        enqueued += await self._scan_sessions(now, floor)
        return enqueued

    async def _enqueue(self, conn: Conn, due: list[dict[str, Any]]) -> int:
        keyed = {_dedupe_key(p): p for p in due}
        if not keyed:
            return 0
        # A key seen before (an earlier scan, another node) is skipped with one read instead of
        # an insert attempt each. The dedupe key still settles races.
        seen = await calendar_db.existing_dedupe_keys(conn, list(keyed))
        enqueued = 0
        for key, payload in keyed.items():
            if key in seen:
                continue
            if await self.jobs.enqueue(conn, "fire_reminder", payload, dedupe_key=key):
                enqueued += 1
        return enqueued

    # ------------------------------------------------------------------ events

    async def _scan_events(self, now: dt.datetime, floor: dt.datetime) -> int:
        enqueued = 0
        after: tuple[dt.datetime, uuid.UUID] | None = None
        for _page in range(MAX_EVENT_PAGES):
            rows = await calendar_db.events_due(self.db.pool, now, after, PAGE)
            if not rows:
                break
            plans = await asyncio.to_thread(self._plan_events, rows, now, floor)
            async with self.db.transaction() as conn:
                enqueued += await self._enqueue(conn, [p for plan in plans for p in plan.due])
                await calendar_db.set_reminders_due(
                    conn,
                    [(p.event_id, p.seen_updated_at, p.next_due) for p in plans],
                )
            after = (rows[-1]["reminder_due_at"], rows[-1]["id"])
            if len(rows) < PAGE:
                break
        return enqueued

    def _plan_events(
        self, rows: list[Any], now: dt.datetime, floor: dt.datetime
    ) -> list[_EventPlan]:
        plans = []
        for row in rows:
            try:
                plans.append(self._plan_event(row, now, floor))
            except Exception:
                # one row that cannot be planned must not hold up everyone's reminders (the
                # scan reads in due order): it is left without a next reminder, and logged
                log.exception("reminders of event %s cannot be worked out", row["id"])
                plans.append(_EventPlan(row["id"], row["updated_at"], [], None))
        return plans

    def _plan_event(self, row: Any, now: dt.datetime, floor: dt.datetime) -> _EventPlan:
        reminders = [r for r in row["reminder_settings"] or [] if isinstance(r, dict)]
        status = row["status"] or "scheduled"
        plan = _EventPlan(row["id"], row["updated_at"], [], None)
        if not reminders or status == "cancelled":
            return plan
        series = event_series(row)
        try:
            return self._event_reminders(plan, row, series, reminders, now, floor)
        except _BROKEN as exc:  # a stored rule dateutil cannot read: remind as a one-off
            log.warning("cannot expand event %s: %s", row["id"], exc)
            one_off = replace(series, pattern=None)
            return self._event_reminders(plan, row, one_off, reminders, now, floor)

    def _event_reminders(
        self,
        plan: _EventPlan,
        row: Any,
        series: rec.Series,
        reminders: list[dict[str, Any]],
        now: dt.datetime,
        floor: dt.datetime,
    ) -> _EventPlan:
        """The reminders due from the event's `reminder_due_at` (but not before the look-back
        floor, nor before the event was last written) to `now`, and the next one after."""
        stored = row["reminder_due_at"]
        due_from = max(stored if stored is not None else floor, floor, row["updated_at"])
        tiny = dt.timedelta(microseconds=1)
        found = []
        for r in reminders:
            minutes = int(r.get("minutesBefore", 0))
            lead = dt.timedelta(minutes=minutes)
            for occ, start in rec.alarms_between(series, due_from - tiny + lead, now + lead):
                due = start - lead
                found.append(
                    {
                        "source": "event",
                        "sourceId": str(row["id"]),
                        "userId": str(row["user_id"]),
                        "occurrenceStart": start.isoformat(),
                        "recurrenceId": occ.recurrence_id,
                        "minutesBefore": minutes,
                        "channels": list(r.get("channels") or ["in_app"]),
                        "dueAt": due.isoformat(),
                        "title": str(occ.fields.get("title") or row["title"]),
                        "location": occ.fields.get("location", row["location"]),
                        "timezone": series.timezone,
                        "allDay": series.all_day,
                    }
                )
        next_due = reminder_due_at(series, reminders, row["status"] or "scheduled", now + tiny)
        return replace(plan, due=found, next_due=next_due)

    # ------------------------------------------------------------------ sessions

    async def _scan_sessions(self, now: dt.datetime, floor: dt.datetime) -> int:
        mark = await jobs_db.watermark(self.db.pool, SESSION_WATERMARK)
        since = floor if mark is None else max(floor, min(mark, now) - SCAN_OVERLAP)
        horizon = now + dt.timedelta(minutes=MAX_SESSION_REMINDER_MINUTES)
        enqueued = 0
        # Sessions that do not repeat: a reminder due in (since, now] is for one that starts
        # in (since, now + its minutes], through the index on start_time.
        key: Any = None
        while True:
            rows = await calendar_db.one_off_sessions_for_reminders(
                self.db.pool, since, horizon, key, SESSION_PAGE
            )
            enqueued += await self._session_page(rows, since, now)
            if len(rows) < SESSION_PAGE:
                break
            key = (rows[-1]["start_time"], rows[-1]["id"], rows[-1]["user_id"])
        key = None
        while True:
            rows = await calendar_db.recurring_sessions_for_reminders(
                self.db.pool, horizon, key, SESSION_PAGE
            )
            enqueued += await self._session_page(rows, since, now)
            if len(rows) < SESSION_PAGE:
                break
            key = (rows[-1]["id"], rows[-1]["user_id"])
        await jobs_db.advance_watermark(self.db.pool, SESSION_WATERMARK, now)
        return enqueued

    async def _session_page(self, rows: list[Any], since: dt.datetime, now: dt.datetime) -> int:
        if not rows:
            return 0
        due = await asyncio.to_thread(self._plan_sessions, rows, since, now)
        if not due:
            return 0
        async with self.db.transaction() as conn:
            return await self._enqueue(conn, due)

    def _plan_sessions(
        self, rows: list[Any], since: dt.datetime, now: dt.datetime
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        # the people of one session are adjacent rows and most keep the default minutes: a
        # session is expanded once per reminder lead, not once per person
        alarms: dict[tuple[Any, int], list[tuple[rec.Occurrence, dt.datetime]]] = {}
        for row in rows:
            prefs = Preferences.load(row["notification_settings"])
            minutes = prefs.session_reminder_minutes
            chosen = prefs.channels("session_reminder")
            if minutes is None or not (chosen.in_app or chosen.email):
                continue
            key = (row["id"], minutes)
            try:
                if key not in alarms:
                    if len(alarms) > 64:
                        alarms.clear()
                    alarms[key] = self._session_alarms(row, minutes, since, now)
                out.extend(self._session_reminders(row, alarms[key], minutes, chosen))
            except Exception:  # one bad row must not stop the scan (nor its watermark)
                log.exception("reminders of session %s cannot be worked out", row["id"])
        return out

    def _session_alarms(
        self, row: Any, minutes: int, since: dt.datetime, now: dt.datetime
    ) -> list[tuple[rec.Occurrence, dt.datetime]]:
        """The occurrences of the session whose reminder `minutes` before is due in
        (since, now], with their start."""
        series = session_series(row)
        lead = dt.timedelta(minutes=minutes)
        try:
            return rec.alarms_between(series, since + lead, now + lead)
        except _BROKEN as exc:
            log.warning("cannot expand session %s: %s", row["id"], exc)
            return rec.alarms_between(replace(series, pattern=None), since + lead, now + lead)

    def _session_reminders(
        self,
        row: Any,
        alarms: list[tuple[rec.Occurrence, dt.datetime]],
        minutes: int,
        chosen: Channels,
    ) -> list[dict[str, Any]]:
        armed = max(row["created_at"], row["updated_at"] or row["created_at"])
        lead = dt.timedelta(minutes=minutes)
        found = []
        for occ, start in alarms:
            due = start - lead
            if due < armed:
                continue
            found.append(
                {
                    "source": "session",
                    "sourceId": str(row["id"]),
                    "userId": str(row["user_id"]),
                    "occurrenceStart": start.isoformat(),
                    "recurrenceId": occ.recurrence_id,
                    "minutesBefore": minutes,
                    "channels": [
                        c for c, on in (("in_app", chosen.in_app), ("email", chosen.email)) if on
                    ],
                    "dueAt": due.isoformat(),
                    "title": str(occ.fields.get("title") or row["title"]),
                    "location": row["meeting_url"],
                    "timezone": row["timezone"] or "UTC",
                    "allDay": False,
                }
            )
        return found

    # ------------------------------------------------------------------ firing

    async def fire(self, job: Job) -> None:
        """The `fire_reminder` job: deliver on each channel not delivered yet."""
        p = job.payload
        try:
            source = str(p["source"])
            source_id = uuid.UUID(p["sourceId"])
            user_id = uuid.UUID(p["userId"])
            start = dt.datetime.fromisoformat(p["occurrenceStart"])
            due = dt.datetime.fromisoformat(p["dueAt"])
            minutes = int(p["minutesBefore"])
            channels = [c for c in p["channels"] if c in ("in_app", "email")]
        except (KeyError, ValueError, TypeError) as exc:
            raise PermanentError(f"bad reminder payload: {exc}") from None
        now = dt.datetime.now(dt.UTC)
        late = (now - due).total_seconds() > self.settings.reminder_grace
        row = None
        async with self.db.transaction() as conn:
            table = "calendar_events" if source == "event" else "study_sessions"
            exists = await conn.fetchval(
                f"SELECT COALESCE(status, 'scheduled') <> 'cancelled' FROM {table} WHERE id = $1",  # noqa: S608 (composed of constants; values are parameters)
                source_id,
            )
            if not exists:
                return  # deleted or cancelled since the scan
            claimed: dict[str, int] = {}
            for channel in channels:
                delivery = await calendar_db.insert_delivery(
                    conn,
                    source=source,
                    source_id=source_id,
                    user_id=user_id,
                    occurrence_start=start,
                    minutes_before=minutes,
                    channel=channel,
                    due_at=due,
                    late=late,
                    fired_by=self.settings.node_id,
                )
                if delivery is not None:
                    claimed[channel] = delivery
            if not claimed:
                return  # every channel already delivered: a duplicate or retried job
            new = self._notification(p, source, source_id, user_id, start, due, minutes, late)
            row = await self.notifications.store(
                conn, new, channels=Channels("in_app" in claimed, "email" in claimed)
            )
            if row is not None and "in_app" in claimed:
                await calendar_db.link_delivery(conn, claimed["in_app"], row["id"])
        self.on_fired(source, late)
        await self.notifications.push(row)

    def _notification(
        self,
        p: dict[str, Any],
        source: str,
        source_id: uuid.UUID,
        user_id: uuid.UUID,
        start: dt.datetime,
        due: dt.datetime,
        minutes: int,
        late: bool,
    ) -> NewNotification:
        title = str(p.get("title") or "Event")
        tz = str(p.get("timezone") or "UTC")
        all_day = bool(p.get("allDay"))
        when = _when(start, tz, all_day)
        lead = "now" if minutes == 0 else f"in {minutes} minutes"
        message = f"Starts {lead}: {when} ({tz})."
        if late:
            message += " This reminder is late: the server was not running when it was due."
        if source == "event":
            action_url = f"/calendar/events/{source_id}"
        else:
            action_url = f"/sessions/{source_id}"
        location = p.get("location")
        return NewNotification(
            recipient_id=user_id,
            notification_type="event_reminder" if source == "event" else "session_reminder",
            title=f"Reminder: {title}" + (" (late)" if late else ""),
            message=message,
            action_url=action_url,
            metadata={
                "source": source,
                "sourceId": str(source_id),
                "occurrenceStart": start.isoformat(),
                "recurrenceId": p.get("recurrenceId"),
                "minutesBefore": minutes,
                "dueAt": due.isoformat(),
                "late": late,
            },
            priority="high",
            email_template="reminder",
            email_context={
                "title": title,
                "when": when,
                "timezone": tz,
                "late_line": f"({LATE_NOTE})" if late else "",
                "late_html": f"<p><em>{LATE_NOTE}</em></p>" if late else "",
                "location_line": f"Where: {location}" if location else "",
                "location_html": f"<p><strong>Where:</strong> {_escape(location)}</p>"
                if location
                else "",
            },
        )


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


# the application's key for what this module provides (typed app state)
REMINDERS = web.AppKey("reminders", Reminders)
