"""`python -m bench rest`: REST endpoints under concurrency, against a seeded database.

Scenarios are registered by name in `REST_SCENARIOS`: an endpoint (request templates with
`{placeholders}` filled per request from pools the seeding collects), what data it needs, and
an optional seeding step. A scenario whose endpoint the server does not have (404/405 on a
probe request) is reported as skipped, so endpoints that land later run as soon as they exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import wire
from .context import Context, Target, machine_load, rest_session
from .generator import next_event, start_workers
from .report import rest_table, write_rest_outputs
from .seed import BENCH_PASSWORD, Account, RestApi, RestError, gather_limited
from .stats import Histogram, merged

WORDS = (
    "calculus", "algebra", "geometry", "statistics", "physics", "chemistry", "biology",
    "history", "literature", "economics", "programming", "python", "databases", "networks",
    "spanish", "french", "philosophy", "psychology", "astronomy", "music",
)  # fmt: skip
SUBJECTS = ("Mathematics", "Science", "Languages", "Computer Science", "Humanities")


@dataclass
class SeedData:
    """What the seeding made, as pools the request templates draw from."""

    accounts: list[Account]
    pools: dict[str, list[str]] = field(default_factory=dict)


Seeder = Callable[[RestApi, SeedData, Callable[[str], None]], Awaitable[None]]


@dataclass(frozen=True)
class RestScenario:
    name: str
    requests: tuple[wire.RestRequest, ...]
    needs: tuple[str, ...] = ()  # pools that must be non-empty
    area: str = ""  # who provides the endpoint (for the "not on this server" note)
    seed: Seeder | None = None
    default: bool = True  # part of a plain `python -m bench rest`

    @property
    def endpoint(self) -> str:
        first = self.requests[0]
        return f"{first.method} {first.path.split('?')[0]}"


# --- seeding steps -------------------------------------------------------------------------------


async def seed_pods(api: RestApi, data: SeedData, log: Callable[[str], None]) -> None:
    if data.pools.get("podId"):
        return
    count = max(20, len(data.accounts))
    log(f"creating {count} pods")

    async def make(i: int) -> str:
        owner = data.accounts[i % len(data.accounts)]
        word = WORDS[i % len(WORDS)]
        body = await api.ok(
            "POST",
            "/api/pods",
            owner.token,
            {
                "name": f"{word.title()} study group {uuid.uuid4().hex[:6]}",
                "subject": SUBJECTS[i % len(SUBJECTS)],
                "description": f"We work through {word} problems together every week.",
                "tags": [word, "bench"],
                "isPublic": True,
            },
        )
        return str(body["id"])

    data.pools["podId"] = await gather_limited(range(count), make, 16)


async def seed_sessions(api: RestApi, data: SeedData, log: Callable[[str], None]) -> None:
    if data.pools.get("sessionId"):
        return
    import datetime as dt

    sessions, messages = 5, 100
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    log(f"creating {sessions} study sessions with {messages} messages each; everyone joins")

    async def make(i: int) -> str:
        body = await api.ok(
            "POST",
            "/api/sessions",
            data.accounts[i % len(data.accounts)].token,
            {
                "title": f"Bench session {i}",
                "sessionType": "group",
                "startTime": start.isoformat(),
                "endTime": (start + dt.timedelta(hours=4)).isoformat(),
            },
        )
        return str(body["id"])

    ids = await gather_limited(range(sessions), make, 8)
    joins = [(sid, a) for sid in ids for a in data.accounts]

    async def join(item: tuple[str, Account]) -> None:
        sid, account = item
        await api.ok("POST", f"/api/sessions/{sid}/join", account.token)

    await gather_limited(joins, join, 32)
    posts = [(sid, k) for sid in ids for k in range(messages)]

    async def post(item: tuple[str, int]) -> None:
        sid, k = item
        author = data.accounts[k % len(data.accounts)]
        await api.ok(
            "POST",
            f"/api/sessions/{sid}/messages",
            author.token,
            # distinct texts: moderation holds a chat text sent a third time by one author
            {"content": f"message {k} in {sid[:8]} about {WORDS[k % len(WORDS)]}"},
        )

    await gather_limited(posts, post, 32)
    data.pools["sessionId"] = ids


async def seed_posts(api: RestApi, data: SeedData, log: Callable[[str], None]) -> None:
    if data.pools.get("postId"):
        return
    count = 500
    log(f"creating {count} posts")

    async def make(i: int) -> str:
        author = data.accounts[i % len(data.accounts)]
        word = WORDS[i % len(WORDS)]
        body = await api.ok(
            "POST",
            "/api/posts",
            author.token,
            {
                # a unique tail: moderation holds posts over 90% like the author's last ones
                "content": f"Tips for {word}: start with the basics ({uuid.uuid4().hex}).",
                "postType": "general",
                "tags": [word],
            },
        )
        return str(body.get("id", ""))

    data.pools["postId"] = await gather_limited(range(count), make, 16)


async def seed_resources(api: RestApi, data: SeedData, log: Callable[[str], None]) -> None:
    """Resources as a class shares them: most public, some private to their owner, some in a
    pod; each title and description names a subject word, so `search=<word>` finds ~1/20."""
    if data.pools.get("resourceId"):
        return
    count = 1000
    log(f"creating {count} resources")

    async def make(i: int) -> str:
        owner = data.accounts[i % len(data.accounts)]
        word = WORDS[i % len(WORDS)]
        body = await api.ok(
            "POST",
            "/api/resources",
            owner.token,
            {
                "title": f"{word.title()} notes {uuid.uuid4().hex[:6]}",
                "resourceType": "note",
                "description": f"Worked {word} examples, chapter {i % 12 + 1}.",
                "content": f"Everything about {word} you need for the exam ({i}).",
                "tags": [word, "bench"],
                "subject": SUBJECTS[i % len(SUBJECTS)],
                "isPublic": (i // len(WORDS)) % 4 != 0,  # every word has private ones too
            },
        )
        return str(body["id"])

    data.pools["resourceId"] = await gather_limited(range(count), make, 16)


def _req(method: str, path: str, body: str | None = None) -> tuple[wire.RestRequest, ...]:
    return (wire.RestRequest(method, path, body),)


REST_SCENARIOS: dict[str, RestScenario] = {
    s.name: s
    for s in (
        RestScenario("me", _req("GET", "/api/auth/me"), area="auth"),
        RestScenario(
            "pods-search",
            _req("GET", "/api/pods?search={word}&limit=20"),
            needs=("podId",),
            area="pods",
            seed=seed_pods,
        ),
        RestScenario("pod-get", _req("GET", "/api/pods/{podId}"), ("podId",), "pods", seed_pods),
        RestScenario("sessions-list", _req("GET", "/api/sessions?limit=20"), area="sessions"),
        RestScenario(
            "session-history",
            _req("GET", "/api/sessions/{sessionId}/messages?limit=50"),
            ("sessionId",),
            "sessions",
            seed_sessions,
        ),
        RestScenario(
            "session-post",
            _req(
                "POST",
                "/api/sessions/{sessionId}/messages",
                '{"content": "bench message {n} about {word}", "clientMessageId": "{uuid}"}',
            ),
            ("sessionId",),
            "sessions",
            seed_sessions,
        ),
        # The feed, search and post-create endpoints (the feed area): they run as soon as
        # the server has them, and are reported as skipped until then.
        RestScenario(
            "feed",
            _req("GET", "/api/feed?type=all&limit=20"),
            area="feed",
            seed=seed_posts,
        ),
        RestScenario(
            "search",
            _req("GET", "/api/search/posts?q={word}&limit=20"),
            area="feed (search)",
            seed=seed_posts,
        ),
        RestScenario(
            "resources-search",
            _req("GET", "/api/resources?search={word}&limit=20"),
            area="resources",
            seed=seed_resources,
        ),
        RestScenario(
            "post-create",
            _req(
                "POST",
                "/api/posts",
                '{"content": "Bench post {n} on {word} ({uuid})", "postType": "general", '
                '"tags": ["{word}"]}',
            ),
            area="feed",
        ),
        RestScenario(
            "login",
            _req(
                "POST",
                "/api/auth/login",
                '{"email": "{email}", "password": "' + BENCH_PASSWORD + '"}',
            ),
            needs=("email",),
            area="auth",
            default=False,
        ),
    )
}


def _fill(template: str, data: SeedData) -> str:
    for name, values in data.pools.items():
        if values:
            template = template.replace("{" + name + "}", values[0])
    return (
        template.replace("{word}", WORDS[0])
        .replace("{uuid}", uuid.uuid4().hex)
        .replace("{n}", "probe")
    )


async def _available(api: RestApi, scenario: RestScenario, data: SeedData) -> str | None:
    """None when the scenario can run; otherwise why it is skipped. One real request is made
    (a write writes once more: harmless in a bench database)."""
    for pool in scenario.needs:
        if not data.pools.get(pool):
            return f"nothing to ask for: no {pool} was seeded"
    request = scenario.requests[0]
    body = json.loads(_fill(request.body, data)) if request.body is not None else None
    status, _ = await api.call(
        request.method, _fill(request.path, data), data.accounts[0].token, body
    )
    if status in (404, 405):
        return f"not on this server ({status})"
    return None


async def _run_scenario(
    ctx: Context,
    target: Target,
    scenario: RestScenario,
    data: SeedData,
    concurrency: int,
    duration: float,
) -> dict[str, Any]:
    pools = {"word": list(WORDS), **data.pools}
    tokens = [a.token for a in data.accounts]
    # One process per generator CPU at most: with the lean client one process keeps 50
    # requests in flight, and more on the same core only add switches (feed at 50 in flight,
    # one core: 1 process 25 % of it, 2 processes 38 %, 4 processes 59-63 %).
    n = max(1, min(ctx.workers, _cores(ctx), concurrency))
    plans = [
        wire.RestPlan(
            base_url=target.base_url,
            tokens=tokens,
            scenario=scenario.name,
            requests=list(scenario.requests),
            pools=pools,
            concurrency=concurrency // n + (1 if w < concurrency % n else 0),
            duration=duration,
            cpus=ctx.placement.clients,
            worker=w,
        )
        for w in range(n)
    ]
    events: asyncio.Queue[wire.Event | Exception] = asyncio.Queue()
    cache_before = await cache_counts(target.base_url)
    before = await target.probe.sample() if target.probe else None
    workers = await start_workers(plans, events)
    ticks: dict[int, list[wire.RestTick]] = {}
    done: list[wire.RestDone] = []
    try:
        while len(done) < len(workers):
            event = await next_event(events, duration + 120)
            if isinstance(event, wire.RestTick):
                ticks.setdefault(event.second, []).append(event)
                if len(ticks[event.second]) == len(workers):
                    row = ticks[event.second]
                    h = merged(Histogram.from_wire(t.latency) for t in row)
                    p99 = h.percentile(99)
                    ctx.log(
                        f"rest/{scenario.name}: t={event.second + 1}s "
                        f"{sum(t.requests for t in row):,} req/s, "
                        f"p99 {'-' if p99 is None else f'{p99 * 1000:.1f}ms'}, "
                        f"failed {sum(t.failures for t in row)}"
                    )
            elif isinstance(event, wire.RestDone):
                done.append(event)
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
    after = await target.probe.sample() if target.probe else None
    cache_after = await cache_counts(target.base_url)
    latency = merged(Histogram.from_wire(d.latency) for d in done)
    requests = sum(d.requests for d in done)
    statuses: dict[str, int] = {}
    for d in done:
        for k, v in d.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    cpu = after.cpu_seconds - before.cpu_seconds if before and after else None
    timeline = []
    for second in sorted(ticks):
        row = ticks[second]
        h = merged(Histogram.from_wire(t.latency) for t in row)
        timeline.append(
            {
                "second": second,
                "requests": sum(t.requests for t in row),
                "failures": sum(t.failures for t in row),
                "p50": h.percentile(50),
                "p99": h.percentile(99),
            }
        )
    result: dict[str, Any] = {
        "name": scenario.name,
        "endpoint": scenario.endpoint,
        "area": scenario.area,
        "concurrency": concurrency,
        "duration": duration,
        "requests": requests,
        "requests_per_second": round(requests / duration) if duration else 0,
        "latency": latency.summary(),
        "statuses": statuses,
        "failures": sum(d.failures for d in done),
        "sample_error": next((d.sample_error for d in done if d.sample_error), None),
        "server_cpu_seconds": round(cpu, 3) if cpu is not None else None,
        "requests_per_cpu_second": round(requests / cpu) if cpu else None,
        "generator_cpu_seconds": round(sum(d.cpu_seconds for d in done), 2),
        "generator_cpu_share": round(sum(d.cpu_seconds for d in done) / duration / _cores(ctx), 3)
        if duration
        else None,
        "timeline": timeline,
    }
    lookups = {k: cache_after.get(k, 0.0) - cache_before.get(k, 0.0) for k in cache_after}
    rates = _hit_rates(lookups)
    if rates:
        # Every request asks one cache first; a cache asked only on its misses (resource
        # search's page shared between viewers) has fewer lookups. The first one's rate is the
        # share of requests answered from a cache.
        first = max(rates, key=lambda c: (rates[c][1], c))
        result["cache_first"] = first
        result["cache_hit_rate"] = rates[first][0]
        result["cache_hit_rates"] = {c: rate for c, (rate, _) in rates.items()}
        result["cache_lookups"] = {f"{c}/{o}": int(v) for (c, o), v in lookups.items() if v}
    notes = []
    if result["failures"]:
        notes.append(f"statuses {statuses}")
    if "cache_hit_rate" in result:
        nested = ", ".join(
            f"{c} {rate * 100:.0f}%"
            for c, rate in sorted(result["cache_hit_rates"].items())
            if c != result["cache_first"]
        )
        notes.append(
            f"cache hits {result['cache_hit_rate'] * 100:.0f}%"
            + (f" (then {nested})" if nested else "")
        )
    if result["generator_cpu_share"] is not None:
        notes.append(f"gen CPU {result['generator_cpu_share'] * 100:.0f}%")
    if notes:
        result["note"] = "; ".join(notes)
    return result


def _hit_rates(lookups: dict[tuple[str, str], float]) -> dict[str, tuple[float, float]]:
    """(hit rate, lookups) by cache, for the caches that were asked. A miss that waited for
    the page another request was making (`joined`) is neither a hit nor a page made."""
    rates = {}
    for cache in {c for c, _ in lookups}:
        hits = lookups.get((cache, "hit"), 0.0)
        asked = hits + lookups.get((cache, "miss"), 0.0) + lookups.get((cache, "joined"), 0.0)
        if asked:
            rates[cache] = (round(hits / asked, 3), asked)
    return rates


_CACHE_LINE = re.compile(
    r'^peerspark_read_cache_total\{cache="([^"]+)",outcome="([^"]+)"\}\s+([0-9.eE+-]+)$', re.M
)


async def cache_counts(base_url: str) -> dict[tuple[str, str], float]:
    """The node's read-cache lookups so far by (cache, outcome), from its /metrics ({} when it
    has none or does not answer: hit rates are then not reported)."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(base_url.rstrip("/") + "/metrics") as resp,
        ):
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    return {(c, o): float(v) for c, o, v in _CACHE_LINE.findall(text)}


