"""The authorization matrix: every route of the router x every kind of caller (anonymous,
outsider, member, banned member, pod moderator, owner, platform admin), against real objects in
a private pod, with real requests over a real socket. The expected status of each cell is the
`Access` rule declared with the route (`@operation(access=...)` in peerspark_rt/http), so a new
route without a rule fails the build, and so does a rule the code does not keep.

Each route is one test; every caller is tried and all mismatches are reported together. After a
call that changed the reference objects (a delete, a ban, a role change...), they are built
afresh, so every cell is judged against the same starting state.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from peerspark_rt.app import build_app
from peerspark_rt.config import Settings
from peerspark_rt.http.contract import CALLERS, Operation
from peerspark_rt.http.openapi import Described, described_routes
from tests.conftest import searchable_tmpdir
from tests.contract_world import (
    Account,
    Cast,
    Client,
    World,
    contract_settings,
    make_cast,
    make_world,
    new_conversation,
    new_login,
)
from tests.helpers import PASSWORD
from tests.live_app import LiveApp
from tests.wsraw import RawSocket

_PARAM = re.compile(r"\{([^}]+)\}")


def _routes() -> list[Described]:
    """The router's routes, read from an app that is built but not started."""
    app = build_app(Settings(env="test", jwt_secret="x" * 40, jwt_refresh_secret="y" * 40))
    return described_routes(app.router)


ROUTES = _routes()


@dataclass
class Reference:
    client: Client
    cast: Cast
    world: World
    live: LiveApp
    dirty: bool = False

    def fresh(self) -> World:
        if self.dirty:
            self.world = make_world(self.client, self.cast, self.world.personal)
            self.dirty = False
        return self.world


@pytest.fixture(scope="module")
def reference(pg_dsn: str, redis_url: str) -> Iterator[Reference]:
    data_dir: Path = searchable_tmpdir()
    live = LiveApp(lambda fake: contract_settings(pg_dsn, data_dir, redis_url, fake))
    live.start()
    client = Client(live.base_url)
    try:
        cast = make_cast(client, pg_dsn)
        yield Reference(client, cast, make_world(client, cast), live)
    finally:
        client.close()
        live.stop()


# --- what each route is called with -----------------------------------------------------------

Maker = Callable[[World, Cast, Client], Any]


def _member_refresh_token(world: World, cast: Cast, client: Client) -> dict[str, str]:
    body = client.ok(
        "POST", "/api/auth/login", json={"email": cast.member.email, "password": PASSWORD}
    )
    return {"refreshToken": body["refreshToken"]}


def _new_account(world: World, cast: Cast, client: Client) -> dict[str, str]:
    name = f"newcomer{secrets.token_hex(4)}"
    return {
        "email": f"{name}@example.com",
        "username": name,
        "password": PASSWORD,
        "firstName": "New",
        "lastName": "Comer",
    }


def _soon(hours: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).replace(microsecond=0).isoformat()


def _text(prefix: str) -> str:
    """Distinct texts: moderation holds a post that repeats the author's recent one."""
    return f"{prefix} {secrets.token_hex(4)}"


def _push_subscription(world: World, cast: Cast, client: Client) -> dict[str, Any]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": f"https://push.example.com/{secrets.token_hex(8)}",
        "keys": {
            "p256dh": base64.urlsafe_b64encode(point).decode().rstrip("="),
            "auth": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
        },
    }


