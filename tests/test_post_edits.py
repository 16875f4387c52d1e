"""Editing a post passes through moderation like writing one: a held edit changes nothing and
answers 422 held_for_review; a moderator's approval applies it to the post."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, listen_live
from tests.social import join, post

QUESTION = "Does anyone have notes for chapter 3 of linear algebra?"


async def test_a_held_edit_changes_nothing_until_a_moderator_approves_it(
    make_client: Any,
) -> None:
    api: Api = await make_client(moderation_blocked_words=("casino",))
    owner, ann = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, ann, pod)
    made = await post(api, ann, QUESTION, podId=pod["id"], tags=["algebra"])
    room = await listen_live(api, owner, f"pod:{pod['id']}")

    held = await api.put(
        f"/api/posts/{made['id']}", ann, json={"content": "best casino in town", "tags": ["bets"]}
    )
    assert held.status == 422, held.body
    assert held.body["error"]["code"] == "held_for_review"
    assert held.error_field() == "content"
    assert held.body["error"]["held"]["rule"] == "blocked_words"
    now = await api.get(f"/api/posts/{made['id']}", owner)
    assert (now.body["content"], now.body["tags"]) == (QUESTION, ["algebra"])
    await room.nothing_more("event", "post_updated")

    # A small fix is not "a repeat of a recent post": that rule judges new posts, not edits.
    fixed = QUESTION.replace("3", "4")
    typo = await api.put(f"/api/posts/{made['id']}", ann, json={"content": fixed})
    assert typo.status == 200, typo.body
    assert typo.body["content"] == fixed
    assert (await room.next("event", "post_updated"))["data"]["content"] == fixed

    queue = await api.get(f"/api/moderation/held?podId={pod['id']}", owner)
    [item] = queue.body["items"]
    assert item["id"] == held.body["error"]["held"]["id"]
    assert item["snapshot"]["editOf"] == made["id"]
    approved = await api.post(f"/api/moderation/held/{item['id']}/approve", owner)
    assert approved.status == 200, approved.body
    assert approved.body["publishedId"] == made["id"]
    edited = await api.get(f"/api/posts/{made['id']}", owner)
    assert (edited.body["content"], edited.body["tags"]) == ("best casino in town", ["bets"])
    assert (await room.next("event", "post_updated"))["data"]["content"] == "best casino in town"
    feed = await api.get(f"/api/feed?podId={pod['id']}", owner)
    assert [p["id"] for p in feed.body["posts"]] == [made["id"]]  # an edit, not a new post

    # Content that does not change is not screened again (only the tags change here).
    retag = await api.put(
        f"/api/posts/{made['id']}", ann, json={"content": "best casino in town", "tags": ["x"]}
    )
    assert retag.status == 200, retag.body


async def test_a_rejected_edit_never_applies(make_client: Any) -> None:
    api: Api = await make_client(moderation_blocked_words=("casino",))
    ann = await api.register()
    made = await post(api, ann, "harmless text")
    held = await api.put(f"/api/posts/{made['id']}", ann, json={"content": "casino"})
    assert held.status == 422
    item = held.body["error"]["held"]["id"]
    mine = await api.get("/api/moderation/held?mine=true", ann)
    assert [i["id"] for i in mine.body["items"]] == [item]
    assert (await api.get(f"/api/posts/{made['id']}", ann)).body["content"] == "harmless text"


async def test_edits_through_mobile_sync_are_screened(make_client: Any) -> None:
    api: Api = await make_client(moderation_blocked_words=("casino",))
    ann = await api.register()
    made = await post(api, ann, "harmless text")
    action = {
        "clientActionId": "edit-1",
        "type": "update_post",
        "data": {"postId": made["id"], "content": "best casino in town"},
    }
    for replayed in (False, True):
        resp = await api.post("/api/mobile/sync", ann, json={"pendingActions": [action]})
        [result] = resp.body["syncResults"]
        assert result["status"] == "error"
        assert result["replayed"] is replayed
        assert result["error"]["code"] == "held_for_review"
    assert (await api.get(f"/api/posts/{made['id']}", ann)).body["content"] == "harmless text"
    mine = await api.get("/api/moderation/held?mine=true", ann)
    assert len(mine.body["items"]) == 1  # the retry was answered from the record
