"""Weekly study goals: minutes studied, cards reviewed, sessions attended, with progress read
from what really happened, and a reminder when a week is falling behind.

A week runs Monday to Sunday in the user's own time zone, and each figure comes from the
analytics events, whose local days are fixed when written:

* minutes studied: time present in live sessions and completed focus blocks (the events'
  `analytics_spans`), plus the time spent on flashcard reviews (`durationMs` of each
  `card_reviewed`), rounded down to whole minutes;
* cards reviewed: `card_reviewed` events (an offline review counts on the day it was done);
* sessions attended: distinct sessions with a `session_joined` event that week.

Reminders (`study_goal_reminders`, an hourly job): from Thursday 18:00 in the user's zone, a
user with reminders on whose progress on any goal is behind the week's pace (the share of the
week gone) gets one `study_goal` notification that week, through the usual notification
preferences (in-app by default; choose email for the `study_goal` type to get it by email).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..errors import Invalid
from ..infra.jobs import Job
from ..infra.pool import Database
from ..notifications.service import NewNotification, NotificationService
from . import db as study_db
from . import scheduling

log = logging.getLogger(__name__)

REMIND_WEEKDAY = 3  # Thursday
REMIND_HOUR = 18
SCAN_PAGE = 5000


class GoalsUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    minutes_per_week: int = 0
    cards_per_week: int = 0
    sessions_per_week: int = 0
    reminders: bool = True


class GoalProgress(msgspec.Struct, rename="camel"):
    goal: int
    done: int
    percent: int  # of the goal, capped at 100 (100 when there is no goal)


class Goals(msgspec.Struct, rename="camel"):
    week_start: dt.date
    week_end: dt.date
    timezone: str
    reminders: bool
    minutes: GoalProgress
    cards: GoalProgress
    sessions: GoalProgress


def _progress(goal: int, done: int) -> GoalProgress:
    percent = 100 if goal == 0 else min(100, done * 100 // goal)
    return GoalProgress(goal, done, percent)


def week_of(now: dt.datetime, tz: dt.tzinfo) -> tuple[dt.date, dt.date]:
    today = now.astimezone(tz).date()
    monday = today - dt.timedelta(days=today.weekday())
    return monday, monday + dt.timedelta(days=6)


class GoalService:
    def __init__(self, db: Database, notifications: NotificationService) -> None:
        self.db = db
        self.notifications = notifications

    async def goals(self, user_id: uuid.UUID, now: dt.datetime | None = None) -> Goals:
        pool = self.db.pool
        zone_name = await study_db.user_zone(pool, user_id)
        monday, sunday = week_of(now or dt.datetime.now(dt.UTC), scheduling.zone(zone_name))
        row = await study_db.goals_of(pool, user_id)
        figures = await study_db.week_progress(pool, user_id, monday, sunday)
        minutes = (int(figures["presence_seconds"]) + int(figures["review_ms"]) // 1000) // 60
        return Goals(
            week_start=monday,
            week_end=sunday,
            timezone=zone_name,
            reminders=bool(row["reminders"]) if row else True,
            minutes=_progress(row["minutes_per_week"] if row else 0, minutes),
            cards=_progress(row["cards_per_week"] if row else 0, int(figures["reviews"])),
            sessions=_progress(row["sessions_per_week"] if row else 0, int(figures["sessions"])),
        )

    async def update(self, principal: Principal, body: GoalsUpdate) -> Goals:
        for name, value, high in (
            ("minutesPerWeek", body.minutes_per_week, 10080),
            ("cardsPerWeek", body.cards_per_week, 100000),
            ("sessionsPerWeek", body.sessions_per_week, 1000),
        ):
            if not 0 <= value <= high:
                raise Invalid(name, f"must be between 0 and {high}")
        await study_db.save_goals(
            self.db.pool,
            principal.user_id,
            body.minutes_per_week,
            body.cards_per_week,
            body.sessions_per_week,
            body.reminders,
        )
        return await self.goals(principal.user_id)

    # --- reminders (the job) ---------------------------------------------------------------

    async def remind_job(self, job: Job) -> None:
        await self.remind()

    async def remind(self, now: dt.datetime | None = None) -> int:
        """Send this week's reminder to those behind their pace (the hourly job); how many."""
        now = now or dt.datetime.now(dt.UTC)
        sent = 0
        after: uuid.UUID | None = None
        while page := await study_db.goal_reminder_candidates(self.db.pool, after, SCAN_PAGE):
            after = page[-1]["user_id"]
            for row in page:
                sent += await self._remind_one(row, now)
        return sent

    async def _remind_one(self, row: asyncpg.Record, now: dt.datetime) -> int:
        """1 when this user was reminded now, else 0."""
        tz = scheduling.zone(row["timezone"])
        local = now.astimezone(tz)
        monday, _ = week_of(now, tz)
        if (local.weekday(), local.hour) < (REMIND_WEEKDAY, REMIND_HOUR):
            return 0
        if row["reminded_week"] is not None and row["reminded_week"] >= monday:
            return 0
        goals = await self.goals(row["user_id"], now)
        elapsed = (local - dt.datetime.combine(monday, dt.time(), tz)).total_seconds()
        pace = min(100, int(elapsed * 100 // (7 * 86400)))
        behind = [
            (name, p)
            for name, p in (("minutes", goals.minutes), ("cards", goals.cards),
                            ("sessions", goals.sessions))
            if p.goal > 0 and p.percent < pace
        ]  # fmt: skip
        if not behind:
            return 0
        if not await study_db.mark_reminded(self.db.pool, row["user_id"], monday):
            return 0
        summary = ", ".join(f"{p.done}/{p.goal} {name}" for name, p in behind)
        await self.notifications.notify(
            NewNotification(
                recipient_id=row["user_id"],
                notification_type="study_goal",
                title="Your study goals for this week",
                message=f"So far this week: {summary}. There is still time to catch up.",
                action_url="/study",
                metadata={"weekStart": monday.isoformat(), "behind": [n for n, _ in behind]},
            )
        )
        return 1


# the application's key for what this module provides (typed app state)
GOALS = web.AppKey("study_goals", GoalService)
