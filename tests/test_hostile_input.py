"""Input an attacker (or a broken client) sends: values nested thousands deep, control
characters in fields nobody thought of, bytes that are not text in headers, values the
database refuses. Each is a 4xx in the one error shape naming the field, never a 5xx and never
what the database or a parser said."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from peerspark_rt.accounts import db as users_db
from peerspark_rt.infra.dbtypes import Conn
from tests import rawhttp
from tests.helpers import Api, Response, User

# Words PostgreSQL, asyncpg and Python put in their errors: none may reach a client.
INTERNAL_WORDS = ("DETAIL", "invalid byte sequence", "Unicode escape", "asyncpg", "Traceback",
                  "stack depth", "int32", "invalid input", "UTF8", "Error:")  # fmt: skip


DEEP = "@@deep:"  # a marker `deep_json` expands into the nested value


def nested(depth: int) -> Any:
    """A value `depth` levels deep, or (past 100) a marker that `deep_json` expands: no JSON
    encoder in Python goes past about a thousand levels."""
    if depth > 100:
        return f"{DEEP}{depth}"
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def deep_json(body: Any) -> bytes:
    text = json.dumps(body)
    start = text.find(f'"{DEEP}')
    if start < 0:
        return text.encode()
    end = text.index('"', start + 1)
    depth = int(text[start + 1 + len(DEEP) : end])
    opening = "".join("[" if i % 2 else '{"k":' for i in reversed(range(depth)))
    closing = "".join("]" if i % 2 else "}" for i in range(depth))
    return (text[:start] + opening + '"leaf"' + closing + text[end + 1 :]).encode()


def assert_clean_error(resp: Response, status: int = 422) -> None:
    """A client error in the one shape, with a request id and no internal text."""
    assert resp.status == status, resp.body
    error = resp.body["error"]
    assert error["requestId"], error
    text = str(error)
    for word in INTERNAL_WORDS:
        assert word not in text, (word, error)


def _future(hours: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat()


async def free_form_fields(
    api: Api, owner: User
) -> list[tuple[str, str, Callable[[Any], dict[str, Any]], str]]:
    """(method, path, body with the value in the field, field) for every free-form JSON field a
    client may send over REST."""
    pod = await api.create_pod(owner)
    session = await api.post(
        "/api/sessions",
        owner,
        json={"title": "Drill", "sessionType": "individual", "startTime": _future(1),
              "endTime": _future(2)},
    )  # fmt: skip
    assert session.status == 201, session.body
    sid = session.body["id"]
    event = {"title": "Exam", "startTime": "2031-01-01T09:00:00", "timezone": "UTC"}
    new_session = {"title": "S", "sessionType": "individual", "startTime": _future(3),
                   "endTime": _future(4)}  # fmt: skip
    return [
        ("POST", "/api/pods", lambda v: {"name": "Pod d", "subject": "M", "meetingSchedule": v},
         "meetingSchedule"),
        ("PUT", f"/api/pods/{pod['id']}", lambda v: {"settings": v}, "settings"),
        ("PUT", f"/api/pods/{pod['id']}", lambda v: {"meetingSchedule": v}, "meetingSchedule"),
        ("POST", "/api/sessions", lambda v: {**new_session, "resources": [v]}, "resources"),
        ("POST", "/api/sessions", lambda v: {**new_session, "isRecurring": True,
                                             "recurrencePattern": v}, "recurrencePattern"),
        ("PUT", f"/api/sessions/{sid}", lambda v: {"recurrencePattern": v}, "recurrencePattern"),
        ("PUT", f"/api/sessions/{sid}", lambda v: {"resources": [v]}, "resources"),
        ("POST", f"/api/sessions/{sid}/messages", lambda v: {"content": "hi", "metadata": v},
         "metadata"),
        ("PATCH", "/api/auth/me", lambda v: {"notificationSettings": v}, "notificationSettings"),
        ("POST", "/api/calendar/events", lambda v: {**event, "isRecurring": True,
                                                    "recurrencePattern": v}, "recurrencePattern"),
        ("PUT", "/api/notifications/preferences", lambda v: {"types": v}, "types"),
        ("POST", "/api/mobile/sync", lambda v: {"pendingActions": [
            {"clientActionId": "deep", "type": "create_post", "data": v}]},
         "pendingActions[0].data"),
    ]  # fmt: skip


async def test_free_form_fields_nested_deep_are_a_clear_422(api: Api) -> None:
    owner = await api.register()
    fields = await free_form_fields(api, owner)
    assert len(fields) >= 10
    for method, path, body, field in fields:
        for depth in (600, 5000):
            resp = await api.call(
                method,
                path,
                owner,
                data=deep_json(body({"deep": nested(depth)})),
                headers={"Content-Type": "application/json"},
            )
            assert_clean_error(resp)
            error = resp.body["error"]
            assert error["code"] == "validation_error", (path, field, error)
            assert "nested too deeply" in error["message"], (path, field, error)
            if depth == 600:  # deeper than the decoder goes, only "body" can be named
                assert resp.error_field() == field, (path, field, error)
        # as deep as allowed is fine as far as nesting goes
        ok = await api.call(method, path, owner, json=body({"deep": nested(13)}))
        assert ok.status < 500, (path, ok.body)
        if ok.status == 422:
            assert "nested too deeply" not in ok.body["error"]["message"], (path, ok.body)


async def test_free_form_fields_are_bounded_in_size(api: Api) -> None:
    owner = await api.register()
    fields = await free_form_fields(api, owner)
    for method, path, body, field in fields:
        resp = await api.call(method, path, owner, json=body({"k": "x" * 70_000}))
        assert_clean_error(resp)
        assert resp.error_field() == field, (path, resp.body)
        assert "too large" in resp.body["error"]["message"], (path, resp.body)


async def test_every_text_field_refuses_control_characters(api: Api) -> None:
    """languagePreference took ESC and BEL, and a NUL there (or in a settings key) came back
    as PostgreSQL's message."""
    ann = await api.register()
    pod = await api.create_pod(ann)
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("PATCH", "/api/auth/me", {"languagePreference": "e\u001bn"}, "languagePreference"),
        ("PATCH", "/api/auth/me", {"languagePreference": "e\u0007n"}, "languagePreference"),
        ("PATCH", "/api/auth/me", {"languagePreference": "e\u0000n"}, "languagePreference"),
        ("PATCH", "/api/auth/me", {"notificationSettings": {"a\u0000": 1}},
         "notificationSettings"),
        ("PATCH", "/api/auth/me", {"bio": "hi\u0000"}, "bio"),
        ("PUT", f"/api/pods/{pod['id']}", {"settings": {"a": "\u0000"}}, "settings.a"),
        ("PUT", f"/api/pods/{pod['id']}", {"settings": {"theme": ["ok", "\u001b"]}},
         "settings.theme[1]"),
        ("POST", "/api/pods", {"name": "P\u0085", "subject": "M\u001f"}, "subject"),
        ("POST", "/api/auth/login", {"email": "a\u0000@b.c", "password": "x"}, "email"),
        ("POST", "/api/calendar/events", {"title": "t", "startTime": "2031-01-01T09:00:00",
                                          "timezone": "UTC", "location": "\u0008"}, "location"),
    ]  # fmt: skip
    for method, path, body, field in cases:
        resp = await api.call(method, path, ann, json=body)
        assert_clean_error(resp)
        assert resp.body["error"]["code"] == "validation_error"
        assert resp.error_field() == field, (path, body, resp.body)
        assert "control characters" in resp.body["error"]["message"], resp.body
    me = await api.get("/api/auth/me", ann)
    assert me.body["languagePreference"] == "en"


