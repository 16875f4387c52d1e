"""Study sessions through HTTP: scheduling, visibility, participation, the status machine,
attendance, and history."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from tests.helpers import Api, User

MISSING = "00000000-0000-0000-0000-000000000000"


def _times(hours_from_now: float = 1, length_hours: float = 1) -> dict[str, str]:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours_from_now)
    end = start + dt.timedelta(hours=length_hours)
    return {"startTime": start.isoformat(), "endTime": end.isoformat()}


async def create_session(api: Api, organizer: User, **fields: Any) -> dict[str, Any]:
    body = {"title": "Exam prep", "sessionType": "group", **_times(), **fields}
    resp = await api.post("/api/sessions", organizer, json=body)
    assert resp.status == 201, resp.body
    result: dict[str, Any] = resp.body
    return result


async def test_study_session_integration(api: Api) -> None:
    """The spec's "Study Session Integration" scenario, over HTTP and a live socket."""
    organizer, participant = await api.register(), await api.register()
    pod = await api.create_pod(organizer)
    await api.post(f"/api/pods/{pod['id']}/join", participant)
    session = await create_session(
        api, organizer, title="Test Study Session", sessionType="pod", podId=pod["id"]
    )
    assert session["status"] == "scheduled"
    assert session["organizerId"] == organizer.id
    assert session["liveRoom"] == f"session:{session['id']}"
    sid = session["id"]

    joined = await api.post(f"/api/sessions/{sid}/join", participant)
    assert joined.status == 200
    assert joined.body["currentParticipants"] == 2
    people = await api.get(f"/api/sessions/{sid}/participants", organizer)
    assert {p["userId"]: p["role"] for p in people.body["participants"]} == {
        organizer.id: "organizer",
        participant.id: "participant",
    }

    started = await api.post(f"/api/sessions/{sid}/start", organizer)
    assert started.status == 200
    assert started.body["status"] == "ongoing"

    live = await api.live(participant)
    await live.join(f"session:{sid}")
    ack = await live.send(f"session:{sid}", "Hello everyone!")
    assert ack.seq == 1

    ended = await api.post(f"/api/sessions/{sid}/end", organizer)
    assert ended.status == 200
    assert ended.body["status"] == "completed"
    completed = await api.get(f"/api/sessions/{sid}", organizer)
    assert completed.body["status"] == "completed"
    assert completed.body["lastMessageSeq"] == 1
    history = await api.get(f"/api/sessions/{sid}/messages", organizer)
    assert [(m["seq"], m["body"], m["sender"]["id"]) for m in history.body["messages"]] == [
        (1, "Hello everyone!", participant.id)
    ]


async def test_create_validation_names_fields(api: Api) -> None:
    user = await api.register()
    pod = await api.create_pod(user)
    base = {"title": "x", "sessionType": "group", **_times()}
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**base, "title": ""}, "title"),
        ({**base, "sessionType": "party"}, "sessionType"),
        ({**base, "endTime": start.isoformat(), "startTime": start.isoformat()}, "endTime"),
        ({**base, "startTime": "2026-12-01T10:00:00"}, "startTime"),
        ({**base, "startTime": "tomorrow"}, "startTime"),
        ({**base, "timezone": "Atlantis/Capital"}, "timezone"),
        ({**base, "maxParticipants": 0}, "maxParticipants"),
        ({**base, "sessionType": "pod"}, "podId"),
        ({**base, "sessionType": "pod", "podId": MISSING}, "podId"),
        ({**base, "podId": pod["id"]}, "podId"),
        ({**base, "isRecurring": True}, "recurrencePattern"),
    ]
    for body, field in cases:
        resp = await api.post("/api/sessions", user, json=body)
        assert resp.status == 422, body
        assert resp.error_field() == field, (body, resp.body)


async def test_pod_sessions_are_for_pod_members(api: Api) -> None:
    owner, member, outsider = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner, isPublic=False)
    await api.post(f"/api/pods/{pod['id']}/invite", owner, json={"userId": member.id})
    await api.post(f"/api/pods/{pod['id']}/join", member)
    session = await create_session(api, owner, sessionType="pod", podId=pod["id"])
    sid = session["id"]
    assert (await api.get(f"/api/sessions/{sid}", outsider)).status == 404
    assert (await api.post(f"/api/sessions/{sid}/join", outsider)).status == 404
    assert (await api.post(f"/api/sessions/{sid}/join", member)).status == 200
    listing = await api.get(f"/api/sessions?podId={pod['id']}", outsider)
    assert listing.body["total"] == 0
    # an outsider cannot schedule a session in the pod either
    resp = await api.post(
        "/api/sessions",
        outsider,
        json={"title": "x", "sessionType": "pod", "podId": pod["id"], **_times()},
    )
    assert resp.status == 422
    assert resp.error_field() == "podId"


