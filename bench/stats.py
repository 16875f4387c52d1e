"""Latency histograms with ~1% resolution, cheap to record into and to ship between processes.

Recording a raw sample per delivery would mean shipping millions of floats from the load
generator processes; a log-bucketed histogram keeps every percentile within 1% of its true
value at a fixed size, and histograms from many processes and seconds add up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

# Bucket i holds values v (microseconds) with floor(log(v) * SCALE) == i: 1% wide buckets.
SCALE = 1 / math.log(1.01)
_LOG = math.log
BUCKETS = int(_LOG(1e9) * SCALE) + 2  # up to ~1000 s, far beyond any sane latency


def bucket_of(micros: float) -> int:
    if micros < 1.0:
        return 0
    i = int(_LOG(micros) * SCALE)
    return i if i < BUCKETS else BUCKETS - 1


def bucket_value(i: int) -> float:
    """The middle of bucket i, in microseconds."""
    return math.exp((i + 0.5) / SCALE) if i else 0.5


class Histogram:
    """Counts of latencies (recorded in seconds, kept in 1% buckets of microseconds)."""

    __slots__ = ("counts", "max", "min", "n", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def record(self, seconds: float) -> None:
        micros = seconds * 1e6
        i = bucket_of(micros)
        counts = self.counts
        counts[i] = counts.get(i, 0) + 1
        self.n += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds < self.min:
            self.min = seconds

    def merge(self, other: Histogram) -> None:
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def percentile(self, p: float) -> float | None:
        """The p-th percentile in seconds (None when empty)."""
        if not self.n:
            return None
        rank = max(1, math.ceil(self.n * p / 100))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                value = bucket_value(i) / 1e6
                return min(max(value, self.min), self.max)
        return self.max

    def summary(self) -> dict[str, float | int | None]:
        """count, mean, p50, p90, p99, p999, max: seconds, rounded to microseconds."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 6)

        return {
            "count": self.n,
            "mean": r(self.total / self.n) if self.n else None,
            "p50": r(self.percentile(50)),
            "p90": r(self.percentile(90)),
            "p99": r(self.percentile(99)),
            "p999": r(self.percentile(99.9)),
            "max": r(self.max) if self.n else None,
        }

    # --- shipping between processes --------------------------------------------------------

    def to_wire(self) -> HistogramWire:
        return HistogramWire(
            counts=list(self.counts.items()),
            n=self.n,
            total=self.total,
            max=self.max,
            min=self.min if self.n else 0.0,
        )

    @classmethod
    def from_wire(cls, data: HistogramWire) -> Histogram:
        h = cls()
        h.counts = dict(data.counts)
        h.n = data.n
        h.total = data.total
        h.max = data.max
        h.min = data.min if data.n else math.inf
        return h


class HistogramWire(msgspec.Struct, array_like=True):
    counts: list[tuple[int, int]]
    n: int
    total: float
    max: float
    min: float


def merged(histograms: Iterable[Histogram]) -> Histogram:
    out = Histogram()
    for h in histograms:
        out.merge(h)
    return out