async def test_a_value_the_database_refuses_is_a_422_without_its_words(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever slips past validation and PostgreSQL refuses answers in our words."""
    ann = await api.register()

    async def refused(conn: Conn, *args: Any, **kwargs: Any) -> None:
        await conn.execute("SELECT 'not a number'::int")

    monkeypatch.setattr(users_db, "update_profile", refused)
    resp = await api.patch("/api/auth/me", ann, json={"bio": "fine"})
    assert_clean_error(resp)
    from peerspark_rt.infra.validation import OUT_OF_RANGE

    assert resp.body["error"]["details"] == [{"field": "body", "reason": OUT_OF_RANGE}]


async def test_a_non_ascii_byte_in_authorization_is_401(api: Api) -> None:
    for value in ("Bearer \xff\xfe", "Bearer abc\xe9def", "\xffBearer x"):
        resp = await rawhttp.send(
            api.client.server.host,
            api.client.server.port,
            "GET",
            "/api/auth/me",
            headers={"Authorization": value},
        )
        assert resp.status == 401, (value, resp.body)
        assert resp.json()["error"]["requestId"]


async def test_a_broken_calendar_file_is_refused_in_our_words(api: Api) -> None:
    ann = await api.register()
    broken_file = b"BEGIN:VCALENDAR\r\nX;=:a\r\nEND:VCALENDAR\r\n"
    resp = await api.post(
        "/api/calendar/import", ann, data=broken_file, headers={"Content-Type": "text/calendar"}
    )
    assert_clean_error(resp, 400)
    assert resp.body["error"]["message"] == "not an iCalendar file"
    bad_events = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
        b"BEGIN:VEVENT\r\nUID:bad-date@t\r\nDTSTART:2031013XT0900\r\nSUMMARY:x\r\nEND:VEVENT\r\n"
        b"BEGIN:VEVENT\r\nUID:bad-rule@t\r\nDTSTART:20310101T090000Z\r\n"
        b"RRULE:FREQ=WEEKLY;BYDAY=XX\r\nSUMMARY:y\r\nEND:VEVENT\r\n"
        b"BEGIN:VEVENT\r\nUID:fine@t\r\nDTSTART:20310101T090000Z\r\nSUMMARY:z\r\nEND:VEVENT\r\n"
        b"END:VCALENDAR\r\n"
    )
    resp = await api.post(
        "/api/calendar/import", ann, data=bad_events, headers={"Content-Type": "text/calendar"}
    )
    assert resp.status == 200, resp.body
    assert resp.body["imported"] == 1
    reasons = {s["uid"]: s["reason"] for s in resp.body["skipped"]}
    assert set(reasons) == {"bad-date@t", "bad-rule@t"}, reasons
    assert reasons["bad-date@t"] == "not a date: '2031013XT0900'"
    for reason in reasons.values():
        assert not any(word in reason for word in INTERNAL_WORDS), reasons
