"""The rules of the game, kept as data and pure functions (README, "Gamification").

Nothing here touches the database: the engine (`engine.py`) feeds these the stored state.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class PointRule:
    """Points for one kind of act: `points` each (or per `per_minutes` of its value), at most
    `daily_cap` points of this kind per local day (beyond it an act earns nothing)."""

    points: int
    daily_cap: int
    per_minutes: int | None = None

    def earned(self, value: float | None) -> int:
        if self.per_minutes is None:
            return self.points
        minutes = max(0.0, value or 0.0)
        return int(minutes // self.per_minutes) * self.points


# The table of acts (analytics kinds) that earn points. Kinds not listed earn none, and are
# not applied at all: chat messages (`message_sent`) are left out on purpose, being the
# cheapest act to repeat and by far the most frequent (a busy node stores thousands a second;
# the engine would spend a transaction on each to award nothing past a cap).
POINTS: dict[str, PointRule] = {
    "login": PointRule(points=5, daily_cap=5),
    "session_left": PointRule(points=1, daily_cap=60, per_minutes=5),
    "focus_block_completed": PointRule(points=10, daily_cap=80),
    "post_created": PointRule(points=10, daily_cap=50),
    "comment_created": PointRule(points=3, daily_cap=30),
    "like_received": PointRule(points=1, daily_cap=20),
    "answer_accepted": PointRule(points=25, daily_cap=100),
    "resource_shared": PointRule(points=10, daily_cap=30),
    "resource_rated": PointRule(points=2, daily_cap=10),
    "ai_query": PointRule(points=1, daily_cap=5),
    "pod_joined": PointRule(points=5, daily_cap=15),
}

# Acts that make a local day a study day (they keep the streak going); each earns points too.
STREAK_KINDS = frozenset(
    {
        "session_left",
        "focus_block_completed",
        "post_created",
        "comment_created",
        "answer_accepted",
        "resource_shared",
        "resource_rated",
        "ai_query",
    }
)


ATTENDED_MINUTES = 5  # a session counts as attended after this long present (in one stretch)


# Minutes of study an event stands for (the study-time leaderboard and challenges): time in a
# session, and focus blocks outside sessions (a block inside a session is already in it).
def study_minutes(kind: str, value: float | None, session_id: object | None) -> int:
    if kind == "session_left":
        return max(0, int(value or 0))
    if kind == "focus_block_completed" and session_id is None:
        return max(0, int(value or 0))
    return 0


# ------------------------------------------------------------------------------ levels

LEVEL_STEP = 100  # level L starts at LEVEL_STEP * L * (L - 1) / 2 points: 0, 100, 300, 600...
MAX_LEVEL = 1000


def level_start(level: int) -> int:
    """Total points at which `level` begins."""
    return LEVEL_STEP * level * (level - 1) // 2


def level_for(points: int) -> int:
    """The level of a total of `points` (1 for 0 points)."""
    if points <= 0:
        return 1
    level = int((1 + math.sqrt(1 + 8 * points / LEVEL_STEP)) / 2)
    while level_start(level + 1) <= points:  # float rounding, either way
        level += 1
    while level > 1 and level_start(level) > points:
        level -= 1
    return min(level, MAX_LEVEL)


@dataclass(frozen=True, slots=True)
class LevelView:
    level: int
    experience_points: int  # points earned inside the current level
    next_level_points: int  # points the current level spans (experience needed to level up)


def level_view(points: int) -> LevelView:
    level = level_for(points)
    start = level_start(level)
    return LevelView(level, points - start, level_start(level + 1) - start)


# ------------------------------------------------------------------------------ streaks

FREEZE_EVERY = 7  # a freeze is earned each time the streak reaches a multiple of 7 days
MAX_FREEZES = 2


@dataclass(frozen=True, slots=True)
class Streak:
    """A user's streak as stored: the streak as of `last_day` (their last study day)."""

    current: int = 0
    longest: int = 0
    last_day: dt.date | None = None
    freezes: int = 0


