"""Invitations: a pod invitation emailed to an address without an account (registering with
its code joins the pod), and study session invitations (live notification, accept, decline,
guests from outside a pod session's pod)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from tests.helpers import Api, listen_live
from tests.test_account_lifecycle import mail, mailing_api
from tests.test_email import Inbox, bodies, smtp_server

__all__ = ["smtp_server"]


async def test_an_emailed_pod_invitation_lets_a_newcomer_sign_up_into_the_pod(
    make_client: Any, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    api = await mailing_api(make_client, port)
    ann = await api.register()
    pod = await api.create_pod(ann, isPublic=False, name="Organic Chemistry")
    newcomer = f"newcomer{dt.datetime.now().microsecond}@example.com"
    resp = await api.post(
        f"/api/pods/{pod['id']}/invite", ann, json={"email": newcomer, "message": "Join us!"}
    )
    assert resp.status == 201, resp.body
    msg = await mail(
        inbox, newcomer, f"{ann.username} invited you to Organic Chemistry on PeerSpark"
    )
    text, html = bodies(msg)
    assert 'wrote: "Join us!"' in text
    link = re.search(r"https://peerspark\.example/register\?invitation=([A-Za-z0-9_-]+)", text)
    assert link is not None, text
    code = link.group(1)
    assert code in html
    # someone registering with another address cannot use it (the account is made anyway)
    other = await api.register(invitationCode=code)
    assert (await api.get(f"/api/pods/{pod['id']}", other)).status == 404
    name = newcomer.partition("@")[0]
    joined = await api.post(
        "/api/auth/register",
        json={
            "email": newcomer, "username": name, "password": "Study-hard-2026",
            "firstName": "New", "lastName": "Comer", "invitationCode": code,
        },
    )  # fmt: skip
    assert joined.status == 201, joined.body
    assert joined.body["joinedPodId"] == pod["id"]
    token = {"Authorization": f"Bearer {joined.body['accessToken']}"}
    seen = await api.get(f"/api/pods/{pod['id']}", headers=token)
    assert (seen.status, seen.body["currentMemberCount"]) == (200, 2)


def _soon(hours: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat()


async def test_session_invitations_bring_guests_who_accept_or_decline(api: Api) -> None:
    ann = await api.register()
    bob, cat, eve = await api.register(), await api.register(), await api.register()
    individual = await api.post(
        "/api/sessions",
        ann,
        json={"title": "Thesis review", "sessionType": "individual",
              "startTime": _soon(2), "endTime": _soon(3)},
    )  # fmt: skip
    sid = individual.body["id"]
    assert (await api.get(f"/api/sessions/{sid}", bob)).status == 404
    assert (await api.post(f"/api/sessions/{sid}/join", bob)).status == 404
    inbox = await listen_live(api, bob, f"user:{bob.id}")
    not_organizer = await api.post(f"/api/sessions/{sid}/invite", cat, json={"userId": bob.id})
    assert not_organizer.status == 404  # cat cannot even see it
    bad = await api.post(f"/api/sessions/{sid}/invite", ann, json={"userId": ann.id})
    assert (bad.status, bad.error_field()) == (422, "userId")
    sent = await api.post(
        f"/api/sessions/{sid}/invite", ann, json={"userId": bob.id, "message": "bring notes"}
    )
    assert (sent.status, sent.body["status"], sent.body["role"]) == (201, "invited", "participant")
    again = await api.post(f"/api/sessions/{sid}/invite", ann, json={"userId": bob.id})
    assert again.status == 200
    frame = await inbox.next("notification")
    assert frame["type"] == "session_invite"
    assert frame["metadata"]["sessionId"] == sid
    # invited is not yet taking part: no posting, no reading
    seen = await api.get(f"/api/sessions/{sid}", bob)
    assert (seen.status, seen.body["myStatus"]) == (200, "invited")
    post = await api.post(f"/api/sessions/{sid}/messages", bob, json={"content": "hi"})
    assert post.status == 403
    accepted = await api.post(f"/api/sessions/{sid}/accept", bob)
    assert (accepted.status, accepted.body["status"]) == (200, "accepted")
    assert accepted.body["currentParticipants"] == 2
    assert (await api.post(f"/api/sessions/{sid}/accept", bob)).status == 409
    assert (
        await api.post(f"/api/sessions/{sid}/messages", bob, json={"content": "hi"})
    ).status == 201
    # a declined invitation
    await api.post(f"/api/sessions/{sid}/invite", ann, json={"userId": cat.id})
    declined = await api.post(f"/api/sessions/{sid}/decline", cat)
    assert (declined.status, declined.body["status"]) == (200, "declined")
    assert (await api.post(f"/api/sessions/{sid}/decline", cat)).status == 409
    assert (await api.post(f"/api/sessions/{sid}/join", cat)).status == 403

    # a pod session takes a guest from outside the pod, never someone banned from it
    pod = await api.create_pod(ann, isPublic=False)
    await api.post(f"/api/pods/{pod['id']}/invite", ann, json={"userId": cat.id})
    await api.post(f"/api/pods/{pod['id']}/join", cat)
    await api.post(f"/api/pods/{pod['id']}/members/{cat.id}/ban", ann)
    in_pod = await api.post(
        "/api/sessions",
        ann,
        json={"title": "Pod review", "sessionType": "pod", "podId": pod["id"],
              "startTime": _soon(2), "endTime": _soon(3)},
    )  # fmt: skip
    psid = in_pod.body["id"]
    assert (await api.get(f"/api/sessions/{psid}", eve)).status == 404
    guest = await api.post(f"/api/sessions/{psid}/invite", ann, json={"userId": eve.id})
    assert (guest.status, guest.body["role"]) == (201, "guest")
    banned = await api.post(f"/api/sessions/{psid}/invite", ann, json={"userId": cat.id})
    assert (banned.status, banned.body["error"]["code"]) == (409, "banned")
    assert (await api.get(f"/api/sessions/{psid}", eve)).status == 200
    joined = await api.post(f"/api/sessions/{psid}/join", eve)  # joining accepts too
    assert (joined.status, joined.body["role"], joined.body["status"]) == (200, "guest", "accepted")
    said = await api.post(f"/api/sessions/{psid}/messages", eve, json={"content": "thanks!"})
    assert said.status == 201
    assert (await api.get(f"/api/pods/{pod['id']}", eve)).status == 404  # the pod stays private
