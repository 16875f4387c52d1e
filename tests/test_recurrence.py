"""The recurrence rules (pure logic): DST in two zones, all-day series, exceptions, splits,
COUNT and UNTIL, and refusals naming the field."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrule

from peerspark_rt.calendar import recurrence as rec
from peerspark_rt.errors import Invalid

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def timed(
    start: dt.datetime, minutes: int, tz: str, rule: str | None = None, **pattern: object
) -> rec.Series:
    series = rec.Series(
        start.astimezone(UTC), (start + dt.timedelta(minutes=minutes)).astimezone(UTC), tz
    )
    if rule is None:
        return series
    return replace(series, pattern=rec.parse_pattern({"rrule": rule, **pattern}, series))


def all_day(first: dt.date, days: int, rule: str | None = None, **pattern: object) -> rec.Series:
    start = rec.day_start(first)
    series = rec.Series(start, start + dt.timedelta(days=days), "UTC", all_day=True)
    if rule is None:
        return series
    return replace(series, pattern=rec.parse_pattern({"rrule": rule, **pattern}, series))


def window(a: str, b: str) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)


def test_weekly_class_in_berlin_stays_at_nine_local_across_spring_dst() -> None:
    # Europe/Berlin moves to summer time on 29 March 2026.
    series = timed(
        dt.datetime(2026, 3, 16, 9, 0, tzinfo=BERLIN), 90, "Europe/Berlin", "FREQ=WEEKLY"
    )
    occ = rec.expand(series, *window("2026-03-01T00:00:00+00:00", "2026-04-10T00:00:00+00:00"))
    local = [o.start.astimezone(BERLIN) for o in occ]
    assert [(x.day, x.hour, x.minute) for x in local] == [
        (16, 9, 0),
        (23, 9, 0),
        (30, 9, 0),
        (6, 9, 0),
    ]
    utc_hours = [o.start.hour for o in occ]
    assert utc_hours == [8, 8, 7, 7]  # the instant moves, the wall clock does not
    assert all(o.end - o.start == dt.timedelta(minutes=90) for o in occ)
    assert occ[2].recurrence_id == "2026-03-30T07:00:00Z"


def test_daily_in_new_york_across_autumn_dst_and_a_week_apart_from_europe() -> None:
    # America/New_York falls back on 1 November 2026; Europe a week earlier (25 October).
    series = timed(
        dt.datetime(2026, 10, 30, 18, 30, tzinfo=NEW_YORK),
        60,
        "America/New_York",
        "FREQ=DAILY;COUNT=4",
    )
    occ = rec.expand(series, *window("2026-10-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"))
    assert [o.start.astimezone(NEW_YORK).strftime("%d %H:%M") for o in occ] == [
        "30 18:30", "31 18:30", "01 18:30", "02 18:30",
    ]  # fmt: skip
    assert [o.start.strftime("%H:%M") for o in occ] == ["22:30", "22:30", "23:30", "23:30"]


def test_a_time_that_does_not_exist_on_the_dst_day_moves_forward() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: RFC 5545 reads it with the offset before
    # the gap, which lands at 03:30 summer time.
    series = timed(
        dt.datetime(2026, 3, 28, 2, 30, tzinfo=BERLIN), 30, "Europe/Berlin", "FREQ=DAILY;COUNT=3"
    )
    occ = rec.expand(series, *window("2026-03-27T00:00:00+00:00", "2026-04-01T00:00:00+00:00"))
    assert [o.start.astimezone(BERLIN).strftime("%d %H:%M") for o in occ] == [
        "28 02:30", "29 03:30", "30 02:30",
    ]  # fmt: skip


def test_all_day_series_show_on_their_date_for_every_viewer() -> None:
    series = all_day(dt.date(2026, 5, 12), 1, "FREQ=WEEKLY;COUNT=3")
    # A viewer in Tokyo asks for 12 May local time; one in Los Angeles too.
    tokyo = rec.expand(
        series,
        *window("2026-05-12T00:00:00+09:00", "2026-05-13T00:00:00+09:00"),
        viewer_tz="Asia/Tokyo",
    )
    la = rec.expand(
        series,
        *window("2026-05-12T00:00:00-07:00", "2026-05-13T00:00:00-07:00"),
        viewer_tz="America/Los_Angeles",
    )
    assert [o.recurrence_id for o in tokyo] == ["2026-05-12"]
    assert [o.recurrence_id for o in la] == ["2026-05-12"]
    assert tokyo[0].start == dt.datetime(2026, 5, 12, tzinfo=UTC)
    assert tokyo[0].end == dt.datetime(2026, 5, 13, tzinfo=UTC)
    # The day before, in either zone, has nothing.
    assert not rec.expand(
        series,
        *window("2026-05-11T00:00:00+09:00", "2026-05-12T00:00:00+09:00"),
        viewer_tz="Asia/Tokyo",
    )
    month = rec.expand(series, *window("2026-05-01T00:00:00+00:00", "2026-06-30T00:00:00+00:00"))
    assert [o.recurrence_id for o in month] == ["2026-05-12", "2026-05-19", "2026-05-26"]


def test_count_and_until_bound_the_series() -> None:
    start = dt.datetime(2026, 1, 5, 10, 0, tzinfo=BERLIN)
    by_count = timed(start, 60, "Europe/Berlin", "FREQ=WEEKLY;COUNT=3")
    assert (
        len(rec.expand(by_count, *window("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")))
        == 3
    )
    # A local UNTIL is read in the series' zone and stored as UTC.
    by_until = timed(start, 60, "Europe/Berlin", "FREQ=WEEKLY;UNTIL=20260119T100000")
    assert by_until.pattern is not None
    assert by_until.pattern.rrule == "FREQ=WEEKLY;UNTIL=20260119T090000Z"
    occ = rec.expand(by_until, *window("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"))
    assert [o.start.day for o in occ] == [5, 12, 19]
    # A date UNTIL includes that whole day.
    by_date = timed(start, 60, "Europe/Berlin", "FREQ=DAILY;UNTIL=20260107")
    assert (
        len(rec.expand(by_date, *window("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")))
        == 3
    )
    span_start, span_end = rec.series_span(by_count)
    assert span_start == start.astimezone(UTC)
    assert span_end == dt.datetime(2026, 1, 19, 10, 0, tzinfo=BERLIN).astimezone(
        UTC
    ) + dt.timedelta(hours=1)
    assert rec.series_span(timed(start, 60, "Europe/Berlin", "FREQ=DAILY"))[1] is None


def test_exdates_and_overrides_change_single_occurrences() -> None:
    start = dt.datetime(2026, 3, 16, 9, 0, tzinfo=BERLIN)
    series = timed(
        start,
        60,
        "Europe/Berlin",
        "FREQ=WEEKLY;COUNT=4",
        exdates=["2026-03-23T09:00:00+01:00"],
        overrides={"2026-03-30T07:00:00Z": {"start": "2026-03-31T15:00:00", "title": "Moved"}},
    )
    assert series.pattern is not None
    assert series.pattern.exdates == ("2026-03-23T08:00:00Z",)
    occ = rec.expand(series, *window("2026-03-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00"))
    assert [o.recurrence_id for o in occ] == [
        "2026-03-16T08:00:00Z", "2026-03-30T07:00:00Z", "2026-04-06T07:00:00Z",
    ]  # fmt: skip
    moved = occ[1]
    assert moved.overridden
    assert moved.fields == {"title": "Moved"}
    # a local time in an override is read in the series' zone; the duration is kept
    assert moved.start == dt.datetime(2026, 3, 31, 15, 0, tzinfo=BERLIN)
    assert moved.end - moved.start == dt.timedelta(hours=1)
    # An override moved into a window its original is outside of still shows.
    only_31st = rec.expand(
        series, *window("2026-03-31T00:00:00+00:00", "2026-04-01T00:00:00+00:00")
    )
    assert [o.recurrence_id for o in only_31st] == ["2026-03-30T07:00:00Z"]
    # Cancelling an overridden occurrence drops the override.
    cancelled = rec.with_exdate(series.pattern, "2026-03-30T07:00:00Z")
    assert "2026-03-30T07:00:00Z" not in cancelled.overrides
    occ = rec.expand(
        replace(series, pattern=cancelled),
        *window("2026-03-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00"),
    )
    assert len(occ) == 2


def test_this_and_following_splits_a_counted_series() -> None:
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)
    series = timed(
        start, 60, "Europe/Berlin", "FREQ=WEEKLY;COUNT=6", exdates=["2026-03-09T08:00:00Z"]
    )
    cut = "2026-03-23T08:00:00Z"  # the 4th occurrence
    assert rec.count_before(series, cut) == 3
    parts = rec.split(series, cut)
    assert parts.before is not None
    assert parts.before.rrule == "FREQ=WEEKLY;UNTIL=20260323T075959Z"
    assert parts.before.exdates == ("2026-03-09T08:00:00Z",)
    assert parts.after.rrule == "FREQ=WEEKLY;COUNT=3"
    before = replace(series, pattern=parts.before)
    after_start = parts.cut
    after = rec.Series(
        after_start, after_start + series.duration, series.timezone, pattern=parts.after
    )
    everything = window("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    old = [o.start.astimezone(BERLIN).day for o in rec.expand(before, *everything)]
    new = [o.start.astimezone(BERLIN).strftime("%m-%d %H") for o in rec.expand(after, *everything)]
    assert old == [2, 16]
    assert new == ["03-23 09", "03-30 09", "04-06 09"]  # still 09:00 after the DST change
    # Cutting at the first occurrence leaves nothing before.
    assert rec.split(series, "2026-03-02T08:00:00Z").before is None
    assert rec.truncate(series, "2026-03-02T08:00:00Z") is None


def test_all_day_split_uses_dates() -> None:
    series = all_day(dt.date(2026, 6, 1), 1, "FREQ=DAILY;COUNT=10")
    parts = rec.split(series, "2026-06-05")
    assert parts.before is not None
    assert parts.before.rrule == "FREQ=DAILY;UNTIL=20260604"
    assert parts.after.rrule == "FREQ=DAILY;COUNT=6"
    before = replace(series, pattern=parts.before)
    occ = rec.expand(before, *window("2026-05-01T00:00:00+00:00", "2026-07-01T00:00:00+00:00"))
    assert [o.recurrence_id for o in occ][-1] == "2026-06-04"


def test_rebase_keeps_only_exceptions_that_still_exist() -> None:
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)
    series = timed(start, 60, "Europe/Berlin", "FREQ=WEEKLY", exdates=["2026-03-09T08:00:00Z"])
    assert series.pattern is not None
    same_time = rec.rebase(series.pattern, series)
    assert same_time.exdates == ("2026-03-09T08:00:00Z",)
    later = rec.Series(
        series.start + dt.timedelta(hours=1), series.end + dt.timedelta(hours=1), series.timezone
    )
    assert rec.rebase(series.pattern, later).exdates == ()


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"rrule": "FREQ=FORTNIGHTLY"}, "recurrencePattern.rrule", "FREQ"),
        ({"rrule": "FREQ=SECONDLY"}, "recurrencePattern.rrule", "FREQ must be one of"),
        ({"rrule": "FREQ=MINUTELY"}, "recurrencePattern.rrule", "1440 occurrences a day"),
        ({"rrule": "BYDAY=MO"}, "recurrencePattern.rrule", "FREQ is required"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "recurrencePattern.rrule", "not a valid"),
        (
            {"rrule": "FREQ=DAILY;COUNT=2;UNTIL=20270101"},
            "recurrencePattern.rrule",
            "COUNT and UNTIL",
        ),
        ({"rrule": "FREQ=DAILY;COUNT=0"}, "recurrencePattern.rrule", "COUNT"),
        ({"rrule": "FREQ=DAILY;UNTIL=2027"}, "recurrencePattern.rrule", "UNTIL"),
        ({"rrule": "FREQ=DAILY;UNTIL=20200101"}, "recurrencePattern.rrule", "no occurrence"),
        (
            {"rrule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"},
            "recurrencePattern.rrule",
            "RRULE",
        ),
        ({"rrule": "FREQ=DAILY;DTSTART=20260101"}, "recurrencePattern.rrule", "DTSTART"),
        ({"rrule": "garbage"}, "recurrencePattern.rrule", "malformed"),
        ({}, "recurrencePattern.rrule", "required"),
        (42, "recurrencePattern", "RRULE"),
        ({"rrule": "FREQ=DAILY", "colour": "red"}, "recurrencePattern.colour", "not a known"),
        (
            {"rrule": "FREQ=DAILY", "exdates": ["2026-01-01T10:30:00Z"]},
            "recurrencePattern.exdates",
            "not an occurrence",
        ),
        (
            {"rrule": "FREQ=DAILY", "exdates": ["yesterday"]},
            "recurrencePattern.exdates",
            "ISO 8601",
        ),
        (
            {"rrule": "FREQ=DAILY", "overrides": {"2026-01-02T09:00:00Z": {"colour": 1}}},
            "recurrencePattern.overrides.colour",
            "not a known",
        ),
    ],
)
def test_bad_patterns_are_refused_naming_the_field(raw: object, field: str, fragment: str) -> None:
    base = rec.Series(
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.datetime(2026, 1, 1, 10, tzinfo=UTC), "UTC"
    )
    with pytest.raises(Invalid) as caught:
        rec.parse_pattern(raw, base)
    assert caught.value.field == field
    assert fragment in caught.value.reason


def test_a_plain_string_rule_is_accepted_and_normalized() -> None:
    base = rec.Series(
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.datetime(2026, 1, 1, 10, tzinfo=UTC), "UTC"
    )
    pattern = rec.parse_pattern("RRULE:freq=weekly;byday=th,fr", base)
    assert pattern.rrule == "FREQ=WEEKLY;BYDAY=TH,FR"
    assert rec.load_pattern(pattern.to_json(False)) == pattern
    assert rec.load_pattern({"frequency": "weekly"}) is None


# --------------------------------------------------------------------------- bounded work


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the occurrences dateutil produces (the work a rule costs), in a one-item list."""
    count = [0]
    original = rrule._iter  # type: ignore[attr-defined]  # (dateutil's private generator)

    def counting(self: rrule) -> Any:
        for moment in original(self):
            count[0] += 1
            yield moment

    monkeypatch.setattr(rrule, "_iter", counting)
    return count


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("FREQ=HOURLY;BYMINUTE=0,30;BYSECOND=0,30", "BYSECOND"),
        ("FREQ=DAILY;BYSECOND=5", "BYSECOND"),
        ("FREQ=HOURLY;BYMINUTE=" + ",".join(map(str, range(60))), "1440 occurrences a day"),
        ("FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,10,20,30,40", "60 occurrences"),
        ("FREQ=HOURLY;BYMINUTE=0,20,40", "72 occurrences"),
    ],
)
def test_rules_that_fire_too_often_are_refused(rule: str, fragment: str) -> None:
    base = rec.Series(
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.datetime(2026, 1, 1, 10, tzinfo=UTC), "UTC"
    )
    with pytest.raises(Invalid) as caught:
        rec.parse_pattern({"rrule": rule}, base)
    assert caught.value.field == "recurrencePattern.rrule"
    assert fragment in caught.value.reason


