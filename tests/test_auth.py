"""Accounts and auth through HTTP: register, login, refresh rotation and reuse detection,
revocation, profiles, and the login rate limit."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import jwt
import pytest

from peerspark_rt.config import SETTINGS
from tests.helpers import PASSWORD, Api, unique


async def test_register_returns_tokens_and_profile_without_password(api: Api) -> None:
    name = unique("ann")
    resp = await api.post(
        "/api/auth/register",
        json={
            "email": f"{name}@Example.com",
            "username": name,
            "password": PASSWORD,
            "firstName": "Ann",
            "lastName": "Lee",
            "educationLevel": "undergraduate",
            "institution": "MIT",
        },
    )
    assert resp.status == 201
    body = resp.body
    assert set(body) == {"user", "accessToken", "refreshToken", "expiresIn", "sessionId"}
    assert body["expiresIn"] == 900
    user = body["user"]
    assert user["username"] == name
    assert user["firstName"] == "Ann"
    assert user["lastName"] == "Lee"
    assert user["educationLevel"] == "undergraduate"
    assert user["institution"] == "MIT"
    assert user["isVerified"] is False
    assert user["isPremium"] is False
    assert not any("password" in key.lower() for key in user)
    # The access token carries what the spec's JWTPayload names.
    claims = jwt.decode(body["accessToken"], options={"verify_signature": False})
    assert claims["userId"] == user["id"]
    assert claims["username"] == name
    assert claims["role"] == "user"
    assert claims["isPremium"] is False
    assert claims["sessionId"] == body["sessionId"]
    assert claims["exp"] - claims["iat"] == 900


async def test_stored_password_is_argon2id(api: Api, db: Any) -> None:
    user = await api.register()
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1::uuid", user.id)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


@pytest.mark.parametrize(
    ("field", "value", "reason_part"),
    [
        ("email", "not-an-email", "valid email"),
        ("username", "a", "3-50"),
        ("username", "bad name!", "letters"),
        ("password", "short1", "at least 8"),
        ("password", "onlyletters", "too easy to guess"),
        ("firstName", "   ", "empty"),
        ("educationLevel", "kindergarten", "one of"),
    ],
)
async def test_register_rejects_bad_fields_naming_them(
    api: Api, field: str, value: str, reason_part: str
) -> None:
    name = unique("bad")
    body = {
        "email": f"{name}@example.com",
        "username": name,
        "password": PASSWORD,
        "firstName": "A",
        "lastName": "B",
        field: value,
    }
    resp = await api.post("/api/auth/register", json=body)
    assert resp.status == 422
    error = resp.body["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    assert reason_part in error["details"][0]["reason"]


async def test_register_missing_field_is_named(api: Api) -> None:
    resp = await api.post(
        "/api/auth/register",
        json={"email": "x@example.com", "username": "xyz", "firstName": "a", "lastName": "b"},
    )
    assert resp.status == 422
    assert resp.body["error"]["details"][0] == {"field": "password", "reason": "is required"}


async def test_register_wrong_type_and_unknown_field_are_named(api: Api) -> None:
    resp = await api.post("/api/auth/register", json={"email": 5})
    assert resp.status == 422
    assert resp.error_field() == "email"
    name = unique("u")
    resp = await api.post(
        "/api/auth/register",
        json={
            "email": f"{name}@e.com",
            "username": name,
            "password": PASSWORD,
            "firstName": "a",
            "lastName": "b",
            "isAdmin": True,
        },
    )
    assert resp.status == 422
    assert resp.error_field() == "isAdmin"


async def test_register_malformed_json_is_400(api: Api) -> None:
    resp = await api.post(
        "/api/auth/register", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert resp.body["error"]["code"] == "invalid_json"


async def test_duplicate_email_or_username_is_409_naming_which(api: Api) -> None:
    user = await api.register()
    resp = await api.post(
        "/api/auth/register",
        json={
            "email": user.email.upper(),
            "username": unique("other"),
            "password": PASSWORD,
            "firstName": "a",
            "lastName": "b",
        },
    )
    assert resp.status == 409
    assert [d["field"] for d in resp.body["error"]["details"]] == ["email"]
    resp = await api.post(
        "/api/auth/register",
        json={
            "email": f"{unique('o')}@example.com",
            "username": user.username.upper(),
            "password": PASSWORD,
            "firstName": "a",
            "lastName": "b",
        },
    )
    assert resp.status == 409
    assert [d["field"] for d in resp.body["error"]["details"]] == ["username"]


async def test_login_and_me(api: Api) -> None:
    user = await api.register()
    resp = await api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status == 200
    assert resp.body["user"]["id"] == user.id
    token = resp.body["accessToken"]
    me = await api.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200
    assert me.body["email"] == user.email
    assert "passwordHash" not in me.body


async def test_login_wrong_password_and_unknown_email_look_the_same(api: Api) -> None:
    user = await api.register()
    wrong = await api.post("/api/auth/login", json={"email": user.email, "password": "Nope-12345"})
    unknown = await api.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "Nope-12345"}
    )
    assert wrong.status == unknown.status == 401
    assert wrong.body["error"]["code"] == unknown.body["error"]["code"] == "invalid_credentials"


async def test_remember_me_makes_a_longer_session(api: Api) -> None:
    user = await api.register()
    short = await api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    long = await api.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD, "rememberMe": True}
    )
    exp_short = jwt.decode(short.body["refreshToken"], options={"verify_signature": False})["exp"]
    exp_long = jwt.decode(long.body["refreshToken"], options={"verify_signature": False})["exp"]
    assert exp_short - time.time() == pytest.approx(86400, abs=60)
    assert exp_long - time.time() == pytest.approx(30 * 86400, abs=60)


async def test_refresh_rotates_and_reuse_after_the_grace_window_revokes_the_session(
    make_client: Any,
) -> None:
    api = await make_client(refresh_reuse_grace=0.5)
    user = await api.register()
    first = await api.post("/api/auth/refresh", json={"refreshToken": user.refresh})
    assert first.status == 200
    assert first.body["refreshToken"] != user.refresh
    assert first.body["sessionId"] == user.session_id
    new_access = {"Authorization": f"Bearer {first.body['accessToken']}"}
    assert (await api.get("/api/auth/me", headers=new_access)).status == 200

    # Presenting the already-used token again after the grace window: the whole session is
    # revoked.
    await asyncio.sleep(0.6)
    reused = await api.post("/api/auth/refresh", json={"refreshToken": user.refresh})
    assert reused.status == 401
    assert reused.body["error"]["code"] == "refresh_token_reused"
    # ...so the newest refresh token and every access token of that session stop working.
    again = await api.post("/api/auth/refresh", json={"refreshToken": first.body["refreshToken"]})
    assert again.status == 401
    assert (await api.get("/api/auth/me", headers=new_access)).status == 401
    assert (await api.get("/api/auth/me", user)).status == 401


async def test_two_tabs_refreshing_with_one_token_at_once_both_stay_logged_in(api: Api) -> None:
    """Two tabs (or a tab and a service worker) refresh with the same token at the same moment:
    within the grace window both get the same new pair, and the session lives on."""
    user = await api.register()
    results = await asyncio.gather(
        *(api.post("/api/auth/refresh", json={"refreshToken": user.refresh}) for _ in range(4))
    )
    assert [r.status for r in results] == [200] * 4, [r.body for r in results]
    pairs = {(r.body["accessToken"], r.body["refreshToken"]) for r in results}
    assert len(pairs) == 1
    [(access, refresh)] = pairs
    assert refresh != user.refresh
    # A tab that comes a moment later with the old token gets that same pair too.
    late = await api.post("/api/auth/refresh", json={"refreshToken": user.refresh})
    assert (late.status, late.body["refreshToken"]) == (200, refresh), late.body
    assert (
        await api.get("/api/auth/me", headers={"Authorization": f"Bearer {access}"})
    ).status == 200
    # The new refresh token rotates as usual...
    nxt = await api.post("/api/auth/refresh", json={"refreshToken": refresh})
    assert nxt.status == 200
    assert nxt.body["refreshToken"] not in (refresh, user.refresh)
    # ...and once it has, the first token is no longer "just rotated": its reuse revokes all.
    stale = await api.post("/api/auth/refresh", json={"refreshToken": user.refresh})
    assert (stale.status, stale.body["error"]["code"]) == (401, "refresh_token_reused")
    newest = await api.post("/api/auth/refresh", json={"refreshToken": nxt.body["refreshToken"]})
    assert newest.status == 401


async def test_two_tabs_with_one_token_after_the_grace_window(make_client: Any) -> None:
    api = await make_client(refresh_reuse_grace=0.3)
    user = await api.register()
    first = await api.post("/api/auth/refresh", json={"refreshToken": user.refresh})
    assert first.status == 200
    await asyncio.sleep(0.4)
    second = await api.post("/api/auth/refresh", json={"refreshToken": user.refresh})
    assert (second.status, second.body["error"]["code"]) == (401, "refresh_token_reused")
    gone = await api.post("/api/auth/refresh", json={"refreshToken": first.body["refreshToken"]})
    assert gone.status == 401


async def test_access_token_is_not_a_refresh_token(api: Api) -> None:
    user = await api.register()
    resp = await api.post("/api/auth/refresh", json={"refreshToken": user.token})
    assert resp.status == 401
    resp = await api.get("/api/auth/me", headers={"Authorization": f"Bearer {user.refresh}"})
    assert resp.status == 401


async def test_logout_takes_effect_at_once(api: Api) -> None:
    user = await api.register()
    assert (await api.post("/api/auth/logout", user)).status == 204
    resp = await api.get("/api/auth/me", user)
    assert resp.status == 401
    assert resp.body["error"]["code"] == "session_revoked"
    assert (await api.post("/api/auth/refresh", json={"refreshToken": user.refresh})).status == 401


async def test_sessions_list_and_delete_another_device(api: Api) -> None:
    user = await api.register()
    other = await api.post(
        "/api/auth/login",
        json={"email": user.email, "password": PASSWORD},
        headers={"User-Agent": "PeerSpark-iOS/2.1"},
    )
    other_token = {"Authorization": f"Bearer {other.body['accessToken']}"}
    listing = await api.get("/api/auth/sessions", user)
    assert listing.status == 200
    sessions = {s["id"]: s for s in listing.body["sessions"]}
    assert set(sessions) == {user.session_id, other.body["sessionId"]}
    assert sessions[user.session_id]["current"] is True
    assert sessions[other.body["sessionId"]]["deviceInfo"]["userAgent"] == "PeerSpark-iOS/2.1"

    resp = await api.delete(f"/api/auth/sessions/{other.body['sessionId']}", user)
    assert resp.status == 204
    assert (await api.get("/api/auth/me", headers=other_token)).status == 401
    assert (await api.get("/api/auth/me", user)).status == 200


async def test_cannot_delete_someone_elses_session(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    resp = await api.delete(f"/api/auth/sessions/{bob.session_id}", alice)
    assert resp.status == 404
    assert (await api.get("/api/auth/me", bob)).status == 200
    assert (await api.delete("/api/auth/sessions/not-a-uuid", alice)).status == 404


def _forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)]
    )


# The forged HS512 token is made with the node's (shorter than SHA-512 wants) HS256 key: it is
# refused anyway, which is the point; pyjwt's key-length warning is noise here.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_tampered_tokens_are_refused(api: Api) -> None:
    user = await api.register()
    secret = api.app[SETTINGS].jwt_secret
    claims = jwt.decode(user.token, options={"verify_signature": False})

    none_alg = _forge({"alg": "none", "typ": "JWT"}, claims)
    other_alg = jwt.encode(claims, secret, algorithm="HS512")
    bad_sig = jwt.encode(claims, "x" * 40, algorithm="HS256")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, secret, algorithm="HS256")
    head, body, sig = user.token.split(".")
    flipped = ".".join([head, body, ("A" if sig[0] != "A" else "B") + sig[1:]])

    for token, code in [
        (none_alg, "invalid_token"),
        (other_alg, "invalid_token"),
        (bad_sig, "invalid_token"),
        (flipped, "invalid_token"),
        (expired, "token_expired"),
        ("garbage", "invalid_token"),
    ]:
        resp = await api.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 401, token
        assert resp.body["error"]["code"] == code
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

    missing = await api.get("/api/auth/me")
    assert missing.status == 401
    assert missing.body["error"]["code"] == "token_required"


async def test_patch_me_validates_and_updates(api: Api) -> None:
    user = await api.register()
    resp = await api.patch(
        "/api/auth/me",
        user,
        json={
            "bio": "Calculus nerd",
            "timezone": "Europe/Berlin",
            "graduationYear": 2027,
            "privacySettings": {"profileVisibility": "pods", "showEmail": True},
        },
    )
    assert resp.status == 200, resp.body
    assert resp.body["bio"] == "Calculus nerd"
    assert resp.body["timezone"] == "Europe/Berlin"
    assert resp.body["privacySettings"] == {"profileVisibility": "pods", "showEmail": True}

    for body, field in [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"graduationYear": 1200}, "graduationYear"),
        (
            {"privacySettings": {"profileVisibility": "everyone"}},
            "privacySettings.profileVisibility",
        ),
        ({"email": "new@example.com"}, "email"),
        ({}, "body"),
    ]:
        bad = await api.patch("/api/auth/me", user, json=body)
        assert bad.status == 422, body
        assert bad.error_field() == field

    other = await api.register()
    taken = await api.patch("/api/auth/me", user, json={"username": other.username})
    assert taken.status == 409
    assert taken.body["error"]["details"][0]["field"] == "username"


async def test_public_profile_honours_privacy(api: Api) -> None:
    owner, stranger, podmate = await api.register(), await api.register(), await api.register()
    await api.patch(
        "/api/auth/me",
        owner,
        json={
            "bio": "hi",
            "location": "Lisbon",
            "institution": "IST",
            "privacySettings": {"profileVisibility": "public", "showLocation": False},
        },
    )
    seen = await api.get(f"/api/users/{owner.id}", stranger)
    assert seen.status == 200
    assert seen.body["bio"] == "hi"
    assert seen.body["institution"] == "IST"
    assert "location" not in seen.body
    assert "email" not in seen.body

    await api.patch("/api/auth/me", owner, json={"privacySettings": {"profileVisibility": "pods"}})
    hidden = await api.get(f"/api/users/{owner.id}", stranger)
    assert hidden.body == {
        "id": owner.id,
        "username": owner.username,
        "avatarUrl": None,
        "restricted": True,
    }
    pod = await api.create_pod(owner)
    await api.post(f"/api/pods/{pod['id']}/join", podmate)
    visible = await api.get(f"/api/users/{owner.id}", podmate)
    assert visible.body["bio"] == "hi"

    await api.patch(
        "/api/auth/me", owner, json={"privacySettings": {"profileVisibility": "private"}}
    )
    assert (await api.get(f"/api/users/{owner.id}", podmate)).body["restricted"] is True
    assert (await api.get(f"/api/users/{owner.id}", owner)).body["location"] == "Lisbon"

    assert (await api.get("/api/users/00000000-0000-0000-0000-000000000000", owner)).status == 404
    assert (await api.get("/api/users/nope", owner)).status == 404


async def _fail_logins(api: Api, email: str, times: int) -> list[int]:
    statuses = []
    for _ in range(times):
        resp = await api.post("/api/auth/login", json={"email": email, "password": "Wrong-pass-1"})
        statuses.append(resp.status)
    return statuses


async def test_login_failures_are_rate_limited(api: Api) -> None:
    user = await api.register()
    assert await _fail_logins(api, user.email, 5) == [401] * 5
    blocked = await api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert blocked.status == 429
    assert blocked.body["error"]["code"] == "rate_limited"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 15 * 60
    # another account from the same address is not affected
    other = await api.register()
    ok = await api.post("/api/auth/login", json={"email": other.email, "password": PASSWORD})
    assert ok.status == 200


async def test_successful_login_clears_failures(api: Api) -> None:
    user = await api.register()
    await _fail_logins(api, user.email, 4)
    ok = await api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert ok.status == 200
    assert await _fail_logins(api, user.email, 5) == [401] * 5


async def test_login_limit_holds_across_nodes_with_redis(make_client: Any, redis_url: str) -> None:
    prefix = f"shared{unique('')}:"
    node_a = await make_client(redis_url=redis_url, redis_key_prefix=prefix)
    node_b = await make_client(redis_url=redis_url, redis_key_prefix=prefix)
    user = await node_a.register()
    assert await _fail_logins(node_a, user.email, 3) == [401] * 3
    assert await _fail_logins(node_b, user.email, 2) == [401] * 2
    blocked = await node_a.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert blocked.status == 429
    blocked = await node_b.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert blocked.status == 429
    assert int(blocked.headers["Retry-After"]) > 0


async def test_suspended_account_cannot_log_in_and_loses_access(api: Api, db: Any) -> None:
    user = await api.register()
    await db.execute("UPDATE users SET account_status = 'suspended' WHERE id = $1::uuid", user.id)
    assert (await api.get("/api/auth/me", user)).status == 401
    resp = await api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status == 403
