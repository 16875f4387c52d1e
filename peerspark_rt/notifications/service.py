"""Notifications: stored in PostgreSQL, pushed live to every device in `user:<id>`, emailed
when the user wants that type by email.

What a user's preferences do (GET/PUT /api/notifications/preferences):
* per type, in-app and/or email, or neither. In-app off: nothing is stored (`store` returns
  None). Email on: a `send_email` job is enqueued in the caller's transaction.
* quiet hours (in the user's own time zone): the notification is still stored and counts as
  unread, but it is not pushed live, and its email is held back until quiet hours end (and
  dropped then if the user has read it in the app meanwhile). Urgent notifications ignore quiet
  hours.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import uuid
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ..errors import Invalid, NotFound
from ..infra import cursor as cursors
from ..infra import jobs_db
from ..infra.dbtypes import Conn
from ..infra.jobs import Job, JobQueue
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..protocol import Notification
from . import db as notifications_db
from . import prefs as prefs_mod
from .email import absolute, link_html
from .prefs import Channels, Preferences, PreferencesUpdate, PreferencesView

log = logging.getLogger(__name__)

PRIORITIES = ("low", "normal", "high", "urgent")
DIGEST_LOCAL_HOUR = 8  # the daily digest goes out at 08:00 in each user's time zone
DIGEST_MAX_ITEMS = 20
DIGEST_PAGE = 500  # users read and queued at a time
DIGEST_WATERMARK = "digest"


@dataclass(frozen=True, slots=True)
class NewNotification:
    recipient_id: uuid.UUID
    notification_type: str
    title: str
    message: str | None = None
    action_url: str | None = None
    metadata: dict[str, Any] | None = None
    sender_id: uuid.UUID | None = None
    priority: str = "normal"
    # The email's template and extra values for it (reminders use "reminder").
    email_template: str = "notification"
    email_context: dict[str, Any] | None = None


class NotificationView(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    type: str
    title: str
    message: str | None
    action_url: str | None
    metadata: dict[str, Any]
    sender_id: uuid.UUID | None
    priority: str
    is_read: bool
    read_at: dt.datetime | None
    is_email_sent: bool
    created_at: dt.datetime
    is_push_sent: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> NotificationView:
        return cls(
            id=row["id"],
            type=row["notification_type"],
            title=row["title"],
            message=row["message"],
            action_url=row["action_url"],
            metadata=row["metadata"] or {},
            sender_id=row["sender_id"],
            priority=row["priority"],
            is_read=bool(row["is_read"]),
            read_at=row["read_at"],
            is_email_sent=bool(row["is_email_sent"]),
            created_at=row["created_at"],
            is_push_sent=bool(row["is_push_sent"]),
        )


class NotificationPage(msgspec.Struct, rename="camel"):
    notifications: list[NotificationView]
    next_cursor: str | None
    unread_count: int


class ReadResult(msgspec.Struct, rename="camel"):
    notification: NotificationView
    unread_count: int


class ReadAllResult(msgspec.Struct, rename="camel"):
    updated: int
    unread_count: int


CURSOR_LISTING = "notifications"


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones() | {"UTC"}))


def digest_zones(since: dt.datetime, now: dt.datetime) -> list[tuple[str, dt.date]]:
    """The time zones where DIGEST_LOCAL_HOUR o'clock came in (since, now], each with that
    local date (the latest, if the window holds several)."""
    due: list[tuple[str, dt.date]] = []
    for name in _zone_names():
        tz = zoneinfo.ZoneInfo(name)
        day = since.astimezone(tz).date()
        last = now.astimezone(tz).date()
        found: dt.date | None = None
        while day <= last:
            moment = dt.datetime.combine(day, dt.time(DIGEST_LOCAL_HOUR), tz)
            if since < moment <= now:
                found = day
            day += dt.timedelta(days=1)
        if found is not None:
            due.append((name, found))
    return due


class NotificationService:
    def __init__(
        self, db: Database, live: LiveEvents, jobs: JobQueue | None = None, base_url: str = ""
    ) -> None:
        self.db = db
        self.live = live
        self.jobs = jobs
        self.base_url = base_url
        # Web Push is set up (VAPID_PRIVATE_KEY): stored notifications may be pushed
        self.push_enabled = False

    # ------------------------------------------------------------------ creating

    async def store(
        self, conn: Conn, new: NewNotification, *, channels: Channels | None = None
    ) -> asyncpg.Record | None:
        """Insert inside the caller's transaction; call `push` with the result after it commits.
        Returns None when nothing is stored (the recipient turned in-app off for this type).
        Email, when wanted, is enqueued in the same transaction. `channels` overrides the
        user's per-type choice (a reminder's own channels)."""
        recipient = await notifications_db.recipient(conn, new.recipient_id)
        if recipient is None or recipient["account_status"] != "active":
            return None
        prefs = Preferences.load(recipient["notification_settings"])
        chosen = channels or prefs.channels(new.notification_type)
        quiet_until = None
        if new.priority != "urgent":
            quiet_until = prefs.quiet_hours.until(recipient["timezone"], dt.datetime.now(dt.UTC))
        row = None
        if chosen.in_app:
            row = await notifications_db.insert(
                conn,
                recipient_id=new.recipient_id,
                notification_type=new.notification_type,
                title=new.title,
                message=new.message,
                action_url=new.action_url,
                metadata=new.metadata or {},
                sender_id=new.sender_id,
                priority=new.priority if new.priority in PRIORITIES else "normal",
                push_live=quiet_until is None,
            )
        if (
            row is not None
            and quiet_until is None
            and prefs.push_enabled
            and self.push_enabled
            and self.jobs is not None
            and await notifications_db.has_subscriptions(conn, new.recipient_id)
        ):
            await self.jobs.enqueue(conn, "send_push", {"notificationId": str(row["id"])})
        if chosen.email and self.jobs is not None and recipient["email"]:
            await self.jobs.enqueue(
                conn,
                "send_email",
                self._email_payload(new, recipient, row, held=quiet_until is not None),
                run_at=quiet_until,
            )
        return row

    def _email_payload(
        self,
        new: NewNotification,
        recipient: asyncpg.Record,
        row: asyncpg.Record | None,
        *,
        held: bool,
    ) -> dict[str, Any]:
        url = absolute(self.base_url, new.action_url)
        context: dict[str, Any] = {
            "first_name": recipient["first_name"],
            "title": new.title,
            "message": new.message or "",
            "action_line": f"Open: {url}" if url else "",
            "action_html": link_html(url, "Open in PeerSpark"),
            **(new.email_context or {}),
        }
        payload: dict[str, Any] = {
            "to": recipient["email"],
            "subject": new.title,
            "template": new.email_template,
            "context": context,
            "userId": str(new.recipient_id),
        }
        if row is not None:
            payload["notificationId"] = str(row["id"])
            payload["skipIfRead"] = held
        return payload

    async def push(self, row: asyncpg.Record | None) -> None:
        """Send a stored notification, with the fresh unread count, to the user's devices.
        Does nothing for None, or for a notification stored during the user's quiet hours."""
        if row is None:
            return
        if "push_live" in row.keys() and not row["push_live"]:  # noqa: SIM118
            return
        recipient = row["recipient_id"]
        unread = await notifications_db.unread_count(self.db.pool, recipient)
        room = f"user:{recipient}"
        await self.live.publish(
            room,
            Notification(
                room=room,
                id=str(row["id"]),
                type=row["notification_type"],
                title=row["title"],
                message=row["message"],
                action_url=row["action_url"],
                metadata=row["metadata"] or None,
                created_at=row["created_at"].isoformat(),
                unread_count=unread,
            ),
        )

    async def notify(self, new: NewNotification) -> asyncpg.Record | None:
        async with self.db.transaction() as conn:
            row = await self.store(conn, new)
        await self.push(row)
        return row

    # ------------------------------------------------------------------ reading

    async def list(
        self, user_id: uuid.UUID, *, unread_only: bool, cursor: str | None, limit: int
    ) -> NotificationPage:
        if not 1 <= limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        after = None
        if cursor:
            created_at, ident = cursors.decode(cursor, CURSOR_LISTING, (dt.datetime, uuid.UUID))
            after = (created_at, ident)
        rows = await notifications_db.page(
            self.db.pool, user_id, unread_only=unread_only, after=after, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more:
            next_cursor = cursors.encode(CURSOR_LISTING, (rows[-1]["created_at"], rows[-1]["id"]))
        unread = await notifications_db.unread_count(self.db.pool, user_id)
        return NotificationPage([NotificationView.from_row(r) for r in rows], next_cursor, unread)

    async def mark_read(self, user_id: uuid.UUID, notification_id: uuid.UUID) -> ReadResult:
        row = await notifications_db.mark_read(self.db.pool, user_id, notification_id)
        if row is None:
            raise NotFound("notification not found")
        unread = await self._publish_unread(user_id)
        return ReadResult(NotificationView.from_row(row), unread)

    async def mark_all_read(self, user_id: uuid.UUID) -> ReadAllResult:
        updated = await notifications_db.mark_all_read(self.db.pool, user_id)
        unread = await self._publish_unread(user_id)
        return ReadAllResult(updated, unread)

    async def _publish_unread(self, user_id: uuid.UUID) -> int:
        """Tell every device of the user the new unread count (read on one, badge on all)."""
        unread = await notifications_db.unread_count(self.db.pool, user_id)
        await self.live.event(f"user:{user_id}", "unread_count", {"unreadCount": unread})
        return unread

    # ------------------------------------------------------------------ preferences

    async def preferences(self, user_id: uuid.UUID) -> PreferencesView:
        row = await notifications_db.get_settings(self.db.pool, user_id)
        if row is None:
            raise NotFound("user not found")
        return prefs_mod.view(Preferences.load(row["notification_settings"]), row["timezone"])

    async def update_preferences(
        self, user_id: uuid.UUID, update: PreferencesUpdate
    ) -> PreferencesView:
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT notification_settings, timezone FROM users WHERE id = $1 FOR UPDATE",
                user_id,
            )
            if row is None:
                raise NotFound("user not found")
            stored = (
                row["notification_settings"]
                if isinstance(row["notification_settings"], dict)
                else {}
            )
            updated = prefs_mod.apply(Preferences.load(stored), update)
            # keep keys other features may have put in the same column
            await notifications_db.set_settings(conn, user_id, {**stored, **updated.dump()})
        return prefs_mod.view(updated, row["timezone"])

    # ------------------------------------------------------------------ the daily digest

    async def digest_scan(self, job: Job) -> None:
        """Hourly: queue a digest for every user whose local 08:00 came in the last hour (or,
        after the scan did not run for a while, since it last ran, at most a day back) and who
        missed something. Only the zones where 08:00 came are read, page by page. The dedupe
        key (user, local date) sends at most one a day."""
        if self.jobs is None:
            return
        now = dt.datetime.now(dt.UTC)
        since = now - dt.timedelta(hours=1)
        mark = await jobs_db.watermark(self.db.pool, DIGEST_WATERMARK)
        if mark is not None:
            since = max(now - dt.timedelta(days=1), min(mark, since))
        for zone_name, local_date in digest_zones(since, now):
            after: uuid.UUID | None = None
            while True:
                rows = await notifications_db.digest_recipients(
                    self.db.pool, zone_name, after, DIGEST_PAGE
                )
                if rows:
                    async with self.db.transaction() as conn:
                        for row in rows:
                            await self.jobs.enqueue(
                                conn,
                                "send_digest",
                                {"userId": str(row["id"])},
                                dedupe_key=f"digest:{row['id']}:{local_date.isoformat()}",
                            )
                if len(rows) < DIGEST_PAGE:
                    break
                after = rows[-1]["id"]
        await jobs_db.advance_watermark(self.db.pool, DIGEST_WATERMARK, now)

    async def send_digest(self, job: Job) -> None:
        """Email one user what they missed: unread notifications of the last day no email told
        them about. Those are then marked as emailed, so tomorrow's digest does not repeat
        them."""
        if self.jobs is None:
            return
        user_id = uuid.UUID(job.payload["userId"])
        async with self.db.transaction() as conn:
            recipient = await notifications_db.recipient(conn, user_id)
            if recipient is None or not recipient["email"]:
                return
            items = await notifications_db.missed(conn, user_id, DIGEST_MAX_ITEMS)
            if not items:
                return
            text_items = "".join(f"- {r['title']}\n" for r in items)
            html_items = "\n".join(f"    <li>{html.escape(r['title'])}</li>" for r in items)
            await self.jobs.enqueue(
                conn,
                "send_email",
                {
                    "to": recipient["email"],
                    "subject": f"What you missed on PeerSpark ({len(items)} new)",
                    "template": "digest",
                    "context": {
                        "first_name": recipient["first_name"],
                        "count": len(items),
                        "items": text_items,
                        "items_html": html_items,
                    },
                    "userId": str(user_id),
                },
            )
            await notifications_db.mark_many_email_sent(conn, [r["id"] for r in items])


# the application's key for what this module provides (typed app state)
NOTIFICATIONS = web.AppKey("notifications", NotificationService)