def test_up_to_48_a_day_is_allowed() -> None:
    base = rec.Series(
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.datetime(2026, 1, 1, 9, 20, tzinfo=UTC), "UTC"
    )
    for rule in ("FREQ=HOURLY;BYMINUTE=0,30", "FREQ=HOURLY;INTERVAL=2;BYMINUTE=0,20,40"):
        assert rec.parse_pattern(rule, base).rrule == rule


def test_a_rule_that_never_matches_is_refused() -> None:
    base = rec.Series(
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.datetime(2026, 1, 1, 10, tzinfo=UTC), "UTC"
    )
    for rule in ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=WEEKLY;BYDAY=MO;BYSETPOS=2"):
        with pytest.raises(Invalid) as caught:
            rec.parse_pattern(rule, base)
        assert "no occurrence" in caught.value.reason
    # one that matches only once in 28 years is found (after the start, always an instance)
    leap_monday = rec.parse_pattern("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", base)
    series = replace(base, pattern=leap_monday)
    first = rec.expand(series, *window("2026-01-01T00:00:00+00:00", "2060-01-01T00:00:00+00:00"))
    assert [o.start.date() for o in first] == [dt.date(2026, 1, 1), dt.date(2044, 2, 29)]


def test_expanding_far_from_the_start_walks_only_near_the_window(walked: list[int]) -> None:
    # 48 a day since 1990: a day of 2026 must not cost the 36 years before it
    series = timed(
        dt.datetime(1990, 1, 1, 9, 0, tzinfo=BERLIN),
        20,
        "Europe/Berlin",
        "FREQ=HOURLY;BYMINUTE=0,30",
    )
    walked[0] = 0
    day = rec.expand(series, *window("2026-03-10T00:00:00+01:00", "2026-03-11T00:00:00+01:00"))
    assert len(day) == 48
    assert day[0].start == dt.datetime(2026, 3, 9, 23, 0, tzinfo=UTC)
    assert walked[0] < 200
    walked[0] = 0
    assert rec.occurs(series, "2026-03-10T07:30:00Z")
    assert walked[0] < 200


