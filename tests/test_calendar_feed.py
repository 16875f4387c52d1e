"""The private iCalendar feed (parsed back with icalendar) and .ics import."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any, cast
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
from dateutil.rrule import rrulestr

from peerspark_rt.calendar import events as calendar_service
from peerspark_rt.calendar import feed as calendar_feed
from tests.helpers import Api, User

EVENTS = "/api/calendar/events"
BERLIN = ZoneInfo("Europe/Berlin")


async def feed_url(api: Api, user: User) -> str:
    resp = await api.post("/api/calendar/feed", user)
    assert resp.status == 201, resp.body
    assert resp.body["url"].endswith(".ics")
    assert resp.body["webcalUrl"].startswith("webcal://")
    return f"/api/calendar/feed/{resp.body['token']}.ics"


async def fetch(api: Api, path: str) -> tuple[int, bytes, str]:
    # no Authorization header: a calendar client has only the URL
    async with api.client.get(path) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def test_feed_carries_events_with_rules_exceptions_and_alarms(api: Api) -> None:
    # Dates far ahead: the feed carries the recent past and the future, and the class still
    # crosses Berlin's DST change (30 March 2036).
    ann = await api.register()
    resp = await api.post(
        EVENTS,
        ann,
        json={
            "title": "Linear algebra",
            "startTime": "2036-03-17T09:00:00",
            "endTime": "2036-03-17T10:30:00",
            "timezone": "Europe/Berlin",
            "location": "Room 101",
            "recurrencePattern": {
                "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=4",
                "exdates": ["2036-03-24T08:00:00Z"],
            },
            "reminderSettings": [{"minutesBefore": 10}],
        },
    )
    weekly = resp.body
    moved = await api.put(
        f"{EVENTS}/{weekly['id']}",
        ann,
        params={"recurrenceId": "2036-03-31T07:00:00Z"},
        json={"startTime": "2036-04-01T15:00:00", "title": "Moved class"},
    )
    assert moved.status == 200
    await api.post(
        EVENTS,
        ann,
        json={
            "title": "Exam day",
            "startTime": "2036-05-12",
            "timezone": "UTC",
            "isAllDay": True,
            "eventType": "exam",
        },
    )
    path = await feed_url(api, ann)
    status, body, ctype = await fetch(api, path)
    assert status == 200
    assert ctype.startswith("text/calendar")
    assert b"\r\n" in body  # RFC 5545 line endings

    cal = icalendar.Calendar.from_ical(body)
    assert str(cal["VERSION"]) == "2.0"
    assert "PeerSpark" in str(cal["PRODID"])
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    events = cal.walk("VEVENT")
    masters = [e for e in events if e.get("RECURRENCE-ID") is None]
    exceptions = [e for e in events if e.get("RECURRENCE-ID") is not None]
    by_title = {str(e["SUMMARY"]): e for e in masters}
    master = by_title["Linear algebra"]
    assert master.decoded("DTSTART") == dt.datetime(2036, 3, 17, 9, 0, tzinfo=BERLIN)
    assert master.decoded("DTEND") == dt.datetime(2036, 3, 17, 10, 30, tzinfo=BERLIN)
    assert master["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert str(master["LOCATION"]) == "Room 101"
    exdates = [d.dt for d in cast(Any, master["EXDATE"]).dts]
    assert exdates == [dt.datetime(2036, 3, 24, 9, 0, tzinfo=BERLIN)]
    alarm = master.walk("VALARM")[0]
    assert alarm.decoded("TRIGGER") == dt.timedelta(minutes=-10)
    # Expanding the exported rule gives the same local times a client would show.
    rule = rrulestr(
        cast(Any, master["RRULE"]).to_ical().decode(), dtstart=master.decoded("DTSTART")
    )
    local = [d for d in rule if d not in exdates]
    assert [d.strftime("%m-%d %H:%M %z") for d in local] == [
        "03-17 09:00 +0100",
        "03-31 09:00 +0200",
        "04-07 09:00 +0200",
    ]
    assert len(exceptions) == 1
    change = exceptions[0]
    assert str(change["UID"]) == str(master["UID"])
    assert change.decoded("RECURRENCE-ID") == dt.datetime(2036, 3, 31, 9, 0, tzinfo=BERLIN)
    assert change.decoded("DTSTART") == dt.datetime(2036, 4, 1, 15, 0, tzinfo=BERLIN)
    assert str(change["SUMMARY"]) == "Moved class"
    exam = by_title["Exam day"]
    assert exam.decoded("DTSTART") == dt.date(2036, 5, 12)
    assert exam.decoded("DTEND") == dt.date(2036, 5, 13)  # exclusive, as RFC 5545 has it
    assert [str(c) for c in cast(Any, exam["CATEGORIES"]).cats] == ["exam"]


async def test_feed_token_is_secret_rotatable_and_revocable(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    assert (await api.get("/api/calendar/feed", ann)).body == {
        "active": False,
        "createdAt": None,
        "lastUsedAt": None,
    }
    await api.post(
        EVENTS,
        ann,
        json={"title": "Ann's secret", "startTime": "2036-03-16T09:00:00Z", "timezone": "UTC"},
    )
    first = await feed_url(api, ann)
    status, body, _ = await fetch(api, first)
    assert status == 200
    assert b"Ann's secret" in body
    assert (await api.get("/api/calendar/feed", ann)).body["lastUsedAt"] is not None
    # Bob's feed shows Bob's calendar only
    status, body, _ = await fetch(api, await feed_url(api, bob))
    assert status == 200
    assert b"Ann's secret" not in body
    # a new token replaces the old one
    second = await feed_url(api, ann)
    assert (await fetch(api, first))[0] == 404
    assert (await fetch(api, second))[0] == 200
    # revoked: gone, and revoking twice is a 404
    assert (await api.delete("/api/calendar/feed", ann)).status == 204
    assert (await fetch(api, second))[0] == 404
    assert (await api.delete("/api/calendar/feed", ann)).status == 404
    assert (await fetch(api, "/api/calendar/feed/guess.ics"))[0] == 404
    assert (await api.post("/api/calendar/feed")).status == 401


ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Example Corp.//CalDAV Client//EN\r
BEGIN:VTIMEZONE\r
TZID:America/New_York\r
BEGIN:STANDARD\r
DTSTART:19701101T020000\r
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r
TZOFFSETFROM:-0400\r
TZOFFSETTO:-0500\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:19700308T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r
TZOFFSETFROM:-0500\r
TZOFFSETTO:-0400\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:seminar-1@example.com\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=America/New_York:20361027T180000\r
DTEND;TZID=America/New_York:20361027T193000\r
RRULE:FREQ=WEEKLY;COUNT=4\r
EXDATE;TZID=America/New_York:20361110T180000\r
SUMMARY:Seminar\r
LOCATION:Hall 2\r
CATEGORIES:MEETING\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:seminar-1@example.com\r
DTSTAMP:20260101T000000Z\r
RECURRENCE-ID;TZID=America/New_York:20361103T180000\r
DTSTART;TZID=America/New_York:20361104T170000\r
DTEND;TZID=America/New_York:20361104T183000\r
SUMMARY:Seminar (Tuesday)\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:holiday@example.com\r
DTSTAMP:20260101T000000Z\r
DTSTART;VALUE=DATE:20361127\r
DTEND;VALUE=DATE:20361129\r
SUMMARY:Thanksgiving break\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:broken@example.com\r
DTSTAMP:20260101T000000Z\r
DTSTART:20361201T100000Z\r
RRULE:FREQ=SOMETIMES\r
SUMMARY:Broken rule\r
END:VEVENT\r
END:VCALENDAR\r
"""


