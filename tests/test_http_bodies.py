"""Request bodies as slow, mobile and proxied clients send them: in several TCP pieces with
pauses between them, and with `Transfer-Encoding: chunked`. Every route that takes a body must
read it whole (up to its limit) and answer exactly as it does to the same body in one piece."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any

import orjson
from aiohttp import web

from tests import rawhttp
from tests.helpers import PASSWORD, Api, User

BODY_METHODS = ("POST", "PUT", "PATCH")
# Routes that end the caller's own login: each request to them gets a login of its own.
ENDS_LOGIN = {("POST", "/api/auth/logout"), ("POST", "/api/web/logout")}


def body_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route that may take a body, from the app's router, so
    a new route is covered without touching this test."""
    return [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method in BODY_METHODS and route.resource is not None
    ]


def concrete(template: str) -> str:
    """The path with every {parameter} replaced by a well-formed id of nothing."""
    return re.sub(r"\{[^}]+\}", lambda _m: str(uuid.uuid4()), template)


async def login(api: Api, user: User) -> str:
    resp = await api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status == 200, resp.body
    token: str = resp.body["accessToken"]
    return token


def outcome(resp: rawhttp.RawResponse) -> tuple[int, str | None, Any]:
    details = None
    if resp.error_code is not None:
        details = resp.json()["error"].get("details")
    return resp.status, resp.error_code, details


async def test_every_body_route_reads_trickled_and_chunked_bodies_whole(ai_api: Api) -> None:
    api = ai_api
    user = await api.register()
    host, port = api.client.server.host, api.client.server.port
    # JSON only when read whole: ~100 KB of blanks, then an array (which no route takes, so a
    # 422 naming the body). Any part of it alone is blank or truncated. It spans many TCP
    # segments and is sent in three writes 150 ms apart.
    body = b" " * 100_000 + b"[]"
    routes = body_routes(api.app)
    assert len(routes) >= 40, routes

    async def one(method: str, template: str, path: str, mode: str) -> tuple[int, str | None, Any]:
        token = await login(api, user) if (method, template) in ENDS_LOGIN else user.token
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if mode == "whole":
            resp = await rawhttp.send(host, port, method, path, headers=headers, body=[body])
        else:
            resp = await rawhttp.send(
                host,
                port,
                method,
                path,
                headers=headers,
                body=rawhttp.pieces(body, 3),
                pause=0.15,
                chunked=mode == "chunked",
            )
        return outcome(resp)

    async def three(method: str, template: str) -> list[tuple[int, str | None, Any]]:
        # the same path for all three, so a 404 for an unknown id matches too
        path = concrete(template)
        return await asyncio.gather(
            *(one(method, template, path, mode) for mode in ("whole", "trickled", "chunked"))
        )

    answers = await asyncio.gather(*(three(method, template) for method, template in routes))
    for (method, template), (whole, trickled, chunked) in zip(routes, answers, strict=True):
        where = f"{method} {template}"
        assert whole[0] < 500, (where, whole)
        assert whole[1] != "invalid_json", (where, whole)
        assert trickled == whole, (where, "trickled", trickled, whole)
        assert chunked == whole, (where, "chunked", chunked, whole)


async def test_a_small_body_in_two_writes_300_ms_apart(api: Api) -> None:
    """The report: a 60-byte login body in two writes 300 ms apart was 'truncated'."""
    user = await api.register()
    body = orjson.dumps({"email": user.email, "password": PASSWORD})
    for chunked in (False, True):
        resp = await rawhttp.send(
            api.client.server.host,
            api.client.server.port,
            "POST",
            "/api/auth/login",
            headers={"Content-Type": "application/json"},
            body=rawhttp.pieces(body, 2),
            pause=0.3,
            chunked=chunked,
        )
        assert resp.status == 200, resp.body
        assert resp.json()["user"]["id"] == user.id


async def test_a_chunked_json_body_past_the_limit_is_413(api: Api) -> None:
    body = b'{"email": "' + b"a" * (1024 * 1024 + 10) + b'", "password": "x"}'
    resp = await rawhttp.send(
        api.client.server.host,
        api.client.server.port,
        "POST",
        "/api/auth/login",
        headers={"Content-Type": "application/json"},
        body=rawhttp.pieces(body, 8),
        pause=0.01,
        chunked=True,
    )
    assert resp.status == 413
    assert resp.error_code == "payload_too_large"