def test_span_and_count_before_stop_walking_at_the_cap(walked: list[int]) -> None:
    start = dt.datetime(2000, 1, 1, 0, 0, tzinfo=UTC)
    series = timed(start, 10, "UTC", "FREQ=HOURLY;BYMINUTE=0,30;UNTIL=20190101T000000Z")
    walked[0] = 0
    span_start, span_end = rec.series_span(series)
    # ~330,000 occurrences: past the cap the series is taken to end at its UNTIL (the walk
    # looks a day ahead to put instants in order, see recurrence._MAX_JUMP)
    assert walked[0] <= rec.MAX_WALK + 2 * rec.MAX_PER_DAY
    assert span_start == start
    assert span_end == dt.datetime(2019, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=10)
    walked[0] = 0
    assert rec.count_before(series, "2018-06-01T00:00:00Z") == rec.MAX_WALK
    assert walked[0] <= rec.MAX_WALK + 2 * rec.MAX_PER_DAY


def test_a_long_event_repeating_often_is_expanded_within_the_limit(walked: list[int]) -> None:
    # each occurrence lasts a year and there are 48 a day: every one of the last year's
    # overlaps the window, and only the first `limit` are produced
    start = dt.datetime(2020, 1, 1, tzinfo=UTC)
    series = timed(start, 366 * 24 * 60, "UTC", "FREQ=HOURLY;BYMINUTE=0,30")
    walked[0] = 0
    found = rec.expand(
        series, *window("2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"), limit=100
    )
    assert len(found) == 100
    assert found[0].start == dt.datetime(2024, 12, 31, 0, 30, tzinfo=UTC)
    assert walked[0] < 500


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;INTERVAL=3",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH",
        "FREQ=WEEKLY;INTERVAL=3;BYDAY=SU,SA;WKST=SU",
        "FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=-1",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        "FREQ=YEARLY;INTERVAL=2;BYMONTH=3,9;BYDAY=-1SU",
        "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
        "FREQ=HOURLY;INTERVAL=7;BYMINUTE=0,30",
        "FREQ=DAILY;BYHOUR=8,20;BYMINUTE=15,45",
        "FREQ=WEEKLY;BYDAY=MO;COUNT=300",
        "FREQ=DAILY;UNTIL=20300101T000000Z",
        "FREQ=MONTHLY",
        "FREQ=YEARLY",
    ],
)
@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
def test_expansion_from_anywhere_matches_dateutil_walking_from_the_start(
    rule: str, tz: str
) -> None:
    start = dt.datetime(1999, 7, 13, 21, 15, tzinfo=ZoneInfo(tz))
    series = timed(start, 90, tz, rule)
    built = rec.rule_of(series)
    assert built is not None
    for lo_text in ("2004-03-01", "2017-10-20", "2029-12-28"):
        lo = dt.datetime.fromisoformat(lo_text + "T00:00:00+00:00")
        hi = lo + dt.timedelta(days=45)
        expected = []
        for moment in built:
            instant = moment.astimezone(UTC)
            if instant >= hi:
                break
            if instant + series.duration > lo:
                expected.append(instant)
        assert [o.start for o in rec.expand(series, lo, hi)] == expected, (rule, lo_text)


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MINUTELY;INTERVAL=45",
        "FREQ=MINUTELY;INTERVAL=7;BYHOUR=8,20",
        "FREQ=MINUTELY;INTERVAL=90;BYDAY=MO,WE",
        "FREQ=HOURLY;BYMINUTE=0,30",
    ],
)
@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
def test_sub_daily_expansion_from_anywhere_matches_dateutil_across_dst(rule: str, tz: str) -> None:
    # windows around the DST changes of the three zones; in a spring gap dateutil gives some
    # instants twice and out of order (02:30 is 03:30): the engine gives each once, in order
    start = dt.datetime(2026, 1, 5, 21, 15, tzinfo=ZoneInfo(tz))
    series = timed(start, 10, tz, rule)
    built = rec.rule_of(series)
    assert built is not None
    for lo_text in ("2026-03-06", "2026-03-26", "2026-10-22", "2027-04-01"):
        lo = dt.datetime.fromisoformat(lo_text + "T00:00:00+00:00")
        hi = lo + dt.timedelta(days=8)
        expected = set()
        for moment in built:
            instant = moment.astimezone(UTC)
            if instant >= hi + dt.timedelta(days=1):
                break
            if lo < instant + series.duration and instant < hi:
                expected.add(instant)
        assert [o.start for o in rec.expand(series, lo, hi)] == sorted(expected), (rule, lo_text)


