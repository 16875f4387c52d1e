"""Helpers for the feed, resource and upload tests: pods with members, posts, moderators."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.helpers import Api, User


async def join(api: Api, user: User, pod: dict[str, Any]) -> None:
    resp = await api.post(f"/api/pods/{pod['id']}/join", user)
    assert resp.status == 200, resp.body


async def invite_and_join(api: Api, owner: User, user: User, pod: dict[str, Any]) -> None:
    """Bring `user` into a (private) pod through an invitation."""
    invite = await api.post(f"/api/pods/{pod['id']}/invite", owner, json={"userId": user.id})
    assert invite.status in (200, 201), invite.body
    resp = await api.post(
        f"/api/pods/{pod['id']}/join",
        user,
        json={"invitationCode": invite.body["invitationCode"]},
    )
    assert resp.status == 200, resp.body


async def set_role(api: Api, owner: User, pod: dict[str, Any], user: User, role: str) -> None:
    resp = await api.put(f"/api/pods/{pod['id']}/members/{user.id}", owner, json={"role": role})
    assert resp.status == 200, resp.body


async def platform_moderator(api: Api, db: asyncpg.Connection, user: User) -> User:
    """Make `user` a platform moderator and log in again (the role rides in the token)."""
    await db.execute("UPDATE users SET role = 'moderator' WHERE id = $1", user.id)
    resp = await api.post("/api/auth/login", json={"email": user.email, "password": user.password})
    assert resp.status == 200, resp.body
    user.token = resp.body["accessToken"]
    return user


async def established(api: Api, *users: User, days: int = 30, verified: bool = True) -> None:
    """Age accounts and verify their email, so their reports weigh a full report each (the
    weight of a report grows with its reporter's standing: social/reports.py)."""
    from peerspark_rt.infra.pool import DB

    await api.app[DB].pool.execute(
        "UPDATE users SET created_at = NOW() - make_interval(days => $2), is_verified = $3 "
        "WHERE id = ANY($1::uuid[])",
        [u.id for u in users],
        days,
        verified,
    )


async def post(api: Api, author: User, content: str = "Hello pod", **fields: Any) -> dict[str, Any]:
    resp = await api.post("/api/posts", author, json={"content": content, **fields})
    assert resp.status == 201, resp.body
    result: dict[str, Any] = resp.body
    return result


async def resource(api: Api, owner: User, title: str = "Notes", **fields: Any) -> dict[str, Any]:
    body = {"title": title, "resourceType": "note", **fields}
    resp = await api.post("/api/resources", owner, json=body)
    assert resp.status == 201, resp.body
    result: dict[str, Any] = resp.body
    return result


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]
