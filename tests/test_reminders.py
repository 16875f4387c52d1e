"""Reminders fire once per occurrence: in one node, with two real nodes scanning the same
database, and across a restart (late, marked late, never twice)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peerspark_rt.calendar import reminders as reminders_module
from peerspark_rt.calendar.events import event_series
from peerspark_rt.calendar.reminders import REMINDERS
from tests.helpers import PASSWORD, Api, User, listen_live, unique, wait_until
from tests.nodes import Node, start_node

FAST = {"reminder_scan_interval": 0.2, "worker_poll_interval": 0.1, "run_worker": True}


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


async def test_a_reminder_fires_once_in_app_and_by_email(
    make_client: Any, db: Any, tmp_path: Path
) -> None:
    api: Api = await make_client(**FAST)
    ann = await api.register()
    live = await listen_live(api, ann, f"user:{ann.id}")
    now = dt.datetime.now(dt.UTC)
    event = await api.post(
        "/api/calendar/events",
        ann,
        json={
            "title": "Organic chemistry exam",
            "startTime": iso(now + dt.timedelta(minutes=10, seconds=1)),
            "timezone": "Europe/Berlin",
            "eventType": "exam",
            "location": "Hall A",
            "reminderSettings": [{"minutesBefore": 10, "channels": ["in_app", "email"]}],
        },
    )
    assert event.status == 201, event.body
    # Already too late for its 10-minute reminder when created: it must not fire.
    await api.post(
        "/api/calendar/events",
        ann,
        json={
            "title": "Too soon",
            "startTime": iso(now + dt.timedelta(minutes=5)),
            "timezone": "UTC",
            "reminderSettings": [{"minutesBefore": 10}],
        },
    )
    frame = await live.next("notification", timeout=10)
    assert frame["title"] == "Reminder: Organic chemistry exam"
    assert frame["type"] == "event_reminder"
    assert frame["metadata"]["late"] is False
    assert frame["metadata"]["minutesBefore"] == 10
    assert "in 10 minutes" in frame["message"]
    assert "(Europe/Berlin)" in frame["message"]
    await asyncio.sleep(1)  # several more scans
    await live.nothing_more("notification", wait=0.3)
    rows = await db.fetch(
        "SELECT channel, late, notification_id FROM reminder_deliveries"
        " WHERE user_id = $1 ORDER BY channel",
        uuid.UUID(ann.id),
    )
    assert [(r["channel"], r["late"]) for r in rows] == [("email", False), ("in_app", False)]
    assert rows[1]["notification_id"] is not None
    count = await db.fetchval(
        "SELECT count(*) FROM notifications WHERE recipient_id = $1", uuid.UUID(ann.id)
    )
    assert count == 1

    async def emailed() -> list[Path]:
        return [
            p
            for p in (tmp_path / "outbox").glob("*.eml")
            if ann.email.encode() in p.read_bytes() and b"Reminder" in p.read_bytes()
        ]

    [mail] = await wait_until(emailed)
    body = mail.read_bytes()
    assert b"Reminder: Organic chemistry exam" in body
    assert b"Hall A" in body


async def test_a_recurring_events_reminders_fire_per_occurrence(make_client: Any, db: Any) -> None:
    api: Api = await make_client(**FAST)
    ann = await api.register()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # every day at this time + 2 s: today's occurrence comes due now; tomorrow's does not yet
    resp = await api.post(
        "/api/calendar/events",
        ann,
        json={
            "title": "Daily review",
            "startTime": iso(now + dt.timedelta(seconds=2)),
            "timezone": "America/New_York",
            "recurrencePattern": "FREQ=DAILY",
            "reminderSettings": [{"minutesBefore": 0}],
        },
    )
    assert resp.status == 201

    async def delivered() -> list[Any]:
        rows: list[Any] = await db.fetch(
            "SELECT occurrence_start FROM reminder_deliveries WHERE user_id = $1", uuid.UUID(ann.id)
        )
        return rows

    rows = await wait_until(delivered)
    await asyncio.sleep(0.6)
    rows = await delivered()
    assert [r["occurrence_start"] for r in rows] == [now + dt.timedelta(seconds=2)]


async def test_study_sessions_remind_organizer_and_accepted_participants(
    make_client: Any, db: Any
) -> None:
    api: Api = await make_client(**FAST)
    ann, bob, eve = await api.register(), await api.register(), await api.register()
    await api.put("/api/notifications/preferences", bob, json={"sessionReminderMinutes": 30})
    await api.put("/api/notifications/preferences", eve, json={"sessionReminderMinutes": 15})
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15, seconds=1)
    session_id = await db.fetchval(
        """INSERT INTO study_sessions (title, session_type, organizer_id, start_time, end_time)
           VALUES ('Group review', 'group', $1, $2, $3) RETURNING id""",
        uuid.UUID(ann.id),
        start,
        start + dt.timedelta(hours=1),
    )
    for user, status in ((bob, "accepted"), (eve, "declined")):
        await db.execute(
            "INSERT INTO session_participants (session_id, user_id, status) VALUES ($1, $2, $3)",
            session_id,
            uuid.UUID(user.id),
            status,
        )
    live = await listen_live(api, ann, f"user:{ann.id}")
    frame = await live.next("notification", timeout=10)
    assert frame["type"] == "session_reminder"
    assert frame["title"] == "Reminder: Group review"
    assert frame["actionUrl"] == f"/sessions/{session_id}"
    await asyncio.sleep(0.6)
    # Bob wanted 30 minutes' notice: that was due before the session existed, so it is not
    # sent late; Eve declined.
    counts = {
        u.username: await db.fetchval(
            "SELECT count(*) FROM notifications WHERE recipient_id = $1", uuid.UUID(u.id)
        )
        for u in (ann, bob, eve)
    }
    assert counts == {ann.username: 1, bob.username: 0, eve.username: 0}


# --------------------------------------------------------------------------- what a scan reads


async def fire_jobs(db: Any, user: User) -> list[dict[str, Any]]:
    """The payloads of the fire_reminder jobs enqueued for `user`, oldest first."""
    rows = await db.fetch(
        """SELECT payload FROM jobs WHERE kind = 'fire_reminder' AND payload->>'userId' = $1
            ORDER BY id""",
        user.id,
    )
    return [json.loads(r["payload"]) for r in rows]


async def test_a_scan_reads_only_the_events_with_a_reminder_due(
    api: Api, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = await api.register()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for i in range(5):  # daily classes from tomorrow, reminded 10 minutes before
        resp = await api.post(
            "/api/calendar/events",
            ann,
            json={
                "title": f"Class {i}",
                "startTime": iso(now + dt.timedelta(days=1, hours=i)),
                "timezone": "Europe/Berlin",
                "recurrencePattern": "FREQ=DAILY",
                "reminderSettings": [{"minutesBefore": 10}],
            },
        )
        assert resp.status == 201
    # (timed from after the classes were made: on a busy machine that took over a second, and
    # a reminder already past when its event is made is never due)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=30)
    soon = await api.post(
        "/api/calendar/events",
        ann,
        json={
            "title": "Starts now",
            "startTime": iso(start),
            "timezone": "UTC",
            "reminderSettings": [{"minutesBefore": 0}],
        },
    )
    assert soon.status == 201
    expanded: list[str] = []
    real_event_series = event_series

    def spy(row: Any) -> Any:
        if str(row["user_id"]) == ann.id:
            expanded.append(row["title"])
        return real_event_series(row)

    monkeypatch.setattr(reminders_module, "event_series", spy)
    scanner = api.app[REMINDERS]
    await scanner.scan(start + dt.timedelta(seconds=1))
    assert expanded == ["Starts now"]
    assert [j["sourceId"] for j in await fire_jobs(db, ann)] == [soon.body["id"]]
    expanded.clear()
    await scanner.scan(start + dt.timedelta(seconds=2))
    assert expanded == []  # nothing more is due until tomorrow
    # tomorrow, ten minutes before the first class, only that class is read, and fires
    await scanner.scan(now + dt.timedelta(days=1, minutes=-10, seconds=1))
    assert expanded == ["Class 0"]
    assert len(await fire_jobs(db, ann)) == 2


async def test_an_edited_event_is_reminded_at_its_new_time(api: Api, db: Any) -> None:
    ann = await api.register()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    event = await api.post(
        "/api/calendar/events",
        ann,
        json={
            "title": "Office hours",
            "startTime": iso(now + dt.timedelta(hours=2)),
            "timezone": "UTC",
            "reminderSettings": [{"minutesBefore": 0}],
        },
    )
    scanner = api.app[REMINDERS]
    await scanner.scan(now + dt.timedelta(seconds=5))
    assert await fire_jobs(db, ann) == []
    moved = await api.put(
        f"/api/calendar/events/{event.body['id']}",
        ann,
        json={"startTime": iso(now + dt.timedelta(minutes=1))},
    )
    assert moved.status == 200
    await scanner.scan(now + dt.timedelta(minutes=1, seconds=1))
    [job] = await fire_jobs(db, ann)
    assert job["occurrenceStart"] == iso(now + dt.timedelta(minutes=1))
    # the old time passes without a second reminder
    await scanner.scan(now + dt.timedelta(hours=2, seconds=1))
    assert len(await fire_jobs(db, ann)) == 1


async def test_the_session_scan_looks_back_only_to_where_it_stopped(api: Api, db: Any) -> None:
    ann = await api.register()
    now = dt.datetime.now(dt.UTC)
    # started 1h45 ago: its 15-minute reminder came due two hours ago
    start = now - dt.timedelta(hours=1, minutes=45)
    await db.execute(
        """INSERT INTO study_sessions (title, session_type, organizer_id, start_time, end_time,
                                       created_at, updated_at)
           VALUES ('Early review', 'group', $1, $2, $3, $4, $4)""",
        uuid.UUID(ann.id),
        start,
        start + dt.timedelta(hours=3),
        now - dt.timedelta(hours=3),
    )
    set_mark = """INSERT INTO scan_watermarks (name, scanned_until) VALUES ('session_reminders', $1)
                  ON CONFLICT (name) DO UPDATE SET scanned_until = EXCLUDED.scanned_until"""
    scanner = api.app[REMINDERS]
    # the last scan was a minute ago: that reminder was handled (or not due) back then
    await db.execute(set_mark, now - dt.timedelta(minutes=1))
    await scanner.scan(now)
    assert await fire_jobs(db, ann) == []
    # the workers were down for three hours: the first scan after finds it, to fire late
    await db.execute(set_mark, now - dt.timedelta(hours=3))
    await scanner.scan(now)
    [job] = await fire_jobs(db, ann)
    assert job["dueAt"] == iso(start - dt.timedelta(minutes=15))
    mark = await db.fetchval(
        "SELECT scanned_until FROM scan_watermarks WHERE name = 'session_reminders'"
    )
    assert mark >= now


# --------------------------------------------------------------------------- real nodes


def node_env(pg_dsn: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pg_dsn,
        "PEERSPARK_DATA_DIR": str(data_dir),
        "JWT_SECRET": "j" * 40,
        "JWT_REFRESH_SECRET": "r" * 40,
        "REMINDER_SCAN_INTERVAL": "0.2",
        "WORKER_POLL_INTERVAL": "0.1",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


class Client:
    """A user talking to a real node over HTTP."""

    def __init__(self, session: aiohttp.ClientSession, node: Node) -> None:
        self.session = session
        self.node = node
        self.token = ""

    async def register(self) -> str:
        name = unique("rem")
        async with self.session.post(
            f"{self.node.url}/api/auth/register",
            json={"email": f"{name}@example.com", "username": name, "password": PASSWORD,
                  "firstName": "Rita", "lastName": "Minder"},
        ) as resp:  # fmt: skip
            assert resp.status == 201, await resp.text()
            body = await resp.json()
        self.token = body["accessToken"]
        return str(body["user"]["id"])

    async def create_event(self, **fields: Any) -> dict[str, Any]:
        async with self.session.post(
            f"{self.node.url}/api/calendar/events",
            json={"timezone": "UTC", **fields},
            headers={"Authorization": f"Bearer {self.token}"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result


@pytest.mark.multinode
async def test_two_nodes_fire_each_reminder_exactly_once(
    pg_dsn: str, tmp_path: Path, db: Any
) -> None:
    nodes = [
        start_node(node_env(pg_dsn, tmp_path, NODE_ID=f"rem-{i}-{secrets.token_hex(2)}"))
        for i in range(2)
    ]
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, nodes[0])
            user_id = uuid.UUID(await client.register())
            start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
            for i in range(3):
                await client.create_event(
                    title=f"Lab {i}",
                    startTime=iso(start + dt.timedelta(milliseconds=300 * i)),
                    reminderSettings=[{"minutesBefore": 0, "channels": ["in_app", "email"]}],
                )

            async def all_fired() -> bool:
                n = await db.fetchval(
                    "SELECT count(*) FROM reminder_deliveries WHERE user_id = $1", user_id
                )
                return bool(n >= 6)

            await wait_until(all_fired, timeout=20)
            await asyncio.sleep(1.5)  # both nodes keep scanning: nothing may fire again
            deliveries = await db.fetch(
                "SELECT channel, fired_by, late FROM reminder_deliveries WHERE user_id = $1",
                user_id,
            )
            notes = await db.fetch(
                "SELECT title FROM notifications WHERE recipient_id = $1 ORDER BY title", user_id
            )
            emails = await db.fetchval(
                "SELECT count(*) FROM jobs WHERE kind = 'send_email' AND payload->>'userId' = $1"
                " AND payload->>'template' = 'reminder'",
                str(user_id),
            )
            reminder_jobs = await db.fetch(
                "SELECT status FROM jobs WHERE kind = 'fire_reminder' AND payload->>'userId' = $1",
                str(user_id),
            )
    finally:
        for node in nodes:
            assert node.stop() == 0, "".join(node.output)
    assert len(deliveries) == 6
    assert sorted(d["channel"] for d in deliveries) == ["email"] * 3 + ["in_app"] * 3
    assert not any(d["late"] for d in deliveries)
    assert all(d["fired_by"].startswith("rem-") for d in deliveries)  # fired by these nodes
    assert [n["title"] for n in notes] == ["Reminder: Lab 0", "Reminder: Lab 1", "Reminder: Lab 2"]
    assert emails == 3
    assert [j["status"] for j in reminder_jobs] == ["done"] * 3  # enqueued once each


@pytest.mark.multinode
async def test_a_reminder_missed_while_down_fires_late_once_after_restart(
    pg_dsn: str, tmp_path: Path, db: Any
) -> None:
    # A node without a worker takes the event; nothing can fire the reminder.
    api_node = start_node(node_env(pg_dsn, tmp_path, RUN_WORKER="false"))
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, api_node)
            user_id = uuid.UUID(await client.register())
            await client.create_event(
                title="Thesis meeting",
                startTime=iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)),
                reminderSettings=[{"minutesBefore": 0}],
            )
    finally:
        api_node.stop()
    await asyncio.sleep(2)  # the reminder comes due while no worker runs (grace: 0.5 s)
    assert (
        await db.fetchval("SELECT count(*) FROM reminder_deliveries WHERE user_id = $1", user_id)
        == 0
    )

    async def fired() -> Any:
        return await db.fetchrow(
            "SELECT late, fired_at, due_at FROM reminder_deliveries WHERE user_id = $1", user_id
        )

    for restart in range(2):
        node = start_node(node_env(pg_dsn, tmp_path, REMINDER_GRACE="0.5"))
        try:
            row = await wait_until(fired)
            await asyncio.sleep(1)  # more scans after the restart
        finally:
            assert node.stop() == 0, "".join(node.output)
        assert row["late"] is True
        assert (row["fired_at"] - row["due_at"]).total_seconds() > 0.5
        notes = await db.fetch(
            "SELECT title, metadata FROM notifications WHERE recipient_id = $1", user_id
        )
        assert len(notes) == 1, f"restart {restart}: {notes}"
        assert notes[0]["title"] == "Reminder: Thesis meeting (late)"
        assert json.loads(notes[0]["metadata"])["late"] is True
