"""A student's dashboards (GET /api/analytics/dashboard, /study-patterns), from the daily
rollups, in the student's own time zone. README ("Study analytics") defines every figure.

Not cached: they read at most a year of one user's rollup rows by key (well under a
millisecond), and the rollups themselves are at most ANALYTICS_ROLLUP_INTERVAL behind.
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
import zoneinfo
from collections.abc import Iterable
from typing import Any, Protocol

import asyncpg
import msgspec
from aiohttp import web

from ..errors import Invalid
from ..infra.pool import Database
from . import db as analytics_db

RECENT_BADGES = 5
UNSPECIFIED = "Unspecified"  # study time of no subject (solo focus, sessions without one)


class StudyTime(msgspec.Struct, rename="camel"):
    today: int  # minutes
    this_week: int  # since Monday
    this_month: int  # since the 1st
    trend: float  # % change of the last 7 days over the 7 before


class SessionStats(msgspec.Struct, rename="camel"):
    completed: int  # sessions attended in the last 30 days
    scheduled: int  # sessions ahead you take part in
    average_duration: float  # minutes present per attended session


class SocialStats(msgspec.Struct, rename="camel"):
    posts_created: int  # in the last 30 days
    comments_received: int
    likes_received: int


class Achievement(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    name: str
    description: str | None
    icon: str | None
    category: str | None
    points: int
    rarity: str | None
    earned_at: dt.datetime | None = None


class AchievementStats(msgspec.Struct, rename="camel"):
    total_earned: int
    recent_badges: list[Achievement]
    next_milestone: Achievement | None


class DashboardAnalytics(msgspec.Struct, rename="camel"):
    study_time: StudyTime
    sessions: SessionStats
    social: SocialStats
    achievements: AchievementStats
    focus_score: float | None  # the last 7 days (README: Focus score)
    timezone: str
    today: dt.date


class PatternsQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    days: int = 30


class DayHours(msgspec.Struct, rename="camel"):
    date: dt.date
    hours: float


class SubjectShare(msgspec.Struct, rename="camel"):
    subject: str
    hours: float
    percentage: float


class DayScore(msgspec.Struct, rename="camel"):
    date: dt.date
    score: float


class HourShare(msgspec.Struct, rename="camel"):
    hour: int
    productivity: float  # % of the window's study time in this local hour


class WeekdayShare(msgspec.Struct, rename="camel"):
    day: str
    productivity: float


class StudyPatterns(msgspec.Struct, rename="camel"):
    daily_hours: list[DayHours]
    subject_distribution: list[SubjectShare]
    focus_scores: list[DayScore]
    productive_hours: list[HourShare]
    productive_days: list[WeekdayShare]
    timezone: str
    days: int


class AchievementSource(Protocol):
    """Where the dashboard's achievements come from (the gamification area may supply its
    own, with progress)."""

    async def summary(self, user_id: uuid.UUID) -> AchievementStats: ...


class StoredAchievements:
    """Achievements as the tables hold them: earned rows, and the cheapest one not earned."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def summary(self, user_id: uuid.UUID) -> AchievementStats:
        earned = await analytics_db.earned_achievements(self.db.pool, user_id, RECENT_BADGES)
        nxt = await analytics_db.next_achievement(self.db.pool, user_id)
        return AchievementStats(
            total_earned=int(earned[0]["total"]) if earned else 0,
            recent_badges=[_achievement(r) for r in earned],
            next_milestone=_achievement(nxt) if nxt is not None else None,
        )


def _achievement(row: asyncpg.Record) -> Achievement:
    fields = {f: row[f] for f in Achievement.__struct_fields__}
    fields["points"] = fields["points"] or 0
    return Achievement(**fields)


def _minutes(rows: Iterable[asyncpg.Record]) -> int:
    return sum(int(r["study_seconds"]) for r in rows) // 60


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def _share(part: float, whole: float) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def focus_score(rows: Iterable[asyncpg.Record]) -> float | None:
    """100 x blocks completed / blocks started (completed + abandoned); None without any."""
    done = abandoned = 0
    for r in rows:
        done += r["focus_blocks_completed"]
        abandoned += r["focus_blocks_abandoned"]
    return _share(done, done + abandoned) if done + abandoned else None


