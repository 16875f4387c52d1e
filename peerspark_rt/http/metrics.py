"""Prometheus metrics, one registry per application (so tests can run several apps)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
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
        # labelled children by their labels: prometheus_client's labels() costs microseconds
        # a call, and these are counted on every request (routes and outcomes are few, and so
        # are the methods aiohttp's C parser accepts; prometheus_client keeps a child per
        # label set anyway)
        self._children: dict[tuple[str, str], Any] = {}
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
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
        self.read_cache = Counter(
            "peerspark_read_cache_total",
            "Cached hot reads (feed, resources search) by outcome: hit, miss, joined "
            "(waited for the same page another request was making), off",
            ["cache", "outcome"],
            registry=self.registry,
        )
        self.ws_deliveries = Counter(
            "peerspark_ws_deliveries_total",
            "Frames written to websocket clients",
            registry=self.registry,
        )
        self.ws_ack = Histogram(
            "peerspark_ws_ack_seconds",
            "From a chat message's arrival on a websocket to its ack (stored) or refusal",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.ws_dropped = Counter(
            "peerspark_ws_slow_consumer_total",
            "Sockets told to resync or closed because they fell behind",
            ["action"],
            registry=self.registry,
        )
        self.ws_closes = Counter(
            "peerspark_ws_closes_total",
            "Websockets closed, by close code (1006: the connection was cut)",
            ["code"],
            registry=self.registry,
        )
        self.resumes = Counter(
            "peerspark_ws_resumes_total",
            "Resumes by outcome: hit (from memory), miss (from the store), too_old",
            ["outcome"],
            registry=self.registry,
        )
        self.gap_fetches = Counter(
            "peerspark_room_gap_fetches_total",
            "Times a room fetched messages it had missed from the store",
            registry=self.registry,
        )
        self.room_load_failures = Counter(
            "peerspark_room_load_failures_total",
            "Attempts to load a room's state (sequence, presence) that failed",
            registry=self.registry,
        )
        self.hooks_dropped = Counter(
            "peerspark_hooks_dropped_total",
            "Attendance/read-marker updates dropped because their queue was full",
            registry=self.registry,
        )
        self.chat_batch = Histogram(
            "peerspark_chat_batch_messages",
            "Chat messages per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=self.registry,
        )
        self.chat_commit = Histogram(
            "peerspark_chat_commit_seconds",
            "Chat group commit latency",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.redis_publish_seconds = Histogram(
            "peerspark_redis_publish_seconds",
            "Latency of one pipelined batch of Redis publishes",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=self.registry,
        )
        self.redis_publishes = Counter(
            "peerspark_redis_publishes_total",
            "Frames published to Redis",
            registry=self.registry,
        )
        self.redis_dropped = Counter(
            "peerspark_redis_publish_dropped_total",
            "Frames not published to Redis, by reason (buffer_full, timeout, error, shutdown)",
            ["reason"],
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "peerspark_event_loop_lag_seconds",
            "Largest event-loop lag seen in the last few seconds",
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

    def resume(self, outcome: str) -> None:
        self.resumes.labels(outcome).inc()

    def gap_fetch(self) -> None:
        self.gap_fetches.inc()

    def room_load_failed(self) -> None:
        self.room_load_failures.inc()

    def hook_dropped(self) -> None:
        self.hooks_dropped.inc()

    def ws_closed(self, code: int | None) -> None:
        self.ws_closes.labels(str(code if code is not None else 1006)).inc()

    # --- what the chat store and the Redis publisher report ---

    def chat_committed(self, messages: int, seconds: float) -> None:
        self.chat_batch.observe(messages)
        self.chat_commit.observe(seconds)

    def redis_publish(self, seconds: float, count: int) -> None:
        self.redis_publish_seconds.observe(seconds)
        self.redis_publishes.inc(count)

    def redis_publish_dropped(self, reason: str, count: int) -> None:
        self.redis_dropped.labels(reason).inc(count)

    # --- what services report (services.observe.ProductMetrics) ---

    def ai_call(self, endpoint: str, outcome: str, tokens: int) -> None:
        self.ai_calls.labels(endpoint, outcome).inc()
        if tokens > 0:
            self.ai_tokens.inc(tokens)

    def moderated(self, kind: str, outcome: str) -> None:
        self.moderation_verdicts.labels(kind, outcome).inc()

    def cache_lookup(self, cache: str, outcome: str) -> None:
        child = self._children.get((cache, outcome))
        if child is None:
            child = self._children[(cache, outcome)] = self.read_cache.labels(cache, outcome)
        child.inc()

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered (a socket's lifetime, /ws, is not a request's latency)."""
        key = (method, route, status)
        children = self._requests.get(key)
        if children is None:
            latency = None if route == "/ws" else self.http_latency.labels(method, route)
            children = self._requests[key] = (
                self.http_requests.labels(method, route, str(status)),
                latency,
            )
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)

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


# the application's key for what this module provides (typed app state)
METRICS = web.AppKey("metrics", Metrics)
# set on the application METRICS_ADDRESS serves (http/health.py: metrics_app)
METRICS_LISTENER = web.AppKey("metrics_listener", bool)