# A valid body for every route that takes one, naming the reference objects.
BODIES: dict[str, Maker] = {
    "POST /api/auth/register": _new_account,
    "POST /api/auth/login": lambda w, c, _: {"email": c.member.email, "password": PASSWORD},
    "POST /api/auth/refresh": _member_refresh_token,
    "POST /api/web/login": lambda w, c, _: {"email": c.member.email, "password": PASSWORD},
    "PATCH /api/auth/me": lambda w, c, _: {"bio": "Studying maths"},
    "POST /api/pods": lambda w, c, _: {"name": "Another pod", "subject": "Physics"},
    "PUT /api/pods/{podId}": lambda w, c, _: {"description": "Weekly algebra"},
    "POST /api/pods/{podId}/invite": lambda w, c, _: {"userId": c.outsider.id},
    "PUT /api/pods/{podId}/members/{userId}": lambda w, c, _: {"role": "moderator"},
    "POST /api/sessions": lambda w, c, _: {
        "title": "Another session",
        "sessionType": "pod",
        "podId": w.pod,
        "startTime": _soon(30),
        "endTime": _soon(31),
    },
    "PUT /api/sessions/{sessionId}": lambda w, c, _: {"title": "Algebra review, part 2"},
    "POST /api/sessions/{sessionId}/messages": lambda w, c, _: {"content": _text("hello room")},
    "POST /api/posts": lambda w, c, _: {"content": _text("A new post"), "podId": w.pod},
    "PUT /api/posts/{postId}": lambda w, c, _: {"content": _text("Welcome, everyone")},
    "POST /api/posts/{postId}/interactions": lambda w, c, _: {"type": "like"},
    "POST /api/posts/{postId}/comments": lambda w, c, _: {"content": _text("Nice")},
    "POST /api/comments/{commentId}/interactions": lambda w, c, _: {"type": "like"},
    # (the reference post is not a question: its owner is told so, 409)
    "POST /api/posts/{postId}/accepted-answer": lambda w, c, _: {"commentId": w.comment},
    "POST /api/reports": lambda w, c, _: {"contentType": "comment", "contentId": w.comment},
    "POST /api/reports/{reportId}/resolve": lambda w, c, _: {"action": "restore"},
    "POST /api/resources": lambda w, c, _: {
        "title": "More notes",
        "resourceType": "note",
        "podId": w.pod,
    },
    "PUT /api/resources/{resourceId}": lambda w, c, _: {"title": "Notes (revised)"},
    "POST /api/resources/{resourceId}/share": lambda w, c, _: {
        "shareWithUserId": c.outsider.id,
        "permissionLevel": "view",
    },
    "POST /api/resources/{resourceId}/rate": lambda w, c, _: {"rating": 5},
    "POST /api/calendar/events": lambda w, c, _: {
        "title": "Study block",
        "startTime": _soon(72),
        "endTime": _soon(73),
        "timezone": "UTC",
        "relatedPodId": w.pod,
    },
    "PUT /api/calendar/events/{eventId}": lambda w, c, _: {"title": "Final exam"},
    "PUT /api/notifications/preferences": lambda w, c, _: {"dailyDigest": True},
    "POST /api/mobile/sync": lambda w, c, _: {"pendingActions": []},
    "POST /api/ai/chat": lambda w, c, _: {"message": "Explain limits briefly"},
    "POST /api/ai/study-plan": lambda w, c, _: {
        "subject": "Calculus",
        "goals": ["pass the exam"],
        "timeframe": "4 weeks",
        "currentLevel": "beginner",
        "availableTime": 5,
    },
    "POST /api/ai/explain": lambda w, c, _: {"topic": "limits", "subject": "Calculus"},
    # links and tickets are single-use: the matrix sends ones that are not valid
    "POST /api/auth/verify-email": lambda w, c, _: {"token": "not-a-valid-token"},
    "POST /api/auth/password-reset/confirm": lambda w, c, _: {
        "token": "not-a-valid-token",
        "newPassword": PASSWORD,
    },
    "POST /api/auth/oauth/complete": lambda w, c, _: {"ticket": "not-a-valid-ticket"},
    "POST /api/auth/password": lambda w, c, _: {
        "currentPassword": PASSWORD,
        "newPassword": PASSWORD,
    },
    "POST /api/auth/password-reset": lambda w, c, _: {"email": c.member.email},
    "POST /api/auth/email": lambda w, c, _: {
        "newEmail": f"moved{secrets.token_hex(4)}@example.com",
        "password": PASSWORD,
    },
    # deleting the reference accounts would end the matrix: a wrong password
    "DELETE /api/users/me": lambda w, c, _: {"password": "not-the-password"},
    "PUT /api/admin/users/{userId}/role": lambda w, c, _: {"role": "user"},
    "POST /api/admin/users/{userId}/suspend": lambda w, c, _: {"reason": "matrix check"},
    "PUT /api/admin/users/{userId}/premium": lambda w, c, _: {},
    "POST /api/sessions/{sessionId}/invite": lambda w, c, _: {"userId": c.outsider.id},
    "POST /api/notifications/push-subscriptions": _push_subscription,
    "POST /api/challenges": lambda w, c, _: {
        "title": "Three posts",
        "challengeType": "daily",
        "criteria": {"metric": "posts_created", "target": 3},
        "podId": w.pod,
    },
    "DELETE /api/notifications/push-subscriptions": lambda w, c, _: {
        "endpoint": "https://push.example.com/nobody"
    },
    "POST /api/decks": lambda w, c, _: {"title": "More cards", "podId": w.pod},
    "POST /api/decks/generate": lambda w, c, _: {"text": "Limit: the value a function nears"},
    "PATCH /api/decks/{deckId}": lambda w, c, _: {"title": "Algebra cards (revised)"},
    "POST /api/decks/{deckId}/cards": lambda w, c, _: {"front": "3x = 9", "back": "x = 3"},
    "POST /api/decks/{deckId}/keep": lambda w, c, _: {},
    "PATCH /api/cards/{cardId}": lambda w, c, _: {"back": "x = 2 (divide by 2)"},
    "POST /api/study/reviews": lambda w, c, _: {
        "cardId": w.card,
        "rating": "good",
        "clientReviewId": secrets.token_hex(8),
    },
    "POST /api/study/reviews/batch": lambda w, c, _: {"reviews": []},
    "PUT /api/study/settings": lambda w, c, _: {"desiredRetention": 0.9},
    "PUT /api/study/goals": lambda w, c, _: {"cardsPerWeek": 10},
    "POST /api/study/live/{sessionId}": lambda w, c, _: {"deckId": w.deck},
    "POST /api/study/live/{sessionId}/answer": lambda w, c, _: {"round": 1, "rating": "good"},
}

ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
    "UID:matrix-1@example.com\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20300101T100000Z\r\n"
    "DTEND:20300101T110000Z\r\nSUMMARY:Imported\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)