class Dashboards:
    def __init__(self, db: Database, achievements: AchievementSource | None = None) -> None:
        self.db = db
        self.achievements: AchievementSource = achievements or StoredAchievements(db)

    async def _today(self, user_id: uuid.UUID) -> tuple[str, dt.date, dt.tzinfo]:
        zone = await analytics_db.user_zone(self.db.pool, user_id)
        try:
            tz: dt.tzinfo = zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone, tz = "UTC", dt.UTC  # as the event log does with a zone it does not know
        return zone, dt.datetime.now(tz).date(), tz

    async def dashboard(self, user_id: uuid.UUID) -> DashboardAnalytics:
        zone, today, _tz = await self._today(user_id)
        month_start = today.replace(day=1)
        week_start = today - dt.timedelta(days=today.weekday())
        first = min(month_start, week_start, today - dt.timedelta(days=29))
        rows = await analytics_db.daily_rows(self.db.pool, user_id, first, today)
        last7 = [r for r in rows if r["date"] > today - dt.timedelta(days=7)]
        before7 = await analytics_db.daily_rows(
            self.db.pool, user_id, today - dt.timedelta(days=13), today - dt.timedelta(days=7)
        )
        recent, previous = _minutes(last7), _minutes(before7)
        if previous:
            trend = round(100 * (recent - previous) / previous, 1)
        else:
            trend = 100.0 if recent else 0.0
        last30 = [r for r in rows if r["date"] > today - dt.timedelta(days=30)]
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        sessions = await analytics_db.session_figures(self.db.pool, user_id, since)
        attended = int(sessions["attended"])
        return DashboardAnalytics(
            study_time=StudyTime(
                today=_minutes(r for r in rows if r["date"] == today),
                this_week=_minutes(r for r in rows if r["date"] >= week_start),
                this_month=_minutes(r for r in rows if r["date"] >= month_start),
                trend=trend,
            ),
            sessions=SessionStats(
                completed=attended,
                scheduled=int(sessions["scheduled"]),
                average_duration=round(float(sessions["minutes"]) / attended, 1)
                if attended
                else 0.0,
            ),
            social=SocialStats(
                posts_created=sum(r["posts_created"] for r in last30),
                comments_received=sum(r["comments_received"] for r in last30),
                likes_received=sum(r["likes_received"] for r in last30),
            ),
            achievements=await self.achievements.summary(user_id),
            focus_score=focus_score(last7),
            timezone=zone,
            today=today,
        )

    async def study_patterns(self, user_id: uuid.UUID, query: PatternsQuery) -> StudyPatterns:
        if not 1 <= query.days <= 366:
            raise Invalid("days", "must be between 1 and 366")
        zone, today, _tz = await self._today(user_id)
        first = today - dt.timedelta(days=query.days - 1)
        rows = await analytics_db.daily_rows(self.db.pool, user_id, first, today)
        by_day = {r["date"]: r for r in rows}
        total = sum(r["study_seconds"] for r in rows)
        subjects: dict[str, int] = {}
        hourly = [0] * 24
        weekdays = [0] * 7
        for r in rows:
            for name, seconds in _json(r["subject_seconds"]).items():
                subjects[name] = subjects.get(name, 0) + int(seconds)
            for hour, seconds in enumerate(r["hourly_seconds"]):
                hourly[hour] += seconds
            weekdays[r["date"].weekday()] += r["study_seconds"]
        unspecified = total - sum(subjects.values())
        if unspecified > 0:
            subjects[UNSPECIFIED] = unspecified
        days = [first + dt.timedelta(days=i) for i in range(query.days)]
        return StudyPatterns(
            daily_hours=[
                DayHours(d, _hours(by_day[d]["study_seconds"] if d in by_day else 0)) for d in days
            ],
            subject_distribution=[
                SubjectShare(name, _hours(seconds), _share(seconds, total))
                for name, seconds in sorted(subjects.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            focus_scores=[
                DayScore(r["date"], score) for r in rows if (score := focus_score([r])) is not None
            ],
            productive_hours=[HourShare(h, _share(s, total)) for h, s in enumerate(hourly)],
            productive_days=[
                WeekdayShare(calendar.day_name[d], _share(s, total)) for d, s in enumerate(weekdays)
            ],
            timezone=zone,
            days=query.days,
        )


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    decoded = msgspec.json.decode(value) if value else {}
    return decoded if isinstance(decoded, dict) else {}


# the application's key for what this module provides (typed app state)
DASHBOARDS = web.AppKey("dashboards", Dashboards)
