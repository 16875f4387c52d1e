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

from tests.helpers import PASSWORD, Api, listen_live, unique
from tests.nodes import Node, start_node

FAST = {"reminder_scan_interval": 0.2, "worker_poll_interval": 0.1, "run_worker": True}


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


async def wait_until(check: Any, timeout: float = 15, every: float = 0.1) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)


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
    assert frame["metadata"]["late"] is False and frame["metadata"]["minutesBefore"] == 10
    assert "in 10 minutes" in frame["message"] and "(Europe/Berlin)" in frame["message"]
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
            p for p in (tmp_path / "outbox").glob("*.eml") if ann.email.encode() in p.read_bytes()
        ]

    [mail] = await wait_until(emailed)
    body = mail.read_bytes()
    assert b"Reminder: Organic chemistry exam" in body and b"Hall A" in body


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
        return await db.fetch(
            "SELECT occurrence_start FROM reminder_deliveries WHERE user_id = $1", uuid.UUID(ann.id)
        )

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
    assert frame["type"] == "session_reminder" and frame["title"] == "Reminder: Group review"
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
                "SELECT count(*) FROM jobs WHERE kind = 'send_email' AND payload->>'userId' = $1",
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
        assert row["late"] is True and (row["fired_at"] - row["due_at"]).total_seconds() > 0.5
        notes = await db.fetch(
            "SELECT title, metadata FROM notifications WHERE recipient_id = $1", user_id
        )
        assert len(notes) == 1, f"restart {restart}: {notes}"
        assert notes[0]["title"] == "Reminder: Thesis meeting (late)"
        assert json.loads(notes[0]["metadata"])["late"] is True