# Bodies the handler reads itself (files).
RAW_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "POST /api/upload": lambda: {"files": {"file": ("a.txt", b"some notes\n", "text/plain")}},
    "POST /api/calendar/import": lambda: {
        "data": ICS.encode(),
        "headers": {"Content-Type": "text/calendar"},
    },
    "POST /api/decks/{deckId}/import": lambda: {
        "data": b"#separator:tab\n4x = 8\tx = 2\talgebra\n",
        "headers": {"Content-Type": "text/plain"},
    },
}

# Query parameters a route needs to name the reference objects.
QUERIES: dict[str, Callable[[World], dict[str, str]]] = {
    "GET /api/calendar/events": lambda w: {
        "startDate": _soon(0)[:10],
        "endDate": _soon(24 * 10)[:10],
    },
    "GET /api/search/suggest": lambda w: {"q": "Not"},
    "GET /api/search/posts": lambda w: {"q": "Welcome"},
    "GET /api/files/{key}": lambda w: w.personal.file_query,
}

# Calls that succeed without disturbing the reference objects (everything else that succeeds
# and is not a GET has the objects rebuilt before the next call).
HARMLESS = {
    "POST /api/auth/register",
    "POST /api/auth/login",
    "POST /api/auth/refresh",
    "POST /api/web/login",
    "POST /api/web/token",
    "PATCH /api/auth/me",
    "POST /api/pods",
    "POST /api/sessions",
    "POST /api/posts",
    "POST /api/resources",
    "POST /api/calendar/events",
    "POST /api/calendar/import",
    "POST /api/upload",
    "POST /api/mobile/sync",
    "POST /api/ai/chat",
    "POST /api/ai/study-plan",
    "POST /api/ai/explain",
    "PUT /api/notifications/preferences",
    "POST /api/notifications/read-all",
    "POST /api/resources/{resourceId}/bookmark",
    "POST /api/resources/{resourceId}/rate",
    "POST /api/posts/{postId}/comments",
    "POST /api/sessions/{sessionId}/messages",
    "POST /api/sessions/{sessionId}/join",
    "POST /api/pods/{podId}/join",
    "POST /api/posts/{postId}/interactions",
    "POST /api/comments/{commentId}/interactions",
    "POST /api/auth/verify-email/resend",
    "POST /api/auth/password-reset",
    "POST /api/auth/email",
    "PUT /api/admin/users/{userId}/role",
    "POST /api/notifications/push-subscriptions",
    "POST /api/auth/oauth/{provider}/link",
    "POST /api/decks",
    "POST /api/decks/generate",
    "POST /api/study/reviews",
    "POST /api/study/reviews/batch",
    "PUT /api/study/settings",
    "PUT /api/study/goals",
    "POST /api/challenges",
    "POST /api/users/{userId}/follow",
    "DELETE /api/users/{userId}/follow",
}


def _login_again(ref: Reference, caller: str) -> None:
    """The caller ended their own login: sign in again."""
    account = ref.cast.account(caller)
    assert account is not None
    account.login(ref.client)


def _new_feed(ref: Reference, caller: str) -> None:
    """Only the owner's feed is a reference object: renew it when the owner changed it."""
    if caller == "owner":
        ref.world.personal.feed_token = ref.client.ok(
            "POST", "/api/calendar/feed", ref.cast.owner.token
        )["token"]


def _new_conversation(ref: Reference, caller: str) -> None:
    ref.world.personal.conversation = new_conversation(ref.client, ref.cast.member)


def _new_login(ref: Reference, caller: str) -> None:
    ref.world.personal.member_login = new_login(ref.client, ref.cast.member)


