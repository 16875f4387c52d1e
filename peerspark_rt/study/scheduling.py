"""Scheduling with the Free Spaced Repetition Scheduler (the maintained `fsrs` package), the
exam-date rule, and the user's "today".

Nothing here computes an interval itself: every review goes through `fsrs.Scheduler.review_card`
with the user's desired retention. Fuzzing is off, so the same reviews give the same schedule on
every node and a test can compare a card with `fsrs` directly.

The exam-date rule (a deck with `examDate` still ahead): the next review is never later than
halfway between the review and the start of the exam day (midnight in the user's zone), so every
card comes back at least once more before the exam, at shrinking intervals; and all of the
deck's new cards are offered at once, without the daily new-card limit, so every card is seen
before the date. On and after the exam day the plain FSRS schedule applies again.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass
from typing import Any

import fsrs

RATINGS = ("again", "hard", "good", "easy")
STATES = {fsrs.State.Learning: "learning", fsrs.State.Review: "review",
          fsrs.State.Relearning: "relearning"}  # fmt: skip
DEFAULT_RETENTION = 0.9
DEFAULT_NEW_PER_DAY = 20


def rating_of(name: str) -> fsrs.Rating:
    return fsrs.Rating(RATINGS.index(name) + 1)


@functools.lru_cache(maxsize=64)
def scheduler(retention: float) -> fsrs.Scheduler:
    """The scheduler for a desired retention (default FSRS parameters, no fuzzing)."""
    return fsrs.Scheduler(desired_retention=retention, enable_fuzzing=False)


def zone(name: str | None) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_day(now: dt.datetime, tz: dt.tzinfo) -> tuple[dt.date, dt.datetime, dt.datetime]:
    """The user's today at `now`: its date, and its start and end (the next midnight) in UTC."""
    local = now.astimezone(tz)
    today = local.date()
    start = dt.datetime.combine(today, dt.time(), tz)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tz)
    return today, start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def exam_start(exam_date: dt.date, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(exam_date, dt.time(), tz).astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Reviewed:
    card: fsrs.Card
    due: dt.datetime  # the card's due, after the exam cap
    state: str
    lapsed: bool


def review(
    stored: dict[str, Any] | None,
    rating: str,
    at: dt.datetime,
    *,
    retention: float,
    exam: dt.datetime | None = None,
    duration_ms: int | None = None,
) -> Reviewed:
    """Apply one review to a stored fsrs card (None: a new card) at `at` (UTC)."""
    card = fsrs.Card.from_dict(stored) if stored else fsrs.Card(card_id=0, due=at)  # type: ignore[arg-type]
    before = card.state
    new, _ = scheduler(retention).review_card(
        card, rating_of(rating), review_datetime=at.astimezone(dt.UTC), review_duration=duration_ms
    )
    due = new.due
    if exam is not None and exam > at:
        cap = at + (exam - at) / 2
        if due > cap:
            due = cap
            new.due = cap
    lapsed = before == fsrs.State.Review and new.state == fsrs.State.Relearning
    return Reviewed(new, due, STATES[new.state], lapsed)


def card_state(stored: dict[str, Any] | None) -> str:
    if not stored:
        return "new"
    return STATES[fsrs.State(int(stored["state"]))]
