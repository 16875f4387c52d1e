"""What `bench all` judges its goals by: the classroom's delivery goals per rate on the median of
interleaved rounds (rounds that cannot give a verdict left out rather than counted), and a
server CPU that is the server's alone."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.procs import BenchDatabase
from bench.report import goal_rows
from tests.conftest import searchable_tmpdir


def _run(
    kind: str,
    rate: float,
    per_cpu: int,
    p99: float,
    *,
    p50: float = 0.007,
    share: float = 0.3,
    bound: bool = False,
) -> dict[str, Any]:
    return {
        "scenario": "classroom",
        "server_kind": kind,
        "run": kind,
        "config": {"rate": rate},
        "generator": {"sending_cpu_share": share, "bound": bound, "receiver": "c"},
        "server": {"deliveries_per_cpu_second": per_cpu},
        "delivery": {
            "latency": {"p50": p50, "p99": p99},
            "deliveries_per_second": rate * 1000,
        },
    }


def _rows(results: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {row[0]: row for row in goal_rows(results, None)}


def test_each_rate_is_judged_on_the_median_of_its_rounds() -> None:
    results = [
        # 20 msg/s: ratios x2.0, x1.5, x1.9 -> median x1.9 (met); p99 x0.8, x1.5, x0.9 -> x0.9
        _run("product", 20, 200_000, 0.008),
        _run("socketio", 20, 100_000, 0.010),
        _run("echo", 20, 210_000, 0.005),
        _run("product", 20, 150_000, 0.015),
        _run("socketio", 20, 100_000, 0.010),
        _run("echo", 20, 210_000, 0.005),
        _run("product", 20, 190_000, 0.009),
        _run("socketio", 20, 100_000, 0.010),
        _run("echo", 20, 210_000, 0.005),
        # 50 msg/s: one round, x1.5 (not met), p99 x2 (not met)
        _run("product", 50, 150_000, 0.020),
        _run("socketio", 50, 100_000, 0.010),
        _run("echo", 50, 210_000, 0.005),
    ]
    rows = _rows(results)
    ratio20 = rows["classroom vs Socket.IO per CPU-s (20 msg/s)"]
    assert ratio20[1].startswith("x1.90 median of 3 (x1.50-x2.00)")
    assert ratio20[3] == "yes"
    assert rows["classroom p99 vs Socket.IO (20 msg/s)"][3] == "yes"
    assert rows["classroom deliveries per CPU-s (20 msg/s)"][1].startswith("190,000 median of 3")
    ratio50 = rows["classroom vs Socket.IO per CPU-s (50 msg/s)"]
    assert ratio50[1] == "x1.50"
    assert ratio50[3] == "NO"
    assert rows["classroom p99 vs Socket.IO (50 msg/s)"][3] == "NO"


def test_rounds_that_cannot_give_a_verdict_are_left_out() -> None:
    results = [
        # the generator was the bottleneck: no ratios from this round
        _run("product", 50, 400_000, 0.008, share=0.9, bound=True),
        _run("socketio", 50, 100_000, 0.010),
        # the product fell behind (p50 over 50 ms): it looks cheap, and says nothing
        _run("product", 50, 400_000, 0.200, p50=0.120),
        _run("socketio", 50, 100_000, 0.010),
        _run("product", 50, 120_000, 0.009),
        _run("socketio", 50, 100_000, 0.010),
    ]
    rows = _rows(results)
    assert rows["classroom vs Socket.IO per CPU-s (50 msg/s)"][1] == "x1.20"
    assert rows["classroom vs Socket.IO per CPU-s (50 msg/s)"][3] == "NO"
    # ... but a product that fell behind was slow for its users: its p99 counts (x20, x0.9)
    assert rows["classroom p99 vs Socket.IO (50 msg/s)"][1].startswith("x10.45 median of 2")
    assert rows["classroom p99 vs Socket.IO (50 msg/s)"][3] == "NO"
    per = rows["classroom deliveries per CPU-s (50 msg/s)"]
    assert per[1].startswith("120,000")
    assert "2 round(s)" in per[1]
    assert per[3] == "yes"
    assert rows["generator never the bottleneck (ws runs)"][3] == "NO"


def test_no_sound_round_gives_no_verdict() -> None:
    results = [
        _run("product", 50, 400_000, 0.008, share=0.9, bound=True),
        _run("socketio", 50, 100_000, 0.010),
    ]
    rows = _rows(results)
    assert rows["classroom vs Socket.IO per CPU-s (50 msg/s)"][1:4] == [
        "no sound round",
        ">= x1.80",
        "-",
    ]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to place apart")
def test_the_embedded_database_runs_on_the_generators_cpus() -> None:
    """The harness's own PostgreSQL stays off the server's CPU (its backends too, forked after
    the move), so the product's core is as much its own as a peer's."""

    async def backend_cpus() -> set[int]:
        db = BenchDatabase(None, searchable_tmpdir() / "pgdata")
        try:
            url = await db.start()
            generator = sorted(os.sched_getaffinity(0))[-1:]
            db.keep_to(generator)
            conn = await asyncpg.connect(url)
            try:
                return os.sched_getaffinity(await conn.fetchval("SELECT pg_backend_pid()"))
            finally:
                await conn.close()
        finally:
            await db.stop()

    assert asyncio.run(backend_cpus()) == set(sorted(os.sched_getaffinity(0))[-1:])


def test_bench_all_starts_from_an_empty_database_and_other_runs_keep_theirs() -> None:
    """Each REST run seeds more resources and posts; `bench all` compares runs, so each starts
    empty (a grown database had made resource search three times slower between two runs)."""
    from bench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["all"]).fresh_database
    assert not parser.parse_args(["all", "--keep-database"]).fresh_database
    assert not parser.parse_args(["rest"]).fresh_database
    assert parser.parse_args(["rest", "--fresh-database"]).fresh_database
    # and runs the classroom three times at each rate: the median of two is their mean
    assert parser.parse_args(["all"]).rounds == 3

    async def rows_after(folder: Path, *, fresh: bool) -> int:
        db = BenchDatabase(None, folder)
        try:
            conn = await asyncpg.connect(await db.start(fresh=fresh))
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS seeded (n int)")
                await conn.execute("INSERT INTO seeded VALUES (1)")
                return int(await conn.fetchval("SELECT count(*) FROM seeded"))
            finally:
                await conn.close()
        finally:
            await db.stop()

    folder = searchable_tmpdir() / "pgdata"
    assert asyncio.run(rows_after(folder, fresh=False)) == 1
    assert asyncio.run(rows_after(folder, fresh=False)) == 2  # kept
    assert asyncio.run(rows_after(folder, fresh=True)) == 1  # emptied first


def _rest(share: float, server_cpu: float = 2.4, p99: float = 0.040) -> dict[str, Any]:
    return {
        "scenarios": [
            {
                "name": "feed",
                "concurrency": 50,
                "duration": 4,
                "requests_per_second": 3000,
                "latency": {"p99": p99},
                "cache_hit_rate": 0.99,
                "generator_cpu_share": share,
                "server_cpu_seconds": server_cpu,
            }
        ]
    }


def test_a_rest_run_whose_generator_was_busy_gives_no_verdict() -> None:
    row = {r[0]: r for r in goal_rows([], _rest(0.78))}["REST feed at 50 in flight"]
    assert row[3] == "-"
    assert "generator-bound" in row[1]
    sound = {r[0]: r for r in goal_rows([], _rest(0.55))}["REST feed at 50 in flight"]
    assert sound[3] == "yes"


def test_a_rest_run_whose_server_used_its_whole_core_gives_a_verdict() -> None:
    """The server was the bottleneck (3.9 of 4 CPU-seconds): its throughput is what it can
    do, and a busy generator only adds to the latency measured, so the run is judged, met
    or not."""
    met = {r[0]: r for r in goal_rows([], _rest(0.79, server_cpu=3.9))}
    assert met["REST feed at 50 in flight"][3] == "yes"
    assert "server-bound" in met["REST feed at 50 in flight"][1]
    slow = {r[0]: r for r in goal_rows([], _rest(0.79, server_cpu=3.9, p99=0.150))}
    assert slow["REST feed at 50 in flight"][3] == "NO"


def test_rounds_pair_by_their_number_when_a_run_failed() -> None:
    # round 0's Socket.IO run failed: round 1's product is judged against round 1's peer
    results = [
        {**_run("product", 50, 150_000, 0.010), "round": 0},
        {**_run("product", 50, 200_000, 0.010), "round": 1},
        {**_run("socketio", 50, 100_000, 0.020), "round": 1},
    ]
    row = _rows(results)["classroom vs Socket.IO per CPU-s (50 msg/s)"]
    assert row[1] == "x2.00"


def test_the_bare_send_reference_measures_the_fan_outs_own_send_loop() -> None:
    """`bench all` prints what a bare loopback send costs before and after its runs (the
    product's ratio to Socket.IO moves with it); it is measured through the fan-out's C loop."""
    from bench.sendref import loopback_send_microseconds, reference_line

    cost = loopback_send_microseconds(sockets=50, rounds=3)
    assert cost is not None, "the fan-out's C extension is not built"
    assert 0 < cost < 1000
    assert f"{cost:.2f} us before" in reference_line(cost, cost, [0])


def test_connects_are_judged_on_the_median_of_the_runs() -> None:
    """One connect run's figure moved by half between runs of one code; bench all runs it
    as many times as the classroom's rounds and judges the middle one."""

    def connect(per: int) -> dict[str, Any]:
        return {
            "scenario": "connect",
            "server_kind": "product",
            "run": "product",
            "config": {},
            "generator": {"sending_cpu_share": 0.01, "bound": False, "receiver": "c"},
            "server": {"connects_per_cpu_second": per},
        }

    row = _rows([connect(909), connect(1_282), connect(1_124)])[
        "handshake+token+join per server CPU-s"
    ]
    assert row[1] == "1,124 median of 3 (909-1,282)"
    assert row[3] == "yes"
    assert _rows([connect(909)])["handshake+token+join per server CPU-s"][3] == "NO"