def test_a_start_off_the_rule_is_the_first_instance_and_counts_in_count() -> None:
    # RFC 5545's "every Friday the 13th" starts on Tuesday 2 September 1997
    start = dt.datetime(1997, 9, 2, 9, 0, tzinfo=NEW_YORK)
    rule = "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;COUNT=4"
    series = timed(start, 60, "America/New_York", rule)
    everything = window("1997-01-01T00:00:00+00:00", "2002-01-01T00:00:00+00:00")
    days = [
        o.start.astimezone(NEW_YORK).date().isoformat() for o in rec.expand(series, *everything)
    ]
    assert days == ["1997-09-02", "1998-02-13", "1998-03-13", "1998-11-13"]
    assert rec.occurs(series, "1997-09-02T13:00:00Z")
    assert not rec.from_rule(series, "1997-09-02T13:00:00Z")
    assert rec.series_span(series)[1] == dt.datetime(1998, 11, 13, 15, 0, tzinfo=UTC)
    # cut at the second Friday: the start and one Friday before, two Fridays after
    parts = rec.split(series, "1998-03-13T14:00:00Z")
    assert parts.before is not None
    assert parts.after.rrule.endswith("COUNT=2")
    before = replace(series, pattern=parts.before)
    assert [o.start.date() for o in rec.expand(before, *everything)] == [
        dt.date(1997, 9, 2), dt.date(1998, 2, 13),
    ]  # fmt: skip
    # a rule whose occurrences all come after its UNTIL leaves the start alone
    alone = timed(
        start, 60, "America/New_York", "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;UNTIL=19971231"
    )
    assert [o.recurrence_id for o in rec.expand(alone, *everything)] == ["1997-09-02T13:00:00Z"]