async def test_import_an_ics_file_and_again_without_duplicates(api: Api) -> None:
    ann = await api.register()
    resp = await api.post(
        "/api/calendar/import", ann, data=ICS, headers={"Content-Type": "text/calendar"}
    )
    assert resp.status == 200, resp.body
    assert resp.body["imported"] == 2
    assert resp.body["updated"] == 0
    assert [s["uid"] for s in resp.body["skipped"]] == ["broken@example.com"]
    assert (
        "rrule" in resp.body["skipped"][0]["reason"].lower()
        or "FREQ" in resp.body["skipped"][0]["reason"]
    )
    items = (
        await api.get(
            EVENTS,
            ann,
            params={
                "startDate": "2036-10-01",
                "endDate": "2036-12-31",
                "timezone": "America/New_York",
            },
        )
    ).body["events"]
    assert [(o["title"], o["startTime"], o.get("location")) for o in items] == [
        ("Seminar", "2036-10-27T18:00:00-04:00", "Hall 2"),
        ("Seminar (Tuesday)", "2036-11-04T17:00:00-05:00", "Hall 2"),
        ("Seminar", "2036-11-17T18:00:00-05:00", "Hall 2"),
        ("Thanksgiving break", "2036-11-27T00:00:00-05:00", None),
    ]
    assert items[0]["eventType"] == "meeting"
    assert items[0]["timezone"] == "America/New_York"
    assert items[3]["startDate"] == "2036-11-27"
    assert items[3]["endDate"] == "2036-11-28"
    # the same file again updates in place
    form = aiohttp.FormData()
    form.add_field("file", ICS, filename="cal.ics", content_type="text/calendar")
    again = await api.post("/api/calendar/import", ann, data=form)
    assert again.status == 200
    assert again.body["imported"] == 0
    assert again.body["updated"] == 2
    # and round-trips through the feed
    _, body, _ = await fetch(api, await feed_url(api, ann))
    uids = {str(e["UID"]) for e in icalendar.Calendar.from_ical(body).walk("VEVENT")}
    assert uids == {"seminar-1@example.com", "holiday@example.com"}


