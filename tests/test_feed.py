"""The feeds through HTTP: all, my-pods, bookmarked, trending, a pod's feed; keyset cursors
that stay stable while posts arrive; and query plans that use the feed indexes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from peerspark_rt.social.db import posts as posts_db
from tests.helpers import Api, User
from tests.social import invite_and_join, join, post


def ids(page: Any) -> list[str]:
    return [p["id"] for p in page["posts"]]


async def walk(api: Api, user: User, query: str, limit: int) -> list[str]:
    """Every id of a feed, page by page."""
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        url = f"/api/feed?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        resp = await api.get(url, user)
        assert resp.status == 200, resp.body
        assert len(resp.body["posts"]) <= limit
        seen += ids(resp.body)
        cursor = resp.body["nextCursor"]
        if cursor is None:
            return seen
    raise AssertionError("feed did not end")


async def test_all_feed_is_public_posts_my_pods_and_my_own(api: Api) -> None:
    me, friend, stranger = await api.register(), await api.register(), await api.register()
    mine = await api.create_pod(friend)
    theirs = await api.create_pod(stranger)
    await join(api, me, mine)
    in_my_pod = await post(api, friend, "pod news", podId=mine["id"])
    private_in_my_pod = await post(
        api, friend, "friend's diary", podId=mine["id"], visibility="private"
    )
    elsewhere = await post(api, stranger, "other pod", podId=theirs["id"])
    public_elsewhere = await post(
        api, stranger, "hello world", podId=theirs["id"], visibility="public"
    )
    public_no_pod = await post(api, stranger, "open letter")
    my_private = await post(api, me, "my diary", visibility="private")
    feed = await walk(api, me, "type=all", 50)
    assert len(feed) == len(set(feed))
    for visible in (in_my_pod, public_elsewhere, public_no_pod, my_private):
        assert visible["id"] in feed
    for hidden in (private_in_my_pod, elsewhere):
        assert hidden["id"] not in feed
    # newest first
    positions = [
        feed.index(p["id"]) for p in (my_private, public_no_pod, public_elsewhere, in_my_pod)
    ]
    assert positions == sorted(positions)


async def test_my_pods_feed_pages_exactly(api: Api) -> None:
    me, owner = await api.register(), await api.register()
    pods = [await api.create_pod(owner) for _ in range(3)]
    for pod in pods:
        await join(api, me, pod)
    made = [await post(api, owner, f"post {i}", podId=pods[i % 3]["id"]) for i in range(7)]
    await post(api, owner, "public but no pod")  # not a pod post
    first = await api.get("/api/feed?type=my-pods&limit=2", me)
    assert ids(first.body) == [made[6]["id"], made[5]["id"]]
    walked = await walk(api, me, "type=my-pods", 2)
    assert walked == [p["id"] for p in reversed(made)]


async def test_cursor_is_stable_while_new_posts_arrive(api: Api) -> None:
    owner = await api.register()
    pod = await api.create_pod(owner)
    made = [await post(api, owner, f"p{i}", podId=pod["id"]) for i in range(5)]
    page1 = await api.get(f"/api/feed?podId={pod['id']}&limit=2", owner)
    assert ids(page1.body) == [made[4]["id"], made[3]["id"]]
    newer = [await post(api, owner, f"new {i}", podId=pod["id"]) for i in range(3)]
    cursor = page1.body["nextCursor"]
    page2 = await api.get(f"/api/feed?podId={pod['id']}&limit=2&cursor={cursor}", owner)
    assert ids(page2.body) == [made[2]["id"], made[1]["id"]]
    page3 = await api.get(
        f"/api/feed?podId={pod['id']}&limit=2&cursor={page2.body['nextCursor']}", owner
    )
    assert ids(page3.body) == [made[0]["id"]]
    assert page3.body["nextCursor"] is None
    top = await api.get(f"/api/feed?podId={pod['id']}&limit=3", owner)
    assert ids(top.body) == [p["id"] for p in reversed(newer)]


async def test_bookmarked_feed_in_bookmark_order(api: Api) -> None:
    me, owner = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, me, pod)
    a = await post(api, owner, "a", podId=pod["id"])
    b = await post(api, owner, "b", podId=pod["id"])
    c = await post(api, owner, "c")
    for target in (b, c, a):
        resp = await api.post(
            f"/api/posts/{target['id']}/interactions", me, json={"type": "bookmark"}
        )
        assert resp.status == 200
        assert resp.body["active"] is True
    assert await walk(api, me, "type=bookmarked", 2) == [a["id"], c["id"], b["id"]]
    in_pod = await api.get(f"/api/feed?type=bookmarked&podId={pod['id']}", me)
    assert ids(in_pod.body) == [a["id"], b["id"]]
    assert all(p["bookmarked"] for p in in_pod.body["posts"])
    await api.post(f"/api/posts/{c['id']}/interactions", me, json={"type": "bookmark"})
    assert await walk(api, me, "type=bookmarked", 10) == [a["id"], b["id"]]
    # leaving the pod takes its pod-only posts out of my bookmarks too
    assert (await api.delete(f"/api/pods/{pod['id']}/leave", me)).status == 204
    assert await walk(api, me, "type=bookmarked", 10) == []


async def test_trending_weighs_engagement_against_age(api: Api, db: asyncpg.Connection) -> None:
    owner = await api.register()
    fans = [await api.register() for _ in range(3)]
    pod = await api.create_pod(owner)
    for fan in fans:
        await join(api, fan, pod)
    old_hit = await post(api, owner, "old but loved", podId=pod["id"])
    fresh = await post(api, owner, "fresh and quiet", podId=pod["id"])
    older_quiet = await post(api, owner, "old and quiet", podId=pod["id"])
    # Ages: the loved post is 10 hours old, the quiet ones 1 and 11 hours.
    for made, hours in ((old_hit, 10), (fresh, 1), (older_quiet, 11)):
        await db.execute(
            "UPDATE posts SET created_at = NOW() - make_interval(hours => $2) WHERE id = $1",
            uuid.UUID(made["id"]),
            hours,
        )
    for fan in fans:
        await api.post(f"/api/posts/{old_hit['id']}/interactions", fan, json={"type": "like"})
    await api.post(f"/api/posts/{old_hit['id']}/comments", fans[0], json={"content": "so good"})
    # likes 3 + 2 * comments 1 = 5: log2(6) = 2.58 doublings = 15.5 h of freshness
    # (old_hit 10h old) beats fresh (1h old, nothing); the quiet 11h post is last.
    expected = [old_hit["id"], fresh["id"], older_quiet["id"]]
    feed = await api.get(f"/api/feed?type=trending&podId={pod['id']}", fans[0])
    assert ids(feed.body) == expected
    assert await walk(api, fans[0], f"type=trending&podId={pod['id']}", 1) == expected
    everywhere = await walk(api, fans[1], "type=trending", 50)
    assert [i for i in everywhere if i in expected] == expected
    score = await db.fetchval(
        "SELECT trending_score FROM posts WHERE id = $1", uuid.UUID(old_hit["id"])
    )
    created = await db.fetchval(
        "SELECT extract(epoch FROM created_at) FROM posts WHERE id = $1", uuid.UUID(old_hit["id"])
    )
    assert abs(score - (2.584962500721156 + float(created) / 21600)) < 1e-6


async def test_pod_feed_for_outsiders(api: Api) -> None:
    owner, outsider = await api.register(), await api.register()
    public = await api.create_pod(owner)
    secret = await api.create_pod(owner, isPublic=False)
    members_only = await post(api, owner, "members", podId=public["id"])
    everyone = await post(api, owner, "everyone", podId=public["id"], visibility="public")
    feed = await api.get(f"/api/feed?podId={public['id']}", outsider)
    assert ids(feed.body) == [everyone["id"]]
    assert members_only["id"] not in ids(feed.body)
    assert (await api.get(f"/api/feed?podId={secret['id']}", outsider)).status == 404
    resp = await api.get(f"/api/feed?type=my-pods&podId={public['id']}", outsider)
    assert resp.status == 403
    member = await api.register()
    await invite_and_join(api, owner, member, secret)
    hidden = await post(api, owner, "secret", podId=secret["id"])
    assert ids((await api.get(f"/api/feed?podId={secret['id']}", member)).body) == [hidden["id"]]


async def test_feed_query_validation(api: Api) -> None:
    me, owner = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, me, pod)
    for i in range(3):
        await post(api, owner, f"p{i}", podId=pod["id"])
    other = await api.get(f"/api/feed?podId={pod['id']}&limit=1", me)
    for query, field in [
        ("type=newest", "type"),
        ("limit=0", "limit"),
        ("limit=51", "limit"),
        ("limit=ten", "limit"),
        ("podId=nope", "podId"),
        ("cursor=!!!", "cursor"),
        ("cursor=eyJmIjoxfQ", "cursor"),
        (f"type=my-pods&cursor={other.body['nextCursor']}", "cursor"),  # another feed's cursor
        ("sort=new", "sort"),
    ]:
        resp = await api.get(f"/api/feed?{query}", me)
        assert resp.status == 422, (query, resp.body)
        assert resp.error_field() == field, (query, resp.body)
    assert (await api.get("/api/feed")).status == 401
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await api.get(f"/api/feed?podId={missing}", me)).status == 404


# --------------------------------------------------------------------------- query plans


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def test_feed_queries_use_the_feed_indexes(db: asyncpg.Connection) -> None:
    """On 30,000 seeded posts (rolled back afterwards) every feed reads posts through its
    index, never by a sequential scan, first page and after a cursor alike."""
    tx = db.transaction()
    await tx.start()
    try:
        await db.execute(
            """INSERT INTO users (email, username, password_hash, first_name, last_name)
               SELECT 'plan' || g || '@t.local', 'plan' || g || 'x' || $1, 'x', 'P', 'Q'
               FROM generate_series(1, 300) g""",
            uuid.uuid4().hex[:6],
        )
        users = [
            r["id"] for r in await db.fetch("SELECT id FROM users WHERE email LIKE 'plan%@t.local'")
        ]
        await db.execute(
            """INSERT INTO pods (name, subject, is_public, max_members)
               SELECT 'plan pod ' || g, 'Plans', g % 4 <> 0, 10000 FROM generate_series(1, 60) g"""
        )
        pods = [r["id"] for r in await db.fetch("SELECT id FROM pods WHERE name LIKE 'plan pod %'")]
        viewer = users[0]
        await db.executemany(
            """INSERT INTO pod_memberships (pod_id, user_id, role, status)
               VALUES ($1, $2, 'member', 'active')""",
            [(pods[i], viewer) for i in range(1, 5)],
        )
        await db.execute(
            """INSERT INTO posts (author_id, pod_id, content, visibility, created_at)
               SELECT ($1::uuid[])[1 + g % 300],
                      CASE WHEN g % 5 = 0 THEN NULL ELSE ($2::uuid[])[1 + (g * 7) % 60] END,
                      'plan post ' || g,
                      CASE WHEN g % 5 < 2 THEN 'public' ELSE 'pod' END,
                      NOW() - g * interval '1 minute'
               FROM generate_series(1, 30000) g""",
            users,
            pods,
        )
        await db.execute(
            """INSERT INTO post_interactions (post_id, user_id, interaction_type)
               SELECT id, $1, 'bookmark' FROM posts
               WHERE pod_id = $2 ORDER BY created_at DESC LIMIT 200""",
            viewer,
            pods[1],
        )
        # Everyone else's likes and bookmarks, so the viewer's are a small slice of the table.
        await db.execute(
            """INSERT INTO post_interactions (post_id, user_id, interaction_type)
               SELECT p.id, ($1::uuid[])[2 + (row_number() OVER ()) % 299],
                      CASE WHEN random() < 0.5 THEN 'like' ELSE 'bookmark' END
               FROM posts p WHERE p.content LIKE 'plan post %'
               ON CONFLICT DO NOTHING""",
            users,
        )
        await db.execute(
            "ANALYZE posts; ANALYZE post_interactions; ANALYZE pod_memberships; ANALYZE pods"
        )
        expected: dict[posts_db.FeedSource, set[str]] = {
            "all": {"idx_posts_feed_public", "idx_posts_feed_pod", "idx_posts_feed_author"},
            "my-pods": {"idx_posts_feed_pod"},
            "trending": {"idx_posts_trending_public", "idx_posts_trending_pod"},
            "pod": {"idx_posts_feed_pod_pinned"},
            "pod-trending": {"idx_posts_trending_pod"},
            "bookmarked": {"idx_post_interactions_user"},
        }
        for source, indexes in expected.items():
            key_count = len(posts_db.SORT_KEYS[source])
            pod_arg = (
                [pods[1]]
                if source in ("pod", "pod-trending")
                else [None]
                if source == "bookmarked"
                else []
            )
            rows = await db.fetch(posts_db.feed_sql(source, False), viewer, 51, *pod_arg)
            assert len(rows) == 51, source
            cursor = tuple(rows[-1][f"k{i}"] for i in range(key_count))
            for has_cursor, args in ((False, []), (True, list(cursor))):
                sql = posts_db.feed_sql(source, has_cursor)
                raw = await db.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", viewer, 21, *args, *pod_arg
                )
                plan = json.loads(raw)[0]["Plan"]
                nodes = _nodes(plan)
                used = {n["Index Name"] for n in nodes if "Index Name" in n}
                assert indexes <= used, (source, has_cursor, used)
                scans = [n for n in nodes if n.get("Relation Name") == "posts"]
                assert not [n for n in scans if n["Node Type"] == "Seq Scan"], (source, has_cursor)
                read = sum(int(n["Actual Rows"]) * int(n["Actual Loops"]) for n in scans)
                # a page of 21 reads a few streams of ~21 rows, not the 30,000-row table
                assert read < 400, (source, has_cursor, read)
    finally:
        await tx.rollback()