async def test_individual_sessions_are_private(api: Api) -> None:
    me, other = await api.register(), await api.register()
    session = await create_session(api, me, sessionType="individual")
    assert (await api.get(f"/api/sessions/{session['id']}", other)).status == 404
    assert (await api.get(f"/api/sessions/{session['id']}", me)).status == 200


async def test_max_participants_holds_under_concurrent_joins(api: Api, db: Any) -> None:
    organizer = await api.register()
    session = await create_session(api, organizer, maxParticipants=4)
    students = await asyncio.gather(*(api.register() for _ in range(10)))
    results = await asyncio.gather(
        *(api.post(f"/api/sessions/{session['id']}/join", s) for s in students)
    )
    assert sorted(r.status for r in results) == [200] * 3 + [409] * 7
    assert {r.body["error"]["code"] for r in results if r.status == 409} == {"session_full"}
    stored, actual = await db.fetchrow(
        """SELECT s.current_participants,
                  (SELECT count(*) FROM session_participants p WHERE p.session_id = s.id)
           FROM study_sessions s WHERE s.id = $1::uuid""",
        session["id"],
    )
    assert stored == actual == 4


async def test_status_moves_only_forward_and_only_by_the_organizer(api: Api) -> None:
    organizer, participant = await api.register(), await api.register()
    session = await create_session(api, organizer)
    sid = session["id"]
    await api.post(f"/api/sessions/{sid}/join", participant)
    assert (await api.post(f"/api/sessions/{sid}/start", participant)).status == 403
    not_yet = await api.post(f"/api/sessions/{sid}/end", organizer)
    assert not_yet.status == 409
    assert not_yet.body["error"]["code"] == "invalid_transition"
    assert (await api.post(f"/api/sessions/{sid}/start", organizer)).status == 200
    assert (await api.post(f"/api/sessions/{sid}/start", organizer)).status == 409
    assert (await api.post(f"/api/sessions/{sid}/end", organizer)).status == 200
    for action in ("start", "end"):
        assert (await api.post(f"/api/sessions/{sid}/{action}", organizer)).status == 409
    assert (await api.delete(f"/api/sessions/{sid}", organizer)).status == 409
    late = await api.post(f"/api/sessions/{sid}/join", await api.register())
    assert late.status == 409
    assert late.body["error"]["code"] == "session_closed"
    edit = await api.put(f"/api/sessions/{sid}", organizer, json={"title": "again"})
    assert edit.status == 409


