"""Study pods through HTTP: CRUD, visibility, roles, invitations, bans, limits, analytics."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import Api, User, listen_live, unique

MISSING = "00000000-0000-0000-0000-000000000000"


async def test_create_pod_makes_the_creator_owner(api: Api) -> None:
    owner = await api.register()
    resp = await api.post(
        "/api/pods",
        owner,
        json={
            "name": "Linear Algebra Crew",
            "description": "Weekly problem sets",
            "subject": "Mathematics",
            "category": "academic",
            "difficultyLevel": "advanced",
            "isPublic": True,
            "maxMembers": 12,
            "tags": ["Matrices", "proofs", "matrices"],
            "rules": "Be kind",
        },
    )
    assert resp.status == 201, resp.body
    pod = resp.body
    assert pod["name"] == "Linear Algebra Crew"
    assert pod["creatorId"] == owner.id
    assert pod["currentMemberCount"] == 1
    assert pod["maxMembers"] == 12
    assert pod["tags"] == ["matrices", "proofs"]
    assert pod["myRole"] == "owner"
    members = await api.get(f"/api/pods/{pod['id']}/members", owner)
    assert [(m["userId"], m["role"]) for m in members.body["members"]] == [(owner.id, "owner")]


async def test_create_pod_validation_names_fields(api: Api) -> None:
    owner = await api.register()
    for body, field in [
        ({"subject": "Math"}, "name"),
        ({"name": "x", "subject": "Math", "category": "party"}, "category"),
        ({"name": "x", "subject": "Math", "difficultyLevel": "legendary"}, "difficultyLevel"),
        ({"name": "x", "subject": "Math", "maxMembers": 1}, "maxMembers"),
        ({"name": "x", "subject": "Math", "maxMembers": "ten"}, "maxMembers"),
        ({"name": "x", "subject": "Math", "timezone": "Nowhere/City"}, "timezone"),
        ({"name": " ", "subject": "Math"}, "name"),
    ]:
        resp = await api.post("/api/pods", owner, json=body)
        assert resp.status == 422, body
        assert resp.error_field() == field, resp.body


async def test_private_pods_are_invisible_to_outsiders(api: Api) -> None:
    owner, outsider = await api.register(), await api.register()
    secret = await api.create_pod(owner, isPublic=False, name=unique("Secret "))
    public = await api.create_pod(owner, name=unique("Open "))
    assert (await api.get(f"/api/pods/{secret['id']}", outsider)).status == 404
    assert (await api.get(f"/api/pods/{secret['id']}/members", outsider)).status == 404
    assert (await api.get(f"/api/pods/{secret['id']}/analytics", outsider)).status == 404
    listing = await api.get("/api/pods?limit=100", outsider)
    ids = {p["id"] for p in listing.body["pods"]}
    assert public["id"] in ids
    assert secret["id"] not in ids
    search = await api.get(f"/api/pods?search={secret['name']}", outsider)
    assert secret["id"] not in {p["id"] for p in search.body["pods"]}
    # joining without an invitation looks the same as a pod that does not exist
    assert (await api.post(f"/api/pods/{secret['id']}/join", outsider)).status == 404
    mine = await api.get("/api/pods?isPublic=false", owner)
    assert secret["id"] in {p["id"] for p in mine.body["pods"]}


async def test_list_filters_and_pagination(api: Api) -> None:
    owner, viewer = await api.register(), await api.register()
    subject = unique("Subject")
    made = [
        await api.create_pod(
            owner, subject=subject, category="academic", difficultyLevel="beginner"
        ),
        await api.create_pod(owner, subject=subject, category="hobby", difficultyLevel="advanced"),
        await api.create_pod(
            owner,
            subject=subject,
            category="academic",
            difficultyLevel="advanced",
            name=unique("Quantum Chromodynamics "),
        ),
    ]
    resp = await api.get(f"/api/pods?subject={subject}", viewer)
    assert resp.body["total"] == 3
    assert [p["id"] for p in resp.body["pods"]] == [p["id"] for p in reversed(made)]
    resp = await api.get(
        f"/api/pods?subject={subject}&category=academic&difficulty=advanced", viewer
    )
    assert [p["id"] for p in resp.body["pods"]] == [made[2]["id"]]
    page = await api.get(f"/api/pods?subject={subject}&limit=2&offset=2", viewer)
    assert page.body["total"] == 3
    assert len(page.body["pods"]) == 1
    typo = await api.get(f"/api/pods?search=Quantum%20Chromodinamics&subject={subject}", viewer)
    assert [p["id"] for p in typo.body["pods"]] == [made[2]["id"]]
    member_only = await api.get("/api/pods?member=true", viewer)
    assert member_only.body["total"] == 0
    for query, field in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("category=x", "category"),
        ("isPublic=maybe", "isPublic"),
        ("color=red", "color"),
    ]:
        bad = await api.get(f"/api/pods?{query}", viewer)
        assert bad.status == 422, query
        assert bad.error_field() == field


async def test_only_owner_and_admin_edit_only_owner_deletes(api: Api) -> None:
    owner, admin, member = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner)
    pid = pod["id"]
    for u in (admin, member):
        assert (await api.post(f"/api/pods/{pid}/join", u)).status == 200
    assert (
        await api.put(f"/api/pods/{pid}/members/{admin.id}", owner, json={"role": "admin"})
    ).status == 200

    assert (await api.put(f"/api/pods/{pid}", member, json={"name": "Hijacked"})).status == 403
    resp = await api.put(f"/api/pods/{pid}", admin, json={"description": "Now with snacks"})
    assert resp.status == 200
    assert resp.body["description"] == "Now with snacks"
    assert (await api.delete(f"/api/pods/{pid}", admin)).status == 403
    assert (await api.delete(f"/api/pods/{pid}", member)).status == 403
    assert (await api.delete(f"/api/pods/{pid}", owner)).status == 204
    assert (await api.get(f"/api/pods/{pid}", owner)).status == 404


async def test_update_validation(api: Api) -> None:
    owner, a, b = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner, maxMembers=5)
    for u in (a, b):
        await api.post(f"/api/pods/{pod['id']}/join", u)
    resp = await api.put(f"/api/pods/{pod['id']}", owner, json={"maxMembers": 2})
    assert resp.status == 422
    assert resp.error_field() == "maxMembers"
    assert "current member count (3)" in resp.body["error"]["details"][0]["reason"]
    assert (await api.put(f"/api/pods/{pod['id']}", owner, json={})).status == 422
    resp = await api.put(f"/api/pods/{pod['id']}", owner, json={"name": None})
    assert resp.status == 422
    assert resp.error_field() == "name"
    assert (await api.put(f"/api/pods/{MISSING}", owner, json={"name": "x"})).status == 404


async def test_join_leave_and_counts(api: Api, db: Any) -> None:
    owner, student = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    pid = pod["id"]
    joined = await api.post(f"/api/pods/{pid}/join", student)
    assert joined.status == 200
    assert joined.body["role"] == "member"
    assert joined.body["memberCount"] == 2
    again = await api.post(f"/api/pods/{pid}/join", student)
    assert again.status == 200
    assert again.body["memberCount"] == 2
    assert (await api.get(f"/api/pods/{pid}", student)).body["myRole"] == "member"
    assert (await api.delete(f"/api/pods/{pid}/leave", student)).status == 204
    assert (await api.delete(f"/api/pods/{pid}/leave", student)).status == 409
    count = await db.fetchval("SELECT current_member_count FROM pods WHERE id = $1::uuid", pid)
    assert count == 1
    owner_leaves = await api.delete(f"/api/pods/{pid}/leave", owner)
    assert owner_leaves.status == 409
    assert owner_leaves.body["error"]["code"] == "owner_cannot_leave"
    assert (await api.post(f"/api/pods/{MISSING}/join", student)).status == 404


async def test_concurrent_joins_never_pass_max_members(api: Api, db: Any) -> None:
    owner = await api.register()
    pod = await api.create_pod(owner, maxMembers=5)
    students = await asyncio.gather(*(api.register() for _ in range(12)))
    results = await asyncio.gather(*(api.post(f"/api/pods/{pod['id']}/join", s) for s in students))
    statuses = sorted(r.status for r in results)
    assert statuses == [200] * 4 + [409] * 8
    assert all(r.body["error"]["code"] == "pod_full" for r in results if r.status == 409)
    row = await db.fetchrow(
        """SELECT p.current_member_count AS stored,
                  (SELECT count(*) FROM pod_memberships m
                   WHERE m.pod_id = p.id AND m.status = 'active') AS actual
           FROM pods p WHERE p.id = $1::uuid""",
        pod["id"],
    )
    assert row["stored"] == row["actual"] == 5


async def test_concurrent_joins_and_leaves_keep_count_true(api: Api, db: Any) -> None:
    owner = await api.register()
    pod = await api.create_pod(owner, maxMembers=100)
    pid = pod["id"]
    students = await asyncio.gather(*(api.register() for _ in range(10)))
    await asyncio.gather(*(api.post(f"/api/pods/{pid}/join", s) for s in students[:5]))
    await asyncio.gather(
        *(api.delete(f"/api/pods/{pid}/leave", s) for s in students[:5]),
        *(api.post(f"/api/pods/{pid}/join", s) for s in students[5:]),
        *(api.post(f"/api/pods/{pid}/join", s) for s in students[5:]),
    )
    stored = await db.fetchval("SELECT current_member_count FROM pods WHERE id = $1::uuid", pid)
    actual = await db.fetchval(
        "SELECT count(*) FROM pod_memberships WHERE pod_id = $1::uuid AND status = 'active'", pid
    )
    assert stored == actual == 6


async def _pod_with(api: Api, *roles: str, **pod_fields: Any) -> tuple[dict[str, Any], list[User]]:
    """A pod whose owner is users[0], then one user per role given."""
    owner = await api.register()
    pod = await api.create_pod(owner, **pod_fields)
    users = [owner]
    for role in roles:
        u = await api.register()
        inv = await api.post(f"/api/pods/{pod['id']}/invite", owner, json={"userId": u.id})
        resp = await api.post(
            f"/api/pods/{pod['id']}/join", u, json={"invitationCode": inv.body["invitationCode"]}
        )
        assert resp.status == 200, resp.body
        if role != "member":
            r = await api.put(f"/api/pods/{pod['id']}/members/{u.id}", owner, json={"role": role})
            assert r.status == 200, r.body
        users.append(u)
    return pod, users


async def test_private_pod_needs_an_invitation_addressed_to_you(api: Api) -> None:
    pod, (owner,) = await _pod_with(api, isPublic=False)
    invited, eve = await api.register(), await api.register()
    inv = await api.post(
        f"/api/pods/{pod['id']}/invite", owner, json={"email": invited.email, "message": "Join us!"}
    )
    assert inv.status == 201
    # whether the address has an account is not told to the inviter
    assert inv.body["inviteeId"] is None
    assert inv.body["status"] == "pending"
    code = inv.body["invitationCode"]
    # a second invitation to the same person returns the pending one
    dup = await api.post(f"/api/pods/{pod['id']}/invite", owner, json={"userId": invited.id})
    assert dup.status == 200
    assert dup.body["id"] == inv.body["id"]

    stolen = await api.post(f"/api/pods/{pod['id']}/join", eve, json={"invitationCode": code})
    assert stolen.status == 403
    assert stolen.body["error"]["code"] == "invalid_invitation"
    # the invitee can see the pod before joining
    assert (await api.get(f"/api/pods/{pod['id']}", invited)).status == 200
    ok = await api.post(f"/api/pods/{pod['id']}/join", invited, json={"invitationCode": code})
    assert ok.status == 200
    reused = await api.post(f"/api/pods/{pod['id']}/join", eve, json={"invitationCode": code})
    assert reused.status == 403


async def test_invitation_by_email_before_signup_then_join(api: Api) -> None:
    pod, (owner,) = await _pod_with(api, isPublic=False)
    name = unique("late")
    inv = await api.post(
        f"/api/pods/{pod['id']}/invite", owner, json={"email": f"{name}@example.com"}
    )
    assert inv.status == 201
    assert inv.body["inviteeId"] is None
    late = await api.register(username=name)
    # a pending invitation to their address lets them join without typing the code
    assert (await api.post(f"/api/pods/{pod['id']}/join", late)).status == 200


async def test_invite_rules(api: Api) -> None:
    pod, (owner, moderator, member) = await _pod_with(api, "moderator", "member")
    other = await api.register()
    pid = pod["id"]
    assert (
        await api.post(f"/api/pods/{pid}/invite", member, json={"userId": other.id})
    ).status == 403
    assert (
        await api.post(f"/api/pods/{pid}/invite", moderator, json={"userId": other.id})
    ).status == 403
    for body, field in [
        ({}, "email"),
        ({"email": "a@b.co", "userId": other.id}, "email"),
        ({"email": "nope"}, "email"),
        ({"userId": "x"}, "userId"),
        ({"userId": MISSING}, "userId"),
    ]:
        resp = await api.post(f"/api/pods/{pid}/invite", owner, json=body)
        assert resp.status == 422, body
        assert resp.error_field() == field
    already = await api.post(f"/api/pods/{pid}/invite", owner, json={"userId": member.id})
    assert already.status == 409


async def test_invitee_gets_a_notification(api: Api, db: Any) -> None:
    pod, (owner,) = await _pod_with(api)
    guest = await api.register()
    await api.post(f"/api/pods/{pod['id']}/invite", owner, json={"userId": guest.id})
    row = await db.fetchrow(
        "SELECT notification_type, sender_id::text, metadata FROM notifications"
        " WHERE recipient_id = $1::uuid",
        guest.id,
    )
    assert row["notification_type"] == "pod_invite"
    assert row["sender_id"] == owner.id
    assert row["metadata"]  # carries the pod and the code


async def test_bans_and_removals_follow_rank(api: Api) -> None:
    pod, (owner, admin, moderator, member) = await _pod_with(api, "admin", "moderator", "member")
    pid = pod["id"]
    # a moderator cannot act on an admin; a member cannot act at all
    assert (await api.post(f"/api/pods/{pid}/members/{admin.id}/ban", moderator)).status == 403
    assert (await api.post(f"/api/pods/{pid}/members/{moderator.id}/ban", member)).status == 403
    assert (await api.post(f"/api/pods/{pid}/members/{owner.id}/ban", admin)).status == 403
    # a moderator bans a member; the count drops; the banned user cannot rejoin
    assert (await api.post(f"/api/pods/{pid}/members/{member.id}/ban", moderator)).status == 204
    assert (await api.get(f"/api/pods/{pid}", owner)).body["currentMemberCount"] == 3
    rejoin = await api.post(f"/api/pods/{pid}/join", member)
    assert rejoin.status == 403
    assert rejoin.body["error"]["code"] == "banned"
    # moderators see banned members in the list; members do not see them
    listing = await api.get(f"/api/pods/{pid}/members", moderator)
    assert {m["userId"]: m["status"] for m in listing.body["members"]}[member.id] == "banned"
    # unban: they may join again
    assert (await api.delete(f"/api/pods/{pid}/members/{member.id}/ban", admin)).status == 204
    assert (await api.post(f"/api/pods/{pid}/join", member)).status == 200
    # an admin removes a moderator
    assert (await api.delete(f"/api/pods/{pid}/members/{moderator.id}", admin)).status == 204
    assert (await api.get(f"/api/pods/{pid}", moderator)).body["myRole"] is None
    assert (await api.delete(f"/api/pods/{pid}/members/{MISSING}", admin)).status == 404


async def test_role_changes(api: Api) -> None:
    pod, (owner, admin, member) = await _pod_with(api, "admin", "member")
    pid = pod["id"]
    # an admin cannot create admins or touch the owner
    assert (
        await api.put(f"/api/pods/{pid}/members/{member.id}", admin, json={"role": "admin"})
    ).status == 403
    assert (
        await api.put(f"/api/pods/{pid}/members/{owner.id}", admin, json={"role": "member"})
    ).status == 403
    ok = await api.put(f"/api/pods/{pid}/members/{member.id}", admin, json={"role": "moderator"})
    assert ok.status == 200
    assert ok.body["role"] == "moderator"
    bad = await api.put(f"/api/pods/{pid}/members/{member.id}", owner, json={"role": "king"})
    assert bad.status == 422
    assert bad.error_field() == "role"
    # ownership transfer: exactly one owner afterwards
    t = await api.put(f"/api/pods/{pid}/members/{admin.id}", owner, json={"role": "owner"})
    assert t.status == 200
    members = (await api.get(f"/api/pods/{pid}/members", owner)).body["members"]
    roles = {m["userId"]: m["role"] for m in members}
    assert roles[admin.id] == "owner"
    assert roles[owner.id] == "admin"
    assert (await api.delete(f"/api/pods/{pid}", owner)).status == 403
    assert (await api.delete(f"/api/pods/{pid}/leave", owner)).status == 204


async def test_members_of_private_pod_need_membership(api: Api) -> None:
    pod, (_owner, member) = await _pod_with(api, "member", isPublic=False)
    outsider = await api.register()
    assert (await api.get(f"/api/pods/{pod['id']}/members", member)).status == 200
    assert (await api.get(f"/api/pods/{pod['id']}/members", outsider)).status == 404


async def test_analytics(api: Api, db: Any) -> None:
    """Members read their pod's figures (what they mean: tests/test_analytics_pods.py)."""
    pod, (_owner, a, _b) = await _pod_with(api, "member", "member")
    resp = await api.get(f"/api/pods/{pod['id']}/analytics", a)
    assert resp.status == 200
    body = resp.body
    assert body["memberCount"] == 3
    assert body["activeMembers"] == 0  # joining is not activity
    assert body["totalSessions"] == 0
    assert body["totalResources"] == 0
    outsider = await api.register()
    assert (await api.get(f"/api/pods/{pod['id']}/analytics", outsider)).status == 403


