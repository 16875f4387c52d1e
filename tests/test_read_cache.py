"""The hot-read cache (GET /api/feed, GET /api/resources): a write is seen by the very next
read, and a page cached for one viewer is never served to another - through HTTP, with the
cache in process and in Redis, and across two nodes sharing one Redis."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import pytest

from tests.helpers import Api, User, unique
from tests.social import invite_and_join, join, post, resource

_LINE = re.compile(
    r'^peerspark_read_cache_total\{cache="([\w-]+)",outcome="(\w+)"\} ([0-9.e+]+)$', re.M
)


async def _lookups(api: Api) -> dict[tuple[str, str], float]:
    body = (await api.metrics()).body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {(c, o): float(v) for c, o, v in _LINE.findall(text)}


async def _feed(api: Api, user: User) -> dict[str, dict[str, Any]]:
    resp = await api.get("/api/feed?type=all&limit=50", user)
    assert resp.status == 200, resp.body
    body = resp.body
    return {p["id"]: p for p in body["posts"]}


async def _search(api: Api, user: User, word: str) -> set[str]:
    resp = await api.get(f"/api/resources?search={word}&limit=50", user)
    assert resp.status == 200, resp.body
    return {h["id"] for h in resp.body["hits"]}


@pytest.fixture(params=["in-process", "redis"])
async def cached(request: pytest.FixtureRequest, make_client: Any) -> Api:
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        made: Api = await make_client(redis_url=redis_url, read_cache_ttl=60)
        return made
    made = await make_client(read_cache_ttl=60)
    return made


async def test_feed_is_served_from_the_cache_and_sees_every_write(cached: Api) -> None:
    api = cached
    author, reader = await api.register(), await api.register()
    first = await post(api, author, f"{unique('kestrel')} first")
    assert first["id"] in await _feed(api, reader)
    before = await _lookups(api)
    assert first["id"] in await _feed(api, reader)
    after = await _lookups(api)
    assert after.get(("feed", "hit"), 0) == before.get(("feed", "hit"), 0) + 1

    # a new post, a like, an edit, a deletion: each seen by the next read
    second = await post(api, author, f"{unique('kestrel')} second")
    assert second["id"] in await _feed(api, reader)
    liked = await api.post(f"/api/posts/{second['id']}/interactions", reader, json={"type": "like"})
    assert liked.status == 200, liked.body
    page = await _feed(api, reader)
    assert page[second["id"]]["liked"] is True
    assert page[second["id"]]["likeCount"] == 1
    edited = await api.put(f"/api/posts/{second['id']}", author, json={"content": "changed"})
    assert edited.status == 200, edited.body
    assert (await _feed(api, reader))[second["id"]]["content"] == "changed"
    assert (await api.delete(f"/api/posts/{second['id']}", author)).status in (200, 204)
    assert second["id"] not in await _feed(api, reader)


async def test_a_pod_post_cached_for_a_member_never_reaches_an_outsider(cached: Api) -> None:
    api = cached
    owner, member, outsider = [await api.register() for _ in range(3)]
    secret = await api.create_pod(owner, isPublic=False)
    await invite_and_join(api, owner, member, secret)
    inside = await post(api, owner, f"{unique('heron')} members only", podId=secret["id"])
    # the same query, member first (so the page is in the cache), then the outsider, twice
    for _ in range(2):
        assert inside["id"] in await _feed(api, member)
        assert inside["id"] not in await _feed(api, outsider)
    # leaving the pod is a write too: the member's cached page goes with it
    assert (await api.delete(f"/api/pods/{secret['id']}/leave", member)).status in (200, 204)
    assert inside["id"] not in await _feed(api, member)
    # and joining makes it appear for the newcomer at once
    await invite_and_join(api, owner, outsider, secret)
    assert inside["id"] in await _feed(api, outsider)


async def test_resource_search_cache_keeps_shares_private_and_sees_writes(cached: Api) -> None:
    api = cached
    owner, member, outsider = [await api.register() for _ in range(3)]
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    word = unique("quokka")
    shared = await resource(api, owner, f"{word} shared notes", resourceType="note")
    share = await api.post(
        f"/api/resources/{shared['id']}/share", owner, json={"shareWithPodId": pod["id"]}
    )
    assert share.status == 201, share.body
    for _ in range(2):
        assert shared["id"] in await _search(api, member, word)
        assert shared["id"] not in await _search(api, outsider, word)
        assert shared["id"] in await _search(api, owner, word)
    before = await _lookups(api)
    await _search(api, member, word)
    assert (await _lookups(api)).get(("resources", "hit"), 0) > before.get(("resources", "hit"), 0)
    # made public: everyone's next search has it
    made_public = await api.put(f"/api/resources/{shared['id']}", owner, json={"isPublic": True})
    assert made_public.status == 200, made_public.body
    assert shared["id"] in await _search(api, outsider, word)
    # renamed: the old word no longer finds it, for anyone
    renamed = await api.put(
        f"/api/resources/{shared['id']}", owner, json={"title": "something else entirely"}
    )
    assert renamed.status == 200, renamed.body
    for user in (owner, member, outsider):
        assert shared["id"] not in await _search(api, user, word)


async def test_two_nodes_on_one_redis_see_each_others_writes(
    make_client: Any, redis_url: str
) -> None:
    shared = {
        "redis_url": redis_url,
        "read_cache_ttl": 60,
        "redis_key_prefix": f"shared{unique('')}:",
        "jwt_secret": secrets.token_urlsafe(40),
        "jwt_refresh_secret": secrets.token_urlsafe(40),
    }
    one = await make_client(**shared)
    two = await make_client(**shared)
    owner, member = await one.register(), await one.register()
    secret = await one.create_pod(owner, isPublic=False)
    await invite_and_join(one, owner, member, secret)
    word = unique("ibis")
    first = await post(one, owner, f"{word} one", podId=secret["id"])
    assert first["id"] in await _feed(two, member)  # cached by node two
    second = await post(one, owner, f"{word} two", podId=secret["id"])  # written on node one
    page = await _feed(two, member)
    assert {first["id"], second["id"]} <= set(page)
    assert (await _lookups(two)).get(("feed", "hit"), 0) == 0  # two reads, two generations
    # node one finds the page node two cached, in the shared Redis
    assert set(await _feed(one, member)) == set(page)
    assert (await _lookups(one)).get(("feed", "hit"), 0) == 1


async def test_caching_can_be_turned_off(make_client: Any) -> None:
    api = await make_client(read_cache_ttl=0)
    user = await api.register()
    await _feed(api, user)
    await _feed(api, user)
    lookups = await _lookups(api)
    assert lookups.get(("feed", "hit"), 0) == 0
    assert lookups.get(("feed", "off"), 0) >= 2


async def _two_nodes(make_client: Any, **cached: Any) -> tuple[Api, Api]:
    """A node that caches and one that does not, on one database and one signing key."""
    keys = {
        "jwt_secret": secrets.token_urlsafe(40),
        "jwt_refresh_secret": secrets.token_urlsafe(40),
    }
    return (
        await make_client(read_cache_ttl=60, **keys, **cached),
        await make_client(read_cache_ttl=0, **keys),
    )


@pytest.mark.parametrize("broker", ["in-process", "redis"])
async def test_resource_search_pages_shared_between_viewers_are_each_viewers_own(
    make_client: Any, request: pytest.FixtureRequest, broker: str
) -> None:
    """Viewers who may see nothing beyond the public resources share one computed page, with
    their own grants, ratings and bookmarks on it; whoever may see more that matches (their
    own private resource, one shared with them or their pod) gets their own page. Every page
    is what a node without the cache answers, byte for byte."""
    cached_settings = (
        {"redis_url": request.getfixturevalue("redis_url"), "redis_key_prefix": unique("rc") + ":"}
        if broker == "redis"
        else {}
    )
    cached, uncached = await _two_nodes(make_client, **cached_settings)
    owner, rater, editor, plain, sharer, member = [await cached.register() for _ in range(6)]
    word = unique("wombat")
    public = [await resource(cached, owner, f"{word} public {n}", isPublic=True) for n in range(3)]
    private = await resource(cached, owner, f"{word} owner only", isPublic=False)
    shared = await resource(cached, sharer, f"{word} for one person", isPublic=False)
    assert (
        await cached.post(
            f"/api/resources/{shared['id']}/share", sharer, json={"shareWithUserId": rater.id}
        )
    ).status == 201
    pod = await cached.create_pod(sharer)
    await join(cached, member, pod)
    for_pod = await resource(cached, sharer, f"{word} for the pod", isPublic=False)
    assert (
        await cached.post(
            f"/api/resources/{for_pod['id']}/share", sharer, json={"shareWithPodId": pod["id"]}
        )
    ).status == 201
    edit = await cached.post(
        f"/api/resources/{public[1]['id']}/share",
        owner,
        json={"shareWithUserId": editor.id, "permissionLevel": "edit"},
    )
    assert edit.status == 201, edit.body
    assert (
        await cached.post(f"/api/resources/{public[0]['id']}/rate", rater, json={"rating": 4})
    ).status in (200, 201)
    assert (await cached.post(f"/api/resources/{public[2]['id']}/bookmark", rater)).status in (
        200,
        201,
    )

    path = f"/api/resources?search={word}&limit=20"
    expected = {}
    for user in (plain, owner, rater, editor, sharer, member):
        resp = await uncached.get(path, user)
        assert resp.status == 200, resp.body
        expected[user.id] = resp.body
    before = await _lookups(cached)
    # the plain viewer first: the page nobody gets is made for them; then everyone, twice
    for _ in range(2):
        for user in (plain, owner, rater, editor, sharer, member):
            resp = await cached.get(path, user)
            assert resp.status == 200, resp.body
            assert resp.body == expected[user.id], user
    after = await _lookups(cached)

    def seen(user: User) -> set[str]:
        return {h["id"] for h in expected[user.id]["hits"]}

    everyone = {r["id"] for r in public}
    assert seen(plain) == seen(editor) == everyone
    assert seen(owner) == everyone | {private["id"]}
    assert seen(rater) == everyone | {shared["id"]}
    assert seen(member) == everyone | {for_pod["id"]}
    mine = {h["id"]: h for h in expected[rater.id]["hits"]}
    assert mine[public[0]["id"]]["myRating"] == 4
    assert mine[public[2]["id"]]["bookmarked"] is True
    theirs = {h["id"]: h for h in expected[editor.id]["hits"]}
    assert theirs[public[1]["id"]]["myPermission"] == "edit"
    assert theirs[public[0]["id"]]["myPermission"] == "view"
    assert "myRating" not in theirs[public[0]["id"]] or theirs[public[0]["id"]]["myRating"] is None
    # the shared page was made once (for the plain viewer) and used for the editor: the others
    # may see more, and their pages were made for them
    public_made = after.get(("resources-public", "miss"), 0) - before.get(
        ("resources-public", "miss"), 0
    )
    public_used = after.get(("resources-public", "hit"), 0) - before.get(
        ("resources-public", "hit"), 0
    )
    assert (public_made, public_used) == (1, 5)
    # a write that makes one more resource visible to the plain viewer is seen at once
    assert (
        await cached.post(
            f"/api/resources/{private['id']}/share", owner, json={"shareWithUserId": plain.id}
        )
    ).status == 201
    assert private["id"] in await _search(cached, plain, word)
    assert private["id"] not in await _search(cached, editor, word)


async def test_cached_reads_check_the_session_on_every_request(cached: Api, db: Any) -> None:
    """The cached reads check the caller's session in the statement that also reads the
    cache's generation: a page already cached for a caller is not served once their login
    ended or their account was suspended."""
    api = cached
    word = unique("numbat")
    leaving, suspended = await api.register(), await api.register()
    await resource(api, leaving, f"{word} notes", isPublic=True)
    paths = ("/api/feed?type=all&limit=20", f"/api/resources?search={word}&limit=20")
    for user in (leaving, suspended):
        for path in paths:
            for _ in range(2):  # the second one from the cache
                assert (await api.get(path, user)).status == 200
    assert (await api.post("/api/auth/logout", leaving)).status == 204
    await db.execute(
        "UPDATE users SET account_status = 'suspended' WHERE id = $1::uuid", suspended.id
    )
    for user, code in ((leaving, "session_revoked"), (suspended, "account_inactive")):
        for path in paths:
            resp = await api.get(path, user)
            assert resp.status == 401, resp.body
            assert resp.body["error"]["code"] == code


async def test_with_caching_off_resource_search_makes_no_shared_page(make_client: Any) -> None:
    """READ_CACHE_TTL=0 turns the cache off: a viewer's resource search is their own page, made
    once, never also the page nobody gets plus an overlay (two searches and a third statement
    for a viewer who may see more) that nothing can reuse. (A node with caching off is also the
    reference the shared-page test compares against: it must compute pages the uncached way.)"""
    api = await make_client(read_cache_ttl=0)
    owner = await api.register()
    word = unique("quokka")
    await resource(api, owner, f"{word} public", isPublic=True)
    await resource(api, owner, f"{word} mine only", isPublic=False)
    before = await _lookups(api)
    assert len(await _search(api, owner, word)) == 2
    after = await _lookups(api)
    assert after.get(("resources", "off"), 0) == before.get(("resources", "off"), 0) + 1
    shared = after.get(("resources-public", "off"), 0) - before.get(("resources-public", "off"), 0)
    assert shared == 0, "the shared (nobody's) page was computed with the cache off"


async def test_concurrent_misses_of_one_page_make_it_once(cached: Api) -> None:
    """A cold cache under load: requests that miss while the same page is being made wait for
    it instead of each making it (two tabs of one viewer; many viewers of one shared search
    page), and each gets the page it would have got alone."""
    api = cached
    owner = await api.register()
    viewers = [await api.register() for _ in range(8)]
    word = unique("dugong")
    made = [await resource(api, owner, f"{word} notes {n}", isPublic=True) for n in range(3)]
    path = f"/api/resources?search={word}&limit=20"

    before = await _lookups(api)
    pages = await asyncio.gather(*(api.get(path, v) for v in viewers), api.get(path, viewers[0]))
    after = await _lookups(api)

    for page in pages:
        assert page.status == 200, page.body
        assert {h["id"] for h in page.body["hits"]} == {r["id"] for r in made}
        assert page.body["total"] == 3

    def delta(cache: str, outcome: str) -> float:
        return after.get((cache, outcome), 0) - before.get((cache, outcome), 0)

    # the page nobody gets: made once, the other viewers waited for it (or found it made)
    assert delta("resources-public", "miss") == 1
    assert delta("resources-public", "joined") + delta("resources-public", "hit") == 7
    # the first viewer's two tabs: their page made once
    assert delta("resources", "miss") == 8
    assert delta("resources", "joined") + delta("resources", "hit") == 1


@pytest.mark.parametrize("too_many", [None, "marks", "hidden"])
async def test_a_viewers_marks_serve_all_their_searches(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, too_many: str | None
) -> None:
    """A viewer's grants, ratings and bookmarks, and what they may see beyond the public
    resources, are read once (per generation) for all their searches, and every page made
    from them is an uncached node's page. With more of a viewer's marks, or more of a query's
    matches beyond the public ones, than are kept, the database is asked per page instead,
    with the same pages."""
    from peerspark_rt.search import db as search_db

    if too_many == "marks":
        monkeypatch.setattr(search_db, "MAX_MARKS", 1)
    elif too_many == "hidden":
        monkeypatch.setattr(search_db, "MAX_HIDDEN", 0)
    cached, uncached = await _two_nodes(make_client)
    owner, rater, plain = [await cached.register() for _ in range(3)]
    words = [unique("tapir"), unique("okapi")]
    made = {
        w: [await resource(cached, owner, f"{w} notes {n}", isPublic=True) for n in range(2)]
        for w in words
    }
    await resource(cached, owner, f"{words[1]} draft", isPublic=False)
    assert (
        await cached.post(
            f"/api/resources/{made[words[0]][0]['id']}/rate", rater, json={"rating": 5}
        )
    ).status in (200, 201)
    assert (
        await cached.post(f"/api/resources/{made[words[1]][1]['id']}/bookmark", rater)
    ).status in (
        200,
        201,
    )

    before = await _lookups(cached)
    for user in (owner, rater, plain):
        for word in words:
            path = f"/api/resources?search={word}&limit=20"
            expected = await uncached.get(path, user)
            got = await cached.get(path, user)
            assert got.status == expected.status == 200, got.body
            assert got.body == expected.body, (user, word)
    after = await _lookups(cached)
    marks_read = after.get(("resources-marks", "miss"), 0) - before.get(
        ("resources-marks", "miss"), 0
    )
    assert marks_read == 3  # once per viewer, not per search
    # the owner's draft matches the second word: their page of it is their own
    drafts = [
        h
        for h in (await cached.get(f"/api/resources?search={words[1]}", owner)).body["hits"]
        if not h["isPublic"]
    ]
    assert len(drafts) == 1


async def test_request_connections_open_ready_to_search(cached: Api) -> None:
    """A node's request connections run a search's statements as they open (matching nothing),
    so the first searches after a node starts, or after its pool grew, do not each pay for a
    new database process's dictionaries, catalogs and plans (~15 ms against 3-4)."""
    from peerspark_rt.infra.pool import DB

    async with cached.app[DB].connection() as conn:
        prepared = [
            " ".join(str(r["statement"]).split())
            for r in await conn.fetch("SELECT statement FROM pg_prepared_statements")
        ]
    assert any("WITH matched AS MATERIALIZED" in text for text in prepared), prepared
    assert any("WITH theirs AS" in text for text in prepared), prepared


