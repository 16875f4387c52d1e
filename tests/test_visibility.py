"""One rule per kind of content, the same on every read path.

Posts (owner, pod member, other user; public / pod / private / public-in-a-private-pod /
anonymous) across the feed, a single fetch, comments, search, the mobile feed and mobile sync.
Resources (owner, user it is shared with, member of a pod it is shared with, other user;
public / private / shared-with-user / shared-with-pod) across listing, fetching, search,
suggestions and downloads.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, User, unique
from tests.social import invite_and_join, join, post, resource


async def _feed_ids(api: Api, user: User) -> set[str]:
    seen: set[str] = set()
    cursor = None
    while True:
        url = "/api/feed?limit=50" + (f"&cursor={cursor}" if cursor else "")
        body = (await api.get(url, user)).body
        seen |= {p["id"] for p in body["posts"]}
        cursor = body["nextCursor"]
        if cursor is None:
            return seen


async def _synced_ids(api: Api, user: User) -> set[str]:
    """Every post a sync from long ago brings, following it while it has more (the shared
    test database holds other tests' public posts too)."""
    seen: set[str] = set()
    stamp = "2000-01-01T00:00:00Z"
    while True:
        body = (await api.post("/api/mobile/sync", user, json={"lastSyncTimestamp": stamp})).body
        seen |= {p["id"] for p in body["updates"]["posts"]}
        if not body["updates"]["hasMore"]:
            return seen
        stamp = body["syncTimestamp"]


async def test_post_visibility_matrix(api: Api) -> None:
    owner, member, other = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner)
    secret = await api.create_pod(owner, isPublic=False)
    await join(api, member, pod)
    await invite_and_join(api, owner, member, secret)
    word = unique("zebrafish")
    posts = {
        "public": await post(api, owner, f"{word} public"),
        "pod": await post(api, owner, f"{word} pod", podId=pod["id"]),
        "private": await post(api, owner, f"{word} private", visibility="private"),
        "public_in_private_pod": await post(
            api, owner, f"{word} inner", podId=secret["id"], visibility="public"
        ),
        "anonymous": await post(api, owner, f"{word} anon", podId=pod["id"], isAnonymous=True),
    }
    expected = {
        # who may read:      owner  member  other
        "public": (True, True, True),
        "pod": (True, True, False),
        "private": (True, False, False),
        "public_in_private_pod": (True, True, False),
        "anonymous": (True, True, False),
    }
    viewers = (owner, member, other)
    for user, column in zip(viewers, range(3), strict=True):
        feed = await _feed_ids(api, user)
        search = await api.get(f"/api/search/posts?q={word}&limit=50", user)
        found = {h["post"]["id"] for h in search.body["hits"]}
        mobile = await api.get("/api/mobile/feed?limit=50", user)
        mobile_ids = {p["id"] for p in mobile.body["posts"]}
        synced = await _synced_ids(api, user)
        for name, made in posts.items():
            allowed = expected[name][column]
            where = f"{name} for {['owner', 'member', 'other'][column]}"
            assert (made["id"] in feed) == allowed, where
            assert (made["id"] in found) == allowed, where
            assert (made["id"] in mobile_ids) == allowed, where
            assert (made["id"] in synced) == allowed, where
            single = await api.get(f"/api/posts/{made['id']}", user)
            assert single.status == (200 if allowed else 404), where
            comments = await api.get(f"/api/posts/{made['id']}/comments", user)
            assert comments.status == (200 if allowed else 404), where
            like = await api.post(
                f"/api/posts/{made['id']}/interactions", user, json={"type": "bookmark"}
            )
            assert like.status == (200 if allowed else 404), where
            if allowed and name == "anonymous":
                # the author is hidden from everyone but the author (and moderators)
                assert (single.body["author"] is not None) == (user is owner), where


async def test_resource_visibility_matrix(api: Api) -> None:
    owner, friend, member, other = [await api.register() for _ in range(4)]
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    subject = unique("Visibility")
    word = unique("axolotl")

    async def make(name: str, **fields: Any) -> dict[str, Any]:
        return await resource(
            api, owner, f"{word} {name}", subject=subject, resourceType="link",
            fileUrl=f"https://files.example.org/{name}", **fields,
        )  # fmt: skip

    resources = {
        "public": await make("public", isPublic=True),
        "private": await make("private"),
        "shared_with_user": await make("user"),
        "shared_with_pod": await make("pod"),
    }
    share = f"/api/resources/{resources['shared_with_user']['id']}/share"
    assert (await api.post(share, owner, json={"shareWithUserId": friend.id})).status == 201
    share = f"/api/resources/{resources['shared_with_pod']['id']}/share"
    assert (await api.post(share, owner, json={"shareWithPodId": pod["id"]})).status == 201
    expected = {
        # who may see:        owner  friend  member  other
        "public": (True, True, True, True),
        "private": (True, False, False, False),
        "shared_with_user": (True, True, False, False),
        "shared_with_pod": (True, False, True, False),
    }
    viewers = (owner, friend, member, other)
    for column, user in enumerate(viewers):
        listing = await api.get(f"/api/resources?subject={subject}", user)
        listed = {h["id"] for h in listing.body["hits"]}
        searched = await api.get(f"/api/resources?subject={subject}&search={word}", user)
        found = {h["id"] for h in searched.body["hits"]}
        suggested = await api.get(f"/api/search/suggest?q={word}&limit=20", user)
        titles = {s["text"] for s in suggested.body["suggestions"]}
        allowed_count = sum(row[column] for row in expected.values())
        assert listing.body["total"] == allowed_count
        assert searched.body["total"] == allowed_count
        assert (
            sum(f["count"] for f in searched.body["aggregations"]["resourceTypes"]) == allowed_count
        )
        for name, made in resources.items():
            allowed = expected[name][column]
            where = f"{name} for {['owner', 'friend', 'member', 'other'][column]}"
            assert (made["id"] in listed) == allowed, where
            assert (made["id"] in found) == allowed, where
            assert (made["title"] in titles) == allowed, where
            fetched = await api.get(f"/api/resources/{made['id']}", user)
            assert fetched.status == (200 if allowed else 404), where
            download = await api.get(f"/api/resources/{made['id']}/download", user)
            assert download.status == (200 if allowed else 404), where
    # Leaving the pod takes the pod's share away.
    assert (await api.delete(f"/api/pods/{pod['id']}/leave", member)).status == 204
    gone = resources["shared_with_pod"]["id"]
    assert (await api.get(f"/api/resources/{gone}", member)).status == 404
    assert (await api.get(f"/api/resources/{gone}/download", member)).status == 404