def test_rdates_are_instances_split_with_the_series() -> None:
    start = dt.datetime(2026, 5, 4, 9, 0, tzinfo=BERLIN)
    series = timed(
        start,
        60,
        "Europe/Berlin",
        "FREQ=WEEKLY;COUNT=3",
        rdates=["2026-05-06T15:00:00", "2026-06-01T09:00:00+02:00"],
        overrides={"2026-05-06T13:00:00Z": {"title": "Extra"}},
    )
    assert series.pattern is not None
    assert series.pattern.rdates == ("2026-05-06T13:00:00Z", "2026-06-01T07:00:00Z")
    assert rec.load_pattern(series.pattern.to_json(False)) == series.pattern
    everything = window("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    occ = rec.expand(series, *everything)
    assert [o.start.astimezone(BERLIN).strftime("%m-%d %H") for o in occ] == [
        "05-04 09", "05-06 15", "05-11 09", "05-18 09", "06-01 09",
    ]  # fmt: skip
    assert occ[1].fields == {"title": "Extra"}
    assert rec.series_span(series)[1] == dt.datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    # the rdate does not count in COUNT: cut at the third weekly, one is left after
    parts = rec.split(series, "2026-05-18T07:00:00Z")
    assert parts.after.rrule == "FREQ=WEEKLY;COUNT=1"
    assert parts.after.rdates == ("2026-06-01T07:00:00Z",)
    assert parts.before is not None
    assert parts.before.rdates == ("2026-05-06T13:00:00Z",)
    assert not rec.from_rule(series, "2026-05-06T13:00:00Z")
    assert rec.from_rule(series, "2026-05-11T07:00:00Z")
    # moved an hour later, the rdates stay where they are
    later = replace(series, start=series.start + dt.timedelta(days=3))
    assert rec.rebase(series.pattern, later).rdates == ("2026-06-01T07:00:00Z",)


# --------------------------------------------------------------------------- the year range


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+09:00", "9999-12-31T23:00:00-05:00", "1899-12-31", "2201-01-01"]
)
def test_instants_outside_the_years_supported_are_refused(value: str) -> None:
    with pytest.raises(Invalid) as caught:
        rec.parse_instant(value, "startTime", all_day=False, tz="Asia/Tokyo")
    assert caught.value.field == "startTime"
    assert "1900" in caught.value.reason