async def test_cancel_and_edit(api: Api) -> None:
    organizer, participant = await api.register(), await api.register()
    session = await create_session(api, organizer)
    sid = session["id"]
    await api.post(f"/api/sessions/{sid}/join", participant)
    assert (
        await api.put(f"/api/sessions/{sid}", participant, json={"title": "mine"})
    ).status == 403
    edited = await api.put(
        f"/api/sessions/{sid}", organizer, json={"title": "Calculus II", "tags": ["Calc"]}
    )
    assert edited.status == 200
    assert edited.body["title"] == "Calculus II"
    assert edited.body["tags"] == ["calc"]
    bad = await api.put(f"/api/sessions/{sid}", organizer, json={"maxParticipants": 1})
    assert bad.status == 422
    assert bad.error_field() == "maxParticipants"
    bad = await api.put(
        f"/api/sessions/{sid}",
        organizer,
        json={"endTime": (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()},
    )
    assert bad.status == 422
    assert bad.error_field() == "endTime"
    assert (await api.delete(f"/api/sessions/{sid}", participant)).status == 403
    cancelled = await api.delete(f"/api/sessions/{sid}", organizer)
    assert cancelled.status == 200
    assert cancelled.body["status"] == "cancelled"
    assert (await api.put(f"/api/sessions/{MISSING}", organizer, json={"title": "x"})).status == 404


async def test_leave_rules(api: Api) -> None:
    organizer, participant = await api.register(), await api.register()
    session = await create_session(api, organizer)
    sid = session["id"]
    assert (await api.delete(f"/api/sessions/{sid}/leave", participant)).status == 409
    await api.post(f"/api/sessions/{sid}/join", participant)
    assert (await api.delete(f"/api/sessions/{sid}/leave", participant)).status == 204
    assert (await api.get(f"/api/sessions/{sid}", organizer)).body["currentParticipants"] == 1
    organizer_leaves = await api.delete(f"/api/sessions/{sid}/leave", organizer)
    assert organizer_leaves.status == 409
    assert organizer_leaves.body["error"]["code"] == "organizer_cannot_leave"


async def test_listing_filters(api: Api) -> None:
    user = await api.register()
    pod = await api.create_pod(user)
    soon = await create_session(api, user, **_times(1))
    later = await create_session(api, user, sessionType="pod", podId=pod["id"], **_times(48))
    await api.post(f"/api/sessions/{soon['id']}/start", user)
    mine = await api.get("/api/sessions?limit=100", user)
    ids = [s["id"] for s in mine.body["sessions"]]
    assert ids.index(soon["id"]) < ids.index(later["id"])
    by_pod = await api.get(f"/api/sessions?podId={pod['id']}", user)
    assert [s["id"] for s in by_pod.body["sessions"]] == [later["id"]]
    by_status = await api.get("/api/sessions?status=ongoing&type=group&limit=100", user)
    assert soon["id"] in {s["id"] for s in by_status.body["sessions"]}
    window_end = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)).isoformat()
    window = await api.get("/api/sessions", user, params={"endDate": window_end, "limit": 100})
    window_ids = {s["id"] for s in window.body["sessions"]}
    assert soon["id"] in window_ids
    assert later["id"] not in window_ids
    for query, field in [
        ("status=done", "status"),
        ("type=x", "type"),
        ("limit=0", "limit"),
        ("startDate=yesterday", "startDate"),
        ("podId=nope", "podId"),
    ]:
        bad = await api.get(f"/api/sessions?{query}", user)
        assert bad.status == 422, query
        assert bad.error_field() == field, query


async def test_attendance_comes_from_live_presence(api: Api, db: Any) -> None:
    organizer, student = await api.register(), await api.register()
    session = await create_session(api, organizer)
    sid = session["id"]
    await api.post(f"/api/sessions/{sid}/join", student)
    await api.post(f"/api/sessions/{sid}/start", organizer)
    phone = await api.live(student)
    laptop = await api.live(student)
    await phone.join(f"session:{sid}")
    await laptop.join(f"session:{sid}")

    async def row() -> Any:
        return await db.fetchrow(
            "SELECT status, joined_at, left_at, present_since, attendance_seconds,"
            " attendance_duration FROM session_participants"
            " WHERE session_id = $1::uuid AND user_id = $2::uuid",
            sid,
            student.id,
        )

    for _ in range(50):
        if (await row())["present_since"] is not None:
            break
        await asyncio.sleep(0.05)
    present = await row()
    assert present["status"] == "attended"
    assert present["joined_at"] is not None
    people = await api.get(f"/api/sessions/{sid}/participants", organizer)
    assert {p["userId"]: p["present"] for p in people.body["participants"]}[student.id] is True

    await phone.close()  # one device leaves: still present
    await asyncio.sleep(0.3)
    assert (await row())["present_since"] is not None
    await db.execute(  # pretend they stayed 90 seconds
        "UPDATE session_participants SET present_since = present_since - interval '90 seconds'"
        " WHERE session_id = $1::uuid AND user_id = $2::uuid",
        sid,
        student.id,
    )
    await laptop.close()  # the last device leaves: the interval is recorded
    for _ in range(50):
        if (await row())["present_since"] is None:
            break
        await asyncio.sleep(0.05)
    left = await row()
    assert left["left_at"] is not None
    assert 90 <= left["attendance_seconds"] < 100
    assert left["attendance_duration"] == 2  # minutes, rounded up

    await api.post(f"/api/sessions/{sid}/end", organizer)
    organizer_row = await db.fetchrow(
        "SELECT status FROM session_participants"
        " WHERE session_id = $1::uuid AND user_id = $2::uuid",
        sid,
        organizer.id,
    )
    assert organizer_row["status"] == "missed"  # accepted but never came


