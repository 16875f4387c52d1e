"""The pure rules of the game: streaks on the user's own days (time zones, a DST change,
freezes), the level curve, leaderboard periods and league moves."""

from __future__ import annotations

import datetime as dt

from peerspark_rt.gamification.rules import (
    FREEZE_EVERY,
    MAX_FREEZES,
    POINTS,
    Streak,
    league_moves,
    level_for,
    level_start,
    level_view,
    local_day,
    period_of,
    streak_today,
    study_day,
)

D = dt.date


def days(start: dt.date, n: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def test_consecutive_days_grow_the_streak_and_a_day_counts_once() -> None:
    s = Streak()
    for day in days(D(2026, 3, 1), 3):
        s = study_day(s, day)
        s = study_day(s, day)  # a second act the same day
    assert (s.current, s.longest, s.last_day) == (3, 3, D(2026, 3, 3))
    # a late act for an earlier day (synced from a phone) changes nothing
    assert study_day(s, D(2026, 3, 2)) == s


def test_a_missed_day_without_a_freeze_starts_again_and_longest_is_kept() -> None:
    s = Streak()
    for day in days(D(2026, 3, 1), 4):
        s = study_day(s, day)
    s = study_day(s, D(2026, 3, 6))  # the 5th was missed
    assert (s.current, s.longest, s.freezes) == (1, 4, 0)


def test_seven_days_earn_a_freeze_spent_on_the_next_missed_day() -> None:
    s = Streak()
    for day in days(D(2026, 3, 1), FREEZE_EVERY):
        s = study_day(s, day)
    assert (s.current, s.freezes) == (7, 1)
    # the 8th is missed; on the 9th the freeze stands in for it and the streak goes on
    seen = streak_today(s, D(2026, 3, 9))
    assert (seen.current, seen.freezes, seen.last_day) == (7, 0, D(2026, 3, 8))
    s = study_day(s, D(2026, 3, 9))
    assert (s.current, s.freezes) == (8, 0)
    # two missed days with no freeze left end it
    assert streak_today(s, D(2026, 3, 12)).current == 0
    assert study_day(s, D(2026, 3, 12)).current == 1


def test_freezes_are_capped_and_cover_several_days() -> None:
    s = Streak()
    for day in days(D(2026, 1, 1), 3 * FREEZE_EVERY):
        s = study_day(s, day)
    assert s.freezes == MAX_FREEZES
    last = s.last_day
    assert last is not None
    back = study_day(s, last + dt.timedelta(days=3))  # two missed days, two freezes
    assert (back.current, back.freezes) == (3 * FREEZE_EVERY + 1, 0)
    too_long = study_day(s, last + dt.timedelta(days=4))  # three missed days
    assert (too_long.current, too_long.freezes) == (1, MAX_FREEZES)


def test_today_is_never_missed() -> None:
    s = study_day(Streak(), D(2026, 3, 1))
    assert streak_today(s, D(2026, 3, 2)) == s  # studied yesterday, not yet today


def test_days_are_the_users_own_in_their_time_zone() -> None:
    # 16:30 UTC on 1 March is 01:30 on 2 March in Tokyo: two different days
    at = dt.datetime(2026, 3, 1, 16, 30, tzinfo=dt.UTC)
    assert local_day(at, "UTC") == D(2026, 3, 1)
    assert local_day(at, "Asia/Tokyo") == D(2026, 3, 2)
    # a Tokyo student studying at 01:00 local on three nights in a row: a 3-day streak, though
    # in UTC the acts fall on the evenings before
    s = Streak()
    for night in range(3):
        utc = dt.datetime(2026, 3, 1, 16, 0, tzinfo=dt.UTC) + dt.timedelta(days=night)
        s = study_day(s, local_day(utc, "Asia/Tokyo"))
    assert (s.current, s.last_day) == (3, D(2026, 3, 4))
    # an unknown zone counts as UTC
    assert local_day(at, "Not/AZone") == D(2026, 3, 1)


def test_a_dst_change_neither_skips_nor_repeats_a_day() -> None:
    # New York springs forward on 8 March 2026 (a 23-hour day) and falls back on 1 November
    # (25 hours). Studying at 23:30 local every evening across both changes is one streak.
    zone = "America/New_York"
    s = Streak()
    start = dt.datetime(2026, 3, 6, 4, 30, tzinfo=dt.UTC)  # 23:30 on 5 March, EST
    seen = []
    for n in range(5):
        # 23:30 local is 04:30 UTC under EST, 03:30 UTC under EDT
        utc = start + dt.timedelta(days=n)
        if utc >= dt.datetime(2026, 3, 8, 7, tzinfo=dt.UTC):
            utc -= dt.timedelta(hours=1)
        seen.append(local_day(utc, zone))
        s = study_day(s, seen[-1])
    assert seen == days(D(2026, 3, 5), 5)
    assert s.current == 5
    # autumn: 00:30 local on 1 and 2 November, 25 hours apart in UTC
    first = dt.datetime(2026, 11, 1, 4, 30, tzinfo=dt.UTC)  # 00:30 EDT
    second = first + dt.timedelta(hours=25)  # 00:30 EST
    assert [local_day(first, zone), local_day(second, zone)] == [D(2026, 11, 1), D(2026, 11, 2)]
    t = study_day(study_day(Streak(), local_day(first, zone)), local_day(second, zone))
    assert t.current == 2


def test_levels_follow_the_curve() -> None:
    assert [level_start(n) for n in range(1, 6)] == [0, 100, 300, 600, 1000]
    assert [level_for(p) for p in (0, 99, 100, 299, 300, 999, 1000)] == [1, 1, 2, 2, 3, 4, 5]
    view = level_view(350)
    assert (view.level, view.experience_points, view.next_level_points) == (3, 50, 300)
    for points in range(0, 20000, 7):
        level = level_for(points)
        assert level_start(level) <= points < level_start(level + 1)


def test_point_rules_cap_each_day() -> None:
    assert POINTS["session_left"].earned(47) == 9  # a point per 5 minutes
    assert POINTS["post_created"].earned(None) == 10
    assert all(rule.daily_cap >= rule.points for rule in POINTS.values())


def test_periods_end_with_the_utc_day_iso_week_and_month() -> None:
    at = dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC)  # a Thursday in ISO week 53
    assert period_of("daily", at).key == "d2026-12-31"
    assert period_of("daily", at).ends_at == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    weekly = period_of("weekly", at)
    assert (weekly.key, weekly.ends_at) == ("w2026-W53", dt.datetime(2027, 1, 4, tzinfo=dt.UTC))
    assert period_of("monthly", at).ends_at == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert period_of("all-time", at).ends_at is None


def test_league_moves_promote_the_top_and_demote_the_bottom() -> None:
    standings = [(f"u{i}", 100 - i) for i in range(30)]
    moves = league_moves(standings, 2)
    assert [moves[f"u{i}"] for i in range(5)] == [3] * 5
    assert [moves[f"u{i}"] for i in range(5, 25)] == [2] * 20
    assert [moves[f"u{i}"] for i in range(25, 30)] == [1] * 5
    # nobody goes up without points, nobody falls below the first tier, small leagues only
    # promote
    assert league_moves([("a", 0), ("b", 0)], 0) == {"a": 0, "b": 0}
    assert league_moves([(f"u{i}", 5) for i in range(8)], 0)["u7"] == 0
