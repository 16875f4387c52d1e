"""Search through HTTP on a seeded corpus: weighted ranking, typo tolerance, the web search
syntax, filters, sorts, facet counts, highlights, suggestions, and post search - counting only
what the caller may see."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.helpers import Api, User, unique
from tests.social import join, post, resource


async def _corpus(api: Api) -> tuple[User, User, str, dict[str, dict[str, Any]]]:
    """Four public resources about nebulas (one word placed in the title, description, tags
    or content) and one private one by someone else, all under a subject of their own."""
    owner, stranger = await api.register(), await api.register()
    subject = unique("Astronomy")
    made = {
        "title": await resource(
            api, owner, "Nebula formation", description="How stars are born from gas clouds",
            content="Gravity pulls the cloud together.", tags=["space", "stars"],
            subject=subject, difficultyLevel="beginner", isPublic=True,
        ),
        "description": await resource(
            api, owner, "Star notes", description="How a nebula collapses into a star",
            content="Notes from week two.", subject=subject, difficultyLevel="advanced",
            resourceType="document", isPublic=True,
        ),
        "tags": await resource(
            api, owner, "Galaxy list", description="A catalog of objects", tags=["nebula", "space"],
            subject=subject, difficultyLevel="beginner", resourceType="flashcard", isPublic=True,
        ),
        "content": await resource(
            api, owner, "Telescope guide", description="Optics for beginners",
            content="Point it at the Orion nebula on a dark night. " + "Focus slowly. " * 30,
            subject=subject, isPublic=True,
        ),
        "private": await resource(
            api, stranger, "Nebula secrets", description="nebula nebula", subject=subject
        ),
    }  # fmt: skip
    return owner, stranger, subject, made


def hit_ids(body: Any) -> list[str]:
    return [h["id"] for h in body["hits"]]


async def test_ranking_title_over_description_and_tags_over_content(api: Api) -> None:
    _, _, subject, made = await _corpus(api)
    viewer = await api.register()
    resp = await api.get(f"/api/resources?search=nebula&subject={subject}", viewer)
    assert resp.status == 200, resp.body
    ranked = hit_ids(resp.body)
    assert resp.body["total"] == 4
    assert resp.body["sort"] == "relevance"
    assert ranked[0] == made["title"]["id"]
    assert set(ranked[1:3]) == {made["description"]["id"], made["tags"]["id"]}
    assert ranked[3] == made["content"]["id"]
    scores = [h["score"] for h in resp.body["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] > 0
    assert made["private"]["id"] not in ranked


async def test_facets_count_only_what_the_caller_may_see(api: Api) -> None:
    _, stranger, subject, made = await _corpus(api)
    viewer = await api.register()
    resp = await api.get(f"/api/resources?search=nebula&subject={subject}", viewer)
    aggs = resp.body["aggregations"]
    assert aggs["resourceTypes"] == [
        {"value": "note", "count": 2},
        {"value": "document", "count": 1},
        {"value": "flashcard", "count": 1},
    ]
    assert aggs["subjects"] == [{"value": subject, "count": 4}]
    assert aggs["difficultyLevels"] == [
        {"value": "beginner", "count": 2},
        {"value": "advanced", "count": 1},
    ]
    assert aggs["tags"] == [
        {"value": "space", "count": 2},
        {"value": "nebula", "count": 1},
        {"value": "stars", "count": 1},
    ]
    # The private resource's owner counts it; nobody else does.
    theirs = await api.get(f"/api/resources?search=nebula&subject={subject}", stranger)
    assert theirs.body["total"] == 5
    assert made["private"]["id"] in hit_ids(theirs.body)


async def test_filters_and_sorts(api: Api) -> None:
    owner, _, subject, made = await _corpus(api)
    viewer, rater = await api.register(), await api.register()
    base = f"/api/resources?subject={subject}"
    assert (await api.get(f"{base}&type=note", viewer)).body["total"] == 2
    both = await api.get(f"{base}&type=note&type=document", viewer)
    assert both.body["total"] == 3
    assert (await api.get(f"{base}&type=note,document", viewer)).body["total"] == 3
    assert hit_ids((await api.get(f"{base}&difficulty=advanced", viewer)).body) == [
        made["description"]["id"]
    ]
    tagged = await api.get(f"{base}&tags=space", viewer)
    assert set(hit_ids(tagged.body)) == {made["title"]["id"], made["tags"]["id"]}
    assert (await api.get(f"{base}&ownerId={owner.id}", viewer)).body["total"] == 4
    # date: newest first (the default without a search)
    by_date = await api.get(base, viewer)
    assert by_date.body["sort"] == "date"
    assert hit_ids(by_date.body) == [
        made[k]["id"] for k in ("content", "tags", "description", "title")
    ]
    # rating and rating range
    for key, stars in (("tags", 5), ("description", 3), ("title", 1)):
        await api.post(f"/api/resources/{made[key]['id']}/rate", rater, json={"rating": stars})
    by_rating = await api.get(f"{base}&sort=rating", viewer)
    assert hit_ids(by_rating.body)[:3] == [made[k]["id"] for k in ("tags", "description", "title")]
    ranged = await api.get(f"{base}&minRating=2&maxRating=4", viewer)
    assert hit_ids(ranged.body) == [made["description"]["id"]]
    # downloads
    link = await resource(
        api, owner, "Nebula atlas", resourceType="link", fileUrl="https://atlas.example.org",
        subject=subject, isPublic=True,
    )  # fmt: skip
    for _ in range(2):
        await api.get(f"/api/resources/{link['id']}/download", viewer)
    assert hit_ids((await api.get(f"{base}&sort=downloads", viewer)).body)[0] == link["id"]
    page = await api.get(f"{base}&limit=2&offset=2", viewer)
    assert page.body["total"] == 5
    assert len(page.body["hits"]) == 2
    for query, field in [
        ("sort=popular", "sort"),
        ("type=poster", "type"),
        ("difficulty=expert", "difficulty"),
        ("minRating=6", "minRating"),
        ("minRating=4&maxRating=2", "minRating"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
        ("isPublic=maybe", "isPublic"),
        ("search=" + "x" * 201, "search"),
        ("podId=nope", "podId"),
        ("unknown=1", "unknown"),
    ]:
        resp = await api.get(f"/api/resources?{query}", viewer)
        assert resp.status == 422, (query, resp.body)
        assert resp.error_field() == field, (query, resp.body)
    assert (await api.get("/api/resources")).status == 401


async def test_typos_and_web_search_syntax(api: Api) -> None:
    _, _, subject, made = await _corpus(api)
    viewer = await api.register()
    base = f"/api/resources?subject={subject}&search="
    typo = await api.get(base + "nebulla", viewer)
    assert hit_ids(typo.body) == [made["title"]["id"]]
    two_words = await api.get(base + quote("nebula formaton"), viewer)
    assert hit_ids(two_words.body)[0] == made["title"]["id"]
    phrase = await api.get(base + quote('"nebula formation"'), viewer)
    assert hit_ids(phrase.body) == [made["title"]["id"]]
    without = await api.get(base + quote("nebula -catalog"), viewer)
    assert made["tags"]["id"] not in hit_ids(without.body)
    assert without.body["total"] == 3
    either = await api.get(base + quote("optics or catalog"), viewer)
    assert set(hit_ids(either.body)) == {made["content"]["id"], made["tags"]["id"]}
    nothing = await api.get(base + quote("the"), viewer)  # only a stop word
    assert nothing.status == 200
    assert nothing.body["total"] == 0


async def test_highlights_are_marked_and_escaped(api: Api) -> None:
    owner, _, subject, made = await _corpus(api)
    tricky = await resource(
        api, owner, "<b>Nebula</b> & friends", description="<script>x</script> nebula",
        subject=subject, isPublic=True,
    )  # fmt: skip
    resp = await api.get(f"/api/resources?search=nebula&subject={subject}", owner)
    hits = {h["id"]: h for h in resp.body["hits"]}
    assert hits[made["title"]["id"]]["highlights"]["title"] == "<mark>Nebula</mark> formation"
    assert "<mark>nebula</mark>" in hits[made["description"]["id"]]["highlights"]["description"]
    content = hits[made["content"]["id"]]["highlights"]["content"]
    assert "<mark>nebula</mark>" in content
    assert len(content) < 400
    assert "title" not in hits[made["content"]["id"]]["highlights"]
    marked = hits[tricky["id"]]["highlights"]
    assert marked["title"] == "&lt;b&gt;<mark>Nebula</mark>&lt;/b&gt; &amp; friends"
    assert "<script>" not in marked["description"]
    plain = await api.get(f"/api/resources?subject={subject}", owner)
    assert all("highlights" not in h for h in plain.body["hits"])


async def test_suggestions_respect_visibility(api: Api) -> None:
    _, stranger, _, _ = await _corpus(api)
    viewer = await api.register()
    resp = await api.get("/api/search/suggest?q=nebu", viewer)
    assert resp.status == 200
    texts = [s["text"] for s in resp.body["suggestions"]]
    assert "Nebula formation" in texts
    assert "Nebula secrets" not in texts
    theirs = await api.get("/api/search/suggest?q=nebula%20sec", stranger)
    assert theirs.body["suggestions"][0]["text"] == "Nebula secrets"
    typo = await api.get("/api/search/suggest?q=telescpe", viewer)
    assert "Telescope guide" in [s["text"] for s in typo.body["suggestions"]]
    word = await api.get("/api/search/suggest?q=guid&limit=3", viewer)
    assert "Telescope guide" in [s["text"] for s in word.body["suggestions"]]
    for query, field in [
        ("", "q"),
        ("q=", "q"),
        ("q=a&limit=0", "limit"),
        ("q=a&limit=21", "limit"),
    ]:
        bad = await api.get(f"/api/search/suggest?{query}", viewer)
        assert bad.status == 422, query
        assert bad.error_field() == field, query


async def test_post_search(api: Api) -> None:
    author, outsider = await api.register(), await api.register()
    pod = await api.create_pod(author)
    member = await api.register()
    await join(api, member, pod)
    word = unique("chloroplast")
    inside = await post(
        api, author, f"Photosynthesis happens in the {word} of plant cells", podId=pod["id"]
    )
    tagged = await post(api, author, "Leaves are green", tags=[word])
    anon = await post(api, author, f"I never understood the {word}", isAnonymous=True)
    resp = await api.get(f"/api/search/posts?q={word}", member)
    assert resp.status == 200
    found = [h["post"]["id"] for h in resp.body["hits"]]
    assert set(found) == {inside["id"], tagged["id"], anon["id"]}
    assert resp.body["total"] == 3
    assert found.index(tagged["id"]) == 2  # tags weigh less than the text
    hit = next(h for h in resp.body["hits"] if h["post"]["id"] == inside["id"])
    assert f"<mark>{word}</mark>" in hit["highlight"]
    anon_hit = next(h for h in resp.body["hits"] if h["post"]["id"] == anon["id"])
    assert anon_hit["post"]["author"] is None
    theirs = await api.get(f"/api/search/posts?q={word}", outsider)
    assert {h["post"]["id"] for h in theirs.body["hits"]} == {tagged["id"], anon["id"]}
    in_pod = await api.get(f"/api/search/posts?q={word}&podId={pod['id']}", member)
    assert [h["post"]["id"] for h in in_pod.body["hits"]] == [inside["id"]]
    empty_page = await api.get(f"/api/search/posts?q={word}&offset=10", member)
    assert empty_page.body == {"hits": [], "total": 3, "limit": 20, "offset": 10}
    assert (await api.get("/api/search/posts", member)).error_field() == "q"
    assert (await api.get("/api/search/posts?q=%20", member)).error_field() == "q"


async def test_the_subject_facet_keeps_the_twenty_commonest(api: Api) -> None:
    owner = await api.register()
    common = unique("Common ")
    subjects = [common] * 3 + [f"Subject {i:02d}" for i in range(25)]
    for i, subject in enumerate(subjects):
        await resource(api, owner, f"Sheet {i}", subject=subject)
    resp = await api.get(f"/api/resources?ownerId={owner.id}&limit=1", owner)
    assert resp.status == 200, resp.body
    assert resp.body["total"] == 28
    facet = resp.body["aggregations"]["subjects"]
    assert facet == [{"value": common, "count": 3}] + [
        {"value": f"Subject {i:02d}", "count": 1} for i in range(19)
    ]
