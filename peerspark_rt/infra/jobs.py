"""A durable job queue in PostgreSQL, and the worker that runs it.

* `JobQueue.enqueue(conn, kind, payload)` inserts a job inside the caller's transaction: if the
  write that causes the job rolls back, the job never existed.
* Workers claim ready jobs with `SELECT ... FOR UPDATE SKIP LOCKED`, so any number of workers on
  any number of nodes share one queue without handing a job to two of them. A claim is a lease:
  a worker that dies leaves its job 'running' until the lease runs out, then the job is queued
  again. Handlers must therefore be idempotent (the ones here are: reminders check a unique
  delivery key, emails record that they were sent).
* A failing job is retried with exponential backoff (with jitter); after `max_attempts` it goes
  to the 'dead' state with its last error, for an operator to look at.
* Periodic jobs are enqueued with a dedupe key naming their period ('cleanup@2026-05-12T10:00'):
  every worker tries, one insert wins, so each runs once per period across the cluster.
* A NOTIFY on commit wakes idle workers at once; polling every `poll_interval` covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from . import jobs_db
from .dbtypes import Executor
from .pool import Database

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5
MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: dt.datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Job:
        return cls(
            id=int(row["id"]),
            kind=row["kind"],
            payload=row["payload"] or {},
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            run_at=row["run_at"],
        )


Handler = Callable[[Job], Awaitable[None]]


class PermanentError(Exception):
    """A job that can never succeed (bad payload, the user is gone): dead at once, no retry."""


@dataclass(frozen=True, slots=True)
class Periodic:
    """Run `kind` once every `every`, across all nodes. Periods are aligned to the Unix epoch,
    so every node computes the same period for the same moment."""

    kind: str
    every: dt.timedelta
    payload: Callable[[dt.datetime], dict[str, Any]] = lambda _start: {}

    def period_start(self, now: dt.datetime) -> dt.datetime:
        step = self.every.total_seconds()
        epoch = now.timestamp()
        return dt.datetime.fromtimestamp(epoch - (epoch % step), dt.UTC)

    def dedupe_key(self, start: dt.datetime) -> str:
        return f"{self.kind}@{start.strftime('%Y-%m-%dT%H:%M:%S')}"


def backoff_seconds(attempts: int, base: float) -> float:
    """Delay before retry number `attempts` (1, 2, ...): base * 2^(attempts-1), +-20% jitter."""
    delay = min(MAX_BACKOFF_SECONDS, base * (2 ** max(0, attempts - 1)))
    return float(delay * random.uniform(0.8, 1.2))


class JobQueue:
    """Where services put work. `enqueue` takes the caller's connection (its transaction)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(
        self,
        conn: Executor,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        run_at: dt.datetime | None = None,
        dedupe_key: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> int | None:
        """Add a job (to run at `run_at`, default now). Returns its id, or None when a job with
        the same `dedupe_key` already exists."""
        return await jobs_db.insert(
            conn,
            kind=kind,
            payload=payload or {},
            run_at=run_at,
            dedupe_key=dedupe_key,
            max_attempts=max_attempts,
        )

    async def stats(self) -> list[asyncpg.Record]:
        return await jobs_db.stats(self.db.pool)


@dataclass
class WorkerCounters:
    """What a worker did, for /metrics (`outcome`: done, retry, dead)."""

    on_outcome: Callable[[str, str], None] = lambda kind, outcome: None


