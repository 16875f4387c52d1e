"""The platform admin API: the first admin from the command line, search, roles, suspension
(sockets end at once), premium and its expiry job, and the audit log; non-admins get 403."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from peerspark_rt import protocol
from peerspark_rt.accounts.admin import PREMIUM
from peerspark_rt.infra.jobs import Job
from tests.helpers import PASSWORD, Api, until_closed
from tests.test_cli import run_cli


async def test_admins_manage_users_and_every_action_is_audited(
    api: Api, pg_dsn: str, tmp_path: Path, db: Any
) -> None:
    boss, bob, eve = await api.register(), await api.register(), await api.register()
    # the first admin comes from the command line
    missing = run_cli(
        "admin", "grant", "nobody@example.com",
        env={"DATABASE_URL": pg_dsn, "PEERSPARK_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert missing.returncode == 1
    assert "no account uses nobody@example.com" in missing.stderr
    granted = run_cli(
        "admin", "grant", boss.email,
        env={"DATABASE_URL": pg_dsn, "PEERSPARK_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert f"{boss.email} ({boss.username}) is a platform admin" in granted.stdout

    for path in ("/api/admin/users", f"/api/admin/users/{bob.id}", "/api/admin/audit-log"):
        refused = await api.get(path, bob)
        assert (refused.status, refused.body["error"]["code"]) == (403, "not_admin"), path
    found = await api.get("/api/admin/users", boss, params={"q": bob.username[2:-2]})
    assert [u["id"] for u in found.body["users"]] == [bob.id]
    assert found.body["users"][0]["hasPassword"] is True
    page = await api.get("/api/admin/users", boss, params={"limit": "1"})
    assert len(page.body["users"]) == 1
    assert page.body["nextCursor"]
    bad = await api.get("/api/admin/users", boss, params={"role": "king"})
    assert (bad.status, bad.error_field()) == (422, "role")

    # roles: not one's own; others at once (the role is read on every request)
    own = await api.put(f"/api/admin/users/{boss.id}/role", boss, json={"role": "user"})
    assert (own.status, own.body["error"]["code"]) == (409, "own_role")
    wrong = await api.put(f"/api/admin/users/{bob.id}/role", boss, json={"role": "king"})
    assert (wrong.status, wrong.error_field()) == (422, "role")
    made = await api.put(f"/api/admin/users/{bob.id}/role", boss, json={"role": "moderator"})
    assert (made.status, made.body["role"]) == (200, "moderator")
    assert (await api.get("/api/auth/me", bob)).body["role"] == "moderator"
    by_bob = await api.put(f"/api/admin/users/{eve.id}/role", bob, json={"role": "admin"})
    assert by_bob.status == 403  # moderators are not admins

    # suspension ends every login and socket at once; restoring lets them sign in again
    socket = await api.live(eve, reconnect=False)
    empty = await api.post(f"/api/admin/users/{eve.id}/suspend", boss, json={"reason": " "})
    assert (empty.status, empty.error_field()) == (422, "reason")
    suspended = await api.post(
        f"/api/admin/users/{eve.id}/suspend", boss, json={"reason": "spam in three pods"}
    )
    assert (suspended.status, suspended.body["accountStatus"]) == (200, "suspended")
    await until_closed(socket)
    assert socket.close_code == protocol.CLOSE_SESSION_REVOKED
    assert (await api.get("/api/auth/me", eve)).status == 401
    login = {"email": eve.email, "password": PASSWORD}
    assert (await api.post("/api/auth/login", json=login)).status == 403
    twice = await api.post(f"/api/admin/users/{eve.id}/suspend", boss, json={"reason": "again"})
    assert twice.status == 409
    assert (await api.post(f"/api/admin/users/{eve.id}/restore", boss)).status == 200
    assert (await api.post("/api/auth/login", json=login)).status == 200
    assert (await api.post(f"/api/admin/users/{eve.id}/restore", boss)).status == 409

    # premium: granted until a time in the future, revoked, and ended by the scheduled job
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    refused = await api.put(f"/api/admin/users/{bob.id}/premium", boss, json={"expiresAt": past})
    assert (refused.status, refused.error_field()) == (422, "expiresAt")
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    premium = await api.put(
        f"/api/admin/users/{bob.id}/premium", boss, json={"expiresAt": soon, "note": "support"}
    )
    assert (premium.status, premium.body["isPremium"]) == (200, True)
    usage = await api.get("/api/ai/usage", bob)
    assert usage.body["premium"] is True
    await db.execute(
        "UPDATE users SET premium_expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(bob.id),
    )
    assert (await api.get("/api/ai/usage", bob)).body["premium"] is False  # at once
    await api.app[PREMIUM].expire_due(Job(0, "premium_expiry", {}, 1, 5, dt.datetime.now(dt.UTC)))
    after = await api.get(f"/api/admin/users/{bob.id}", boss)
    assert after.body["isPremium"] is False
    assert (await api.delete(f"/api/admin/users/{bob.id}/premium", boss)).status == 409
    await api.put(f"/api/admin/users/{eve.id}/premium", boss, json={})
    revoked = await api.delete(f"/api/admin/users/{eve.id}/premium", boss)
    assert (revoked.status, revoked.body["isPremium"]) == (200, False)

    log = await api.get("/api/admin/audit-log", boss, params={"limit": "20"})
    mine = [
        (e["action"], e["target"], e["actor"])
        for e in reversed(log.body["entries"])
        if e["targetUserId"] in (bob.id, eve.id, boss.id)
    ]
    assert mine == [
        ("role_changed", boss.username, "command line"),
        ("role_changed", bob.username, boss.username),
        ("suspended", eve.username, boss.username),
        ("restored", eve.username, boss.username),
        ("premium_granted", bob.username, boss.username),
        ("premium_expired", bob.username, "platform"),
        ("premium_granted", eve.username, boss.username),
        ("premium_revoked", eve.username, boss.username),
    ]
    of_eve = await api.get("/api/admin/audit-log", boss, params={"targetUserId": eve.id})
    assert [e["action"] for e in of_eve.body["entries"]][-1] == "suspended"
    assert of_eve.body["entries"][-1]["details"]["reason"] == "spam in three pods"
