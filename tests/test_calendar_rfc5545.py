"""RFC 5545 at the edges, through every way a series comes in (POST /api/calendar/events,
recurring POST /api/sessions, POST /api/calendar/import) and goes out (range reads, the
iCalendar feed): the worked examples of RFC 5545 section 3.8.5.3 whose DTSTART is not on the
rule or that use FREQ=MINUTELY, RDATE, what an import could not keep, the feed's VTIMEZONE and
what the feed leaves out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from tests.helpers import Api, User

EVENTS = "/api/calendar/events"
IMPORT = "/api/calendar/import"
NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"
UTC = dt.UTC
ROUTES = ("event", "session", "import")


def _aware(local: dt.datetime, tz: str) -> str:
    return local.replace(tzinfo=ZoneInfo(tz)).isoformat()


def _ics_local(local: dt.datetime) -> str:
    return local.strftime("%Y%m%dT%H%M%S")


def ics(*events: str) -> bytes:
    text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n" + "".join(events)
    return (text + "END:VCALENDAR\r\n").encode()


async def import_ics(api: Api, user: User, data: bytes) -> dict[str, Any]:
    resp = await api.post(IMPORT, user, data=data, headers={"Content-Type": "text/calendar"})
    assert resp.status == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


async def add_series(
    api: Api,
    user: User,
    route: str,
    *,
    start: dt.datetime,
    tz: str,
    rrule: str,
    exdates: Sequence[dt.datetime] = (),
    rdates: Sequence[dt.datetime] = (),
    minutes: int = 60,
) -> None:
    """A series starting at the local time `start` in `tz`, put in `user`'s calendar by one of
    the three routes (its other dates are local times too)."""
    end = start + dt.timedelta(minutes=minutes)
    pattern: dict[str, Any] = {"rrule": rrule}
    if exdates:
        pattern["exdates"] = [_aware(x, tz) for x in exdates]
    if rdates:
        pattern["rdates"] = [_aware(x, tz) for x in rdates]
    body: dict[str, Any]
    if route == "event":
        body = {
            "title": "Series",
            "startTime": _aware(start, tz),
            "endTime": _aware(end, tz),
            "timezone": tz,
            "recurrencePattern": pattern,
        }
        resp = await api.post(EVENTS, user, json=body)
        assert resp.status == 201, resp.body
    elif route == "session":
        body = {
            "title": "Series",
            "sessionType": "group",
            "startTime": _aware(start, tz),
            "endTime": _aware(end, tz),
            "timezone": tz,
            "isRecurring": True,
            "recurrencePattern": pattern,
        }
        resp = await api.post("/api/sessions", user, json=body)
        assert resp.status == 201, resp.body
    else:
        lines = [
            "BEGIN:VEVENT",
            "UID:series@example.com",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART;TZID={tz}:{_ics_local(start)}",
            f"DTEND;TZID={tz}:{_ics_local(end)}",
            f"RRULE:{rrule}",
            "SUMMARY:Series",
        ]
        if exdates:
            lines.append(f"EXDATE;TZID={tz}:" + ",".join(_ics_local(x) for x in exdates))
        if rdates:
            lines.append(f"RDATE;TZID={tz}:" + ",".join(_ics_local(x) for x in rdates))
        answer = await import_ics(api, user, ics("\r\n".join([*lines, "END:VEVENT", ""])))
        assert answer["imported"] == 1, answer
        assert answer["skipped"] == [], answer
        assert answer["incomplete"] == [], answer


async def starts(api: Api, user: User, first: str, last: str, tz: str) -> list[str]:
    """The start times of the user's occurrences from `first` to `last` (dates, inclusive), as
    a viewer in `tz` reads them, paged by years (a range covers at most 400 days)."""
    out: list[str] = []
    day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    while day <= end:
        page_end = min(day + dt.timedelta(days=364), end)
        params = {"startDate": day.isoformat(), "endDate": page_end.isoformat(), "timezone": tz}
        resp = await api.get(EVENTS, user, params=params)
        assert resp.status == 200, resp.body
        assert resp.body["truncated"] is False
        out += [item["startTime"] for item in resp.body["events"]]
        day = page_end + dt.timedelta(days=1)
    return out


async def feed(api: Api, user: User) -> icalendar.Calendar:
    resp = await api.post("/api/calendar/feed", user)
    assert resp.status == 201, resp.body
    async with api.client.get(f"/api/calendar/feed/{resp.body['token']}.ics") as got:
        assert got.status == 200
        return icalendar.Calendar.from_ical(await got.read())


# --------------------------------------------------------------------------- 1. DTSTART


FRIDAY_13THS = [
    "1998-02-13T09:00:00-05:00",
    "1998-03-13T09:00:00-05:00",
    "1998-11-13T09:00:00-05:00",
    "1999-08-13T09:00:00-04:00",
    "2000-10-13T09:00:00-04:00",
]


@pytest.mark.parametrize("route", ROUTES)
async def test_every_friday_the_13th_excludes_its_start_with_an_exdate(
    api: Api, route: str
) -> None:
    # RFC 5545 3.8.5.3: DTSTART is Tuesday 2 September 1997, which the rule does not produce;
    # DTSTART is always the first instance of the recurrence set, so the RFC removes it with
    # an EXDATE. The RFC lists the occurrences up to 2000.
    ann = await api.register()
    start = dt.datetime(1997, 9, 2, 9, 0)
    rule = "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13"
    await add_series(api, ann, route, start=start, tz=NEW_YORK, rrule=rule, exdates=[start])
    assert await starts(api, ann, "1997-09-01", "2000-12-31", NEW_YORK) == FRIDAY_13THS


@pytest.mark.parametrize("route", ROUTES)
async def test_a_start_the_rule_does_not_produce_is_still_the_first_instance(
    api: Api, route: str
) -> None:
    ann = await api.register()
    start = dt.datetime(1997, 9, 2, 9, 0)
    rule = "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13"
    await add_series(api, ann, route, start=start, tz=NEW_YORK, rrule=rule)
    shown = await starts(api, ann, "1997-09-01", "2000-12-31", NEW_YORK)
    assert shown == ["1997-09-02T09:00:00-04:00", *FRIDAY_13THS]


async def test_count_counts_a_start_off_the_rule_as_the_first_occurrence(api: Api) -> None:
    # "The DTSTART property value always counts as the first occurrence" (RFC 5545 3.3.10)
    ann = await api.register()
    start = dt.datetime(1997, 9, 2, 9, 0)
    rule = "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;COUNT=3"
    await add_series(api, ann, "event", start=start, tz=NEW_YORK, rrule=rule)
    shown = await starts(api, ann, "1997-09-01", "2000-12-31", NEW_YORK)
    assert shown == ["1997-09-02T09:00:00-04:00", *FRIDAY_13THS[:2]]


# --------------------------------------------------------------------------- 2. MINUTELY


def _day(day: int, times: Sequence[str]) -> list[str]:
    return [f"1997-09-{day:02d}T{t}:00-04:00" for t in times]


_EVERY_20 = [f"{h:02d}:{m:02d}" for h in range(9, 17) for m in (0, 20, 40)]
RFC_MINUTELY = [
    # "Every 15 minutes for 6 occurrences"
    (
        "FREQ=MINUTELY;INTERVAL=15;COUNT=6",
        _day(2, ["09:00", "09:15", "09:30", "09:45", "10:00", "10:15"]),
    ),
    # "Every hour and a half for 4 occurrences"
    ("FREQ=MINUTELY;INTERVAL=90;COUNT=4", _day(2, ["09:00", "10:30", "12:00", "13:30"])),
    # "Every 20 minutes from 9:00 AM to 4:40 PM every day", both ways the RFC writes it
    ("FREQ=DAILY;BYHOUR=9,10,11,12,13,14,15,16;BYMINUTE=0,20,40", _day(2, _EVERY_20)),
    ("FREQ=MINUTELY;INTERVAL=20;BYHOUR=9,10,11,12,13,14,15,16", _day(2, _EVERY_20)),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("rule", "expected"), RFC_MINUTELY)
async def test_the_rfc_minutely_examples_give_exactly_the_rfc_occurrences(
    api: Api, route: str, rule: str, expected: list[str]
) -> None:
    ann = await api.register()
    start = dt.datetime(1997, 9, 2, 9, 0)
    await add_series(api, ann, route, start=start, tz=NEW_YORK, rrule=rule, minutes=10)
    assert await starts(api, ann, "1997-09-02", "1997-09-02", NEW_YORK) == expected
    if "COUNT" not in rule:  # and the next day again
        shown = await starts(api, ann, "1997-09-03", "1997-09-03", NEW_YORK)
        assert shown == _day(3, _EVERY_20)


async def test_minutely_rules_stay_within_the_daily_cap(api: Api) -> None:
    ann = await api.register()
    base = {"title": "x", "startTime": "2026-03-16T09:00:00", "timezone": BERLIN}
    for rule in ("FREQ=MINUTELY;INTERVAL=15", "FREQ=MINUTELY;BYHOUR=9"):
        resp = await api.post(EVENTS, ann, json={**base, "recurrencePattern": rule})
        assert resp.status == 422, resp.body
        assert resp.error_field() == "recurrencePattern.rrule", resp.body
        assert "at most 48" in resp.body["error"]["details"][0]["reason"]
    # 48 a day, or many a minute apart but few in all, are fine
    for rule in ("FREQ=MINUTELY;INTERVAL=30", "FREQ=MINUTELY;COUNT=40"):
        resp = await api.post(EVENTS, ann, json={**base, "recurrencePattern": rule})
        assert resp.status == 201, resp.body


async def test_minutely_across_the_spring_gap_gives_each_instant_once_in_order(api: Api) -> None:
    # 02:00-02:59 does not exist in New York on 8 March 2026; RFC 5545 reads such a time with
    # the offset before the gap (02:15 is 03:15 EDT), which the 03:15 of the rule also is.
    ann = await api.register()
    start = dt.datetime(2026, 3, 8, 1, 30)
    rule = "FREQ=MINUTELY;INTERVAL=15;COUNT=12"
    await add_series(api, ann, "event", start=start, tz=NEW_YORK, rrule=rule, minutes=5)
    shown = await starts(api, ann, "2026-03-08", "2026-03-08", "UTC")
    first = dt.datetime(2026, 3, 8, 6, 30)
    expected = [
        (first + dt.timedelta(minutes=15 * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(8)
    ]
    assert shown == expected


# --------------------------------------------------------------------------- 3. RDATE


@pytest.mark.parametrize("route", ROUTES)
async def test_rdates_add_instances_on_every_route(api: Api, route: str) -> None:
    ann = await api.register()
    await add_series(
        api,
        ann,
        route,
        start=dt.datetime(2036, 5, 5, 9, 0),
        tz=BERLIN,
        rrule="FREQ=WEEKLY;COUNT=3",
        exdates=[dt.datetime(2036, 5, 12, 9, 0)],
        rdates=[dt.datetime(2036, 5, 7, 15, 0), dt.datetime(2036, 6, 1, 9, 0)],
    )
    assert await starts(api, ann, "2036-05-01", "2036-06-30", BERLIN) == [
        "2036-05-05T09:00:00+02:00",
        "2036-05-07T15:00:00+02:00",
        "2036-05-19T09:00:00+02:00",
        "2036-06-01T09:00:00+02:00",
    ]
    # and the feed writes them as RDATE
    masters = [e for e in (await feed(api, ann)).walk("VEVENT") if "RECURRENCE-ID" not in e]
    assert len(masters) == 1
    rdates = [d.dt for p in _as_list(masters[0]["RDATE"]) for d in p.dts]
    berlin = ZoneInfo(BERLIN)
    assert rdates == [
        dt.datetime(2036, 5, 7, 15, 0, tzinfo=berlin),
        dt.datetime(2036, 6, 1, 9, 0, tzinfo=berlin),
    ]


def _as_list(prop: Any) -> list[Any]:
    return prop if isinstance(prop, list) else [prop]


async def test_rdates_are_validated_like_exdates(api: Api) -> None:
    ann = await api.register()
    base = {"title": "x", "startTime": "2036-05-05T09:00:00", "timezone": BERLIN}
    rule = "FREQ=WEEKLY;COUNT=3"
    for rdates, fragment in (
        ("2036-05-07", "list"),
        (["next wednesday"], "ISO 8601"),
        (["2036-05-01T09:00:00"], "before"),
        (["2300-01-01T09:00:00"], "2200"),
        ([f"2036-06-{d:02d}T09:00:00" for d in range(1, 31)] * 17, "at most 500"),
    ):
        pattern = {"rrule": rule, "rdates": rdates}
        resp = await api.post(EVENTS, ann, json={**base, "recurrencePattern": pattern})
        assert resp.status == 422, (rdates, resp.body)
        assert resp.error_field() == "recurrencePattern.rdates", resp.body
        assert fragment in resp.body["error"]["details"][0]["reason"], resp.body
    # an RDATE instance is an occurrence like the others: cancelled, changed, read back
    pattern = {
        "rrule": rule,
        "rdates": ["2036-05-07T15:00:00", "2036-05-07T15:00:00+02:00"],
        "exdates": ["2036-05-07T13:00:00Z"],
    }
    resp = await api.post(EVENTS, ann, json={**base, "recurrencePattern": pattern})
    assert resp.status == 201, resp.body
    assert resp.body["recurrencePattern"]["rdates"] == ["2036-05-07T13:00:00Z"]
    assert resp.body["recurrencePattern"]["exdates"] == ["2036-05-07T13:00:00Z"]
    session = {
        "title": "x",
        "sessionType": "group",
        "startTime": "2036-05-05T09:00:00+02:00",
        "endTime": "2036-05-05T10:00:00+02:00",
        "timezone": BERLIN,
        "isRecurring": True,
        "recurrencePattern": {"rrule": rule, "rdates": ["2036-05-01T09:00:00+02:00"]},
    }
    resp = await api.post("/api/sessions", ann, json=session)
    assert resp.status == 422, resp.body
    assert resp.error_field() == "recurrencePattern.rdates", resp.body


async def test_an_rdate_occurrence_is_changed_and_cut_on_its_own(api: Api) -> None:
    ann = await api.register()
    body = {
        "title": "Class",
        "startTime": "2036-05-05T09:00:00",
        "endTime": "2036-05-05T10:00:00",
        "timezone": BERLIN,
        "recurrencePattern": {"rrule": "FREQ=WEEKLY;COUNT=4", "rdates": ["2036-05-07T15:00:00"]},
    }
    event = (await api.post(EVENTS, ann, json=body)).body
    path = f"{EVENTS}/{event['id']}"
    extra = {"recurrenceId": "2036-05-07T13:00:00Z"}
    moved = await api.put(
        path, ann, params={**extra, "scope": "this"}, json={"startTime": "2036-05-08T15:00:00"}
    )
    assert moved.status == 200, moved.body
    # the rest of the series cannot start from a date its rule does not produce
    cut = await api.put(path, ann, params={**extra, "scope": "following"}, json={"title": "New"})
    assert cut.status == 422, cut.body
    assert cut.error_field() == "recurrenceId", cut.body
    shown = await starts(api, ann, "2036-05-01", "2036-06-30", BERLIN)
    assert shown == [
        "2036-05-05T09:00:00+02:00",
        "2036-05-08T15:00:00+02:00",
        "2036-05-12T09:00:00+02:00",
        "2036-05-19T09:00:00+02:00",
        "2036-05-26T09:00:00+02:00",
    ]
    # deleting it and what follows keeps the first week only
    gone = await api.delete(path, ann, params={**extra, "scope": "following"})
    assert gone.status == 204
    assert await starts(api, ann, "2036-05-01", "2036-06-30", BERLIN) == [
        "2036-05-05T09:00:00+02:00"
    ]


RICH = """BEGIN:VEVENT\r
UID:rich@example.com\r
DTSTAMP:20360101T000000Z\r
SEQUENCE:2\r
TRANSP:OPAQUE\r
DTSTART;TZID=Europe/Berlin:20360505T090000\r
DTEND;TZID=Europe/Berlin:20360505T103000\r
RRULE:FREQ=WEEKLY;COUNT=3\r
RDATE;TZID=Europe/Berlin:20360507T150000,20360601T090000\r
RDATE;VALUE=PERIOD:20360610T080000Z/20360610T120000Z\r
RDATE;TZID=Europe/Berlin:20360401T090000\r
EXDATE;TZID=Europe/Berlin:20360512T090000\r
EXDATE;TZID=Europe/Berlin:20360513T090000\r
EXRULE:FREQ=MONTHLY\r
SUMMARY:Seminar\r
ORGANIZER:mailto:prof@example.com\r
ATTENDEE:mailto:a@example.com\r
ATTENDEE:mailto:b@example.com\r
X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC\r
BEGIN:VALARM\r
ACTION:DISPLAY\r
DESCRIPTION:Reminder\r
TRIGGER:-PT15M\r
END:VALARM\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:rich@example.com\r
DTSTAMP:20360101T000000Z\r
RECURRENCE-ID;TZID=Europe/Berlin:20360519T090000\r
DTSTART;TZID=Europe/Berlin:20360519T110000\r
DTEND;TZID=Europe/Berlin:20360519T123000\r
SUMMARY:Seminar (late)\r
ATTENDEE:mailto:a@example.com\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:dates-only@example.com\r
DTSTAMP:20360101T000000Z\r
DTSTART:20360701T090000Z\r
RDATE:20360708T090000Z,20360715T090000Z\r
SUMMARY:Three Tuesdays\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:plain@example.com\r
DTSTAMP:20360101T000000Z\r
CREATED:20360101T000000Z\r
LAST-MODIFIED:20360101T000000Z\r
SEQUENCE:0\r
DTSTART:20360801T090000Z\r
SUMMARY:Plain\r
END:VEVENT\r
BEGIN:VTODO\r
UID:todo@example.com\r
DTSTAMP:20360101T000000Z\r
SUMMARY:Hand in the essay\r
END:VTODO\r
"""


async def test_an_import_keeps_what_it_reads_or_says_what_it_could_not(api: Api) -> None:
    ann = await api.register()
    answer = await import_ics(api, ann, ics(RICH))
    assert answer["imported"] == 3, answer
    assert answer["skipped"] == [
        {"uid": "todo@example.com", "reason": "a VTODO: only events (VEVENT) are imported"}
    ]
    assert [i["uid"] for i in answer["incomplete"]] == ["rich@example.com"], answer
    dropped = answer["incomplete"][0]["dropped"]
    assert sorted(d.split(": ", 1)[0] for d in dropped) == [
        "ATTENDEE",
        "EXDATE",
        "EXRULE",
        "ORGANIZER",
        "RDATE",
        "RECURRENCE-ID 2036-05-19T09:00:00+02:00 ATTENDEE",
        "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR",
    ], dropped
    assert any("2036-05-13" in d for d in dropped if d.startswith("EXDATE")), dropped
    assert any("2036-04-01" in d for d in dropped if d.startswith("RDATE")), dropped
    resp = await api.get(
        EVENTS, ann, params={"startDate": "2036-05-01", "endDate": "2036-07-31", "timezone": BERLIN}
    )
    shown = [(i["title"], i["startTime"], i["endTime"]) for i in resp.body["events"]]
    assert shown == [
        ("Seminar", "2036-05-05T09:00:00+02:00", "2036-05-05T10:30:00+02:00"),
        ("Seminar", "2036-05-07T15:00:00+02:00", "2036-05-07T16:30:00+02:00"),
        ("Seminar (late)", "2036-05-19T11:00:00+02:00", "2036-05-19T12:30:00+02:00"),
        ("Seminar", "2036-06-01T09:00:00+02:00", "2036-06-01T10:30:00+02:00"),
        ("Seminar", "2036-06-10T10:00:00+02:00", "2036-06-10T14:00:00+02:00"),
        ("Three Tuesdays", "2036-07-01T11:00:00+02:00", "2036-07-01T11:00:00+02:00"),
        ("Three Tuesdays", "2036-07-08T11:00:00+02:00", "2036-07-08T11:00:00+02:00"),
        ("Three Tuesdays", "2036-07-15T11:00:00+02:00", "2036-07-15T11:00:00+02:00"),
    ]
    seminar = await api.get(f"{EVENTS}/{resp.body['events'][0]['id']}", ann)
    assert seminar.body["reminderSettings"] == [{"minutesBefore": 15, "channels": ["in_app"]}]


# --------------------------------------------------------------------------- 4. VTIMEZONE


def _onsets(vtimezone: Any) -> list[tuple[dt.datetime, dt.timedelta, dt.timedelta]]:
    """(instant, offset before, offset after) of every onset a VTIMEZONE lists."""
    out = []
    for sub in vtimezone.subcomponents:
        assert sub.name in ("STANDARD", "DAYLIGHT")
        assert "RRULE" not in sub  # onsets are listed; expand rules here if that changes
        before, after = sub.decoded("TZOFFSETFROM"), sub.decoded("TZOFFSETTO")
        local = [sub.decoded("DTSTART")]
        if "RDATE" in sub:
            local += [d.dt for p in _as_list(sub["RDATE"]) for d in p.dts]
        for moment in local:
            assert moment.tzinfo is None  # local time, in the offset before the onset
            out.append(((moment - before).replace(tzinfo=UTC), before, after))
    return sorted(out)


def _zoneinfo_changes(
    tz: str, first_year: int, last_year: int
) -> list[tuple[dt.datetime, dt.timedelta, dt.timedelta]]:
    """Every change of UTC offset zoneinfo knows in those years, found by an hourly scan."""
    zone = ZoneInfo(tz)

    def offset(at: dt.datetime) -> dt.timedelta:
        value = at.astimezone(zone).utcoffset()
        assert value is not None
        return value

    out = []
    at = dt.datetime(first_year, 1, 1, tzinfo=UTC)
    stop = dt.datetime(last_year + 1, 1, 1, tzinfo=UTC)
    while at < stop:
        step = at + dt.timedelta(hours=1)
        if offset(step) != offset(at):
            lo, hi = at, step  # the change is in (lo, hi]: narrow it to the second
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (lo, mid) if offset(mid) != offset(lo) else (mid, hi)
            out.append((hi, offset(lo), offset(hi)))
        at = step
    return out


# zone -> local times of one-off events in it (years past 2038 included)
FEED_ZONES = {
    NEW_YORK: [dt.datetime(2027, 1, 20, 10, 0), dt.datetime(2045, 7, 4, 10, 0)],
    BERLIN: [dt.datetime(2040, 6, 1, 10, 0)],
    "Australia/Sydney": [dt.datetime(2046, 1, 15, 10, 0)],
    "America/Santiago": [dt.datetime(2039, 8, 20, 10, 0)],
    "Pacific/Auckland": [dt.datetime(2050, 3, 1, 10, 0)],
    "Asia/Tokyo": [dt.datetime(2041, 5, 5, 10, 0)],
}


async def test_the_feeds_vtimezones_match_zoneinfo_in_every_year_its_events_span(
    api: Api,
) -> None:
    ann = await api.register()
    for tz, moments in FEED_ZONES.items():
        for local in moments:
            body = {"title": tz, "startTime": _aware(local, tz), "timezone": tz}
            assert (await api.post(EVENTS, ann, json=body)).status == 201
    blocks = {str(v["TZID"]): v for v in (await feed(api, ann)).walk("VTIMEZONE")}
    assert set(blocks) == set(FEED_ZONES)
    for tz, moments in FEED_ZONES.items():
        listed = _onsets(blocks[tz])
        zone = ZoneInfo(tz)
        # every onset listed is a change zoneinfo makes at that instant, between those offsets
        for instant, before, after in listed:
            if before != after:
                assert instant.astimezone(zone).utcoffset() == after, (tz, instant)
                earlier = (instant - dt.timedelta(seconds=1)).astimezone(zone)
                assert earlier.utcoffset() == before, (tz, instant)
        # every change zoneinfo makes in the years the zone's events span is listed
        years = [m.year for m in moments]
        expected = _zoneinfo_changes(tz, min(years), max(years))
        assert [x for x in expected if x not in listed] == [], tz
        # and the offset a client reads at each event is zoneinfo's
        for local in moments:
            instant = local.replace(tzinfo=zone).astimezone(UTC)
            in_force = [after for at, _before, after in listed if at <= instant][-1]
            assert in_force == local.replace(tzinfo=zone).utcoffset(), (tz, local)
    # RFC 5545: an onset is the local time before the change: 02:00 in New York, both ways
    new_york = _onsets(blocks[NEW_YORK])
    assert {(at + before).time() for at, before, _after in new_york} == {dt.time(2, 0)}
    assert {at.year for at, _b, _a in new_york if at.year == 2045} == {2045}


# --------------------------------------------------------------------------- 5. feed history


async def test_the_feed_leaves_out_series_over_for_more_than_180_days(api: Api) -> None:
    ann = await api.register()
    today = dt.datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    # weekly, 3 times: the last occurrence is 14 days after the first
    long_ago = today - dt.timedelta(days=200 + 14)
    lately = today - dt.timedelta(days=100 + 14)
    for title, start in (("old", long_ago), ("recent", lately)):
        for route in ("event", "session"):
            body: dict[str, Any] = {
                "title": f"{title} {route}",
                "startTime": start.isoformat(),
                "endTime": (start + dt.timedelta(hours=1)).isoformat(),
                "timezone": "UTC",
                "recurrencePattern": {"rrule": "FREQ=WEEKLY;COUNT=3"},
            }
            if route == "session":
                body.update(sessionType="group", isRecurring=True)
                resp = await api.post("/api/sessions", ann, json=body)
            else:
                resp = await api.post(EVENTS, ann, json=body)
            assert resp.status == 201, resp.body
    # a series without an end stays, however long ago it began
    forever = {
        "title": "forever session",
        "sessionType": "group",
        "startTime": (today - dt.timedelta(days=1000)).isoformat(),
        "endTime": (today - dt.timedelta(days=1000, hours=-1)).isoformat(),
        "isRecurring": True,
        "recurrencePattern": {"rrule": "FREQ=WEEKLY"},
    }
    assert (await api.post("/api/sessions", ann, json=forever)).status == 201
    titles = sorted(str(e["SUMMARY"]) for e in (await feed(api, ann)).walk("VEVENT"))
    assert titles == ["forever session", "recent event", "recent session"]
