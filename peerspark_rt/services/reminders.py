"""Reminders: each (occurrence, offset, channel) fires exactly once.

* Every node's worker scans every REMINDER_SCAN_INTERVAL seconds for reminders that have come
  due within the look-back window (REMINDER_LOOKBACK_HOURS) and enqueues a `fire_reminder` job
  for each, with a dedupe key naming the occurrence and offset: several nodes scanning at once
  enqueue it once.
* The job inserts one `reminder_deliveries` row per channel (unique on source, user,
  occurrence, offset, channel) in the same transaction as the notification and the email job.
  A retried or duplicated job finds the rows and does nothing: the database, not timing, makes
  it exactly once.
* A reminder that came due while no node was running is found by the first scan after start-up
  and fires then, marked late (fired more than REMINDER_GRACE seconds after it was due).
* A reminder due before its event was last written (created or edited) does not fire: adding
  an event that starts in 5 minutes with a 10-minute reminder does not send a stale reminder.

Event reminders use the event's `reminderSettings` (minutes before; in-app and/or email).
Study sessions remind their organizer and accepted participants `sessionReminderMinutes` before
(each person's notification preference, default 15), on the channels of their
`session_reminder` preference.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import uuid
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..db import calendar as calendar_db
from ..db.pool import Database
from . import recurrence as rec
from .calendar import MAX_REMINDER_MINUTES, event_series, safe_expand, session_series
from .jobs import Job, JobQueue, PermanentError
from .notification_prefs import MAX_SESSION_REMINDER_MINUTES, Channels, Preferences
from .notifications import NewNotification, NotificationService

log = logging.getLogger(__name__)
LATE_NOTE = "This reminder is late: the server was down when it was due."


def _when(start: dt.datetime, timezone: str, all_day: bool) -> str:
    if all_day:
        return start.strftime("%a %d %b %Y") + " (all day)"
    return start.astimezone(rec.zone(timezone)).strftime("%a %d %b %Y, %H:%M")


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
        """Enqueue a job for every reminder due now (or missed within the look-back window).
        Returns how many new jobs were enqueued."""
        now = now or dt.datetime.now(dt.UTC)
        since = now - dt.timedelta(hours=self.settings.reminder_lookback_hours)
        due: list[dict[str, Any]] = []
        horizon = now + dt.timedelta(minutes=MAX_REMINDER_MINUTES)
        for row in await calendar_db.events_with_reminders(self.db.pool, since, now, horizon):
            due.extend(self._event_reminders(row, since, now))
        horizon = now + dt.timedelta(minutes=MAX_SESSION_REMINDER_MINUTES)
        for row in await calendar_db.sessions_for_reminders(self.db.pool, since, horizon):
            due.extend(self._session_reminders(row, since, now))
        keyed = {
            f"reminder:{p['source']}:{p['sourceId']}:{p['userId']}:"
            f"{p['occurrenceStart']}:{p['minutesBefore']}": p
            for p in due
        }
        if not keyed:
            return 0
        # Most reminders found in the look-back window were handled by an earlier scan: one
        # read skips them instead of an insert attempt each. The dedupe key still settles races.
        seen = await calendar_db.existing_dedupe_keys(self.db.pool, list(keyed))
        enqueued = 0
        for key, payload in keyed.items():
            if key in seen:
                continue
            if await self.jobs.enqueue(self.db.pool, "fire_reminder", payload, dedupe_key=key):
                enqueued += 1
        return enqueued

    def _occurrence_starts(
        self, series: rec.Series, since: dt.datetime, until: dt.datetime, what: str
    ) -> list[tuple[rec.Occurrence, dt.datetime]]:
        """Occurrences around [since, until] (a day's margin: callers filter on the due time),
        with the instant each starts for a reminder: an all-day occurrence starts at midnight
        in the event's zone."""
        out = []
        margin = dt.timedelta(days=1)
        for occ in safe_expand(series, since - margin, until + margin, "UTC", what):
            start = occ.start
            if series.all_day:
                start = dt.datetime.combine(occ.start.date(), dt.time(), series.zone)
            out.append((occ, start.astimezone(dt.UTC)))
        return out

    def _event_reminders(
        self, row: Any, since: dt.datetime, now: dt.datetime
    ) -> list[dict[str, Any]]:
        reminders = [r for r in row["reminder_settings"] or [] if isinstance(r, dict)]
        if not reminders:
            return []
        longest = max(int(r.get("minutesBefore", 0)) for r in reminders)
        series = event_series(row)
        armed = row["updated_at"]
        found = []
        window_end = now + dt.timedelta(minutes=longest)
        for occ, start in self._occurrence_starts(series, since, window_end, f"event {row['id']}"):
            for r in reminders:
                minutes = int(r.get("minutesBefore", 0))
                due = start - dt.timedelta(minutes=minutes)
                if not (since < due <= now and due >= armed):
                    continue
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
        return found

    def _session_reminders(
        self, row: Any, since: dt.datetime, now: dt.datetime
    ) -> list[dict[str, Any]]:
        prefs = Preferences.load(row["notification_settings"])
        minutes = prefs.session_reminder_minutes
        chosen = prefs.channels("session_reminder")
        if minutes is None or not (chosen.in_app or chosen.email):
            return []
        series = session_series(row)
        armed = max(row["created_at"], row["updated_at"] or row["created_at"])
        found = []
        window_end = now + dt.timedelta(minutes=minutes)
        for occ, start in self._occurrence_starts(
            series, since, window_end, f"session {row['id']}"
        ):
            due = start - dt.timedelta(minutes=minutes)
            if not (since < due <= now and due >= armed):
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
                    "timezone": series.timezone,
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
                f"SELECT COALESCE(status, 'scheduled') <> 'cancelled' FROM {table} WHERE id = $1",
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
