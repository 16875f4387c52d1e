"""Email: delivered to a real SMTP server (aiosmtpd, started here) with text and HTML bodies,
written to the outbox folder without SMTP settings, and the daily digest."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import socket
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from peerspark_rt.infra.jobs import JOBS, WORKER, Job
from peerspark_rt.notifications.email import header_text
from peerspark_rt.notifications.service import NOTIFICATIONS, NewNotification
from tests.helpers import Api

VERIFY_SUBJECT = "Verify your email address"


def about_something(msg: EmailMessage) -> bool:
    """Not the verification email every sign-up sends (tests/test_account_lifecycle.py)."""
    return bool(msg["Subject"] != VERIFY_SUBJECT)


class Inbox:
    """What the SMTP server received (`wait_for` leaves out sign-ups' verification emails)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    async def wait_for(self, to: str, count: int = 1, timeout: float = 10) -> list[EmailMessage]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [m for m in self.messages if m["To"] == to and about_something(m)]
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no email to {to} within {timeout}s (got {len(found)})")
            await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def bodies(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


async def test_a_notification_email_arrives_at_the_smtp_server(
    make_client: Any, smtp_server: tuple[Inbox, int], db: Any
) -> None:
    inbox, port = smtp_server
    api: Api = await make_client(
        smtp_host="127.0.0.1", smtp_port=port, run_worker=True, worker_poll_interval=0.1,
        public_base_url="https://peerspark.example",
    )  # fmt: skip
    ann = await api.register()
    bob = await api.register()
    pod = await api.create_pod(ann, name="Calculus <Study> & Friends")
    assert (
        await api.post(f"/api/pods/{pod['id']}/invite", ann, json={"userId": bob.id})
    ).status == 201
    [msg] = await inbox.wait_for(bob.email)
    assert msg["Subject"] == f"{ann.username} invited you to Calculus <Study> & Friends"
    assert msg["From"] == "PeerSpark <noreply@peerspark.local>"
    # (jobs earlier tests left in the shared database may be sent by this worker too)
    assert [m["To"] for m in inbox.messages if m["To"] == bob.email and about_something(m)] == [
        bob.email
    ]
    text, html = bodies(msg)
    assert "Hi Test," in text
    assert "Calculus <Study> & Friends" in text
    assert f"https://peerspark.example/pods/{pod['id']}" in text
    assert "Calculus &lt;Study&gt; &amp; Friends" in html  # escaped in HTML
    assert f'href="https://peerspark.example/pods/{pod["id"]}"' in html
    # the notification knows its email went out, and the job is done
    await api.app[WORKER].drain()
    sent = await db.fetchval(
        "SELECT is_email_sent FROM notifications WHERE recipient_id = $1", uuid.UUID(bob.id)
    )
    assert sent is True


async def test_without_smtp_emails_go_to_the_outbox_folder(
    make_client: Any, tmp_path: Path
) -> None:
    api: Api = await make_client(run_worker=True, worker_poll_interval=0.1)
    ann = await api.register()
    await api.app[NOTIFICATIONS].notify(
        NewNotification(
            uuid.UUID(ann.id), "system", "Welcome to PeerSpark", message="Glad you're here."
        )
    )
    await api.app[WORKER].drain()
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    mine = []
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if msg["To"] == ann.email and msg["Subject"] != VERIFY_SUBJECT:
            mine.append(msg)
    assert len(mine) == 1
    assert isinstance(mine[0], EmailMessage)
    text, html = bodies(mine[0])
    assert "Glad you're here." in text
    assert "Glad you&#x27;re here." in html
    health = await api.health()
    assert health.body["services"]["jobs"]["worker"] == "running"


async def test_the_daily_digest_gathers_what_was_missed(
    make_client: Any, smtp_server: tuple[Inbox, int], db: Any
) -> None:
    inbox, port = smtp_server
    api: Api = await make_client(
        smtp_host="127.0.0.1", smtp_port=port, run_worker=True, worker_poll_interval=0.1
    )
    ann = await api.register()
    # it is 08:xx in the zone UTC+N for one N: there the digest goes out now
    hour = int(await db.fetchval("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')"))
    offset = (8 - hour) % 24
    offset = offset - 24 if offset > 14 else offset
    zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"
    await db.execute("UPDATE users SET timezone = $2 WHERE id = $1", uuid.UUID(ann.id), zone)
    service = api.app[NOTIFICATIONS]
    for title in ("Bob liked your post", "Eve commented", "Already read"):
        await service.notify(NewNotification(uuid.UUID(ann.id), "post_like", title))
    await db.execute("UPDATE notifications SET is_read = TRUE WHERE title = 'Already read'")
    # the hourly scan (run here by hand instead of waiting for the hour) queues the digest
    async with api.app[JOBS].db.transaction() as conn:
        await api.app[JOBS].enqueue(conn, "digest_scan", {})
    [msg] = await inbox.wait_for(ann.email)
    assert msg["Subject"] == "What you missed on PeerSpark (2 new)"
    text, html = bodies(msg)
    assert "- Bob liked your post" in text
    assert "- Eve commented" in text
    assert "Already read" not in text
    assert "<li>Bob liked your post</li>" in html
    # a second scan the same day sends nothing more, and the items are marked as emailed
    async with api.app[JOBS].db.transaction() as conn:
        await api.app[JOBS].enqueue(conn, "digest_scan", {})
    await api.app[WORKER].drain()
    await asyncio.sleep(0.3)
    assert len([m for m in inbox.messages if m["To"] == ann.email and about_something(m)]) == 1
    emailed = await db.fetchval(
        "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND is_email_sent",
        uuid.UUID(ann.id),
    )
    assert emailed == 2


async def test_an_email_held_by_quiet_hours_is_dropped_if_read_meanwhile(
    make_client: Any, smtp_server: tuple[Inbox, int], db: Any
) -> None:
    inbox, port = smtp_server
    api: Api = await make_client(
        smtp_host="127.0.0.1", smtp_port=port, run_worker=True, worker_poll_interval=0.1
    )
    ann = await api.register()
    await api.put(
        "/api/notifications/preferences",
        ann,
        json={"quietHours": {"start": "00:00", "end": "23:59"}},
    )
    row = await api.app[NOTIFICATIONS].notify(
        NewNotification(uuid.UUID(ann.id), "pod_invite", "Read it in the app")
    )
    await api.post(f"/api/notifications/{row['id']}/read", ann)
    # the quiet hours end: make the held job due now
    await db.execute(
        "UPDATE jobs SET run_at = now() WHERE payload->>'notificationId' = $1", str(row["id"])
    )
    await api.app[WORKER].drain()
    status = await db.fetchval(
        "SELECT status FROM jobs WHERE payload->>'notificationId' = $1", str(row["id"])
    )
    assert status == "done"
    assert [m for m in inbox.messages if m["To"] == ann.email and about_something(m)] == []


async def test_a_reminder_for_a_title_with_line_breaks_is_emailed(
    make_client: Any, tmp_path: Path, db: Any
) -> None:
    api: Api = await make_client(
        run_worker=True, worker_poll_interval=0.1, reminder_scan_interval=0.2
    )
    ann = await api.register()
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    resp = await api.post(
        "/api/calendar/events",
        ann,
        json={
            "title": "Chemistry\nBcc: everyone@example.com\r\n\tlab",
            "startTime": start.isoformat(),
            "timezone": "UTC",
            "reminderSettings": [{"minutesBefore": 0, "channels": ["email"]}],
        },
    )
    assert resp.status == 201, resp.body

    async def emailed() -> list[EmailMessage]:
        found = []
        for path in (tmp_path / "outbox").glob("*.eml"):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if isinstance(msg, EmailMessage) and msg["To"] == ann.email and about_something(msg):
                found.append(msg)
        return found

    deadline = asyncio.get_running_loop().time() + 15
    while not (mails := await emailed()):
        assert asyncio.get_running_loop().time() < deadline, await db.fetch(
            "SELECT status, attempts, last_error FROM jobs WHERE payload->>'to' = $1", ann.email
        )
        await asyncio.sleep(0.1)
    [mail] = mails
    assert mail["Subject"] == "Reminder: Chemistry Bcc: everyone@example.com lab"
    assert mail["Bcc"] is None
    text, _html = bodies(mail)
    assert "Chemistry" in text


async def test_an_email_that_cannot_be_built_fails_at_once_with_its_reason(
    make_client: Any, db: Any
) -> None:
    api: Api = await make_client(run_worker=True, worker_poll_interval=0.1)
    async with api.app[JOBS].db.transaction() as conn:
        job_id = await api.app[JOBS].enqueue(
            conn,
            "send_email",
            {
                "to": "ann@example.com\r\nBcc: everyone@example.com",
                "subject": "Hello",
                "template": "notification",
                "context": {"title": "Hello"},
            },
        )
    await api.app[WORKER].drain()
    row = await db.fetchrow("SELECT status, attempts, last_error FROM jobs WHERE id = $1", job_id)
    assert row["status"] == "dead"
    assert row["attempts"] == 1
    assert "PermanentError: cannot build the email" in row["last_error"]


def test_header_text_keeps_headers_on_one_line() -> None:
    assert header_text("a\nb\r\nc\u2028d\x85e\x00f\tg   h") == "a b c d e f g h"
    assert header_text("  Reminder:\u00a0Café 👩‍🔬  ") == "Reminder: Café 👩‍🔬"
    long = header_text("x" * 500)
    assert len(long) == 200
    assert long.endswith("\u2026")


def _zone_where_it_is(hour_now: int, local_hour: int) -> str:
    offset = (local_hour - hour_now) % 24
    offset = offset - 24 if offset > 14 else offset
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


async def test_a_digest_missed_while_the_scan_did_not_run_goes_out_when_it_runs(
    api: Api, db: Any
) -> None:
    late, early = await api.register(), await api.register()
    hour = int(await db.fetchval("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')"))
    # for `late` it is 10:xx: 08:00 came two to three hours ago; for `early` it is 07:xx
    for user, local_hour in ((late, 10), (early, 7)):
        await db.execute(
            "UPDATE users SET timezone = $2 WHERE id = $1",
            uuid.UUID(user.id),
            _zone_where_it_is(hour, local_hour),
        )
        await api.app[NOTIFICATIONS].notify(
            NewNotification(uuid.UUID(user.id), "post_like", "Bob liked your post")
        )
    # the hourly scan last ran three hours ago (the workers were down since)
    await db.execute(
        """INSERT INTO scan_watermarks (name, scanned_until)
           VALUES ('digest', now() - '3 hours'::interval)
           ON CONFLICT (name) DO UPDATE SET scanned_until = EXCLUDED.scanned_until"""
    )
    job = Job(0, "digest_scan", {}, 1, 5, dt.datetime.now(dt.UTC))
    await api.app[NOTIFICATIONS].digest_scan(job)
    queued = await db.fetch(
        "SELECT payload->>'userId' AS user_id, dedupe_key FROM jobs WHERE kind = 'send_digest'"
        " AND payload->>'userId' = ANY($1::text[])",
        [late.id, early.id],
    )
    assert [r["user_id"] for r in queued] == [late.id]
    # it ran: the next scan looks at the last hour only, and queues nothing new
    await api.app[NOTIFICATIONS].digest_scan(job)
    again = await db.fetchval(
        "SELECT count(*) FROM jobs WHERE kind = 'send_digest' AND payload->>'userId' = $1",
        late.id,
    )
    assert again == 1
