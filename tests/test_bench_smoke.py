"""The load-test harness runs end to end: a few clients for a few seconds against a real node,
over websockets (the lean client, and LiveClient dropping and resuming) and REST. This keeps
`python -m bench` from rotting; the figures themselves are the bench's business, not a test's."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nodes import ROOT, Node, start_node


@pytest.fixture(scope="module")
def node(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    started = start_node(
        {
            "DATABASE_URL": pg_dsn,
            "JWT_SECRET": secrets.token_urlsafe(40),
            "JWT_REFRESH_SECRET": secrets.token_urlsafe(40),
            "AUTO_MIGRATE": "false",
            "PEERSPARK_DATA_DIR": str(tmp_path_factory.mktemp("bench-node")),
            "LOG_LEVEL": "WARNING",
            "WS_SEND_RATE": "1000",
            "WS_SEND_BURST": "1000",
        }
    )
    yield started
    started.stop()


def bench(out: Path, *args: str) -> dict[str, Any]:
    """Run `python -m bench ...`; return the result.json it wrote."""
    before = set(out.glob("*/result.json"))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--out", str(out), "--quiet", "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = set(out.glob("*/result.json")) - before
    assert len(written) == 1, (written, proc.stdout, proc.stderr)
    path = written.pop()
    assert (path.parent / "plot.png").stat().st_size > 1000
    result: dict[str, Any] = json.loads(path.read_text())
    return result


# the listeners in the C receiver (bench/lean/receiver.c; what `auto` picks when gcc is
# there) and in the Python clients: both must count the same
@pytest.mark.parametrize("receiver", ["c", "python"])
def test_websocket_run_reports_sane_figures(node: Node, tmp_path: Path, receiver: str) -> None:
    if receiver == "c" and shutil.which("gcc") is None:
        pytest.skip("no gcc: the harness falls back to the Python receivers")
    result = bench(
        tmp_path,
        "ws",
        "custom",
        "--receiver",
        receiver,
        "--target",
        node.url,
        "--clients",
        "6",
        "--rooms",
        "2",
        "--senders",
        "2",
        "--rate",
        "20",
        "--duration",
        "2",
        "--settle",
        "0.2",
    )
    assert result["connect"]["connected"] == 6
    assert result["connect"]["failed"] == 0
    assert result["connect"]["join"]["count"] == 6
    assert result["generator"]["receiver"] == receiver
    delivery = result["delivery"]
    assert delivery["acked"] == delivery["sent"] > 0, delivery
    # every message reaches the three members of its room: nothing lost, nothing twice
    assert delivery["deliveries"] == 3 * delivery["acked"]
    assert delivery["missing"] == delivery["duplicates"] == delivery["gaps"] == 0
    assert delivery["errors"] == {}
    latency = delivery["latency"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] < 10
    assert delivery["ack_latency"]["p99"] is not None
    server = result["server"]
    assert server["source"].endswith("/metrics")  # --target: read from the node's /metrics
    assert server["cpu_seconds"] > 0
    assert server["rss_connected_mib"] > 0
    assert server["memory_per_connection_kib"] is not None
    assert [row["second"] for row in result["timeline"]][:2] == [0, 1]


def test_dropping_and_resuming_loses_nothing(node: Node, tmp_path: Path) -> None:
    result = bench(
        tmp_path,
        "ws",
        "burst",
        "--target",
        node.url,
        "--clients",
        "6",
        "--rooms",
        "2",
        "--senders",
        "2",
        "--rate",
        "20",
        "--duration",
        "3",
        "--drop-at",
        "1",
        "--settle",
        "0.2",
    )
    assert result["config"]["client"] == "live"  # the product's LiveClient resumes
    burst = result["burst"]
    assert burst["back"] == burst["dropped"] == 6
    assert burst["not_back"] == 0
    assert burst["resume"]["max"] is not None
    delivery = result["delivery"]
    assert delivery["acked"] > 0
    assert delivery["missing"] == delivery["duplicates"] == delivery["gaps"] == 0


def test_rest_run_reports_sane_figures(node: Node, tmp_path: Path) -> None:
    result = bench(
        tmp_path,
        "rest",
        "me",
        "pods-search",
        "session-history",
        "--target",
        node.url,
        "--duration",
        "1",
        "--concurrency",
        "4",
        "--users",
        "3",
    )
    ran = {s["name"]: s for s in result["scenarios"]}
    assert set(ran) == {"me", "pods-search", "session-history"}
    for scenario in ran.values():
        assert "skipped" not in scenario, scenario
        assert scenario["requests"] > 0, scenario
        assert scenario["failures"] == 0, scenario
        assert set(scenario["statuses"]) == {"200"}
        assert scenario["latency"]["p50"] is not None
        assert scenario["latency"]["p99"] is not None
    # the accounts were registered through the API and cached for the next run
    cached = list((tmp_path / "accounts").glob("*.json"))
    assert len(cached) == 1
    assert len(json.loads(cached[0].read_text())["accounts"]) == 3


def test_leaderboard_run_reports_every_phase(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "leaderboard", "--users", "3000", "--reads", "200",
         "--concurrency", "4", "--seconds", "0.3", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [path] = list(tmp_path.glob("*-leaderboard/result.json"))
    result = json.loads(path.read_text())
    assert result["users"] == 3000
    for phase in ("read_sequential", "read_concurrent"):
        assert result[phase]["reads"] == 200
        assert result[phase]["p99_ms"] >= result[phase]["p50_ms"] > 0
        assert result[phase]["generator_cpu_share"] >= 0
    assert result["update"]["writes"] > 0
    assert "goal p99 < 5 ms" in proc.stdout
