"""Content reports through HTTP: three pending reports hide content and alert the pod's
moderators; moderators list reports and restore or remove the content."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.helpers import Api, User, listen_live
from tests.social import established, join, platform_moderator, post, resource, set_role

MISSING = "00000000-0000-0000-0000-000000000000"


async def _pod_with(api: Api, members: int) -> tuple[User, User, list[User], dict[str, Any]]:
    """A pod with an owner, a moderator and `members` members."""
    owner, mod = await api.register(), await api.register()
    users = [await api.register() for _ in range(members)]
    await established(api, owner, mod, *users)
    pod = await api.create_pod(owner)
    for user in (mod, *users):
        await join(api, user, pod)
    await set_role(api, owner, pod, mod, "moderator")
    return owner, mod, users, pod


async def report_post(api: Api, user: User, post_id: str, **extra: Any) -> Any:
    return await api.post(
        f"/api/posts/{post_id}/interactions", user, json={"type": "report", **extra}
    )


async def test_three_reports_hide_a_post_and_alert_moderators(api: Api) -> None:
    owner, mod, (author, r1, r2, r3, bystander), pod = await _pod_with(api, 5)
    made = await post(api, author, "buy cheap essays", podId=pod["id"])
    room = await listen_live(api, bystander, f"pod:{pod['id']}")
    mod_inbox = await listen_live(api, mod, f"user:{mod.id}")
    owner_inbox = await listen_live(api, owner, f"user:{owner.id}")
    first = await report_post(api, r1, made["id"], reason="spam", description="essay mill")
    assert first.status == 200
    report = first.body["report"]
    assert (report["pendingReports"], report["contentHidden"], report["alreadyReported"]) == (
        1,
        False,
        False,
    )
    again = await report_post(api, r1, made["id"], reason="spam")
    assert again.body["report"]["alreadyReported"] is True
    assert again.body["report"]["pendingReports"] == 1
    assert (await report_post(api, r2, made["id"], reason="spam")).body["report"][
        "contentHidden"
    ] is False
    third = await report_post(api, r3, made["id"], reason="inappropriate")
    assert third.body["report"]["pendingReports"] == 3
    assert third.body["report"]["contentHidden"] is True
    hidden = await room.next("event", "content_hidden")
    assert hidden["data"] == {"contentType": "post", "contentId": made["id"]}
    for inbox in (mod_inbox, owner_inbox):
        note = await inbox.next("notification")
        assert note["type"] == "content_report"
        assert note["metadata"]["contentId"] == made["id"]
        assert note["metadata"]["pendingReports"] == 3
    # Hidden: gone for everyone but its author, who sees why.
    assert (await api.get(f"/api/posts/{made['id']}", bystander)).status == 404
    feed = await api.get(f"/api/feed?podId={pod['id']}", bystander)
    assert made["id"] not in [p["id"] for p in feed.body["posts"]]
    own = await api.get(f"/api/posts/{made['id']}", author)
    assert own.status == 200
    assert own.body["status"] == "hidden"
    assert (await report_post(api, bystander, made["id"])).status == 404
    resp = await api.post(f"/api/posts/{made['id']}/interactions", author, json={"type": "like"})
    assert resp.status == 409


async def test_moderators_list_and_restore(api: Api) -> None:
    _, mod, (author, r1, r2, r3), pod = await _pod_with(api, 4)
    made = await post(api, author, "a hot take", podId=pod["id"])
    for reporter in (r1, r2, r3):
        await report_post(api, reporter, made["id"], reason="harassment")
    listed = await api.get(f"/api/reports?podId={pod['id']}", mod)
    assert listed.status == 200
    reports = listed.body["reports"]
    assert len(reports) == 3
    assert {r["reporter"]["id"] for r in reports} == {r1.id, r2.id, r3.id}
    assert all(r["contentId"] == made["id"] and r["pendingReports"] == 3 for r in reports)
    assert reports[0]["content"]["status"] == "hidden"
    assert reports[0]["content"]["excerpt"] == "a hot take"
    page = await api.get(f"/api/reports?podId={pod['id']}&limit=2", mod)
    rest = await api.get(
        f"/api/reports?podId={pod['id']}&limit=2&cursor={page.body['nextCursor']}", mod
    )
    assert [r["id"] for r in page.body["reports"] + rest.body["reports"]] == [
        r["id"] for r in reports
    ]
    # Members are not moderators; reports are invisible to them.
    assert (await api.get("/api/reports", r1)).status == 403
    resolve = f"/api/reports/{reports[0]['id']}/resolve"
    assert (await api.post(resolve, r1, json={"action": "restore"})).status == 404
    resp = await api.post(resolve, mod, json={"action": "restore"})
    assert resp.status == 200, resp.body
    assert resp.body["resolvedReports"] == 3
    assert resp.body["contentStatus"] == "published"
    assert (await api.get(f"/api/posts/{made['id']}", r1)).status == 200
    assert (await api.post(resolve, mod, json={"action": "remove"})).status == 409
    assert (await api.get(f"/api/reports?podId={pod['id']}", mod)).body["reports"] == []
    done = await api.get(f"/api/reports?podId={pod['id']}&status=resolved", mod)
    assert {r["resolution"] for r in done.body["reports"]} == {"restored"}
    assert {r["reviewedBy"] for r in done.body["reports"]} == {mod.id}
    for query, field in [
        ("status=open", "status"),
        ("limit=0", "limit"),
        ("contentType=x", "contentType"),
        ("contentType=message", "contentType"),  # only posts, comments, resources are reported
    ]:
        bad = await api.get(f"/api/reports?{query}", mod)
        assert bad.status == 422
        assert bad.error_field() == field
    other_pod = await api.create_pod(r1)
    assert (await api.get(f"/api/reports?podId={other_pod['id']}", mod)).status == 403


async def test_remove_tells_the_author(api: Api) -> None:
    _, mod, (author, r1), pod = await _pod_with(api, 2)
    made = await post(api, author, "rude words", podId=pod["id"])
    first = await report_post(api, r1, made["id"], reason="hate")
    assert first.status == 200
    listed = await api.get("/api/reports", mod)
    report_id = next(r["id"] for r in listed.body["reports"] if r["contentId"] == made["id"])
    inbox = await listen_live(api, author, f"user:{author.id}")
    room = await listen_live(api, r1, f"pod:{pod['id']}")
    resp = await api.post(f"/api/reports/{report_id}/resolve", mod, json={"action": "remove"})
    assert resp.status == 200
    assert resp.body["contentStatus"] == "removed"
    assert (await room.next("event", "content_removed"))["data"]["contentId"] == made["id"]
    note = await inbox.next("notification")
    assert note["type"] == "content_removed"
    assert note["metadata"]["contentId"] == made["id"]
    for user in (author, r1, mod):
        assert (await api.get(f"/api/posts/{made['id']}", user)).status == 404
    resp = await api.post(f"/api/reports/{report_id}/resolve", mod, json={"action": "wipe"})
    assert resp.status == 422
    assert resp.error_field() == "action"
    assert (
        await api.post(f"/api/reports/{MISSING}/resolve", mod, json={"action": "remove"})
    ).status == 404


async def test_comments_and_resources_are_reported_too(api: Api, db: asyncpg.Connection) -> None:
    owner, mod, (author, r1, r2, r3), pod = await _pod_with(api, 4)
    made = await post(api, owner, "thread", podId=pod["id"])
    resp = await api.post(f"/api/posts/{made['id']}/comments", author, json={"content": "spam!"})
    comment_id = resp.body["id"]
    for reporter in (r1, r2, r3):
        resp = await api.post(
            f"/api/comments/{comment_id}/interactions",
            reporter,
            json={"type": "report", "reason": "spam"},
        )
        assert resp.status == 200, resp.body
    assert resp.body["report"]["contentHidden"] is True
    tree = (await api.get(f"/api/posts/{made['id']}/comments", r1)).body["comments"]
    assert tree[0]["status"] == "hidden"
    assert tree[0]["content"] is None
    assert (await api.get(f"/api/posts/{made['id']}", r1)).body["commentCount"] == 0
    # Resources go through the generic endpoint; with no pod, platform moderators are alerted.
    staff = await platform_moderator(api, db, await api.register())
    staff_inbox = await listen_live(api, staff, f"user:{staff.id}")
    shared = await resource(api, author, "Answers to the exam", isPublic=True)
    for reporter in (r1, r2, r3):
        resp = await api.post(
            "/api/reports",
            reporter,
            json={"contentType": "resource", "contentId": shared["id"], "reason": "other"},
        )
        assert resp.status == 201, resp.body
    assert resp.body["contentHidden"] is True
    note = await staff_inbox.next("notification")
    assert note["metadata"]["contentType"] == "resource"
    assert (await api.get(f"/api/resources/{shared['id']}", r1)).status == 404
    assert (await api.get(f"/api/resources/{shared['id']}", author)).body["status"] == "hidden"
    queue = await api.get("/api/reports?contentType=resource", staff)
    assert shared["id"] in {r["contentId"] for r in queue.body["reports"]}
    # pod moderators do not see reports on content outside their pods
    assert shared["id"] not in {
        r["contentId"] for r in (await api.get("/api/reports", mod)).body["reports"]
    }


async def test_report_refusals(api: Api) -> None:
    owner, _, (member,), pod = await _pod_with(api, 1)
    outsider = await api.register()
    made = await post(api, owner, "members only", podId=pod["id"])
    resp = await report_post(api, owner, made["id"])
    assert resp.status == 409
    assert resp.body["error"]["code"] == "own_content"
    assert (await report_post(api, outsider, made["id"])).status == 404
    resp = await report_post(api, member, made["id"], reason="boring")
    assert resp.status == 422
    assert resp.error_field() == "reason"
    resp = await report_post(api, member, made["id"], active=False)
    assert resp.status == 422
    assert resp.error_field() == "active"
    for body, status, field in [
        ({"contentType": "video", "contentId": made["id"]}, 422, "contentType"),
        ({"contentType": "message", "contentId": made["id"]}, 422, "contentType"),
        ({"contentType": "post", "contentId": "nope"}, 422, "contentId"),
        ({"contentType": "post"}, 422, "contentId"),
        ({"contentType": "post", "contentId": MISSING}, 404, None),
    ]:
        resp = await api.post("/api/reports", member, json=body)
        assert resp.status == status, (body, resp.body)
        if field:
            assert resp.error_field() == field
        if field == "contentType":
            reason = resp.body["error"]["details"][0]["reason"]
            assert reason == "must be one of: post, comment, resource"
