"""Abuse from outside: mass sign-ups, password guessing across many accounts or from many
addresses, a forged X-Forwarded-For, oversized fields in unauthenticated requests, account
enumeration through invitations, weak passwords, and throwaway accounts hiding posts."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import redis.asyncio as redis_async

from peerspark_rt.config import SETTINGS, Settings, load_settings
from tests.helpers import PASSWORD, Api, unique
from tests.social import established, post

ROOT = Path(__file__).resolve().parent.parent


def signup(name: str, password: str = PASSWORD) -> dict[str, str]:
    return {"email": f"{name}@example.com", "username": name, "password": password,
            "firstName": "Test", "lastName": "User"}  # fmt: skip


async def failed_login(api: Api, email: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    resp = await api.post(
        "/api/auth/login", json={"email": email, "password": "Wrong-guess-1"}, headers=headers
    )
    return resp.status


async def test_registration_is_limited_per_address(make_client: Any) -> None:
    api = await make_client(registration_rate_limit=3)
    statuses = [
        (await api.post("/api/auth/register", json=signup(unique("bulk")))).status for _ in range(5)
    ]
    assert statuses == [201, 201, 201, 429, 429]
    last = await api.post("/api/auth/register", json=signup(unique("bulk")))
    assert last.body["error"]["code"] == "rate_limited"
    assert int(last.headers["Retry-After"]) > 0


async def test_guessing_across_many_accounts_from_one_address_is_throttled(
    make_client: Any,
) -> None:
    api = await make_client(login_failures_per_address=6)
    statuses = [await failed_login(api, f"{unique('victim')}@example.com") for _ in range(9)]
    assert statuses[:6] == [401] * 6
    assert statuses[6:] == [429] * 3
    # the address is throttled for a known account too, even with the right password
    user = await api.register()
    resp = await api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status == 429


async def test_guessing_one_account_from_many_addresses_is_throttled(make_client: Any) -> None:
    api = await make_client(trust_proxy_headers=True, login_failures_per_account=4)
    user = await api.register()
    statuses = [
        await failed_login(api, user.email, forwarded=f"10.1.{i}.{i + 1}") for i in range(6)
    ]
    assert statuses == [401] * 4 + [429] * 2
    # another account from the same addresses is not affected
    other = await api.register()
    assert await failed_login(api, other.email, forwarded="10.1.0.1") == 401


async def test_a_forged_forwarded_for_does_not_escape_the_limit(make_client: Any) -> None:
    """The client writes what it likes first in X-Forwarded-For; the trusted proxy appends the
    address it saw. Only that one (the rightmost) counts."""
    api = await make_client(trust_proxy_headers=True)
    user = await api.register()
    statuses = [
        await failed_login(api, user.email, forwarded=f"{secrets.token_hex(2)}.0.0.1, 10.9.8.7")
        for _ in range(7)
    ]
    assert statuses == [401] * 5 + [429] * 2
    # with two proxies in front, the second-from-right entry is the client
    two = await make_client(trust_proxy_headers=True, trusted_proxy_hops=2)
    victim = await two.register()
    statuses = [
        await failed_login(two, victim.email, forwarded=f"1.2.3.{i}, 10.9.8.7, 10.0.0.2")
        for i in range(7)
    ]
    assert statuses == [401] * 5 + [429] * 2


async def test_proxy_headers_are_not_trusted_by_default(make_client: Any) -> None:
    assert Settings().trust_proxy_headers is False
    assert load_settings({}).trust_proxy_headers is False
    env_lines = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]  # fmt: skip
    assert not any("TRUST_PROXY_HEADERS=true" in line for line in env_lines)
    api = await make_client()
    user = await api.register()
    statuses = [await failed_login(api, user.email, forwarded=f"10.0.{i}.1") for i in range(7)]
    assert statuses == [401] * 5 + [429] * 2


async def test_unauthenticated_fields_are_bounded_before_use(
    make_client: Any, redis_url: str
) -> None:
    api = await make_client(redis_url=redis_url)
    huge = "a" * 500_000 + "@example.com"
    resp = await api.post("/api/auth/login", json={"email": huge, "password": "x"})
    assert resp.status == 422, resp.body
    assert resp.error_field() == "email", resp.body
    resp = await api.post(
        "/api/auth/login", json={"email": "a@example.com", "password": "p" * 100_000}
    )
    assert resp.status == 422, resp.body
    assert resp.error_field() == "password", resp.body
    resp = await api.post("/api/auth/refresh", json={"refreshToken": "x" * 100_000})
    assert resp.status in (401, 422), resp.body
    resp = await api.post("/api/auth/register", json=signup("a" * 300_000))
    assert resp.status == 422, resp.body
    # what the limits keep in Redis is keyed by a hash, never by what the client sent
    await failed_login(api, "Someone.Long-Name@example.com")
    client = redis_async.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(f"{api.app[SETTINGS].redis_key_prefix}*")]
    finally:
        await client.aclose()
    assert keys, "the login limits should be in Redis"
    for key in keys:
        assert len(key) < 120, key
        assert b"someone" not in key.lower(), key
        assert b"aaaa" not in key, key


async def test_inviting_an_email_answers_the_same_whether_or_not_it_has_an_account(
    api: Api,
) -> None:
    owner, existing, member = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await api.post(f"/api/pods/{pod['id']}/join", member)
    answers = {}
    for who, email in (
        ("nobody", f"{unique('ghost')}@example.com"),
        ("account", existing.email),
        ("member", member.email),
    ):
        resp = await api.post(f"/api/pods/{pod['id']}/invite", owner, json={"email": email})
        answers[who] = resp
    shapes = {
        who: (r.status, sorted(r.body), r.body.get("inviteeId")) for who, r in answers.items()
    }
    assert len(set(map(str, shapes.values()))) == 1, shapes
    assert answers["account"].body["inviteeId"] is None
    assert existing.id not in str(answers["account"].body)
    # the invitation still works for the account it was sent to
    code = answers["account"].body["invitationCode"]
    joined = await api.post(f"/api/pods/{pod['id']}/join", existing, json={"invitationCode": code})
    assert joined.status == 200, joined.body


async def test_weak_passwords_are_refused_saying_why(api: Api) -> None:
    for weak in ("Password1", "passw0rd", "Qwerty123", "abcd1234", "Summer2024"):
        resp = await api.post("/api/auth/register", json=signup(unique("weak"), weak))
        assert resp.status == 422, (weak, resp.body)
        assert resp.error_field() == "password"
        reason = resp.body["error"]["details"][0]["reason"]
        assert "guess" in reason, reason
        assert len(reason) > len("is too easy to guess"), reason  # says why, too
    # a password built on the user's own name is weak too
    name = unique("marguerite")
    resp = await api.post("/api/auth/register", json=signup(name, f"{name}!!"))
    assert resp.status == 422
    assert resp.error_field() == "password"
    ok = await api.post(
        "/api/auth/register", json=signup(unique("strong"), "Maple-otter-72-lantern")
    )
    assert ok.status == 201, ok.body


async def test_fresh_accounts_cannot_hide_a_post_alone(api: Api) -> None:
    author = await api.register()
    target = await post(api, author, "A perfectly fine public post", visibility="public")
    throwaways = [await api.register() for _ in range(4)]
    for user in throwaways:
        resp = await api.post(
            f"/api/posts/{target['id']}/interactions", user, json={"type": "report"}
        )
        assert resp.status == 200, resp.body
        assert resp.body["report"]["contentHidden"] is False
    bystander = await api.register()
    assert (await api.get(f"/api/posts/{target['id']}", bystander)).status == 200
    # established reporters (a month old, verified) still hide it with three reports
    regulars = [await api.register() for _ in range(3)]
    await established(api, *regulars)
    hidden = False
    for user in regulars:
        resp = await api.post(
            f"/api/posts/{target['id']}/interactions", user, json={"type": "report"}
        )
        hidden = resp.body["report"]["contentHidden"]
    assert hidden is True
    assert (await api.get(f"/api/posts/{target['id']}", bystander)).status == 404
