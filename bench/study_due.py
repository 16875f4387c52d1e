"""`python -m bench study-due`: GET /api/study/due for one user with 50,000 flashcards.

Seeding: a fresh account, one deck, `--cards` cards imported through the API (Anki text, 5,000
a request), then that user's schedules of `--reviewed` of them. With a node the harness started
(its database known) the schedules are written with one SQL statement, each a real
`fsrs` card reviewed once (Easy) at a moment spread over the last 30 days, so about two thirds
are due or overdue and the rest fall due over the next week; with `--target` they go through
POST /api/study/reviews/batch instead (slow: one transaction per review). After a direct load
the two tables are vacuumed and analyzed at once, as autovacuum would soon after a bulk load,
so the planner sees their real sizes. The remaining cards
stay new. The database's plan for the due query is printed (it must be an index range scan of
idx_study_card_states_user_due), then the endpoint is loaded by the REST harness
(`--concurrency` requests in flight for `--duration` seconds) and its p50/p99 reported, with
the load generator's CPU share (its CPU seconds over the run's wall time and its CPUs) so a
reader can tell whether the generator, not the server, was the limit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import time
import uuid
from typing import Any

import asyncpg
import fsrs

from peerspark_rt.study import db as study_db

from .context import Context, machine_load, rest_session
from .report import write_rest_outputs
from .restrun import RestScenario, SeedData, _req, _run_scenario
from .seed import BENCH_PASSWORD, Account, RestApi

IMPORT_CHUNK = 5000
BATCH = 500

SCHEDULES = """
INSERT INTO study_card_states (user_id, card_id, deck_id, due, fsrs, reps, last_review,
                               created_at)
SELECT $1, c.id, c.deck_id,
       c.reviewed + ($3 || ' seconds')::interval,
       jsonb_set(jsonb_set($2::jsonb, '{due}',
                           to_jsonb(c.reviewed + ($3 || ' seconds')::interval)),
                 '{last_review}', to_jsonb(c.reviewed)),
       1, c.reviewed, c.reviewed
FROM (SELECT id, deck_id,
             NOW() - (random() * interval '30 days') AS reviewed
      FROM study_cards WHERE deck_id = $4 ORDER BY created_at LIMIT $5) c
