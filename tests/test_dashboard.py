"""config/grafana/peerspark-rt.json: a Grafana dashboard whose every query names metrics a
node really exposes, covering what operators watch (rooms, sockets, deliveries, drops, resumes,
acks p99, event-loop lag, job queue depth, HTTP p99)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.helpers import Api
from tests.nodes import ROOT

DASHBOARD = ROOT / "config" / "grafana" / "peerspark-rt.json"
WATCHED = {
    "peerspark_rooms_active",
    "peerspark_ws_connections",
    "peerspark_ws_deliveries_total",
    "peerspark_ws_slow_consumer_total",
    "peerspark_redis_publish_dropped_total",
    "peerspark_ws_resumes_total",
    "peerspark_ws_ack_seconds_bucket",
    "peerspark_event_loop_lag_seconds",
    "peerspark_jobs",
    "peerspark_http_request_duration_seconds_bucket",
}
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exposed(text: str) -> set[str]:
    """Every metric family in a /metrics answer (labelled ones with no value yet included)."""
    families = set(re.findall(r"^# TYPE (\S+) \w+$", text, re.M))
    return families | {f + "_total" for f in families}


def queried(dashboard: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            names |= set(re.findall(r"\b((?:peerspark|process)_[a-z_]+)\b", target["expr"]))
    return names


async def test_the_dashboard_queries_metrics_the_nodes_expose(
    make_client: Any, redis_url: str
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    names = queried(dashboard)
    assert names >= WATCHED, WATCHED - names

    api: Api = await make_client(redis_url=redis_url, run_worker=True)
    families = exposed((await api.metrics()).body.decode())
    for name in sorted(names):
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
        assert name in families or base in families, f"{name}: no such metric on a node"
