"""The web page's login: an encrypted, HttpOnly, SameSite=Strict cookie naming a login
session; CSRF tokens on every cookie-authenticated write; a short-lived socket token. Bearer
requests are exactly as before, cookie or not."""

from __future__ import annotations

import time
from typing import Any

import jwt

from peerspark_rt.http.web_session import COOKIE_NAME
from tests.helpers import Api, User


async def web_login(api: Api, user: User, **extra: Any) -> dict[str, Any]:
    resp = await api.post(
        "/api/web/login", json={"email": user.email, "password": user.password, **extra}
    )
    assert resp.status == 200, resp.body
    cookie = resp.headers.getall("Set-Cookie")
    assert len(cookie) == 1
    assert cookie[0].startswith(f"{COOKIE_NAME}=")
    body: dict[str, Any] = resp.body
    body["cookie"] = cookie[0]
    return body


def cookie_value(api: Api) -> str:
    jar: dict[str, str] = {c.key: c.value for c in api.client.session.cookie_jar}
    return jar[COOKIE_NAME]


async def test_the_page_signs_in_by_cookie_and_reads_with_it(api: Api) -> None:
    ann = await api.register()
    login = await web_login(api, ann)
    attributes = login["cookie"].lower()
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    # no token in the answer, and nothing readable in the cookie
    assert set(login) == {"user", "csrfToken", "cookie"}
    assert login["user"]["username"] == ann.username
    assert ann.id not in cookie_value(api)
    assert ann.username not in cookie_value(api)
    me = await api.get("/api/auth/me")
    assert me.status == 200
    assert me.body["username"] == ann.username
    session = await api.get("/api/web/session")
    assert session.body["csrfToken"] == login["csrfToken"]


async def test_a_cookie_write_without_its_csrf_token_is_refused(api: Api) -> None:
    ann = await api.register()
    login = await web_login(api, ann)
    pod = {"name": "Cookie pod", "subject": "Mathematics"}
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": ""}):
        refused = await api.post("/api/pods", json=pod, headers=headers)
        assert refused.status == 403, refused.body
        assert refused.body["error"]["code"] == "csrf_token_invalid"
    mine = await api.get("/api/pods?member=true")
    assert mine.body["total"] == 0  # nothing was created by the refused writes
    made = await api.post("/api/pods", json=pod, headers={"X-CSRF-Token": login["csrfToken"]})
    assert made.status == 201, made.body
    assert (await api.get("/api/pods?member=true")).body["total"] == 1


async def test_bearer_requests_never_look_at_the_cookie(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    await web_login(api, ann)  # Ann's cookie rides along with every request below
    made = await api.post("/api/pods", bob, json={"name": "Bob's pod", "subject": "Physics"})
    assert made.status == 201, made.body  # no CSRF token needed with a bearer token
    assert made.body["creatorId"] == bob.id
    me = await api.get("/api/auth/me", bob)
    assert me.body["username"] == bob.username
    session = await api.get("/api/web/session", bob)
    assert session.status == 200
    assert "csrfToken" not in session.body


async def test_the_socket_token_is_short_lived_and_csrf_protected(api: Api) -> None:
    ann = await api.register()
    login = await web_login(api, ann)
    refused = await api.post("/api/web/token")
    assert refused.status == 403
    resp = await api.post("/api/web/token", headers={"X-CSRF-Token": login["csrfToken"]})
    assert resp.status == 200, resp.body
    token = resp.body["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == resp.body["expiresIn"] == 60
    assert claims["exp"] <= time.time() + 61
    assert claims["sessionId"] == ann.session_id or claims["userId"] == ann.id
    live = await api.live(User(**{**ann.__dict__, "token": token}))
    assert await live.ping() < 5


async def test_logging_out_ends_the_cookie_everywhere(api: Api) -> None:
    ann = await api.register()
    login = await web_login(api, ann)
    stolen = cookie_value(api)
    out = await api.post("/api/web/logout", headers={"X-CSRF-Token": login["csrfToken"]})
    assert out.status == 204
    assert f"{COOKIE_NAME}=" in out.headers["Set-Cookie"]
    assert (await api.get("/api/auth/me")).status == 401  # the browser dropped it
    # the same cookie replayed: its login session is gone, and it is told to go
    replay = await api.get("/api/auth/me", headers={"Cookie": f"{COOKIE_NAME}={stolen}"})
    assert replay.status == 401
    assert replay.body["error"]["code"] == "session_revoked"
    assert f"{COOKIE_NAME}=" in replay.headers["Set-Cookie"]
    garbage = await api.get("/api/auth/me", headers={"Cookie": f"{COOKIE_NAME}=garbage"})
    assert garbage.status == 401
    assert garbage.body["error"]["code"] == "cookie_invalid"


async def test_a_page_elsewhere_can_neither_log_in_nor_open_the_socket(api: Api) -> None:
    ann = await api.register()
    foreign = {"Origin": "http://evil.example"}
    resp = await api.post(
        "/api/web/login", json={"email": ann.email, "password": ann.password}, headers=foreign
    )
    assert resp.status == 403
    assert "Set-Cookie" not in resp.headers
    ws = await api.get(f"/ws?token={ann.token}", headers=foreign)
    assert ws.status == 403
    # the node's own page (its own origin) may
    own = {"Origin": str(api.client.make_url("")).rstrip("/")}
    resp = await api.post(
        "/api/web/login", json={"email": ann.email, "password": ann.password}, headers=own
    )
    assert resp.status == 200
    sock = await api.client.ws_connect(f"/ws?token={ann.token}", headers=own)
    await sock.close()


async def test_the_web_client_is_served_at_app(api: Api) -> None:
    page = await api.get("/app")
    assert page.status == 200
    assert b'type="module"' in page.body
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    module = await api.get("/app/app.js")
    assert module.status == 200
    assert module.headers["Content-Type"].startswith("text/javascript")
    assert (await api.get("/app/nothing.js")).status == 404
    assert (await api.get("/app/..%2Fschema.js")).status == 404