def _cores(ctx: Context) -> int:
    import os

    return len(ctx.placement.clients or []) or (os.cpu_count() or 1)


def add_rest_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the load")
    g.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"which to run (default: every one but login): {', '.join(REST_SCENARIOS)}",
    )
    g.add_argument(
        "--concurrency", type=int, default=32, metavar="C", help="requests in flight (32)"
    )
    g.add_argument(
        "--duration", type=float, default=10, metavar="SECONDS", help="per scenario (10)"
    )
    g.add_argument(
        "--users", type=int, default=100, metavar="N", help="accounts requests come from (100)"
    )


async def run_rest(
    ctx: Context,
    names: list[str],
    *,
    concurrency: int,
    duration: float,
    users: int,
) -> dict[str, Any]:
    unknown = [n for n in names if n not in REST_SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown REST scenario(s): {', '.join(unknown)}")
    chosen = [REST_SCENARIOS[n] for n in names] or [s for s in REST_SCENARIOS.values() if s.default]
    load_before = machine_load()
    target = await ctx.open_target("product")
    ctx.log(f"rest: server at {target.base_url} ({target.where}); {ctx.placement.describe()}")
    results: list[dict[str, Any]] = []
    try:
        async with rest_session() as session:
            api = RestApi(target.base_url, session)
            seeder = ctx.seeder(api)
            started = time.monotonic()
            accounts = await seeder.accounts(users, ctx.log)
            data = SeedData(accounts)
            data.pools["email"] = [f"{a.username}@bench.peerspark.local" for a in accounts]
            seeded: set[Seeder] = set()
            for scenario in chosen:
                if scenario.seed is not None and scenario.seed not in seeded:
                    seeded.add(scenario.seed)
                    try:
                        await scenario.seed(api, data, ctx.log)
                    except RestError as exc:
                        if exc.status not in (404, 405):
                            raise
                        ctx.log(f"rest/{scenario.name}: cannot seed ({exc})")
            seed_seconds = time.monotonic() - started
            for scenario in chosen:
                why = await _available(api, scenario, data)
                if why is not None:
                    ctx.log(f"rest/{scenario.name}: skipped ({why})")
                    results.append(
                        {"name": scenario.name, "endpoint": scenario.endpoint, "skipped": why}
                    )
                    continue
                ctx.log(
                    f"rest/{scenario.name}: {scenario.endpoint}, {concurrency} in flight, "
                    f"{duration:g}s"
                )
                results.append(
                    await _run_scenario(ctx, target, scenario, data, concurrency, duration)
                )
    finally:
        await target.stop()
    return {
        "command": "rest",
        "target": {"url": target.base_url, "where": target.where},
        "placement": ctx.placement.describe(),
        "server_measured_from": target.probe.source if target.probe else None,
        "machine_load_before": load_before,
        "machine_load_after": machine_load(),
        "users": users,
        "seeding_seconds": round(seed_seconds, 2),
        "scenarios": results,
    }


async def main_rest(args: argparse.Namespace, ctx: Context) -> int:
    from .cli import raise_open_file_limit

    raise_open_file_limit()
    try:
        result = await run_rest(
            ctx,
            list(args.scenarios),
            concurrency=args.concurrency,
            duration=args.duration,
            users=args.users,
        )
    finally:
        await ctx.close()
    folder = ctx.run_dir("rest")
    write_rest_outputs(result, folder)
    ctx.log(f"result: {folder}/result.json and plot.png")
    print()
    print(rest_table(result))
    before, after = result["machine_load_before"], result["machine_load_after"]
    print(
        f"machine load (1-minute average, {before['cpus']} CPUs): {before['load1']} before, "
        f"{after['load1']} after; {ctx.placement.describe()}"
    )
    return 0
