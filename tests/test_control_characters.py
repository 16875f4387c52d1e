"""NUL and other control characters in what people write are refused with a 422 naming the
field (PostgreSQL cannot store NUL in text), over REST and in mobile sync, where the refusal
is a final answer for that action rather than an error to retry forever."""

from __future__ import annotations

from typing import Any

import pytest

from peerspark_rt.infra.dbtypes import Conn
from peerspark_rt.infra.validation import OUT_OF_RANGE
from peerspark_rt.social.db import posts as posts_db
from tests.helpers import Api
from tests.social import post, resource


async def test_control_characters_are_refused_naming_the_field(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    fine = await api.post("/api/posts", ann, json={"content": "line one\nline two\tand\r\nthree"})
    assert fine.status == 201, fine.body
    assert fine.body["content"] == "line one\nline two\tand\r\nthree"
    target = await post(api, bob, "report me")
    vault = await resource(api, bob, "Shared", isPublic=True)
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/posts", {"content": "a\u0000b"}, "content"),
        ("POST", "/api/posts", {"content": "ok", "tags": ["fine", "be\u0007ll"]}, "tags[1]"),
        ("POST", "/api/posts", {"content": "o", "mediaUrls": ["http://a/\u0000"]}, "mediaUrls[0]"),
        ("PUT", f"/api/posts/{fine.body['id']}", {"content": "x\u001b[31m"}, "content"),
        ("POST", f"/api/posts/{target['id']}/comments", {"content": "\u0000"}, "content"),
        ("POST", "/api/resources", {"title": "t\u0000", "resourceType": "note"}, "title"),
        (
            "POST",
            "/api/resources",
            {"title": "t", "resourceType": "note", "description": "d\u0000"},
            "description",
        ),
        ("POST", f"/api/resources/{vault['id']}/rate", {"rating": 4, "review": "\u0000"}, "review"),
        (
            "POST",
            "/api/reports",
            {"contentType": "post", "contentId": target["id"], "description": "x\u0000"},
            "description",
        ),
    ]  # fmt: skip
    for method, path, body, field in cases:
        resp = await api.call(method, path, ann, json=body)
        assert resp.status == 422, (path, body, resp.body)
        assert resp.body["error"]["code"] == "validation_error"
        assert resp.error_field() == field, (path, body, resp.body)
        assert "control characters" in resp.body["error"]["message"]
    for query, field in (
        ("search=a%00b", "search"),
        ("subject=%00", "subject"),
        ("tags=%01", "tags"),
    ):
        resp = await api.get(f"/api/resources?{query}", ann)
        assert (resp.status, resp.error_field()) == (422, field), resp.body
    resp = await api.get("/api/search/posts?q=%00", ann)
    assert (resp.status, resp.error_field()) == (422, "q"), resp.body


async def test_sync_answers_a_nul_once_and_for_all(api: Api) -> None:
    phone = await api.register()
    action = {"clientActionId": "nul-1", "type": "create_post", "data": {"content": "a\u0000b"}}
    for replayed in (False, True):
        resp = await api.post("/api/mobile/sync", phone, json={"pendingActions": [action]})
        assert resp.status == 200, resp.body
        [result] = resp.body["syncResults"]
        assert (result["status"], result["replayed"]) == ("error", replayed)
        assert result["error"]["code"] == "validation_error"
        assert result["error"]["details"] == [
            {"field": "content", "reason": "must not contain control characters (found U+0000)"}
        ]
    # An error quoting a NUL the client sent (an unknown field's name) is still recorded.
    key = {"clientActionId": "nul-2", "type": "create_post", "data": {"content": "x", "\u0000": 1}}
    for replayed in (False, True):
        resp = await api.post("/api/mobile/sync", phone, json={"pendingActions": [key]})
        assert resp.status == 200, resp.body
        [result] = resp.body["syncResults"]
        assert (result["status"], result["replayed"]) == ("error", replayed)
        assert result["error"]["details"][0]["field"] == "data.\ufffd"
    bad_id = {"clientActionId": "a\u0000", "type": "create_post", "data": {"content": "x"}}
    resp = await api.post("/api/mobile/sync", phone, json={"pendingActions": [bad_id]})
    assert (resp.status, resp.error_field()) == (422, "pendingActions[0].clientActionId")


async def test_sync_records_a_value_the_database_refuses(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever slips past validation and PostgreSQL refuses (a DataError) is refused again
    on every retry: the action gets a final error, not an internal error to retry forever."""
    phone = await api.register()

    async def refused(conn: Conn, values: dict[str, Any]) -> None:
        await conn.execute("SELECT 'not a number'::int")

    monkeypatch.setattr(posts_db, "insert_post", refused)
    action = {"clientActionId": "dx-1", "type": "create_post", "data": {"content": "fine"}}
    for replayed in (False, True):
        resp = await api.post("/api/mobile/sync", phone, json={"pendingActions": [action]})
        assert resp.status == 200, resp.body
        [result] = resp.body["syncResults"]
        assert (result["status"], result["replayed"]) == ("error", replayed)
        assert result["error"]["code"] == "validation_error"
        assert result["error"]["details"][0]["field"] == "data"
        # what PostgreSQL said stays in the log
        assert "invalid input syntax" not in result["error"]["message"]
        assert result["error"]["details"][0]["reason"] == OUT_OF_RANGE
