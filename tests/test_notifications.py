"""Notifications: the inbox (cursor, unread), read marks, preferences, quiet hours, and live
delivery to every device of a user (two nodes over Redis)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from peerspark_rt.infra import cursor
from peerspark_rt.infra.pool import DB
from peerspark_rt.notifications.service import NOTIFICATIONS, NewNotification
from tests.helpers import Api, User, listen_live


async def notify(api: Api, user: User, title: str, kind: str = "system", **kw: Any) -> Any:
    return await api.app[NOTIFICATIONS].notify(
        NewNotification(recipient_id=uuid.UUID(user.id), notification_type=kind, title=title, **kw)
    )


async def test_inbox_pages_with_a_cursor_and_filters_unread(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    for i in range(5):
        await notify(api, ann, f"note {i}")
    await notify(api, bob, "for bob")
    first = await api.get("/api/notifications", ann, params={"limit": "2"})
    assert first.status == 200
    assert [n["title"] for n in first.body["notifications"]] == ["note 4", "note 3"]
    assert first.body["unreadCount"] == 5
    second = await api.get(
        "/api/notifications", ann, params={"limit": "2", "cursor": first.body["nextCursor"]}
    )
    assert [n["title"] for n in second.body["notifications"]] == ["note 2", "note 1"]
    third = await api.get(
        "/api/notifications", ann, params={"limit": "2", "cursor": second.body["nextCursor"]}
    )
    assert [n["title"] for n in third.body["notifications"]] == ["note 0"]
    assert third.body["nextCursor"] is None

    target = first.body["notifications"][1]
    read = await api.post(f"/api/notifications/{target['id']}/read", ann)
    assert read.status == 200
    assert read.body["notification"]["isRead"] is True
    assert read.body["notification"]["readAt"]
    assert read.body["unreadCount"] == 4
    unread = await api.get("/api/notifications", ann, params={"unread": "true"})
    assert [n["title"] for n in unread.body["notifications"]] == [
        "note 4",
        "note 2",
        "note 1",
        "note 0",
    ]

    # someone else's notification, or none at all, is 404
    assert (await api.post(f"/api/notifications/{target['id']}/read", bob)).status == 404
    assert (await api.post(f"/api/notifications/{uuid.uuid4()}/read", ann)).status == 404
    assert (await api.post("/api/notifications/nope/read", ann)).status == 404
    bad = await api.get("/api/notifications", ann, params={"cursor": "!!garbage"})
    assert bad.status == 422
    assert bad.error_field() == "cursor"
    bad = await api.get("/api/notifications", ann, params={"limit": "500"})
    assert bad.status == 422
    assert bad.error_field() == "limit"
    assert (await api.get("/api/notifications")).status == 401

    everything = await api.post("/api/notifications/read-all", ann)
    assert everything.body == {"updated": 4, "unreadCount": 0}
    bob_page = await api.get("/api/notifications", bob)
    assert bob_page.body["unreadCount"] == 1  # Bob's are untouched


async def test_unread_count_is_live_on_every_device(api: Api) -> None:
    ann = await api.register()
    phone = await listen_live(api, ann, f"user:{ann.id}")
    laptop = await listen_live(api, ann, f"user:{ann.id}")
    row = await notify(api, ann, "Bob liked your post", kind="post_like")
    for device in (phone, laptop):
        frame = await device.next("notification")
        assert frame["title"] == "Bob liked your post"
        assert frame["unreadCount"] == 1
        assert frame["type"] == "post_like"
        assert frame["id"] == str(row["id"])
    await api.post(f"/api/notifications/{row['id']}/read", ann)
    for device in (phone, laptop):
        frame = await device.next("event", "unread_count")
        assert frame["data"] == {"unreadCount": 0}


async def test_two_devices_on_two_nodes_both_get_it(make_client: Any, redis_url: str) -> None:
    shared = {
        "redis_url": redis_url,
        "redis_key_prefix": f"t{uuid.uuid4().hex[:8]}:",
        "jwt_secret": "a" * 40,
        "jwt_refresh_secret": "b" * 40,
    }
    node_a = await make_client(**shared)
    node_b = await make_client(**shared)
    ann = await node_a.register()
    bob = await node_a.register()
    on_a = await listen_live(node_a, bob, f"user:{bob.id}")
    on_b = await listen_live(node_b, bob, f"user:{bob.id}")
    pod = await node_a.create_pod(ann)
    resp = await node_a.post(f"/api/pods/{pod['id']}/invite", ann, json={"userId": bob.id})
    assert resp.status == 201
    for device in (on_a, on_b):
        frame = await device.next("notification")
        assert frame["type"] == "pod_invite"
        assert frame["unreadCount"] == 1
    # reading on node B updates the badge on node A's device too
    inbox = await node_b.get("/api/notifications", bob)
    await node_b.post(f"/api/notifications/{inbox.body['notifications'][0]['id']}/read", bob)
    assert (await on_a.next("event", "unread_count"))["data"] == {"unreadCount": 0}


async def test_preferences_defaults_updates_and_refusals(api: Api) -> None:
    ann = await api.register()
    got = await api.get("/api/notifications/preferences", ann)
    assert got.status == 200
    assert got.body["types"]["pod_invite"] == {"inApp": True, "email": True}
    assert got.body["types"]["post_like"] == {"inApp": True, "email": False}
    assert got.body["quietHours"] == {
        "enabled": False,
        "start": "22:00",
        "end": "07:00",
        "timezone": "UTC",
    }
    assert got.body["dailyDigest"] is True
    assert got.body["sessionReminderMinutes"] == 15
    put = await api.put(
        "/api/notifications/preferences",
        ann,
        json={
            "types": {
                "post_like": "none",
                "comment": {"inApp": True, "email": True},
                "study_buddy": "email",
            },
            "quietHours": {"start": "23:30", "end": "06:45"},
            "dailyDigest": False,
            "sessionReminderMinutes": 30,
        },
    )
    assert put.status == 200, put.body
    assert put.body["types"]["post_like"] == {"inApp": False, "email": False}
    assert put.body["types"]["comment"] == {"inApp": True, "email": True}
    assert put.body["types"]["study_buddy"] == {"inApp": False, "email": True}
    assert put.body["types"]["pod_invite"] == {"inApp": True, "email": True}  # untouched
    assert put.body["quietHours"]["enabled"] is True
    assert put.body["quietHours"]["start"] == "23:30"
    assert (await api.get("/api/notifications/preferences", ann)).body == put.body
    # a partial update keeps the rest
    put2 = await api.put(
        "/api/notifications/preferences", ann, json={"types": {"post_like": "in_app"}}
    )
    assert put2.body["types"]["comment"] == {"inApp": True, "email": True}
    assert put2.body["dailyDigest"] is False
    for body, field in (
        ({"types": {"post_like": "loud"}}, "types.post_like"),
        ({"types": {"Post Like!": "none"}}, "types.Post Like!"),
        ({"types": {"post_like": {"inApp": "yes"}}}, "types.post_like.inApp"),
        ({"types": {"post_like": {"sms": True}}}, "types.post_like.sms"),
        ({"quietHours": {"start": "25:00", "end": "07:00"}}, "quietHours.start"),
        ({"quietHours": {"start": "22:00", "end": "22:00"}}, "quietHours.end"),
        ({"sessionReminderMinutes": 5000}, "sessionReminderMinutes"),
        ({"volume": 11}, "volume"),
    ):
        resp = await api.put("/api/notifications/preferences", ann, json=body)
        assert resp.status == 422, (body, resp.body)
        assert resp.error_field() == field, (body, resp.body)


async def test_turning_a_type_off_stores_nothing_and_email_on_queues_an_email(
    api: Api, db: Any
) -> None:
    ann, bob = await api.register(), await api.register()
    await api.put("/api/notifications/preferences", bob, json={"types": {"pod_invite": "none"}})
    pod = await api.create_pod(ann)
    assert (
        await api.post(f"/api/pods/{pod['id']}/invite", ann, json={"userId": bob.id})
    ).status == 201
    assert (
        await db.fetchval(
            "SELECT count(*) FROM notifications WHERE recipient_id = $1", uuid.UUID(bob.id)
        )
        == 0
    )
    jobs = await db.fetch(
        "SELECT payload FROM jobs WHERE kind = 'send_email' AND payload->>'userId' = $1"
        " AND payload->>'template' <> 'account'",
        bob.id,
    )
    assert jobs == []
    # email only: nothing in the inbox, but an email is queued
    eve = await api.register()
    await api.put("/api/notifications/preferences", eve, json={"types": {"pod_invite": "email"}})
    await api.post(f"/api/pods/{pod['id']}/invite", ann, json={"userId": eve.id})
    assert (
        await db.fetchval(
            "SELECT count(*) FROM notifications WHERE recipient_id = $1", uuid.UUID(eve.id)
        )
        == 0
    )
    rows = await db.fetch(
        "SELECT payload::text AS p, status FROM jobs"
        " WHERE kind = 'send_email' AND payload->>'userId' = $1"
        " AND payload->>'template' <> 'account'",
        eve.id,
    )
    assert len(rows) == 1
    assert eve.email in rows[0]["p"]
    assert rows[0]["status"] == "queued"


async def test_an_email_is_enqueued_with_its_notification_or_not_at_all(api: Api, db: Any) -> None:
    ann = await api.register()
    service = api.app[NOTIFICATIONS]

    class Boom(Exception):
        pass

    try:
        async with api.app[DB].transaction() as conn:
            await service.store(
                conn, NewNotification(uuid.UUID(ann.id), "pod_invite", "Rolled back invitation")
            )
            raise Boom
    except Boom:
        pass
    assert (
        await db.fetchval(
            "SELECT count(*) FROM notifications WHERE title = 'Rolled back invitation'"
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM jobs WHERE payload->>'subject' = 'Rolled back invitation'"
        )
        == 0
    )
    await service.notify(NewNotification(uuid.UUID(ann.id), "pod_invite", "Kept invitation"))
    job = await db.fetchrow(
        "SELECT payload::text AS p FROM jobs WHERE payload->>'subject' = 'Kept invitation'"
    )
    note = await db.fetchrow("SELECT id FROM notifications WHERE title = 'Kept invitation'")
    assert job is not None
    assert str(note["id"]) in job["p"]


def _quiet_window_around_now(tz: str) -> tuple[str, str]:
    now = dt.datetime.now(ZoneInfo(tz))
    start = (now - dt.timedelta(hours=1)).strftime("%H:%M")
    end = (now + dt.timedelta(hours=2)).strftime("%H:%M")
    return start, end


async def test_quiet_hours_store_but_neither_push_nor_email_until_they_end(
    api: Api, db: Any
) -> None:
    ann = await api.register()
    tz = "Asia/Kolkata"  # quiet hours are read in the user's own zone (+05:30)
    await db.execute("UPDATE users SET timezone = $2 WHERE id = $1", uuid.UUID(ann.id), tz)
    start, end = _quiet_window_around_now(tz)
    resp = await api.put(
        "/api/notifications/preferences", ann, json={"quietHours": {"start": start, "end": end}}
    )
    assert resp.body["quietHours"]["timezone"] == tz
    live = await listen_live(api, ann, f"user:{ann.id}")
    row = await notify(api, ann, "Quiet please", kind="pod_invite")
    assert row is not None  # stored, counts as unread
    await live.nothing_more("notification", wait=0.5)
    inbox = await api.get("/api/notifications", ann)
    assert inbox.body["unreadCount"] == 1
    assert inbox.body["notifications"][0]["title"] == "Quiet please"
    job = await db.fetchrow(
        "SELECT run_at, payload FROM jobs"
        " WHERE kind = 'send_email' AND payload->>'notificationId' = $1",
        str(row["id"]),
    )
    payload = json.loads(job["payload"])
    assert payload["skipIfRead"] is True
    expected_end = dt.datetime.now(ZoneInfo(tz)) + dt.timedelta(hours=2)
    assert abs((job["run_at"] - expected_end).total_seconds()) < 120
    # urgent notifications ignore quiet hours
    await notify(api, ann, "Server on fire", kind="system", priority="urgent")
    assert (await live.next("notification"))["title"] == "Server on fire"
    # outside quiet hours everything flows again
    await api.put("/api/notifications/preferences", ann, json={"quietHours": None})
    await notify(api, ann, "Loud again")
    assert (await live.next("notification"))["title"] == "Loud again"


def test_quiet_hours_are_read_in_the_users_zone_and_may_cross_midnight() -> None:
    from peerspark_rt.notifications.prefs import QuietHours

    night = QuietHours(True, "22:00", "07:00")
    berlin_2330 = dt.datetime(2026, 1, 10, 22, 30, tzinfo=dt.UTC)  # 23:30 in Berlin (+01:00)
    assert night.until("Europe/Berlin", berlin_2330) == dt.datetime(
        2026, 1, 11, 6, 0, tzinfo=dt.UTC
    )
    assert night.until("America/New_York", berlin_2330) is None  # 17:30 there
    early = dt.datetime(2026, 7, 10, 3, 0, tzinfo=dt.UTC)  # 05:00 in Berlin (+02:00)
    assert night.until("Europe/Berlin", early) == dt.datetime(2026, 7, 10, 5, 0, tzinfo=dt.UTC)
    lunch = QuietHours(True, "12:00", "13:00")
    assert lunch.until("UTC", dt.datetime(2026, 1, 1, 12, 30, tzinfo=dt.UTC)) == dt.datetime(
        2026, 1, 1, 13, 0, tzinfo=dt.UTC
    )
    assert lunch.until("UTC", dt.datetime(2026, 1, 1, 13, 0, tzinfo=dt.UTC)) is None
    assert QuietHours(False).until("UTC", berlin_2330) is None


async def test_inbox_cursors_are_the_shared_opaque_kind(api: Api) -> None:
    ann = await api.register()
    for i in range(3):
        await notify(api, ann, f"note {i}")
    first = await api.get("/api/notifications", ann, params={"limit": "1"})
    key = cursor.decode(first.body["nextCursor"], "notifications", (dt.datetime, uuid.UUID))
    assert key[0].tzinfo is not None
    # the hand-made form this inbox used to accept is refused, like any other foreign cursor
    stamp = first.body["notifications"][0]["createdAt"]
    ident = first.body["notifications"][0]["id"]
    naive = dt.datetime.fromisoformat(stamp).replace(tzinfo=None).isoformat()
    old_style = base64.urlsafe_b64encode(f"{naive}|{ident}".encode()).decode().rstrip("=")
    for bad in (
        old_style,
        cursor.encode("feed", (dt.datetime.now(dt.UTC), uuid.UUID(ident))),
        cursor.encode("notifications", (dt.datetime.now(), uuid.UUID(ident))),  # naive
        cursor.encode("notifications", ("yesterday", uuid.UUID(ident))),
    ):
        resp = await api.get("/api/notifications", ann, params={"cursor": bad})
        assert resp.status == 422, (bad, resp.body)
        assert resp.error_field() == "cursor", (bad, resp.body)