async def test_every_pod_route_requires_a_token(api: Api) -> None:
    for method, path in [
        ("GET", "/api/pods"),
        ("POST", "/api/pods"),
        ("GET", f"/api/pods/{MISSING}"),
        ("POST", f"/api/pods/{MISSING}/join"),
        ("DELETE", f"/api/pods/{MISSING}/leave"),
        ("POST", f"/api/pods/{MISSING}/invite"),
        ("GET", f"/api/pods/{MISSING}/analytics"),
        ("GET", f"/api/pods/{MISSING}/members"),
    ]:
        resp = await api.call(method, path)
        assert resp.status == 401, (method, path)


async def test_membership_changes_are_published_to_the_pod_room(api: Api) -> None:
    owner, student = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    live = await listen_live(api, owner, f"pod:{pod['id']}")
    await api.post(f"/api/pods/{pod['id']}/join", student)
    joined = await live.next("event", "member_joined")
    assert joined["data"] == {
        "podId": pod["id"],
        "userId": student.id,
        "username": student.username,
        "memberCount": 2,
    }
    await api.delete(f"/api/pods/{pod['id']}/leave", student)
    left = await live.next("event", "member_left")
    assert left["data"]["memberCount"] == 1


async def test_invitee_is_notified_live(api: Api) -> None:
    owner, guest = await api.register(), await api.register()
    pod = await api.create_pod(owner, name="Organic Chemistry")
    live = await listen_live(api, guest, f"user:{guest.id}")
    await api.post(f"/api/pods/{pod['id']}/invite", owner, json={"userId": guest.id})
    note = await live.next("notification")
    assert note["type"] == "pod_invite"
    assert note["title"] == f"{owner.username} invited you to Organic Chemistry"
    assert note["unreadCount"] == 1
    assert note["metadata"]["podId"] == pod["id"]