def test_an_until_outside_the_years_supported_is_refused() -> None:
    base = rec.Series(
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 10, tzinfo=UTC),
        "America/New_York",
    )
    for rule in ("FREQ=DAILY;UNTIL=99991231", "FREQ=DAILY;UNTIL=99991231T235959Z"):
        with pytest.raises(Invalid) as caught:
            rec.parse_pattern(rule, base)
        assert caught.value.field == "recurrencePattern.rrule"
        assert "UNTIL" in caught.value.reason


# --------------------------------------------------------------------------- reminders


def test_alarms_of_all_day_events_start_at_midnight_in_the_events_zone() -> None:
    # 12 May in Kiritimati (UTC+14) starts at 10:00 UTC on 11 May
    first = rec.day_start(dt.date(2026, 5, 12))
    series = rec.Series(first, first + dt.timedelta(days=1), "Pacific/Kiritimati", all_day=True)
    series = replace(series, pattern=rec.parse_pattern("FREQ=WEEKLY", series))
    found = rec.alarms_between(
        series, *window("2026-05-11T00:00:00+00:00", "2026-05-19T00:00:00+00:00")
    )
    assert [at for _occ, at in found] == [
        dt.datetime(2026, 5, 11, 10, tzinfo=UTC),
        dt.datetime(2026, 5, 18, 10, tzinfo=UTC),
    ]
    assert rec.next_alarm(series, [60], dt.datetime(2026, 5, 11, 9, tzinfo=UTC)) == dt.datetime(
        2026, 5, 18, 9, tzinfo=UTC
    )


def test_the_next_alarm_skips_cancelled_and_follows_moved_occurrences() -> None:
    start = dt.datetime(2026, 3, 16, 9, 0, tzinfo=BERLIN)  # Mondays at 09:00
    series = timed(
        start,
        60,
        "Europe/Berlin",
        "FREQ=WEEKLY;COUNT=4",
        exdates=["2026-03-23T08:00:00Z"],
        overrides={"2026-03-30T07:00:00Z": {"start": "2026-03-29T12:00:00+02:00"}},
    )
    after = dt.datetime(2026, 3, 16, 9, 0, tzinfo=BERLIN)
    # the 23rd is cancelled; the 30th moved to Sunday the 29th at noon; 10 and 60 min before
    assert rec.next_alarm(series, [10, 60], after) == dt.datetime(2026, 3, 29, 11, tzinfo=BERLIN)
    last = dt.datetime(2026, 4, 6, 9, 0, tzinfo=BERLIN)
    assert rec.next_alarm(series, [10], last - dt.timedelta(minutes=10)) is None
    assert rec.next_alarm(series, [10], last - dt.timedelta(minutes=11)) == last - dt.timedelta(
        minutes=10
    )