def _unsuspend(ref: Reference, caller: str) -> None:
    """The admin suspended the member: restore them and sign them in again."""
    member = ref.cast.member
    ref.client.ok("POST", f"/api/admin/users/{member.id}/restore", ref.cast.admin.token)
    member.login(ref.client)
    ref.world.personal.member_login = new_login(ref.client, member)


def _no_premium(ref: Reference, caller: str) -> None:
    ref.client.ok("DELETE", f"/api/admin/users/{ref.cast.member.id}/premium", ref.cast.admin.token)


# What to do after a call that changed something, when rebuilding every object is too much.
AFTER: dict[str, Callable[[Reference, str], None]] = {
    "POST /api/auth/logout": _login_again,
    "POST /api/web/logout": _login_again,
    "POST /api/calendar/feed": _new_feed,
    "DELETE /api/calendar/feed": _new_feed,
    "DELETE /api/ai/conversations/{conversationId}": _new_conversation,
    "DELETE /api/auth/sessions/{sessionId}": _new_login,
    "POST /api/auth/password": _new_login,
    "POST /api/admin/users/{userId}/suspend": _unsuspend,
    "PUT /api/admin/users/{userId}/premium": _no_premium,
}


def _path_value(route: Described, name: str, world: World, cast: Cast) -> str:
    if route.path.startswith("/api/auth/sessions/"):
        return world.personal.member_login
    if name == "userId":
        # ban/unban and role changes act on the member; lifting a ban on the banned member
        banned = route.method == "DELETE" and route.path.endswith("/ban")
        return cast.banned.id if banned else cast.member.id
    values = {
        "podId": world.pod,
        "sessionId": world.session,
        "postId": world.post,
        "commentId": world.comment,
        "resourceId": world.resource,
        "eventId": world.event,
        "notificationId": world.notification,
        "reportId": world.report,
        "heldId": world.held,
        "challengeId": world.challenge,
        "achievementId": world.achievement,
        "conversationId": world.personal.conversation,
        "deckId": world.deck,
        "cardId": world.card,
        "id": cast.member.id,
        "token": world.personal.feed_token,
        "key": world.personal.file_path.removeprefix("/api/files/"),
        "module": "app",  # /app/{module}.js: the web client's main module
        "provider": "github",  # the provider the contract apps set up
    }
    if name not in values:
        raise AssertionError(f"{route.method} {route.path}: no reference value for {{{name}}}")
    return values[name]


# what an upgrade needs besides the token (Engine.IO's version and transport)
UPGRADE_QUERIES = {"GET /socket.io/": {"EIO": "4", "transport": "websocket"}}


def _call(ref: Reference, route: Described, op: Operation, caller: str) -> tuple[int, str]:
    world, cast, client = ref.fresh(), ref.cast, ref.client
    key = f"{route.method} {route.path}"
    account: Account | None = cast.account(caller)
    token = account.token if account else None
    path = _PARAM.sub(lambda m: _path_value(route, m.group(1), world, cast), route.path)
    if 101 in op.raw:
        query = urlencode({**UPGRADE_QUERIES.get(key, {}), **({"token": token} if token else {})})
        sock = RawSocket("127.0.0.1", ref.live.port, f"{path}?{query}")
        sock.sock.close()
        return sock.status, ""
    kwargs: dict[str, Any] = {}
    if key in QUERIES:
        kwargs["params"] = QUERIES[key](world)
    if op.body is not None and not op.empty_body:
        assert key in BODIES, f"{key}: add a valid body to BODIES"
        kwargs["json"] = BODIES[key](world, cast, client)
    elif op.raw_body:
        assert key in RAW_BODIES, f"{key}: add a valid body to RAW_BODIES"
        kwargs.update(RAW_BODIES[key]())
    resp = client.call(route.method, path, token, **kwargs)
    if resp.status_code < 300 and route.method != "GET" and key not in HARMLESS:
        if key in AFTER:
            AFTER[key](ref, caller)
        else:
            ref.dirty = True
    return resp.status_code, resp.text[:300]


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method} {r.path}" for r in ROUTES])
def test_every_caller_gets_what_the_route_declares(reference: Reference, route: Described) -> None:
    op = route.operation
    assert op is not None, f"{route.method} {route.path} has no @operation (and so no rule)"
    wrong = []
    for caller in CALLERS:
        expected = op.access.status_for(caller)
        status, body = _call(reference, route, op, caller)
        if status != expected:
            wrong.append(f"{caller}: expected {expected}, got {status} {body}")
    assert not wrong, f"{route.method} {route.path}\n" + "\n".join(wrong)
