"""An account's life: verifying the address, changing and resetting the password, changing the
address, deleting the account, exporting its data. Emails are read from a real SMTP server
(aiosmtpd) the job worker delivers to; sockets are real."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from email.message import EmailMessage
from typing import Any

from peerspark_rt import protocol
from tests.helpers import PASSWORD, Api, User, open_session, until_closed
from tests.test_email import Inbox, bodies, smtp_server

__all__ = ["smtp_server"]

NEW_PASSWORD = "Quiet-library-at-dawn-77"
_TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)")


async def mailing_api(make_client: Any, port: int, **overrides: Any) -> Api:
    api: Api = await make_client(
        smtp_host="127.0.0.1", smtp_port=port, run_worker=True, worker_poll_interval=0.1,
        public_base_url="https://peerspark.example", **overrides,
    )  # fmt: skip
    return api


async def mail(inbox: Inbox, to: str, subject: str, count: int = 1) -> EmailMessage:
    """The `count`th email with `subject` sent to `to` (waits up to 15 s for it)."""
    found: list[EmailMessage] = []
    for _ in range(150):
        found = [m for m in inbox.messages if m["To"] == to and m["Subject"] == subject]
        if len(found) >= count:
            return found[count - 1]
        await asyncio.sleep(0.1)
    raise AssertionError([m["Subject"] for m in inbox.messages if m["To"] == to])


async def link_token(inbox: Inbox, to: str, subject: str, count: int = 1) -> str:
    """The token in the link of the `count`th email with `subject` sent to `to`."""
    text, html = bodies(await mail(inbox, to, subject, count))
    match = _TOKEN.search(text)
    assert match is not None, text
    assert match.group(1) in html
    return match.group(1)


async def test_registration_emails_a_single_use_expiring_verification_link(
    make_client: Any, smtp_server: tuple[Inbox, int], db: Any
) -> None:
    inbox, port = smtp_server
    api = await mailing_api(make_client, port)
    ann = await api.register()
    token = await link_token(inbox, ann.email, "Verify your email address")
    # only the hash is stored
    stored = await db.fetchval(
        "SELECT token_hash FROM account_tokens WHERE user_id = $1", uuid.UUID(ann.id)
    )
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert (await api.get("/api/auth/me", ann)).body["isVerified"] is False
    bad = await api.post("/api/auth/verify-email", json={"token": "not-a-token"})
    assert (bad.status, bad.body["error"]["code"]) == (400, "invalid_token")
    ok = await api.post("/api/auth/verify-email", json={"token": token})
    assert ok.status == 200, ok.body
    assert ok.body == {"userId": ann.id, "email": ann.email, "isVerified": True}
    assert (await api.get("/api/auth/me", ann)).body["isVerified"] is True
    again = await api.post("/api/auth/verify-email", json={"token": token})
    assert (again.status, again.body["error"]["code"]) == (409, "token_used")
    resend = await api.post("/api/auth/verify-email/resend", ann)
    assert (resend.status, resend.body["error"]["code"]) == (409, "already_verified")
    # an expired link is refused, and the resent one (the old one retired) works
    bob = await api.register()
    first = await link_token(inbox, bob.email, "Verify your email address")
    assert (await api.post("/api/auth/verify-email/resend", bob)).status == 202
    second = await link_token(inbox, bob.email, "Verify your email address", count=2)
    retired = await api.post("/api/auth/verify-email", json={"token": first})
    assert retired.body["error"]["code"] == "token_used"
    await db.execute(
        "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        hashlib.sha256(second.encode()).hexdigest(),
    )
    expired = await api.post("/api/auth/verify-email", json={"token": second})
    assert (expired.status, expired.body["error"]["code"]) == (409, "token_expired")


async def test_abuse_prone_features_can_require_a_verified_email(make_client: Any, db: Any) -> None:
    api: Api = await make_client(require_verified_email=("report", "invite_email", "public_pod"))
    ann, bob = await api.register(), await api.register()
    public = await api.post("/api/pods", ann, json={"name": "Open", "subject": "Maths"})
    assert (public.status, public.body["error"]["code"]) == (403, "email_unverified")
    pod = await api.create_pod(ann, isPublic=False)
    invite = await api.post(f"/api/pods/{pod['id']}/invite", ann, json={"email": "x@example.com"})
    assert (invite.status, invite.body["error"]["code"]) == (403, "email_unverified")
    by_id = await api.post(f"/api/pods/{pod['id']}/invite", ann, json={"userId": bob.id})
    assert by_id.status == 201
    made_public = await api.put(f"/api/pods/{pod['id']}", ann, json={"isPublic": True})
    assert made_public.status == 403
    await api.post(f"/api/pods/{pod['id']}/join", bob)
    post = await api.post("/api/posts", ann, json={"content": "Hello pod", "podId": pod["id"]})
    report = await api.post(
        "/api/reports", bob, json={"contentType": "post", "contentId": post.body["id"]}
    )
    assert (report.status, report.body["error"]["code"]) == (403, "email_unverified")
    await db.execute(
        "UPDATE users SET is_verified = TRUE WHERE id = ANY($1::uuid[])",
        [uuid.UUID(ann.id), uuid.UUID(bob.id)],
    )
    assert (await api.post("/api/pods", ann, json={"name": "Open", "subject": "M"})).status == 201
    report = await api.post(
        "/api/reports", bob, json={"contentType": "post", "contentId": post.body["id"]}
    )
    assert report.status == 201, report.body


async def _login(api: Api, email: str, password: str = PASSWORD) -> Any:
    return await api.post("/api/auth/login", json={"email": email, "password": password})


async def test_changing_the_password_ends_every_other_login_and_its_sockets(api: Api) -> None:
    ann = await api.register()
    other = (await _login(api, ann.email)).body["accessToken"]
    socket = await api.live(User(**{**ann.__dict__, "token": other}), reconnect=False)
    wrong = await api.post(
        "/api/auth/password",
        ann,
        json={"currentPassword": "not-my-password", "newPassword": NEW_PASSWORD},
    )
    assert (wrong.status, wrong.body["error"]["code"]) == (403, "reauthentication_failed")
    weak = await api.post(
        "/api/auth/password", ann, json={"currentPassword": PASSWORD, "newPassword": "password1"}
    )
    assert (weak.status, weak.error_field()) == (422, "newPassword")
    ok = await api.post(
        "/api/auth/password", ann, json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    )
    assert ok.status == 200, ok.body
    assert ok.body == {"otherSessionsEnded": 1}
    await until_closed(socket)
    assert socket.close_code == protocol.CLOSE_SESSION_REVOKED
    ended = await api.get("/api/auth/me", headers={"Authorization": f"Bearer {other}"})
    assert ended.status == 401
    assert (await api.get("/api/auth/me", ann)).status == 200  # this login goes on
    assert (await _login(api, ann.email)).status == 401
    assert (await _login(api, ann.email, NEW_PASSWORD)).status == 200


async def test_a_password_reset_link_answers_the_same_for_anyone_and_works_once(
    make_client: Any, smtp_server: tuple[Inbox, int], db: Any
) -> None:
    inbox, port = smtp_server
    api = await mailing_api(make_client, port, password_reset_rate_limit=3)
    ann = await api.register()
    nobody = f"nobody{uuid.uuid4().hex[:8]}@example.com"
    known = await api.post("/api/auth/password-reset", json={"email": ann.email.upper()})
    unknown = await api.post("/api/auth/password-reset", json={"email": nobody})
    assert (known.status, unknown.status) == (202, 202)
    assert known.body == unknown.body
    token = await link_token(inbox, ann.email, "Reset your PeerSpark password")
    assert [m for m in inbox.messages if m["To"] == nobody] == []
    bad = await api.post(
        "/api/auth/password-reset/confirm", json={"token": "x" * 40, "newPassword": NEW_PASSWORD}
    )
    assert bad.status == 400
    weak = await api.post(
        "/api/auth/password-reset/confirm", json={"token": token, "newPassword": "12345678"}
    )
    assert (weak.status, weak.error_field()) == (422, "newPassword")
    ok = await api.post(
        "/api/auth/password-reset/confirm", json={"token": token, "newPassword": NEW_PASSWORD}
    )
    assert (ok.status, ok.body) == (200, {"otherSessionsEnded": 1})
    assert (await api.get("/api/auth/me", ann)).status == 401  # every login ended
    again = await api.post(
        "/api/auth/password-reset/confirm", json={"token": token, "newPassword": PASSWORD + "x"}
    )
    assert (again.status, again.body["error"]["code"]) == (409, "token_used")
    assert (await _login(api, ann.email)).status == 401
    signed_in = await _login(api, ann.email, NEW_PASSWORD)
    assert signed_in.body["user"]["isVerified"] is True  # the link reached the address
    # an expired link is refused
    await api.post("/api/auth/password-reset", json={"email": ann.email})
    late = await link_token(inbox, ann.email, "Reset your PeerSpark password", count=2)
    await db.execute(
        "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        hashlib.sha256(late.encode()).hexdigest(),
    )
    expired = await api.post(
        "/api/auth/password-reset/confirm", json={"token": late, "newPassword": PASSWORD + "!"}
    )
    assert (expired.status, expired.body["error"]["code"]) == (409, "token_expired")
    # rate limited per address asked for, whether or not it has an account
    limited = await api.post("/api/auth/password-reset", json={"email": ann.email})
    assert limited.status == 429
    assert "Retry-After" in limited.headers


async def test_a_new_email_address_counts_once_its_link_is_used(
    make_client: Any, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    api = await mailing_api(make_client, port)
    ann, bob = await api.register(), await api.register()
    new = f"ann{uuid.uuid4().hex[:8]}@example.com"
    wrong = await api.post("/api/auth/email", ann, json={"newEmail": new, "password": "nope"})
    assert wrong.status == 403
    taken = await api.post(
        "/api/auth/email", ann, json={"newEmail": bob.email, "password": PASSWORD}
    )
    assert (taken.status, taken.error_field()) == (409, "newEmail")
    ok = await api.post("/api/auth/email", ann, json={"newEmail": new, "password": PASSWORD})
    assert ok.status == 202, ok.body
    token = await link_token(inbox, new, "Confirm your new email address")
    assert (await api.get("/api/auth/me", ann)).body["email"] == ann.email  # not yet
    done = await api.post("/api/auth/verify-email", json={"token": token})
    assert done.body == {"userId": ann.id, "email": new, "isVerified": True}
    me = (await api.get("/api/auth/me", ann)).body
    assert (me["email"], me["isVerified"]) == (new, True)
    assert (await _login(api, new)).status == 200
    assert (await _login(api, ann.email)).status == 401


async def test_deleting_an_account_ends_its_sockets_and_keeps_shared_history(
    api: Api, db: Any
) -> None:
    ann, bob = await api.register(), await api.register()
    pod = await api.create_pod(ann)
    await api.post(f"/api/pods/{pod['id']}/join", bob)
    room = await open_session(api, bob, ann)
    session_id = room.removeprefix("session:")
    said = await api.post(f"/api/sessions/{session_id}/messages", ann, json={"content": "hi all"})
    assert said.status == 201
    post = await api.post("/api/posts", ann, json={"content": "My notes", "podId": pod["id"]})
    socket = await api.live(ann, reconnect=False)
    wrong = await api.delete("/api/users/me", ann, json={"password": "guess"})
    assert (wrong.status, wrong.body["error"]["code"]) == (403, "reauthentication_failed")
    missing = await api.delete("/api/users/me", ann, json={})
    assert missing.status == 403
    gone = await api.delete("/api/users/me", ann, json={"password": PASSWORD})
    assert gone.status == 204, gone.body
    await until_closed(socket)
    assert socket.close_code == protocol.CLOSE_SESSION_REVOKED
    assert (await api.get("/api/auth/me", ann)).status == 401
    assert (await _login(api, ann.email)).status == 401
    # the pod passed to Bob; Ann's post went with her; her chat message stays, anonymised
    members = (await api.get(f"/api/pods/{pod['id']}/members", bob)).body["members"]
    assert [(m["userId"], m["role"]) for m in members] == [(bob.id, "owner")]
    assert (await api.get(f"/api/pods/{pod['id']}", bob)).body["currentMemberCount"] == 1
    assert (await api.get(f"/api/posts/{post.body['id']}", bob)).status == 404
    history = (await api.get(f"/api/sessions/{session_id}/messages", bob)).body["messages"]
    assert [(m["body"], m["sender"]["id"]) for m in history] == [("hi all", "")]
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", uuid.UUID(ann.id)) == 0


async def test_a_deleted_accounts_answered_comments_keep_the_thread(api: Api) -> None:
    """Deleting an account removes its comments, except those others replied to: those stay,
    deleted and anonymous, so the replies keep their place."""
    ann, bob = await api.register(), await api.register()
    post = await api.post("/api/posts", bob, json={"content": "Question about limits"})
    comments = f"/api/posts/{post.body['id']}/comments"
    answered = await api.post(comments, ann, json={"content": "Ann's answer"})
    lonely = await api.post(comments, ann, json={"content": "Ann's aside"})
    reply = await api.post(
        comments, bob, json={"content": "Thanks Ann", "parentCommentId": answered.body["id"]}
    )
    assert reply.status == 201, reply.body
    gone = await api.delete("/api/users/me", ann, json={"password": PASSWORD})
    assert gone.status == 204, gone.body
    thread = (await api.get(comments, bob)).body["comments"]
    by_id = {c["id"]: c for c in thread} | {r["id"]: r for c in thread for r in c["replies"]}
    assert lonely.body["id"] not in by_id
    kept = by_id[answered.body["id"]]
    assert kept["status"] == "deleted"
    assert kept["content"] is None
    assert kept["author"] is None
    assert by_id[reply.body["id"]]["content"] == "Thanks Ann"
    assert by_id[reply.body["id"]]["parentCommentId"] == answered.body["id"]


async def test_a_data_export_is_built_by_a_job_and_downloads_once(
    make_client: Any, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    api = await mailing_api(make_client, port)
    ann = await api.register()
    pod = await api.create_pod(ann)
    await api.post("/api/posts", ann, json={"content": "Exported words", "podId": pod["id"]})
    deck = (await api.post("/api/decks", ann, json={"title": "Exported deck"})).body
    card = await api.post(f"/api/decks/{deck['id']}/cards", ann, json={"front": "Q", "back": "A"})
    review = {"cardId": card.body["id"], "rating": "good", "clientReviewId": "export-1"}
    assert (await api.post("/api/study/reviews", ann, json=review)).status == 200
    started = await api.get("/api/users/me/export", ann)
    assert (started.status, started.body["status"]) == (202, "pending"), started.body
    text, _ = bodies(await mail(inbox, ann.email, "Your PeerSpark data export is ready"))
    link = re.search(r"https://peerspark\.example(/api/exports/\S+)", text)
    assert link is not None, text
    status = await api.get("/api/users/me/export", ann)
    assert (status.status, status.body["status"]) == (200, "ready")
    archive = await api.get(link.group(1))
    assert archive.status == 200
    assert archive.headers["Content-Disposition"].startswith("attachment")
    data = archive.body
    assert data["profile"]["email"] == ann.email
    assert "passwordHash" not in data["profile"]
    assert "password_hash" not in data["profile"]
    assert [p["content"] for p in data["posts"]] == ["Exported words"]
    assert data["podMemberships"][0]["role"] == "owner"
    assert [c["front"] for c in data["flashcardDecks"][0]["cards"]] == ["Q"]
    assert [r["client_review_id"] for r in data["flashcardReviews"]] == ["export-1"]
    assert (await api.get(link.group(1))).status == 404  # once
    assert (await api.get("/api/users/me/export", ann)).status == 202  # a new one starts
