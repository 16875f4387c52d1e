"""Real objects for the contract tests, made through the API: a private pod with its owner, a
pod moderator, a member and a banned member, an outsider and a platform admin; and the pod's
session, post, comment, resource, calendar event, report, held item, notification, AI
conversation, login session, calendar feed and uploaded file. Synchronous (requests), for the
schemathesis run and the authorization matrix, against a `LiveApp`."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from peerspark_rt.config import Settings
from tests.conftest import ai_settings, make_settings
from tests.fake_openai import FakeOpenAI
from tests.helpers import PASSWORD

TIMEOUT = 30.0
BLOCKED_WORD = "casinobonus"
# a VAPID key for the contract apps (base64url of a P-256 private scalar)
VAPID_KEY = (
    base64.urlsafe_b64encode(
        ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
    )
    .decode()
    .rstrip("=")
)


def contract_settings(
    pg_dsn: str, data_dir: Path, redis_url: str, fake: FakeOpenAI, **overrides: Any
) -> Settings:
    """The product as production runs it (Redis, AI configured), with limits high enough that
    a test's own traffic is not throttled: these tests are about the contract, not the limits."""
    return make_settings(
        pg_dsn,
        data_dir,
        redis_url=redis_url,
        upload_rate_limit=100_000,
        registration_rate_limit=100_000,
        login_failures_per_address=100_000,
        login_failures_per_account=100_000,
        moderation_posts_per_hour=100_000,
        moderation_blocked_words=(BLOCKED_WORD,),
        ai_queries_per_hour=100_000,
        ai_daily_tokens=10_000_000,
        ws_send_rate=10_000.0,
        ws_send_burst=10_000,
        password_reset_rate_limit=100_000,
        # push and a provider set up, so their routes answer as in production
        vapid_private_key=VAPID_KEY,
        oauth_github_client_id="contract-client",
        oauth_github_client_secret="contract-secret",
        oauth_github_url="https://github.example",
        **ai_settings(fake, openai_timeout=5.0),
        **overrides,
    )


class Client:
    """REST calls over one keep-alive connection pool."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        # a bearer client: the web page's login cookie (POST /api/web/login) must not make
        # later anonymous calls signed in
        self.http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
        files: Any = None,
    ) -> requests.Response:
        all_headers = {"Authorization": f"Bearer {token}"} if token else {}
        all_headers.update(headers or {})
        return self.http.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers=all_headers,
            data=data,
            files=files,
            timeout=TIMEOUT,
            allow_redirects=False,
        )

    def ok(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        """A call that must succeed; its JSON body (None for 204)."""
        resp = self.call(method, path, token, **kw)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.status_code != 204 else None

    def close(self) -> None:
        self.http.close()


@dataclass
class Account:
    id: str
    email: str
    username: str
    token: str
    session_id: str

    def login(self, client: Client) -> None:
        """A fresh login session (the role is read from the database on every request)."""
        body = client.ok(
            "POST", "/api/auth/login", json={"email": self.email, "password": PASSWORD}
        )
        self.token = body["accessToken"]
        self.session_id = body["sessionId"]


def register(client: Client, label: str) -> Account:
    name = f"{label}{secrets.token_hex(4)}"
    body = client.ok(
        "POST",
        "/api/auth/register",
        json={
            "email": f"{name}@example.com",
            "username": name,
            "password": PASSWORD,
            "firstName": label.title(),
            "lastName": "Tester",
        },
    )
    return Account(
        id=body["user"]["id"],
        email=f"{name}@example.com",
        username=name,
        token=body["accessToken"],
        session_id=body["sessionId"],
    )


@dataclass
class Cast:
    owner: Account
    moderator: Account
    member: Account
    banned: Account
    outsider: Account
    admin: Account

    def account(self, caller: str) -> Account | None:
        """The account of a caller kind of the authorization matrix (None: anonymous)."""
        return None if caller == "anonymous" else getattr(self, caller)


def make_cast(client: Client, pg_dsn: str) -> Cast:
    """The six callers. Each also owns a pod of their own from the start: some answers depend
    on whether the caller moderates any pod at all (listing reports), and cells that create
    pods or hand out roles would otherwise decide that, by the order the cells run in."""
    cast = Cast(
        *(
            register(client, label)
            for label in ("owner", "moderator", "member", "banned", "outsider", "admin")
        )
    )
    asyncio.run(_make_admin(pg_dsn, cast.admin.id))
    for label in ("owner", "moderator", "member", "banned", "outsider", "admin"):
        client.ok(
            "POST",
            "/api/pods",
            getattr(cast, label).token,
            json={"name": f"{label.title()}'s own {secrets.token_hex(3)}", "subject": "History"},
        )
    return cast


async def _make_admin(pg_dsn: str, user_id: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(user_id))
    finally:
        await conn.close()


def _soon(hours: int) -> str:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=hours)
    return start.isoformat()


@dataclass
class Personal:
    conversation: str  # the member's AI conversation
    member_login: str  # a second login session of the member
    feed_token: str  # the owner's calendar feed
    file_path: str  # /api/files/<key>, uploaded by the owner
    file_query: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """One private pod and everything in it (ids as strings), and some users' own objects."""

    pod: str
    session: str
    post: str
    comment: str
    resource: str
    event: str
    report: str
    held: str
    notification: str
    deck: str  # the owner's, shared with the pod (a live review of it runs in the session)
    card: str
    challenge: str  # the pod's challenge (nobody has joined it)
    achievement: str  # an achievement nobody in the cast has unlocked
    personal: Personal


