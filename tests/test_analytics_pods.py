"""Pod analytics that tell the truth: active means did something in the pod, not joined."""

from __future__ import annotations

import uuid
from typing import Any

from peerspark_rt.analytics.rollup import Rollups
from peerspark_rt.infra.pool import DB
from tests.helpers import Api, unique


async def test_active_members_did_something_in_the_pod(api: Api, db: Any) -> None:
    owner, a, b, c = [await api.register() for _ in range(4)]
    pod = await api.create_pod(owner, isPublic=True)
    path = f"/api/pods/{pod['id']}/analytics"
    for user in (a, b, c):
        assert (await api.post(f"/api/pods/{pod['id']}/join", user)).status == 200
    assert (await api.delete(f"/api/pods/{pod['id']}/leave", c)).status == 204

    quiet = await api.get(path, a)
    assert quiet.status == 200
    # four joined this week and nobody did anything yet: nobody is active
    assert (quiet.body["memberCount"], quiet.body["activeMembers"]) == (3, 0)
    assert quiet.body["engagementRate"] == 0.0

    post = await api.post("/api/posts", a, json={"content": unique("Notes "), "podId": pod["id"]})
    assert post.status == 201
    comment = await api.post(f"/api/posts/{post.body['id']}/comments", b, json={"content": "ok"})
    assert comment.status == 201
    # the owner joined (created the pod) 40 days ago
    await db.execute(
        """UPDATE analytics_events SET occurred_at = NOW() - interval '40 days'
           WHERE pod_id = $1::uuid AND event = 'pod_joined' AND user_id = $2::uuid""",
        pod["id"],
        owner.id,
    )
    await Rollups(api.app[DB]).catch_up()
    body = (await api.get(path, a)).body
    assert body["activeMembers"] == 2
    assert body["engagementRate"] == round(2 / 3, 4)
    # three joined and one left in 30 days: one member then, three now
    assert (body["newMembersLast30Days"], body["leftLast30Days"]) == (3, 1)
    assert body["growthRate"] == 2.0
    assert body["postsLast30Days"] == 1
    # 5 points a post, 2 a comment, 1 a like received (CONTRIBUTION_POINTS)
    assert [(x["userId"], x["contributionScore"]) for x in body["topContributors"]] == [
        (a.id, 5),
        (b.id, 2),
    ]
    score = await db.fetchval(
        "SELECT contribution_score FROM pod_memberships WHERE pod_id = $1 AND user_id = $2",
        uuid.UUID(pod["id"]),
        uuid.UUID(a.id),
    )
    assert score == 5
    # a week later the comment is out of the window
    await db.execute(
        """UPDATE analytics_events SET occurred_at = NOW() - interval '8 days'
           WHERE pod_id = $1::uuid AND user_id = $2::uuid""",
        pod["id"],
        b.id,
    )
    assert (await api.get(path, a)).body["activeMembers"] == 1
    assert (await api.get(f"{path}?days=30", a)).body["activeMembers"] == 2
    bad = await api.get(f"{path}?days=0", a)
    assert (bad.status, bad.error_field()) == (422, "days")
    assert (await api.get(path, c)).status == 403  # left: no longer a member
