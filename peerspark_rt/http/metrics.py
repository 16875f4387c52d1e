"""Prometheus metrics, one registry per application (so tests can run several apps)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GaugeSource = Callable[[], Iterable[tuple[str, str, dict[str, str], float]]]


class _CallbackCollector(Collector):
    """Reads values at scrape time (pool sizes, queue depths) instead of tracking them."""

    def __init__(self) -> None:
        self.sources: list[GaugeSource] = []

    def collect(self) -> Iterable[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for source in self.sources:
            for name, doc, labels, value in source():
                family = families.get(name)
                if family is None:
                    family = GaugeMetricFamily(name, doc, labels=list(labels))
                    families[name] = family
                family.add_metric(list(labels.values()), value)
        return list(families.values())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds: the bench reads
        # a remote node's memory and CPU time from here.
        ProcessCollector(registry=self.registry)
        self.http_requests = Counter(
            "peerspark_http_requests_total",
            "HTTP requests by route, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "peerspark_http_request_duration_seconds",
            "HTTP request latency by route and method",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.ws_connections = Gauge(
            "peerspark_ws_connections", "Open websocket connections", registry=self.registry
        )
        self.ws_frames_in = Counter(
            "peerspark_ws_frames_received_total",
            "Websocket frames received, by frame type",
            ["type"],
            registry=self.registry,
        )
        self.ws_deliveries = Counter(
            "peerspark_ws_deliveries_total",
            "Frames written to websocket clients",
            registry=self.registry,
        )
        self.ws_dropped = Counter(
            "peerspark_ws_slow_consumer_total",
            "Sockets told to resync or closed because they fell behind",
            ["action"],
            registry=self.registry,
        )
        self.rooms_gauge = Gauge(
            "peerspark_rooms_active", "Room actors running on this node", registry=self.registry
        )
        self.jobs_processed = Counter(
            "peerspark_jobs_processed_total",
            "Jobs this node's worker finished, by kind and outcome (done, retry, dead)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.reminders_fired = Counter(
            "peerspark_reminders_fired_total",
            "Reminders this node delivered, by source (event, session) and lateness",
            ["source", "late"],
            registry=self.registry,
        )
        self.ai_calls = Counter(
            "peerspark_ai_calls_total",
            "AI assistant calls by endpoint and outcome (ok or the error code)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.ai_tokens = Counter(
            "peerspark_ai_tokens_total", "Tokens charged for AI calls", registry=self.registry
        )
        self.moderation_verdicts = Counter(
            "peerspark_moderation_verdicts_total",
            "Moderation verdicts by content kind and outcome (allowed, held:<rule>, fallback)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self._callbacks = _CallbackCollector()
        self.registry.register(self._callbacks)
        self._refreshers: list[Callable[[], Awaitable[None]]] = []

    # --- what the hub reports (actors.hub.HubMetrics) ---

    def deliveries(self, n: int) -> None:
        self.ws_deliveries.inc(n)

    def rooms(self, n: int) -> None:
        self.rooms_gauge.set(n)

    def connections(self, n: int) -> None:
        self.ws_connections.set(n)

    def slow_consumer(self, action: str) -> None:
        self.ws_dropped.labels(action).inc()

    # --- what services report (services.observe.ProductMetrics) ---

    def ai_call(self, endpoint: str, outcome: str, tokens: int) -> None:
        self.ai_calls.labels(endpoint, outcome).inc()
        if tokens > 0:
            self.ai_tokens.inc(tokens)

    def moderated(self, kind: str, outcome: str) -> None:
        self.moderation_verdicts.labels(kind, outcome).inc()

    def add_source(self, source: GaugeSource) -> None:
        self._callbacks.sources.append(source)

    def add_refresher(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Something to await before each scrape (values that need a database query)."""
        self._refreshers.append(refresh)

    async def refresh(self) -> None:
        for refresh in self._refreshers:
            await refresh()

    def render(self) -> bytes:
        return generate_latest(self.registry)