def streak_today(streak: Streak, today: dt.date) -> Streak:
    """The streak on local `today`, with the days missed before it settled: each missed day
    spends a freeze when one is left (the freeze stands in for that day, so `last_day` moves
    to yesterday without the streak growing); more missed days than freezes end the streak
    (current 0, freezes kept). Today itself is not over, so it is never missed."""
    if streak.last_day is None or today <= streak.last_day or streak.current == 0:
        return streak
    missed = (today - streak.last_day).days - 1
    if missed == 0:
        return streak
    if missed <= streak.freezes:
        return replace(
            streak, freezes=streak.freezes - missed, last_day=today - dt.timedelta(days=1)
        )
    return replace(streak, current=0)


def study_day(streak: Streak, day: dt.date) -> Streak:
    """`streak` after a study act on local `day`. A day already counted, or earlier than the
    last study day (a late, synced act), changes nothing. Missed days in between are settled
    first (`streak_today`); then the day counts: one more than yesterday's streak, or 1.
    Reaching a multiple of FREEZE_EVERY earns a freeze (at most MAX_FREEZES kept)."""
    if streak.last_day is not None and day <= streak.last_day:
        return streak
    settled = streak_today(streak, day)
    if settled.last_day is not None and settled.current > 0 and (day - settled.last_day).days == 1:
        current = settled.current + 1
    else:
        current = 1
    freezes = settled.freezes
    if current % FREEZE_EVERY == 0:
        freezes = min(MAX_FREEZES, freezes + 1)
    return Streak(current, max(settled.longest, current), day, freezes)


def local_day(at: dt.datetime, zone: str | None) -> dt.date:
    """The calendar date at instant `at` in time zone `zone` (UTC when unknown)."""
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return at.astimezone(tz).date()


# ------------------------------------------------------------------------------ periods

TIMEFRAMES = ("daily", "weekly", "monthly", "all-time")


@dataclass(frozen=True, slots=True)
class Period:
    """A leaderboard period (UTC): its key and when it ends (None: never)."""

    key: str
    ends_at: dt.datetime | None


def period_of(timeframe: str, at: dt.datetime) -> Period:
    """The period of `timeframe` containing instant `at` (UTC days, ISO weeks, months)."""
    utc = at.astimezone(dt.UTC)
    day = utc.date()
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    if timeframe == "daily":
        return Period(f"d{day.isoformat()}", midnight + dt.timedelta(days=1))
    if timeframe == "weekly":
        year, week, weekday = day.isocalendar()
        end = midnight + dt.timedelta(days=8 - weekday)
        return Period(f"w{year}-W{week:02d}", end)
    if timeframe == "monthly":
        first_next = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return Period(f"m{day:%Y-%m}", dt.datetime.combine(first_next, dt.time(), dt.UTC))
    if timeframe == "all-time":
        return Period("all", None)
    raise ValueError(f"unknown timeframe {timeframe!r}")


def periods_at(at: dt.datetime) -> list[Period]:
    return [period_of(t, at) for t in TIMEFRAMES]


def week_key(at: dt.datetime) -> str:
    return period_of("weekly", at).key


# ------------------------------------------------------------------------------ leagues

LEAGUE_SIZE = 30
LEAGUE_TIERS = ("Bronze", "Silver", "Gold", "Sapphire", "Ruby", "Emerald", "Diamond")
PROMOTE = 5  # the top 5 of a league (with points) go up a tier at the week's end
DEMOTE = 5  # the bottom 5 go down one (in leagues big enough: `league_moves`)


def league_moves(standings: list[tuple[str, int]], tier: int) -> dict[str, int]:
    """The new tier of each member of a league whose week ended, from its standings (member,
    points; best first). The top PROMOTE with points go up, the bottom DEMOTE go down (only in
    leagues of more than PROMOTE + DEMOTE members, so nobody is both); others stay."""
    top = len(LEAGUE_TIERS) - 1
    moves: dict[str, int] = {}
    size = len(standings)
    for index, (member, points) in enumerate(standings):
        new = tier
        if index < PROMOTE and points > 0:
            new = min(top, tier + 1)
        elif size > PROMOTE + DEMOTE and index >= size - DEMOTE:
            new = max(0, tier - 1)
        moves[member] = new
    return moves