"""


def add_study_due_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the load")
    g.add_argument("--cards", type=int, default=50_000, metavar="N", help="cards (50000)")
    g.add_argument(
        "--reviewed", type=int, default=45_000, metavar="N", help="of them scheduled (45000)"
    )
    g.add_argument("--limit", type=int, default=100, metavar="N", help="cards a request (100)")
    g.add_argument("--concurrency", type=int, default=8, metavar="C", help="requests in flight (8)")
    g.add_argument("--duration", type=float, default=10, metavar="SECONDS", help="how long (10)")


def _one_review() -> tuple[dict[str, Any], int]:
    """A real fsrs card after one Easy review, and its interval in seconds."""
    now = dt.datetime.now(dt.UTC)
    card, _ = fsrs.Scheduler(enable_fuzzing=False).review_card(
        fsrs.Card(card_id=0, due=now), fsrs.Rating.Easy, review_datetime=now
    )
    return dict(card.to_dict()), int((card.due - now).total_seconds())


async def _seed(
    ctx: Context, api: RestApi, cards: int, reviewed: int
) -> tuple[Account, str, float]:
    name = f"due{secrets.token_hex(5)}"
    body = await api.ok(
        "POST",
        "/api/auth/register",
        None,
        {"email": f"{name}@bench.peerspark.local", "username": name, "password": BENCH_PASSWORD,
         "firstName": "Bench", "lastName": "Due"},
    )  # fmt: skip
    account = Account(body["user"]["id"], name, body["accessToken"])
    deck = await api.ok("POST", "/api/decks", account.token, {"title": "Bench deck"})
    started = time.monotonic()
    for first in range(0, cards, IMPORT_CHUNK):
        n = min(IMPORT_CHUNK, cards - first)
        text = "#separator:tab\n" + "".join(
            f"Question {first + i}\tAnswer {first + i}\tbench\n" for i in range(n)
        )
        async with api.session.post(
            f"{api.base}/api/decks/{deck['id']}/import",
            data=text.encode(),
            headers={"Authorization": f"Bearer {account.token}", "Content-Type": "text/plain"},
        ) as resp:
            result = await resp.json()
            if resp.status != 200 or result["imported"] != n:
                raise RuntimeError(f"import failed: {resp.status} {str(result)[:300]}")
        ctx.log(f"study-due: {first + n:,} cards imported")
    reviewed = min(reviewed, cards)
    if ctx.node is not None and not ctx.target:
        stored, interval = _one_review()
        conn = await asyncpg.connect(ctx.node.database_url)
        try:
            await conn.execute(
                SCHEDULES,
                account.id,
                json.dumps(stored),
                str(interval),
                deck["id"],
                reviewed,
            )
            # what autovacuum does after a bulk load, at once: statistics for the planner and
            # the visibility map for index-only counts
            await conn.execute("VACUUM ANALYZE study_card_states, study_cards")
        finally:
            await conn.close()
    else:
        done = 0
        cursor: str | None = None
        while done < reviewed:
            query = f"/api/decks/{deck['id']}/cards?limit=500" + (
                f"&cursor={cursor}" if cursor else ""
            )
            listed = await api.ok("GET", query, account.token)
            items = [
                {"cardId": c["id"], "rating": "easy", "clientReviewId": f"bench-{c['id']}"}
                for c in listed["cards"][: reviewed - done]
            ]
            await api.ok("POST", "/api/study/reviews/batch", account.token, {"reviews": items})
            done += len(items)
            cursor = listed["nextCursor"]
            ctx.log(f"study-due: {done:,} reviews synced")
            if cursor is None:
                break
    return account, deck["id"], time.monotonic() - started


async def _explain(ctx: Context, user_id: str, deck_id: str, limit: int) -> list[str]:
    if ctx.node is None or ctx.target:
        return []
    conn = await asyncpg.connect(ctx.node.database_url)
    try:
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        rows = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF) " + study_db.DUE_REVIEWS,
            user_id,
            until,
            [deck_id],
            limit,
        )
        count = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF) " + study_db.DUE_COUNT, user_id, until, [deck_id]
        )
        # (asked only when fewer than `limit` cards are due: then today's new cards follow).
        # The first time finds where the user's new cards begin and remembers it; the plan
        # shown is a later one's, which starts there.
        await study_db.new_cards(conn, uuid.UUID(user_id), [uuid.UUID(deck_id)], 20)
        fresh = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF) " + study_db.NEW_CARDS, user_id, [deck_id], 20
        )
    finally:
        await conn.close()
    return (
        [r[0] for r in rows]
        + ["--- the count ---"]
        + [r[0] for r in count]
        + ["--- new cards (when fewer than the limit are due) ---"]
        + [r[0] for r in fresh]
    )


async def run_study_due(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    load_before = machine_load()
    target = await ctx.open_target("product")
    ctx.log(f"study-due: server at {target.base_url} ({target.where}); {ctx.placement.describe()}")
    try:
        async with rest_session() as session:
            api = RestApi(target.base_url, session)
            account, deck_id, seed_seconds = await _seed(ctx, api, args.cards, args.reviewed)
            first = await api.ok("GET", f"/api/study/due?limit={args.limit}", account.token)
            ctx.log(
                f"study-due: {first['reviewCount']:,} due today, {first['newCount']} new offered,"
                f" {len(first['cards'])} listed"
            )
            plan = await _explain(ctx, account.id, deck_id, args.limit)
            for line in plan:
                ctx.log(f"plan: {line}")
            scenario = RestScenario(
                "study-due", _req("GET", f"/api/study/due?limit={args.limit}"), area="study"
            )
            result = await _run_scenario(
                ctx, target, scenario, SeedData([account]), args.concurrency, args.duration
            )
    finally:
        await target.stop()
    cpus = len(ctx.placement.clients or []) or None
    share = result["generator_cpu_seconds"] / args.duration
    result["generator_cpu_share"] = {
        "cores_busy": round(share, 2),
        "of_its_cpus": round(share / cpus, 2) if cpus else None,
    }
    return {
        "command": "study-due",
        "target": {"url": target.base_url, "where": target.where},
        "placement": ctx.placement.describe(),
        "machine_load_before": load_before,
        "machine_load_after": machine_load(),
        "cards": args.cards,
        "scheduled": min(args.reviewed, args.cards),
        "due_today": first["reviewCount"],
        "seeding_seconds": round(seed_seconds, 2),
        "plan": plan,
        "users": 1,
        "scenarios": [result],
    }


async def main_study_due(args: argparse.Namespace, ctx: Context) -> int:
    try:
        result = await run_study_due(ctx, args)
    finally:
        await ctx.close()
    folder = ctx.run_dir("study-due")
    write_rest_outputs(result, folder)
    run = result["scenarios"][0]
    latency = run["latency"]
    share = run["generator_cpu_share"]
    print()
    print(
        f"GET /api/study/due?limit={args.limit} for one user with {result['cards']:,} cards "
        f"({result['scheduled']:,} scheduled, {result['due_today']:,} due today):"
    )
    print(
        f"  {run['requests']:,} requests in {args.duration:g}s at {args.concurrency} in flight"
        f" ({run['requests_per_second']:,}/s), failures {run['failures']}"
    )
    print(f"  p50 {_ms(latency.get('p50'))}, p99 {_ms(latency.get('p99'))}")
    print(
        f"  server CPU {run['server_cpu_seconds']} s; load generator CPU "
        f"{run['generator_cpu_seconds']} s = {share['cores_busy']} cores busy"
        + (f" ({share['of_its_cpus']:.0%} of its CPUs)" if share["of_its_cpus"] else "")
    )
    indexed = any("idx_study_card_states_user_due" in line for line in result["plan"])
    print(f"  index range scan: {'yes' if indexed else 'no (or not checked: --target)'}")
    print(f"  result: {folder}/result.json")
    return 0


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"