def big_calendar(events: int) -> bytes:
    """An .ics of `events` weekly study events with long descriptions (~810 bytes each)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//bodies//EN"]
    start = dt.datetime(2030, 1, 7, 9, 0)
    for i in range(events):
        when = start + dt.timedelta(hours=i)
        lines += [
            "BEGIN:VEVENT",
            f"UID:bulk-{i}@test",
            f"DTSTAMP:{when:%Y%m%dT%H%M%SZ}",
            f"DTSTART:{when:%Y%m%dT%H%M%SZ}",
            f"DTEND:{when + dt.timedelta(minutes=45):%Y%m%dT%H%M%SZ}",
            f"SUMMARY:Study block {i}",
            # folded at 74 octets, as RFC 5545 asks
            *_fold("DESCRIPTION:" + f"Chapter {i} review. " * 32),
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def _fold(line: str) -> list[str]:
    out = [line[:74]]
    out += [" " + line[i : i + 73] for i in range(74, len(line), 73)]
    return out


async def test_a_729_kb_calendar_arriving_in_pieces_imports_every_event(api: Api) -> None:
    user = await api.register()
    data = big_calendar(900)
    assert 700_000 < len(data) < 760_000, len(data)
    resp = await rawhttp.send(
        api.client.server.host,
        api.client.server.port,
        "POST",
        "/api/calendar/import",
        headers={**user.auth, "Content-Type": "text/calendar"},
        body=rawhttp.pieces(data, 12),
        pause=0.02,
        timeout=120,
    )
    assert resp.status == 200, resp.body[:300]
    result = resp.json()
    assert result["imported"] == 900, {k: v for k, v in result.items() if k != "skipped"}
    assert result["skipped"] == []


async def test_a_chunked_calendar_past_the_limit_is_413(api: Api) -> None:
    user = await api.register()
    data = big_calendar(3000)  # ~2.4 MB, over the 2 MB limit
    resp = await rawhttp.send(
        api.client.server.host,
        api.client.server.port,
        "POST",
        "/api/calendar/import",
        headers={**user.auth, "Content-Type": "text/calendar"},
        body=rawhttp.pieces(data, 6),
        pause=0.01,
        chunked=True,
    )
    assert resp.status == 413
    assert resp.error_code == "payload_too_large"


async def test_a_trickled_multipart_upload_is_stored_whole(api: Api) -> None:
    user = await api.register()
    content = b"A limit is the value a function approaches.\n" * 3000  # ~130 KB
    boundary = "----peersparkboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="notes.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\n".encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    for chunked in (False, True):
        resp = await rawhttp.send(
            api.client.server.host,
            api.client.server.port,
            "POST",
            "/api/upload",
            headers={**user.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            body=rawhttp.pieces(body, 5),
            pause=0.05,
            chunked=chunked,
        )
        assert resp.status == 201, resp.body
        assert resp.json()["size"] == len(content)


async def test_a_multipart_body_without_a_usable_boundary_is_a_clear_400(api: Api) -> None:
    user = await api.register()
    host, port = api.client.server.host, api.client.server.port
    cases = [
        ("multipart/form-data", b"--x\r\n\r\nhello\r\n--x--\r\n"),  # no boundary at all
        ("multipart/form-data; boundary=" + "b" * 80, b"--b\r\n"),  # longer than 70
        ("multipart/form-data; boundary=abc", b"no boundary line in here at all\r\n"),
        ("multipart/form-data; boundary=abc", b"--abc\r\nContent-Disposition: form-data\r\n"),
    ]
    for path in ("/api/upload", "/api/calendar/import"):
        for content_type, body in cases:
            resp = await rawhttp.send(
                host,
                port,
                "POST",
                path,
                headers={**user.auth, "Content-Type": content_type},
                body=[body],
            )
            assert resp.status == 400, (path, content_type, resp.status, resp.body)
            error = resp.json()["error"]
            assert error["code"] == "invalid_multipart", (path, content_type, error)
            assert error["details"][0]["field"] == "file"
            assert error["requestId"]
