"""The PostgreSQL job queue: retries with backoff, dead letters, scheduled and periodic jobs,
several workers sharing one queue, lost leases, the worker process and /metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from peerspark_rt.infra.jobs import Job, JobQueue, Periodic, PermanentError, Worker
from peerspark_rt.infra.pool import Database
from tests.helpers import Api
from tests.nodes import ROOT


@pytest.fixture
async def database(pg_dsn: str) -> AsyncIterator[Database]:
    db = await Database.connect(pg_dsn, max_size=5)
    yield db
    await db.close()


def kind(name: str) -> str:
    """A job kind of this test only (the test database is shared by the whole session)."""
    return f"{name}_{secrets.token_hex(4)}"


async def run_worker(
    database: Database, pg_dsn: str, handlers: dict[str, Callable[[Job], Any]], **kw: Any
) -> Worker:
    worker = Worker(
        database,
        pg_dsn,
        node_id=kw.pop("node_id", f"test-{secrets.token_hex(3)}"),
        handlers=handlers,
        poll_interval=kw.pop("poll_interval", 0.05),
        backoff_base=kw.pop("backoff_base", 0.05),
        **kw,
    )
    await worker.start()
    return worker


async def wait_status(
    database: Database, job_id: int | None, status: str, timeout: float = 10
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await database.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        if row is not None and row["status"] == status:
            return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} not {status}: {dict(row) if row else None}")
        await asyncio.sleep(0.05)


async def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(
    database: Database, pg_dsn: str
) -> None:
    flaky = kind("flaky")
    calls: list[tuple[int, float]] = []

    async def handler(job: Job) -> None:
        calls.append((job.attempts, asyncio.get_running_loop().time()))
        if job.attempts < 3:
            raise ConnectionError(f"SMTP server down (attempt {job.attempts})")

    queue = JobQueue(database)
    job_id = await queue.enqueue(database.pool, flaky, {"n": 1})
    assert job_id is not None
    worker = await run_worker(database, pg_dsn, {flaky: handler}, backoff_base=0.2)
    try:
        row = await wait_status(database, job_id, "done")
    finally:
        await worker.stop()
    assert [a for a, _ in calls] == [1, 2, 3]
    assert row["attempts"] == 3
    assert row["finished_at"] is not None
    assert "attempt 2" in row["last_error"]  # the last failure is kept for the record
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(calls)]
    # base 0.2 s, doubling, with +-20% jitter (and up to one poll interval of delay)
    assert 0.15 <= gaps[0] <= 0.6, gaps
    assert 0.3 <= gaps[1] <= 1.0, gaps


async def test_a_job_that_keeps_failing_ends_dead_with_its_last_error(
    database: Database, pg_dsn: str
) -> None:
    doomed, poison = kind("doomed"), kind("poison")
    attempts = Counter[str]()

    async def always_fails(job: Job) -> None:
        attempts[job.kind] += 1
        raise RuntimeError(f"still broken after {job.attempts}")

    async def bad_payload(job: Job) -> None:
        attempts[job.kind] += 1
        raise PermanentError("payload names no user")

    queue = JobQueue(database)
    first = await queue.enqueue(database.pool, doomed, max_attempts=3)
    second = await queue.enqueue(database.pool, poison, max_attempts=5)
    assert first is not None
    assert second is not None
    worker = await run_worker(database, pg_dsn, {doomed: always_fails, poison: bad_payload})
    try:
        dead = await wait_status(database, first, "dead")
        dead_at_once = await wait_status(database, second, "dead")
    finally:
        await worker.stop()
    assert dead["attempts"] == 3
    assert attempts[doomed] == 3
    assert dead["last_error"].startswith("RuntimeError: still broken after 3")
    assert dead_at_once["attempts"] == 1
    assert attempts[poison] == 1
    assert "payload names no user" in dead_at_once["last_error"]


async def test_scheduled_jobs_wait_for_their_time(database: Database, pg_dsn: str) -> None:
    later = kind("later")
    ran_at: list[dt.datetime] = []

    async def handler(job: Job) -> None:
        ran_at.append(dt.datetime.now(dt.UTC))

    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    job_id = await JobQueue(database).enqueue(database.pool, later, run_at=when)
    assert job_id is not None
    worker = await run_worker(database, pg_dsn, {later: handler})
    try:
        await asyncio.sleep(0.5)
        assert ran_at == []
        await wait_status(database, job_id, "done")
    finally:
        await worker.stop()
    assert ran_at[0] >= when


async def test_enqueue_belongs_to_the_callers_transaction(database: Database) -> None:
    ghost = kind("ghost")
    queue = JobQueue(database)

    class Rollback(Exception):
        pass

    async def enqueue_then_fail() -> None:
        async with database.transaction() as conn:
            await queue.enqueue(conn, ghost)
            raise Rollback

    with pytest.raises(Rollback):
        await enqueue_then_fail()
    assert await database.fetchval("SELECT count(*) FROM jobs WHERE kind = $1", ghost) == 0
    assert await queue.enqueue(database.pool, ghost, dedupe_key=f"{ghost}-once") is not None
    assert await queue.enqueue(database.pool, ghost, dedupe_key=f"{ghost}-once") is None


async def test_two_workers_share_the_queue_each_job_runs_once(
    database: Database, pg_dsn: str
) -> None:
    shared = kind("shared")
    ran: list[tuple[str, int]] = []

    def handler_for(node: str) -> Callable[[Job], Any]:
        async def handler(job: Job) -> None:
            await asyncio.sleep(0.01)
            ran.append((node, job.id))

        return handler

    queue = JobQueue(database)
    ids = [await queue.enqueue(database.pool, shared, {"i": i}) for i in range(40)]
    a = await run_worker(database, pg_dsn, {shared: handler_for("a")}, node_id="a", concurrency=3)
    b = await run_worker(database, pg_dsn, {shared: handler_for("b")}, node_id="b", concurrency=3)
    try:
        for job_id in ids:
            assert job_id is not None
            await wait_status(database, job_id, "done")
    finally:
        await a.stop()
        await b.stop()
    assert sorted(j for _, j in ran) == sorted(i for i in ids if i is not None)
    assert {n for n, _ in ran} == {"a", "b"}  # both took a share


async def test_periodic_jobs_run_once_per_period_across_workers(
    database: Database, pg_dsn: str
) -> None:
    tick = kind("tick")
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.payload["period"])

    spec = Periodic(tick, dt.timedelta(hours=1), lambda start: {"period": start.isoformat()})
    workers = [
        await run_worker(database, pg_dsn, {tick: handler}, periodic=[spec], node_id=f"n{i}")
        for i in range(3)
    ]
    try:
        await asyncio.sleep(0.8)
    finally:
        for w in workers:
            await w.stop()
    period = spec.period_start(dt.datetime.now(dt.UTC)).isoformat()
    assert ran == [period]
    rows = await database.fetch("SELECT dedupe_key, status FROM jobs WHERE kind = $1", tick)
    assert [(r["dedupe_key"], r["status"]) for r in rows] == [
        (spec.dedupe_key(spec.period_start(dt.datetime.now(dt.UTC))), "done")
    ]


async def test_a_job_whose_worker_died_is_taken_back_after_its_lease(
    database: Database, pg_dsn: str
) -> None:
    orphan = kind("orphan")
    done: list[int] = []

    async def handler(job: Job) -> None:
        done.append(job.attempts)

    job_id = await JobQueue(database).enqueue(database.pool, orphan)
    # a worker on another node claimed it and died: its lease has run out
    await database.execute(
        """UPDATE jobs SET status = 'running', attempts = 1, locked_by = 'dead-node',
                  locked_until = now() - interval '1 second' WHERE id = $1""",
        job_id,
    )
    worker = await run_worker(database, pg_dsn, {orphan: handler})
    try:
        row = await wait_status(database, job_id, "done")
    finally:
        await worker.stop()
    assert done == [2]
    assert row["attempts"] == 2
    assert "dead-node" in row["last_error"]


async def test_queue_depth_and_failures_show_in_metrics(
    make_client: Any, database: Database
) -> None:
    api: Api = await make_client()
    queue = JobQueue(database)
    broken = kind("broken")
    job_id = await queue.enqueue(database.pool, broken)
    await database.execute(
        "UPDATE jobs SET status = 'dead', last_error = 'boom', finished_at = now() WHERE id = $1",
        job_id,
    )
    waiting = kind("waiting")
    await queue.enqueue(
        database.pool, waiting, run_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    )
    resp = await api.metrics()
    text = resp.body.decode()
    assert f'peerspark_jobs{{kind="{broken}",status="dead"}} 1.0' in text
    assert f'peerspark_jobs{{kind="{waiting}",status="queued"}} 1.0' in text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith(f'peerspark_jobs_oldest_ready_seconds{{kind="{waiting}"}}')
    )
    assert float(line.split()[-1]) >= 29


def test_help_lists_the_worker_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "peerspark_rt", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "worker" in out
    assert "RUN_WORKER" in out


async def test_a_separate_worker_process_runs_jobs_and_stops_cleanly(
    pg_dsn: str, tmp_path: Path, database: Database
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
        "DATABASE_URL": pg_dsn,
        "PEERSPARK_DATA_DIR": str(tmp_path),
        "WORKER_POLL_INTERVAL": "0.1",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - a real process, started once
        [sys.executable, "-m", "peerspark_rt", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Its output is read all along: a pipe nobody reads fills up, and then the worker's next
    # log line blocks its event loop (the backlog of events left by earlier tests is logged).
    seen: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "running" in line:
                started.set()
        started.set()  # (it exited)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert await asyncio.to_thread(started.wait, 60), "the worker did not start"
        assert proc.poll() is None, "".join(seen)  # it did not exit
        assert any("PeerSpark RT worker" in line for line in seen)
        job_id = await JobQueue(database).enqueue(
            database.pool,
            "send_email",
            {
                "to": "someone@example.com",
                "subject": "From the worker",
                "template": "notification",
                "context": {"title": "Hi"},
            },
        )
        await wait_status(database, job_id, "done", timeout=20)
        outbox = list((tmp_path / "outbox").glob("*.eml"))
        assert any(b"From the worker" in p.read_bytes() for p in outbox)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()  # never left behind to work on the next tests' database
            proc.wait(10)
            raise AssertionError("the worker did not stop:\n" + "".join(seen[-40:])) from None
        await asyncio.to_thread(reader.join, 10)
    assert code == 0, "".join(seen[-40:])