async def test_a_viewers_marks_on_a_resource_with_no_visibility_set_are_kept(
    cached: Api, db: Any
) -> None:
    """A resource whose `is_public` is unset (NULL: the column allows it) that a viewer rated
    is not theirs to see beyond the public ones; their marks still read back from the cache
    (a NULL there made every later search read them again, each entry unreadable)."""
    owner, rater = await cached.register(), await cached.register()
    words = [unique("eland"), unique("kudu")]
    rated = await resource(cached, owner, f"{words[0]} notes", isPublic=True)
    for word in words[1:]:
        await resource(cached, owner, f"{word} notes", isPublic=True)
    assert (
        await cached.post(f"/api/resources/{rated['id']}/rate", rater, json={"rating": 3})
    ).status in (200, 201)
    await db.execute("UPDATE resources SET is_public = NULL WHERE id = $1::uuid", rated["id"])

    before = await _lookups(cached)
    for word in words:
        assert rated["id"] not in await _search(cached, rater, word)
    after = await _lookups(cached)
    read = after.get(("resources-marks", "miss"), 0) - before.get(("resources-marks", "miss"), 0)
    assert read == 1


async def test_a_connection_opens_even_when_its_search_warm_up_cannot_run(
    pg_dsn: str, db: Any
) -> None:
    """Warming a new connection's searches is best effort: with the resources table locked (a
    migration, say) it gives up within a second and the connection serves its request (a
    session check has nothing to do with search), instead of waiting out the statement
    timeout or failing the request."""
    from peerspark_rt.infra.pool import Database
    from peerspark_rt.search.db import warm

    async with db.transaction():
        await db.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
        pool = await asyncio.wait_for(Database.connect(pg_dsn, max_size=1, warm=warm), 10)
        try:
            assert await asyncio.wait_for(pool.fetchval("SELECT 1"), 10) == 1
        finally:
            await pool.close()