async def test_history_pages_by_sequence(api: Api) -> None:
    organizer, outsider = await api.register(), await api.register()
    session = await create_session(api, organizer)
    sid = session["id"]
    for i in range(1, 8):
        resp = await api.post(f"/api/sessions/{sid}/messages", organizer, json={"content": f"m{i}"})
        assert resp.status == 201
        assert resp.body["seq"] == i
    latest = await api.get(f"/api/sessions/{sid}/messages?limit=3", organizer)
    assert [m["seq"] for m in latest.body["messages"]] == [5, 6, 7]
    assert latest.body["lastSeq"] == 7
    assert latest.body["hasMore"] is False
    older = await api.get(f"/api/sessions/{sid}/messages?before=5&limit=3", organizer)
    assert [m["seq"] for m in older.body["messages"]] == [2, 3, 4]
    assert older.body["hasMore"] is True
    after = await api.get(f"/api/sessions/{sid}/messages?after=2&limit=2", organizer)
    assert [m["body"] for m in after.body["messages"]] == ["m3", "m4"]
    assert after.body["hasMore"] is True
    bad = await api.get(f"/api/sessions/{sid}/messages?after=1&before=3", organizer)
    assert bad.status == 422
    assert (await api.get(f"/api/sessions/{sid}/messages?limit=1000", organizer)).status == 422
    # a group session is visible to anyone, its messages only to participants
    assert (await api.get(f"/api/sessions/{sid}/messages", outsider)).status == 403
    posting = await api.post(f"/api/sessions/{sid}/messages", outsider, json={"content": "hi"})
    assert posting.status == 403
    assert (await api.get(f"/api/sessions/{MISSING}/messages", organizer)).status == 404


async def test_rest_send_is_idempotent_by_client_id(api: Api) -> None:
    organizer = await api.register()
    session = await create_session(api, organizer)
    sid = session["id"]
    body = {"content": "only once", "clientMessageId": "c-123"}
    first = await api.post(f"/api/sessions/{sid}/messages", organizer, json=body)
    again = await api.post(f"/api/sessions/{sid}/messages", organizer, json=body)
    assert first.status == 201
    assert again.status == 200
    assert first.body["id"] == again.body["id"]
    assert first.body["seq"] == again.body["seq"]
    history = await api.get(f"/api/sessions/{sid}/messages", organizer)
    assert [m["body"] for m in history.body["messages"]] == ["only once"]


async def test_recurring_sessions_use_the_calendars_rules(api: Api) -> None:
    """A weekly Berlin session created over REST repeats at 09:00 local across the DST change,
    exactly as calendar events do, and shows in the calendar as occurrences."""
    user = await api.register()
    body = {
        "title": "Weekly review",
        "sessionType": "group",
        "startTime": "2036-03-24T08:00:00Z",  # 09:00 in Berlin (winter time)
        "endTime": "2036-03-24T09:00:00Z",
        "timezone": "Europe/Berlin",
        "isRecurring": True,
        "recurrencePattern": {"rrule": "FREQ=WEEKLY;COUNT=3"},
    }
    created = await api.post("/api/sessions", user, json=body)
    assert created.status == 201, created.body
    assert created.body["recurrencePattern"]["rrule"].startswith("FREQ=WEEKLY")
    calendar = await api.get(
        "/api/calendar/events",
        user,
        params={"startDate": "2036-03-20", "endDate": "2036-04-15", "timezone": "Europe/Berlin"},
    )
    starts = [e["startTime"] for e in calendar.body["events"] if e["id"] == created.body["id"]]
    assert starts == [
        "2036-03-24T09:00:00+01:00",
        "2036-03-31T09:00:00+02:00",  # after the change to summer time: still 09:00
        "2036-04-07T09:00:00+02:00",
    ]
    for pattern, recurring, field in [
        ({"rrule": "FREQ=SOMETIMES"}, True, "recurrencePattern.rrule"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20360401T000000Z", True, "recurrencePattern.rrule"),
        ({"rrule": "FREQ=DAILY"}, False, "isRecurring"),
    ]:
        bad = await api.post(
            "/api/sessions",
            user,
            json={**body, "recurrencePattern": pattern, "isRecurring": recurring},
        )
        assert bad.status == 422, pattern
        assert bad.error_field() == field, bad.body
