"""Dependency health: each part reports itself; a required part that is down makes the node
unhealthy (503) so the load balancer stops sending it traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Probe = Callable[[], Awaitable[dict[str, Any]]]
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    probe: Probe
    required: bool


class Health:
    def __init__(self) -> None:
        self._checks: list[_Check] = []

    def add(self, name: str, probe: Probe, *, required: bool = True) -> None:
        """Register a probe. It returns details (including "status") or raises when down."""
        self._checks.append(_Check(name, probe, required))

    async def _run(self, check: _Check) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            details = await asyncio.wait_for(check.probe(), PROBE_TIMEOUT)
        except TimeoutError:
            details = {"status": "unhealthy", "error": f"no answer within {PROBE_TIMEOUT:.0f}s"}
        except Exception as exc:  # noqa: BLE001 (any failure is the probe's answer)
            details = {"status": "unhealthy", "error": str(exc) or type(exc).__name__}
        details.setdefault("status", "healthy")
        details["required"] = check.required
        details["latencyMs"] = round((time.perf_counter() - started) * 1000, 2)
        return details

    async def report(self) -> tuple[bool, dict[str, Any]]:
        results = await asyncio.gather(*(self._run(c) for c in self._checks))
        services = {c.name: r for c, r in zip(self._checks, results, strict=True)}
        healthy = all(r["status"] != "unhealthy" for r in results if r["required"])
        return healthy, services


# the application's key for what this module provides (typed app state)
HEALTH = web.AppKey("health", Health)