def make_world(client: Client, cast: Cast, personal: Personal | None = None) -> World:
    """Build the pod and its objects, each through the API as its owner would (and the users'
    own objects, unless `personal` is given to keep)."""
    owner, member = cast.owner, cast.member
    pod = client.ok(
        "POST",
        "/api/pods",
        owner.token,
        json={"name": f"Pod {secrets.token_hex(3)}", "subject": "Mathematics", "isPublic": False},
    )["id"]
    for who in (cast.moderator, member, cast.banned):
        invitation = client.ok(
            "POST", f"/api/pods/{pod}/invite", owner.token, json={"userId": who.id}
        )
        client.ok(
            "POST",
            f"/api/pods/{pod}/join",
            who.token,
            json={"invitationCode": invitation["invitationCode"]},
        )
    client.ok(
        "PUT",
        f"/api/pods/{pod}/members/{cast.moderator.id}",
        owner.token,
        json={"role": "moderator"},
    )
    session = client.ok(
        "POST",
        "/api/sessions",
        owner.token,
        json={
            "title": "Algebra review",
            "sessionType": "pod",
            "podId": pod,
            "startTime": _soon(24),
            "endTime": _soon(25),
        },
    )["id"]
    # the banned member had joined the session before the ban: a ban must still shut them out
    for who in (cast.moderator, member, cast.banned):
        client.ok("POST", f"/api/sessions/{session}/join", who.token)
    client.ok("POST", f"/api/pods/{pod}/members/{cast.banned.id}/ban", owner.token)
    post = client.ok(
        "POST",
        "/api/posts",
        owner.token,
        json={"content": f"Welcome to the pod {secrets.token_hex(4)}", "podId": pod},
    )["id"]
    comment = client.ok(
        "POST",
        f"/api/posts/{post}/comments",
        member.token,
        json={"content": f"Thanks! {secrets.token_hex(4)}"},
    )["id"]
    held = client.call(
        "POST",
        f"/api/posts/{post}/comments",
        member.token,
        json={"content": f"win at {BLOCKED_WORD} tonight {secrets.token_hex(4)}"},
    )
    assert held.status_code == 422, held.text
    resource = client.ok(
        "POST",
        "/api/resources",
        owner.token,
        json={
            "title": "Notes",
            "resourceType": "link",
            "fileUrl": "https://example.com/notes.pdf",
            "podId": pod,
        },
    )["id"]
    event = client.ok(
        "POST",
        "/api/calendar/events",
        owner.token,
        json={
            "title": "Exam",
            "startTime": _soon(48),
            "endTime": _soon(49),
            "timezone": "UTC",
            "relatedPodId": pod,
        },
    )["id"]
    report = client.ok(
        "POST",
        "/api/reports",
        member.token,
        json={"contentType": "post", "contentId": post, "reason": "spam"},
    )["reportId"]
    notes = client.ok("GET", "/api/notifications", member.token)["notifications"]
    assert notes, "the member was notified of the invitation"
    deck = client.ok(
        "POST", "/api/decks", owner.token, json={"title": "Algebra cards", "podId": pod}
    )["id"]
    card = client.ok(
        "POST", f"/api/decks/{deck}/cards", owner.token, json={"front": "2x = 4", "back": "x = 2"}
    )["id"]
    client.ok("POST", f"/api/study/live/{session}", owner.token, json={"deckId": deck})
    challenge = client.ok(
        "POST",
        "/api/challenges",
        owner.token,
        json={
            "title": "Two posts this week",
            "challengeType": "weekly",
            "criteria": {"metric": "posts_created", "target": 2},
            "podId": pod,
        },
    )["id"]
    achievements = client.ok("GET", "/api/achievements", owner.token)["achievements"]
    month_streak = next(a["id"] for a in achievements if a["code"] == "streak_30")
    return World(
        pod=pod,
        session=session,
        post=post,
        comment=comment,
        resource=resource,
        event=event,
        report=report,
        held=held.json()["error"]["held"]["id"],
        notification=notes[0]["id"],
        deck=deck,
        card=card,
        challenge=challenge,
        achievement=month_streak,
        personal=make_personal(client, cast) if personal is None else personal,
    )


def make_personal(client: Client, cast: Cast) -> Personal:
    """The objects that belong to one user rather than to the pod."""
    member, owner = cast.member, cast.owner
    upload = client.ok(
        "POST",
        "/api/upload",
        owner.token,
        files={"file": ("notes.txt", b"hello world\n", "text/plain")},
    )
    link = urlsplit(upload["url"])
    return Personal(
        conversation=new_conversation(client, member),
        member_login=new_login(client, member),
        feed_token=client.ok("POST", "/api/calendar/feed", owner.token)["token"],
        file_path=link.path,
        file_query={k: v[0] for k, v in parse_qs(link.query).items()},
    )


def new_conversation(client: Client, who: Account) -> str:
    body = client.ok("POST", "/api/ai/chat", who.token, json={"message": "What is a limit?"})
    return str(body["conversationId"])


def new_login(client: Client, who: Account) -> str:
    """Another login session of `who` (their token stays valid)."""
    body = client.ok("POST", "/api/auth/login", json={"email": who.email, "password": PASSWORD})
    return str(body["sessionId"])