class Worker:
    """Claims and runs jobs on this node, runs periodic jobs and tick functions.

    `ticks` are coroutines run every `tick_every` seconds on each node (e.g. the reminder scan);
    they must be safe to run on several nodes at once."""

    def __init__(
        self,
        db: Database,
        dsn: str,
        *,
        node_id: str,
        handlers: dict[str, Handler],
        periodic: list[Periodic] | None = None,
        ticks: list[tuple[float, Callable[[], Awaitable[object]]]] | None = None,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        lease_seconds: float = 300.0,
        backoff_base: float = 10.0,
        counters: WorkerCounters | None = None,
    ) -> None:
        self.db = db
        self.dsn = dsn
        self.node_id = node_id
        self.handlers = handlers
        self.periodic = periodic or []
        self.ticks = ticks or []
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.backoff_base = backoff_base
        self.counters = counters or WorkerCounters()
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._tick_tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._stopping = False
        self._scheduled: dict[str, str] = {}  # periodic kind -> last period key enqueued

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._listen()
        self._loop_task = asyncio.create_task(self._loop(), name=f"jobs:{self.node_id}")
        for every, tick in self.ticks:
            name = getattr(tick, "__name__", "tick")
            task = asyncio.create_task(self._tick_loop(every, tick), name=f"tick:{name}")
            self._tick_tasks.append(task)
        log.info("job worker started", extra={"node": self.node_id, "kinds": sorted(self.handlers)})

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let running jobs finish for `grace` seconds, then give them back."""
        self._stopping = True
        self._wake.set()
        for task in [*self._tick_tasks, *([self._loop_task] if self._loop_task else [])]:
            task.cancel()
        for task in [*self._tick_tasks, *([self._loop_task] if self._loop_task else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        running = list(self._running.items())
        if running:
            _done, pending = await asyncio.wait([t for _, t in running], timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def _listen(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn)
            await conn.add_listener(jobs_db.CHANNEL, lambda *_args: self._wake.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("job notifications unavailable, polling only: %s", exc)
            return
        self._listener = conn

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self._schedule_periodic()
                await jobs_db.reap_expired(self.db.pool)
                claimed = await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job worker loop failed; retrying")
                claimed = 0
                await asyncio.sleep(self.poll_interval)
            if claimed == 0 or len(self._running) >= self.concurrency:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _claim(self) -> int:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        rows = await jobs_db.claim(
            self.db.pool,
            node=self.node_id,
            kinds=list(self.handlers),
            limit=free,
            lease_seconds=self.lease_seconds,
        )
        for row in rows:
            job = Job.from_row(row)
            task = asyncio.create_task(self._run(job), name=f"job:{job.kind}:{job.id}")
            self._running[job.id] = task
            task.add_done_callback(self._finished_callback(job.id))
        return len(rows)

    def _finished_callback(self, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._finished(job_id)

    def _finished(self, job_id: int) -> None:
        self._running.pop(job_id, None)
        self._wake.set()  # a slot is free

    async def _run(self, job: Job) -> None:
        handler = self.handlers[job.kind]
        try:
            await asyncio.wait_for(handler(job), timeout=self.lease_seconds * 0.9)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await jobs_db.release(self.db.pool, job.id, self.node_id)
            raise
        except Exception as exc:  # noqa: BLE001 (any failure is the job's, recorded and retried)
            await self._failed(job, exc)
            return
        await jobs_db.complete(self.db.pool, job.id, self.node_id)
        self.counters.on_outcome(job.kind, "done")

    async def _failed(self, job: Job, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        permanent = isinstance(exc, PermanentError)
        retry_in = None
        if not permanent and job.attempts < job.max_attempts:
            retry_in = backoff_seconds(job.attempts, self.backoff_base)
        detail = "".join(traceback.format_exception(exc, limit=5))
        status = await jobs_db.fail(
            self.db.pool, job.id, self.node_id, f"{error}\n{detail}", retry_in
        )
        outcome = "dead" if status == "dead" else "retry"
        self.counters.on_outcome(job.kind, outcome)
        log.warning(
            "job %s #%d failed (attempt %d of %d): %s -> %s",
            job.kind,
            job.id,
            job.attempts,
            job.max_attempts,
            error,
            outcome,
        )

    async def _schedule_periodic(self) -> None:
        now = dt.datetime.now(dt.UTC)
        for spec in self.periodic:
            start = spec.period_start(now)
            key = spec.dedupe_key(start)
            if self._scheduled.get(spec.kind) == key:
                continue
            await jobs_db.insert(
                self.db.pool,
                kind=spec.kind,
                payload=spec.payload(start),
                run_at=None,
                dedupe_key=key,
                max_attempts=DEFAULT_MAX_ATTEMPTS,
            )
            self._scheduled[spec.kind] = key

    async def _tick_loop(self, every: float, tick: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic task %s failed", getattr(tick, "__name__", tick))
            await asyncio.sleep(every)

    async def drain(self, within: float = 10.0) -> None:
        """Wait until no job is ready or running (for tests and the CLI)."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            busy = await self.db.fetchval(
                """SELECT count(*) FROM jobs
                    WHERE (status = 'queued' AND run_at <= NOW() AND kind = ANY($1::text[]))
                       OR (status = 'running' AND locked_by = $2)""",
                list(self.handlers),
                self.node_id,
            )
            if not busy and not self._running:
                return
            self._wake.set()
            await asyncio.sleep(0.05)
        raise TimeoutError("jobs still pending")


# the application's key for what this module provides (typed app state)
JOBS = web.AppKey("jobs", JobQueue)
WORKER = web.AppKey("worker", Worker)  # only when this node runs a worker