async def test_import_refuses_what_is_not_a_calendar(api: Api) -> None:
    ann = await api.register()
    resp = await api.post(
        "/api/calendar/import", ann, data=b"hello", headers={"Content-Type": "text/calendar"}
    )
    assert resp.status == 400
    assert resp.body["error"]["code"] == "invalid_ics"
    resp = await api.post(
        "/api/calendar/import", ann, data=b"", headers={"Content-Type": "text/calendar"}
    )
    assert resp.status == 400
    big = b"X" * (2 * 1024 * 1024 + 10)
    resp = await api.post(
        "/api/calendar/import", ann, data=big, headers={"Content-Type": "text/calendar"}
    )
    assert resp.status == 413
    assert (await api.post("/api/calendar/import", data=ICS)).status == 401


def _ics(events: list[str]) -> bytes:
    body = "".join(events)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n" + body + "END:VCALENDAR\r\n"
    ).encode()


def _vevent(uid: str, start: str, summary: str) -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\n"
        f"SUMMARY:{summary}\r\nEND:VEVENT\r\n"
    )


async def test_two_imports_of_the_same_file_at_once_make_each_event_once(api: Api, db: Any) -> None:
    ann = await api.register()
    for round_ in range(3):  # several rounds: a race shows up in most, not in every one
        data = _ics(
            [
                _vevent(f"lecture-{round_}-{i}@example.com", f"202605{i + 1:02d}T090000Z", f"L{i}")
                for i in range(20)
            ]
        )

        async def upload(data: bytes = data) -> Any:
            return await api.post(
                "/api/calendar/import", ann, data=data, headers={"Content-Type": "text/calendar"}
            )

        results = await asyncio.gather(*(upload() for _ in range(8)))
        assert [r.status for r in results] == [200] * 8, [r.body for r in results]
        assert all(r.body["skipped"] == [] for r in results)
        assert sum(r.body["imported"] for r in results) == 20
        assert sum(r.body["updated"] for r in results) == 7 * 20
    count = await db.fetchval(
        "SELECT count(*) FROM calendar_events WHERE user_id = $1", uuid.UUID(ann.id)
    )
    assert count == 3 * 20


async def test_an_event_that_cannot_be_imported_is_skipped_with_its_reason(api: Api) -> None:
    ann = await api.register()
    await api.patch("/api/auth/me", ann, json={"timezone": "Asia/Tokyo"})
    data = _ics(
        [
            _vevent("ancient@example.com", "00010101T000000", "Year one, floating"),
            _vevent("far@example.com", "99991231T230000Z", "Year 9999"),
            _vevent("fine@example.com", "20260512T090000", "Fine"),
        ]
    )
    resp = await api.post(
        "/api/calendar/import", ann, data=data, headers={"Content-Type": "text/calendar"}
    )
    assert resp.status == 200, resp.body
    assert resp.body["imported"] == 1
    reasons = {s["uid"]: s["reason"] for s in resp.body["skipped"]}
    assert set(reasons) == {"ancient@example.com", "far@example.com"}
    assert all("1900 and 2200" in r for r in reasons.values()), reasons
    items = (
        await api.get(EVENTS, ann, params={"startDate": "2026-05-12", "endDate": "2026-05-12"})
    ).body["events"]
    assert [(i["title"], i["startTime"]) for i in items] == [("Fine", "2026-05-12T09:00:00+09:00")]


async def test_an_import_stops_adding_when_the_calendar_is_full(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calendar_feed, "MAX_EVENTS_PER_USER", 2)
    monkeypatch.setattr(calendar_service, "MAX_EVENTS_PER_USER", 2)
    ann = await api.register()
    data = _ics(
        [_vevent(f"e{i}@example.com", f"2026050{i + 1}T090000Z", f"E{i}") for i in range(3)]
    )
    resp = await api.post(
        "/api/calendar/import", ann, data=data, headers={"Content-Type": "text/calendar"}
    )
    assert resp.status == 200
    assert resp.body["imported"] == 2
    assert [s["uid"] for s in resp.body["skipped"]] == ["e2@example.com"]
    assert "at most 2 events" in resp.body["skipped"][0]["reason"]
    # updating what was imported before still works on a full calendar
    again = await api.post(
        "/api/calendar/import", ann, data=data, headers={"Content-Type": "text/calendar"}
    )
    assert again.body["imported"] == 0
    assert again.body["updated"] == 2


async def test_the_feed_carries_a_bounded_number_of_events(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calendar_feed, "FEED_MAX_EVENTS", 2)
    ann = await api.register()
    for day in (10, 11, 12):
        resp = await api.post(
            EVENTS,
            ann,
            json={
                "title": f"May {day}",
                "startTime": f"2036-05-{day}T09:00:00Z",
                "timezone": "UTC",
            },
        )
        assert resp.status == 201
    status, body, _ = await fetch(api, await feed_url(api, ann))
    assert status == 200
    titles = sorted(str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(body).walk("VEVENT"))
    assert titles == ["May 11", "May 12"]  # the latest ones
