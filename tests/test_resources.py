"""The resource vault through HTTP: CRUD, permissions, sharing, ratings, bookmarks, views and
downloads."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.helpers import Api, listen_live
from tests.social import join, resource

MISSING = "00000000-0000-0000-0000-000000000000"


async def test_create_and_fetch_counts_views(api: Api) -> None:
    owner, reader = await api.register(), await api.register()
    resp = await api.post(
        "/api/resources",
        owner,
        json={
            "title": "  Cell biology flashcards ",
            "description": "Mitochondria and friends",
            "resourceType": "flashcard",
            "content": "Q: powerhouse? A: mitochondria",
            "tags": ["Biology", "cells"],
            "subject": "Biology",
            "difficultyLevel": "beginner",
            "isPublic": True,
            "thumbnailUrl": "https://img.example.com/cell.png",
        },
    )
    assert resp.status == 201, resp.body
    made = resp.body
    assert made["title"] == "Cell biology flashcards"
    assert made["tags"] == ["biology", "cells"]
    assert made["myPermission"] == "owner"
    assert made["owner"]["id"] == owner.id
    assert (made["viewCount"], made["downloadCount"], made["ratingCount"]) == (0, 0, 0)
    assert made["shares"] == []
    for _ in range(2):
        seen = await api.get(f"/api/resources/{made['id']}", reader)
        assert seen.status == 200
    assert seen.body["viewCount"] == 2
    assert seen.body["myPermission"] == "view"
    assert seen.body["content"] == "Q: powerhouse? A: mitochondria"
    assert "shares" not in seen.body  # only those who may share see the grants
    own = await api.get(f"/api/resources/{made['id']}", owner)
    assert own.body["viewCount"] == 2  # the owner's own views do not count


async def test_create_validation(api: Api) -> None:
    owner = await api.register()
    for body, field in [
        ({"resourceType": "note"}, "title"),
        ({"title": "t"}, "resourceType"),
        ({"title": "t", "resourceType": "poster"}, "resourceType"),
        ({"title": " ", "resourceType": "note"}, "title"),
        ({"title": "t" * 256, "resourceType": "note"}, "title"),
        ({"title": "t", "resourceType": "link"}, "fileUrl"),
        ({"title": "t", "resourceType": "link", "fileUrl": "ftp://x"}, "fileUrl"),
        ({"title": "t", "resourceType": "note", "difficultyLevel": "expert"}, "difficultyLevel"),
        ({"title": "t", "resourceType": "note", "uploadId": MISSING}, "uploadId"),
        ({"title": "t", "resourceType": "note", "isPublic": "true"}, "isPublic"),
        ({"title": "t", "resourceType": "note", "rating": 5}, "rating"),
    ]:
        resp = await api.post("/api/resources", owner, json=body)
        assert resp.status == 422, (body, resp.body)
        assert resp.error_field() == field, (body, resp.body)


async def test_permissions_view_edit_admin_owner(api: Api) -> None:
    owner, viewer, editor, admin, outsider = [await api.register() for _ in range(5)]
    made = await resource(api, owner, "Lab report template")
    path = f"/api/resources/{made['id']}"
    for user, level in ((viewer, "view"), (editor, "edit"), (admin, "admin")):
        resp = await api.post(
            f"{path}/share", owner, json={"shareWithUserId": user.id, "permissionLevel": level}
        )
        assert resp.status == 201, resp.body
        assert resp.body["permissionLevel"] == level
    assert (await api.get(path, outsider)).status == 404
    assert (await api.put(path, outsider, json={"title": "x"})).status == 404
    assert (await api.put(path, viewer, json={"title": "x"})).status == 403
    resp = await api.put(path, editor, json={"title": "Lab report template v2", "tags": ["Lab"]})
    assert resp.status == 200
    assert resp.body["title"] == "Lab report template v2"
    assert resp.body["tags"] == ["lab"]
    assert resp.body["myPermission"] == "edit"
    assert (await api.put(path, editor, json={"isPublic": True})).status == 403
    resp = await api.put(path, admin, json={"isPublic": True})
    assert resp.status == 200
    assert resp.body["isPublic"] is True
    assert {s["sharedWithUserId"] for s in resp.body["shares"]} == {viewer.id, editor.id, admin.id}
    resp = await api.post(f"{path}/share", editor, json={"shareWithUserId": outsider.id})
    assert resp.status == 403
    resp = await api.post(f"{path}/share", admin, json={"shareWithUserId": outsider.id})
    assert resp.status == 201
    assert (await api.delete(path, admin)).status == 403
    for body, field in [
        ({}, "body"),
        ({"title": None}, "title"),
        ({"resourceType": "link"}, "fileUrl"),
        ({"difficultyLevel": "hard"}, "difficultyLevel"),
    ]:
        resp = await api.put(path, owner, json=body)
        assert resp.status == 422, (body, resp.body)
        assert resp.error_field() == field, (body, resp.body)
    assert (await api.delete(path, owner)).status == 204
    for user in (owner, viewer, admin):
        assert (await api.get(path, user)).status == 404
    assert (await api.delete(path, owner)).status == 404
    assert (await api.get(f"/api/resources/{MISSING}", owner)).status == 404
    assert (await api.get("/api/resources/nope", owner)).status == 404


async def test_sharing_rules(api: Api) -> None:
    owner, friend, member, stranger = [await api.register() for _ in range(4)]
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    other_pod = await api.create_pod(stranger)
    made = await resource(api, owner, "Shared notes")
    path = f"/api/resources/{made['id']}/share"
    first = await api.post(path, owner, json={"shareWithUserId": friend.id})
    assert first.status == 201
    assert first.body["permissionLevel"] == "view"
    again = await api.post(
        path, owner, json={"shareWithUserId": friend.id, "permissionLevel": "edit"}
    )
    assert again.status == 200
    assert again.body["id"] == first.body["id"]
    assert again.body["permissionLevel"] == "edit"
    room = await listen_live(api, member, f"pod:{pod['id']}")
    to_pod = await api.post(path, owner, json={"shareWithPodId": pod["id"]})
    assert to_pod.status == 201
    assert to_pod.body["sharedWithPodId"] == pod["id"]
    assert (await room.next("event", "resource_shared"))["data"]["resourceId"] == made["id"]
    seen = await api.get(f"/api/resources/{made['id']}", member)
    assert seen.status == 200
    assert seen.body["myPermission"] == "view"
    for body, status, field in [
        ({}, 422, "shareWithUserId"),
        ({"shareWithUserId": friend.id, "shareWithPodId": pod["id"]}, 422, "shareWithUserId"),
        ({"shareWithUserId": MISSING}, 422, "shareWithUserId"),
        ({"shareWithUserId": owner.id}, 422, "shareWithUserId"),
        ({"shareWithUserId": friend.id, "permissionLevel": "owner"}, 422, "permissionLevel"),
        ({"shareWithPodId": other_pod["id"]}, 403, None),
        ({"shareWithPodId": MISSING}, 404, None),
    ]:
        resp = await api.post(path, owner, json=body)
        assert resp.status == status, (body, resp.body)
        if field:
            assert resp.error_field() == field
    assert (await api.post(path, stranger, json={"shareWithUserId": stranger.id})).status == 404


async def test_resources_created_in_a_pod_are_shared_with_it(api: Api) -> None:
    owner, member, outsider = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    made = await resource(api, member, "Pod cheat sheet", podId=pod["id"])
    assert made["podId"] == pod["id"]
    assert (await api.get(f"/api/resources/{made['id']}", owner)).status == 200
    assert (await api.get(f"/api/resources/{made['id']}", outsider)).status == 404
    listed = await api.get(f"/api/resources?podId={pod['id']}", owner)
    assert [r["id"] for r in listed.body["hits"]] == [made["id"]]
    resp = await api.post(
        "/api/resources", outsider, json={"title": "x", "resourceType": "note", "podId": pod["id"]}
    )
    assert resp.status == 403


async def test_ratings_are_true_averages(api: Api, db: asyncpg.Connection) -> None:
    owner = await api.register()
    raters = [await api.register() for _ in range(3)]
    made = await resource(api, owner, "Rated notes", isPublic=True)
    path = f"/api/resources/{made['id']}/rate"
    results = await asyncio.gather(
        *(api.post(path, r, json={"rating": n}) for r, n in zip(raters, (5, 4, 2), strict=True))
    )
    assert all(r.status == 201 for r in results)
    assert results[0].body["created"] is True
    seen = await api.get(f"/api/resources/{made['id']}", raters[0])
    assert (seen.body["ratingAverage"], seen.body["ratingCount"]) == (3.67, 3)
    assert seen.body["myRating"] == 5
    update = await api.post(path, raters[2], json={"rating": 5, "review": "Clear and short"})
    assert update.status == 200
    assert update.body["created"] is False
    assert (update.body["ratingAverage"], update.body["ratingCount"]) == (4.67, 3)
    stored = await db.fetchrow(
        "SELECT rating_average, rating_count FROM resources WHERE id = $1", uuid.UUID(made["id"])
    )
    truth = await db.fetchrow(
        "SELECT round(avg(rating), 2) AS avg, count(*) AS n FROM resource_ratings"
        " WHERE resource_id = $1",
        uuid.UUID(made["id"]),
    )
    assert stored is not None
    assert truth is not None
    assert (stored["rating_average"], stored["rating_count"]) == (truth["avg"], truth["n"])
    mine = await api.get(f"/api/resources/{made['id']}", raters[2])
    assert mine.body["myReview"] == "Clear and short"
    for body, field in [
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({"rating": 3, "review": "x" * 2001}, "review"),
    ]:
        resp = await api.post(path, raters[0], json=body)
        assert resp.status == 422, body
        assert resp.error_field() == field, body
    resp = await api.post(path, owner, json={"rating": 5})
    assert resp.status == 403
    assert resp.body["error"]["code"] == "own_resource"
    private = await resource(api, owner, "Private")
    assert (
        await api.post(f"/api/resources/{private['id']}/rate", raters[0], json={"rating": 1})
    ).status == 404


async def test_bookmarks_and_downloads(api: Api) -> None:
    owner, reader = await api.register(), await api.register()
    link = await resource(
        api,
        owner,
        "MIT lecture",
        resourceType="link",
        fileUrl="https://ocw.mit.edu/x",
        isPublic=True,
    )
    note = await resource(api, owner, "Text only", isPublic=True)
    resp = await api.post(f"/api/resources/{link['id']}/bookmark", reader)
    assert resp.status == 200
    assert resp.body == {
        "resourceId": link["id"],
        "bookmarked": True,
        "changed": True,
    }
    listed = await api.get("/api/resources?bookmarked=true", reader)
    assert [r["id"] for r in listed.body["hits"]] == [link["id"]]
    assert listed.body["hits"][0]["bookmarked"] is True
    resp = await api.post(f"/api/resources/{link['id']}/bookmark", reader, json={"active": False})
    assert resp.body["bookmarked"] is False
    assert (await api.get("/api/resources?bookmarked=true", reader)).body["total"] == 0
    for expected in (1, 2):
        dl = await api.get(f"/api/resources/{link['id']}/download", reader)
        assert dl.status == 200
        assert dl.body["url"] == "https://ocw.mit.edu/x"
        assert dl.body["downloadCount"] == expected
    redirect = await api.get(
        f"/api/resources/{link['id']}/download?redirect=true", reader, allow_redirects=False
    )
    assert redirect.status == 302
    assert redirect.headers["Location"] == "https://ocw.mit.edu/x"
    resp = await api.get(f"/api/resources/{note['id']}/download", reader)
    assert resp.status == 409
    assert resp.body["error"]["code"] == "no_file"
    private = await resource(api, owner, "Mine only", resourceType="link", fileUrl="https://x.org")
    assert (await api.get(f"/api/resources/{private['id']}/download", reader)).status == 404
    assert (await api.post(f"/api/resources/{private['id']}/bookmark", reader)).status == 404
