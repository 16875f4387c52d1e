"""What services report for /metrics (implemented by http.metrics.Metrics; services do not
import http)."""

from __future__ import annotations

from typing import Protocol


class ProductMetrics(Protocol):
    def ai_call(self, endpoint: str, outcome: str, tokens: int) -> None:
        """One AI call: `outcome` is ok or an error code; `tokens` charged (0 on failure)."""

    def moderated(self, kind: str, outcome: str) -> None:
        """One moderation verdict: allowed, held:<rule>, or fallback (upstream failed)."""


class NoMetrics:
    def ai_call(self, endpoint: str, outcome: str, tokens: int) -> None:
        return None

    def moderated(self, kind: str, outcome: str) -> None:
        return None
