"""The calendar through HTTP: events, recurring events across DST, occurrence edits, the range
query with study sessions, and refusals naming the field."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest

from peerspark_rt.calendar import events as calendar_service
from tests.helpers import Api, User

EVENTS = "/api/calendar/events"


async def create(api: Api, user: User, **fields: Any) -> dict[str, Any]:
    body = {
        "title": "Linear algebra",
        "startTime": "2026-03-16T09:00:00",
        "timezone": "Europe/Berlin",
        **fields,
    }
    resp = await api.post(EVENTS, user, json=body)
    assert resp.status == 201, resp.body
    result: dict[str, Any] = resp.body
    return result


async def occurrences(
    api: Api, user: User, start: str, end: str, **params: str
) -> list[dict[str, Any]]:
    query = {"startDate": start, "endDate": end, **params}
    resp = await api.get(EVENTS, user, params=query)
    assert resp.status == 200, resp.body
    items: list[dict[str, Any]] = resp.body["events"]
    return items


async def test_create_read_update_delete_an_event(api: Api) -> None:
    ann = await api.register()
    event = await create(
        api,
        ann,
        endTime="2026-03-16T10:30:00",
        eventType="exam",
        location="Room 101",
        reminderSettings=[{"minutesBefore": 10, "channels": ["in_app", "email"]}],
    )
    assert event["startTime"] == "2026-03-16T09:00:00+01:00"
    assert event["endTime"] == "2026-03-16T10:30:00+01:00"
    assert event["timezone"] == "Europe/Berlin"
    assert event["eventType"] == "exam"
    assert event["isRecurring"] is False
    assert event["reminderSettings"] == [{"minutesBefore": 10, "channels": ["email", "in_app"]}]

    got = await api.get(f"{EVENTS}/{event['id']}", ann)
    assert got.status == 200
    assert got.body == event

    moved = await api.put(
        f"{EVENTS}/{event['id']}", ann, json={"startTime": "2026-03-17T14:00:00+01:00"}
    )
    assert moved.status == 200, moved.body
    assert moved.body["startTime"] == "2026-03-17T14:00:00+01:00"
    assert moved.body["endTime"] == "2026-03-17T15:30:00+01:00"  # the duration is kept
    assert moved.body["location"] == "Room 101"

    assert (await api.delete(f"{EVENTS}/{event['id']}", ann)).status == 204
    assert (await api.get(f"{EVENTS}/{event['id']}", ann)).status == 404


async def test_events_are_private(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    event = await create(api, ann)
    path = f"{EVENTS}/{event['id']}"
    assert (await api.get(path, bob)).status == 404
    assert (await api.put(path, bob, json={"title": "mine now"})).status == 404
    assert (await api.delete(path, bob)).status == 404
    assert (await api.get(path)).status == 401
    assert await occurrences(api, bob, "2026-03-01", "2026-03-31") == []
    assert (await api.get(f"{EVENTS}/not-a-uuid", ann)).status == 404
    assert (await api.get(f"{EVENTS}/{uuid.uuid4()}", ann)).status == 404


async def test_bad_input_is_refused_naming_the_field(api: Api) -> None:
    ann = await api.register()
    base = {"title": "x", "startTime": "2026-03-16T09:00:00", "timezone": "Europe/Berlin"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "CEST+2"}, "timezone"),
        ({"endTime": "2026-03-16T08:00:00"}, "endTime"),
        ({"startTime": "next tuesday"}, "startTime"),
        ({"title": "   "}, "title"),
        ({"eventType": "party"}, "eventType"),
        ({"recurrencePattern": {"rrule": "FREQ=SOMETIMES"}}, "recurrencePattern.rrule"),
        ({"recurrencePattern": "FREQ=DAILY;COUNT=2;UNTIL=20270101"}, "recurrencePattern.rrule"),
        ({"isRecurring": True}, "recurrencePattern"),
        ({"reminderSettings": [{"minutesBefore": -5}]}, "reminderSettings[0].minutesBefore"),
        (
            {"reminderSettings": [{"minutesBefore": 5, "channels": ["sms"]}]},
            "reminderSettings[0].channels",
        ),
        ({"relatedPodId": str(uuid.uuid4())}, "relatedPodId"),
        ({"relatedSessionId": str(uuid.uuid4())}, "relatedSessionId"),
        ({"colour": "blue"}, "colour"),
    ]
    for change, field in cases:
        resp = await api.post(EVENTS, ann, json={**base, **change})
        assert resp.status == 422, (change, resp.body)
        assert resp.error_field() == field, (change, resp.body)
    event = await create(api, ann, endTime="2026-03-16T10:00:00")
    resp = await api.put(
        f"{EVENTS}/{event['id']}", ann, json={"endTime": "2026-03-15T10:00:00+01:00"}
    )
    assert resp.status == 422
    assert resp.error_field() == "endTime"
    for params, field in (
        ({"startDate": "2026-03-10", "endDate": "2026-03-01"}, "endDate"),
        ({"startDate": "2026-01-01", "endDate": "2028-01-01"}, "endDate"),
        ({"startDate": "soon", "endDate": "2026-03-01"}, "startDate"),
        (
            {"startDate": "2026-03-01", "endDate": "2026-03-02", "timezone": "Nowhere/Land"},
            "timezone",
        ),
        ({"startDate": "2026-03-01", "endDate": "2026-03-02", "eventTypes": "party"}, "eventTypes"),
        ({"startDate": "2026-03-01"}, "endDate"),
    ):
        resp = await api.get(EVENTS, ann, params=params)
        assert resp.status == 422, (params, resp.body)
        assert resp.error_field() == field, (params, resp.body)


async def test_weekly_berlin_class_stays_at_nine_across_dst_for_viewers_anywhere(api: Api) -> None:
    ann = await api.register()
    await create(
        api, ann, endTime="2026-03-16T10:30:00", recurrencePattern={"rrule": "FREQ=WEEKLY;BYDAY=MO"}
    )
    berlin = await occurrences(api, ann, "2026-03-15", "2026-04-12", timezone="Europe/Berlin")
    assert [o["startTime"] for o in berlin] == [
        "2026-03-16T09:00:00+01:00",
        "2026-03-23T09:00:00+01:00",
        "2026-03-30T09:00:00+02:00",
        "2026-04-06T09:00:00+02:00",
    ]
    assert all(o["isRecurring"] and o["source"] == "event" for o in berlin)
    assert berlin[2]["recurrenceId"] == "2026-03-30T07:00:00Z"
    # A viewer in New York sees the same instants in their own zone. New York changed to summer
    # time on 8 March, Berlin on 29 March: for two weeks the gap is 5 hours, then 6 again.
    ny = await occurrences(api, ann, "2026-03-15", "2026-04-12", timezone="America/New_York")
    assert [o["startTime"][11:16] for o in ny] == ["04:00", "04:00", "03:00", "03:00"]


async def test_new_york_daily_standup_across_the_autumn_change(api: Api) -> None:
    bob = await api.register()
    await create(
        api,
        bob,
        title="Stand-up",
        startTime="2026-10-30T08:30:00",
        endTime="2026-10-30T08:45:00",
        timezone="America/New_York",
        recurrencePattern="FREQ=DAILY;COUNT=5",
    )
    items = await occurrences(api, bob, "2026-10-01", "2026-11-30", timezone="UTC")
    assert [o["startTime"] for o in items] == [
        "2026-10-30T12:30:00Z",
        "2026-10-31T12:30:00Z",
        "2026-11-01T13:30:00Z",
        "2026-11-02T13:30:00Z",
        "2026-11-03T13:30:00Z",
    ]


async def test_all_day_events_keep_their_date_in_every_time_zone(api: Api) -> None:
    ann = await api.register()
    event = await create(
        api, ann, title="Exam week", startTime="2026-05-11", endTime="2026-05-13", isAllDay=True
    )
    assert event["startTime"] == "2026-05-11"
    assert event["endTime"] == "2026-05-13"
    for tz in ("Pacific/Auckland", "America/Los_Angeles", "UTC"):
        items = await occurrences(api, ann, "2026-05-12", "2026-05-12", timezone=tz)
        assert len(items) == 1, tz
        assert items[0]["startDate"] == "2026-05-11"
        assert items[0]["endDate"] == "2026-05-13"
        assert items[0]["isAllDay"] is True
        assert await occurrences(api, ann, "2026-05-14", "2026-05-20", timezone=tz) == []


async def test_edit_and_cancel_single_occurrences(api: Api) -> None:
    ann = await api.register()
    event = await create(
        api, ann, endTime="2026-03-16T10:00:00", recurrencePattern="FREQ=WEEKLY;COUNT=4"
    )
    path = f"{EVENTS}/{event['id']}"
    # move the 23 March class to Tuesday afternoon and rename it
    resp = await api.put(
        path,
        ann,
        params={"recurrenceId": "2026-03-23T09:00:00+01:00", "scope": "this"},
        json={"title": "Linear algebra (moved)", "startTime": "2026-03-24T15:00:00"},
    )
    assert resp.status == 200, resp.body
    assert list(resp.body["recurrencePattern"]["overrides"]) == ["2026-03-23T08:00:00Z"]
    # cancel the 30 March one
    resp = await api.delete(path, ann, params={"recurrenceId": "2026-03-30T07:00:00Z"})
    assert resp.status == 204
    items = await occurrences(api, ann, "2026-03-01", "2026-04-30", timezone="Europe/Berlin")
    assert [(o["startTime"], o["title"], o["isException"]) for o in items] == [
        ("2026-03-16T09:00:00+01:00", "Linear algebra", False),
        ("2026-03-24T15:00:00+01:00", "Linear algebra (moved)", True),
        ("2026-04-06T09:00:00+02:00", "Linear algebra", False),
    ]
    assert items[1]["endTime"] == "2026-03-24T16:00:00+01:00"
    # an occurrence that does not exist, or was cancelled, is 404; a non-repeating event 422
    for rid in ("2026-03-25T08:00:00Z", "2026-03-30T07:00:00Z"):
        resp = await api.put(path, ann, params={"recurrenceId": rid}, json={"title": "x"})
        assert resp.status == 404, rid
    resp = await api.put(
        path, ann, params={"recurrenceId": "2026-04-06T07:00:00Z"}, json={"eventType": "exam"}
    )
    assert resp.status == 422
    assert resp.error_field() == "eventType"
    resp = await api.put(path, ann, params={"scope": "following"}, json={"title": "x"})
    assert resp.status == 422
    assert resp.error_field() == "recurrenceId"
    single = await create(api, ann, title="once")
    resp = await api.delete(
        f"{EVENTS}/{single['id']}", ann, params={"recurrenceId": "2026-03-16T08:00:00Z"}
    )
    assert resp.status == 422
    assert resp.error_field() == "recurrenceId"


async def test_this_and_following_splits_the_series(api: Api) -> None:
    ann = await api.register()
    event = await create(
        api,
        ann,
        endTime="2026-03-16T10:00:00",
        recurrencePattern={"rrule": "FREQ=WEEKLY;COUNT=6", "exdates": ["2026-03-23T08:00:00Z"]},
        reminderSettings=[{"minutesBefore": 15}],
    )
    path = f"{EVENTS}/{event['id']}"
    # from 6 April on, the class is at 11:00 in room B
    resp = await api.put(
        path,
        ann,
        params={"recurrenceId": "2026-04-06T07:00:00Z", "scope": "following"},
        json={"startTime": "2026-04-06T11:00:00", "location": "Room B"},
    )
    assert resp.status == 200, resp.body
    tail = resp.body
    assert tail["id"] != event["id"]
    assert tail["recurrencePattern"]["rrule"] == "FREQ=WEEKLY;COUNT=3"
    assert tail["reminderSettings"] == [{"minutesBefore": 15, "channels": ["in_app"]}]
    head = (await api.get(path, ann)).body
    assert head["recurrencePattern"]["rrule"] == "FREQ=WEEKLY;UNTIL=20260406T065959Z"
    assert head["recurrencePattern"]["exdates"] == ["2026-03-23T08:00:00Z"]
    items = await occurrences(api, ann, "2026-03-01", "2026-05-31", timezone="Europe/Berlin")
    assert [(o["startTime"], o.get("location")) for o in items] == [
        ("2026-03-16T09:00:00+01:00", None),
        ("2026-03-30T09:00:00+02:00", None),
        ("2026-04-06T11:00:00+02:00", "Room B"),
        ("2026-04-13T11:00:00+02:00", "Room B"),
        ("2026-04-20T11:00:00+02:00", "Room B"),
    ]
    # deleting "this and following" from 13 April leaves one occurrence of the tail
    resp = await api.delete(
        f"{EVENTS}/{tail['id']}",
        ann,
        params={"recurrenceId": "2026-04-13T09:00:00Z", "scope": "following"},
    )
    assert resp.status == 204
    items = await occurrences(api, ann, "2026-04-01", "2026-05-31", timezone="Europe/Berlin")
    assert [o["startTime"] for o in items] == ["2026-04-06T11:00:00+02:00"]
    # ...and from the first occurrence on, the whole series goes
    resp = await api.delete(
        f"{EVENTS}/{tail['id']}",
        ann,
        params={"recurrenceId": "2026-04-06T09:00:00Z", "scope": "following"},
    )
    assert resp.status == 204
    assert (await api.get(f"{EVENTS}/{tail['id']}", ann)).status == 404


async def _session(
    db: Any, organizer: str, title: str, start: dt.datetime, **cols: Any
) -> uuid.UUID:
    values = {
        "title": title,
        "session_type": "group",
        "organizer_id": uuid.UUID(organizer),
        "start_time": start,
        "end_time": start + dt.timedelta(hours=1),
        "timezone": "Europe/Berlin",
        **cols,
    }
    names = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    session_id: uuid.UUID = await db.fetchval(
        f"INSERT INTO study_sessions ({names}) VALUES ({marks}) RETURNING id",  # noqa: S608 (the test's own column names)
        *values.values(),
    )
    return session_id


async def test_range_includes_sessions_organized_joined_and_of_my_pods(api: Api, db: Any) -> None:
    ann, bob, eve = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(ann, isPublic=True)
    assert (await api.post(f"/api/pods/{pod['id']}/join", bob, json={})).status == 200
    t = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
    organized = await _session(db, bob.id, "Bob's review", t)
    joined = await _session(db, eve.id, "Eve's group", t + dt.timedelta(hours=2))
    await db.execute(
        "INSERT INTO session_participants (session_id, user_id, status)"
        " VALUES ($1, $2, 'accepted')",
        joined,
        uuid.UUID(bob.id),
    )
    declined = await _session(db, eve.id, "Declined one", t + dt.timedelta(hours=3))
    await db.execute(
        "INSERT INTO session_participants (session_id, user_id, status)"
        " VALUES ($1, $2, 'declined')",
        declined,
        uuid.UUID(bob.id),
    )
    in_pod = await _session(
        db,
        ann.id,
        "Pod weekly",
        t + dt.timedelta(hours=4),
        pod_id=uuid.UUID(pod["id"]),
        session_type="pod",
        is_recurring=True,
        recurrence_pattern=json.dumps({"rrule": "FREQ=WEEKLY;COUNT=3"}),
    )
    await _session(db, eve.id, "Someone else's", t)
    await _session(db, bob.id, "Cancelled", t, status="cancelled")
    await create(api, bob, title="My exam", startTime="2026-06-02T10:00:00", eventType="exam")

    items = await occurrences(api, bob, "2026-06-01", "2026-06-30", timezone="Europe/Berlin")
    titles = [(o["title"], o["source"], o.get("role")) for o in items]
    assert titles == [
        ("Bob's review", "session", "organizer"),
        ("Eve's group", "session", "participant"),
        ("Pod weekly", "session", "pod_member"),
        ("My exam", "event", "owner"),
        ("Pod weekly", "session", "pod_member"),
        ("Pod weekly", "session", "pod_member"),
    ]
    weekly = [o for o in items if o["id"] == str(in_pod)]
    assert [o["startTime"] for o in weekly] == [
        "2026-06-01T14:00:00+02:00",
        "2026-06-08T14:00:00+02:00",
        "2026-06-15T14:00:00+02:00",
    ]
    assert weekly[0]["podId"] == pod["id"]
    assert weekly[0]["eventType"] == "session"
    assert str(organized) in {o["id"] for o in items}
    # filters
    only_exams = await occurrences(api, bob, "2026-06-01", "2026-06-30", eventTypes="exam")
    assert [o["title"] for o in only_exams] == ["My exam"]
    only_sessions = await occurrences(api, bob, "2026-06-01", "2026-06-30", eventTypes="session")
    assert len(only_sessions) == 5
    # Eve is in no pod with Bob: she sees only her own sessions
    eve_items = await occurrences(api, eve, "2026-06-01", "2026-06-30")
    assert {o["title"] for o in eve_items} == {"Eve's group", "Declined one", "Someone else's"}
    # an event may point at a session its owner can see, not at others
    resp = await api.post(
        EVENTS,
        bob,
        json={
            "title": "prep",
            "startTime": "2026-06-01T07:00:00Z",
            "timezone": "UTC",
            "relatedSessionId": str(joined),
        },
    )
    assert resp.status == 201
    assert resp.body["relatedSessionId"] == str(joined)


# --------------------------------------------------------------------------- limits


async def test_dates_outside_the_supported_years_are_refused_naming_the_field(api: Api) -> None:
    ann = await api.register()
    far = await api.get(EVENTS, ann, params={"startDate": "9999-12-30", "endDate": "9999-12-31"})
    assert far.status == 422, far.body
    assert far.error_field() == "startDate", far.body
    far = await api.get(EVENTS, ann, params={"startDate": "2026-12-30", "endDate": "9999-12-31"})
    assert far.status == 422, far.body
    assert far.error_field() == "endDate", far.body
    cases: list[tuple[dict[str, Any], str]] = [
        ({"startTime": "0001-01-01T00:00:00+09:00", "timezone": "UTC"}, "startTime"),
        ({"startTime": "2026-01-01T09:00:00Z", "endTime": "9999-12-31T23:59:59-05:00"}, "endTime"),
        (
            {
                "startTime": "9990-01-01T00:00:00Z",
                "isRecurring": True,
                "recurrencePattern": "FREQ=YEARLY;COUNT=2",
            },
            "startTime",
        ),
        (
            {"recurrencePattern": "FREQ=DAILY;UNTIL=99991231", "timezone": "America/New_York"},
            "recurrencePattern.rrule",
        ),
        (
            {
                "recurrencePattern": {
                    "rrule": "FREQ=DAILY",
                    "overrides": {"2026-03-17T08:00:00Z": {"start": "0001-01-01T00:00:00+05:00"}},
                }
            },
            "recurrencePattern.overrides.start",
        ),
    ]
    base = {"title": "x", "startTime": "2026-03-16T09:00:00", "timezone": "Europe/Berlin"}
    for change, field in cases:
        resp = await api.post(EVENTS, ann, json={**base, **change})
        assert resp.status == 422, (change, resp.body)
        assert resp.error_field() == field, (change, resp.body)


async def test_rules_firing_more_than_48_times_a_day_are_refused(api: Api) -> None:
    ann = await api.register()
    every_minute = ",".join(str(m) for m in range(60))
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    until = (start + dt.timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
    for rule, fragment in (
        (f"FREQ=HOURLY;BYMINUTE={every_minute};BYSECOND=0,30;UNTIL={until}", "BYSECOND"),
        (f"FREQ=HOURLY;BYMINUTE={every_minute};UNTIL={until}", "1440 occurrences a day"),
    ):
        resp = await api.post(
            EVENTS,
            ann,
            json={
                "title": "spam",
                "startTime": start.isoformat(),
                "timezone": "UTC",
                "recurrencePattern": rule,
            },
        )
        assert resp.status == 422, resp.body
        assert resp.error_field() == "recurrencePattern.rrule", resp.body
        assert fragment in resp.body["error"]["details"][0]["reason"]


async def test_a_range_carries_at_most_2000_occurrences_the_earliest_ones(api: Api) -> None:
    ann = await api.register()
    # three series, 24 a day each, for 30 days: 2160 occurrences
    for minute in (0, 20, 40):
        await create(
            api,
            ann,
            title=f"Drill :{minute:02d}",
            startTime=f"2026-03-01T00:{minute:02d}:00Z",
            timezone="UTC",
            recurrencePattern="FREQ=HOURLY",
        )
    resp = await api.get(
        EVENTS, ann, params={"startDate": "2026-03-01", "endDate": "2026-03-30", "timezone": "UTC"}
    )
    assert resp.status == 200
    items = resp.body["events"]
    assert resp.body["truncated"] is True
    assert len(items) == 2000
    starts = [i["startTime"] for i in items]
    assert starts == sorted(starts)
    assert starts[0] == "2026-03-01T00:00:00Z"
    assert starts[-1] == "2026-03-28T18:20:00Z"
    assert len({i["occurrenceId"] for i in items}) == 2000
    # a range that holds fewer is whole
    week = await api.get(
        EVENTS, ann, params={"startDate": "2026-03-01", "endDate": "2026-03-07", "timezone": "UTC"}
    )
    assert week.body["truncated"] is False
    assert len(week.body["events"]) == 7 * 72


async def test_a_calendar_holds_a_bounded_number_of_events(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calendar_service, "MAX_EVENTS_PER_USER", 3)
    ann, bob = await api.register(), await api.register()
    weekly = await create(api, ann, title="Weekly", recurrencePattern="FREQ=WEEKLY")
    await create(api, ann, title="Once")
    # two at once for the last place: exactly one gets it
    both = await asyncio.gather(*(api.post(EVENTS, ann, json=_body(f"Race {i}")) for i in range(2)))
    assert sorted(r.status for r in both) == [201, 409]
    full = next(r for r in both if r.status == 409).body["error"]
    assert full["code"] == "calendar_full"
    assert "at most 3 events" in full["message"]
    assert (await api.post(EVENTS, ann, json=_body("One more"))).status == 409
    # splitting a series makes one more event: refused too, and the series is left whole
    split = await api.put(
        f"{EVENTS}/{weekly['id']}",
        ann,
        params={"recurrenceId": "2026-03-30T07:00:00Z", "scope": "following"},
        json={"title": "Weekly, later"},
    )
    assert split.status == 409, split.body
    assert (await api.get(f"{EVENTS}/{weekly['id']}", ann)).body == weekly
    # others are not affected, and deleting makes room
    assert (await api.post(EVENTS, bob, json=_body("Bob's"))).status == 201
    assert (await api.delete(f"{EVENTS}/{weekly['id']}", ann)).status == 204
    assert (await api.post(EVENTS, ann, json=_body("Now it fits"))).status == 201


def _body(title: str) -> dict[str, Any]:
    return {"title": title, "startTime": "2026-03-16T09:00:00", "timezone": "Europe/Berlin"}
