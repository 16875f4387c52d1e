"""The load-generator processes, seen from the coordinator: start `python -m bench.worker`
processes, hand each its plan, and turn what they print into events."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from . import wire
from .procs import ROOT


class WorkerProc:
    """One `python -m bench.worker` process and the events it reports."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.stderr: list[str] = []
        self.readers: list[asyncio.Task[None]] = []

    async def send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(wire.encoder.encode(message) + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def start_workers(
    plans: list[wire.WsPlan] | list[wire.RestPlan],
    events: asyncio.Queue[wire.Event | Exception],
) -> list[WorkerProc]:
    workers: list[WorkerProc] = []
    for plan in plans:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.worker",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        worker = WorkerProc(plan.worker, proc)
        workers.append(worker)
        worker.readers = [
            asyncio.create_task(_read_events(worker, events)),
            asyncio.create_task(_read_stderr(worker)),
        ]
        await worker.send(plan)
    return workers


async def _read_events(worker: WorkerProc, events: asyncio.Queue[wire.Event | Exception]) -> None:
    assert worker.proc.stdout is not None
    while line := await worker.proc.stdout.readline():
        try:
            events.put_nowait(wire.event_decoder.decode(line))
        except Exception as exc:  # noqa: BLE001 (whatever a worker said is reported, not raised)
            events.put_nowait(RuntimeError(f"worker {worker.index} said {line[:200]!r}: {exc}"))
    code = await worker.proc.wait()
    if code != 0:
        tail = "".join(worker.stderr[-30:])
        events.put_nowait(RuntimeError(f"worker {worker.index} exited with {code}:\n{tail}"))


async def _read_stderr(worker: WorkerProc) -> None:
    assert worker.proc.stderr is not None
    while line := await worker.proc.stderr.readline():
        worker.stderr.append(line.decode(errors="replace"))
        del worker.stderr[:-200]


async def next_event(events: asyncio.Queue[wire.Event | Exception], timeout: float) -> wire.Event:
    item = await asyncio.wait_for(events.get(), timeout)
    if isinstance(item, Exception):
        raise item
    if isinstance(item, wire.Failed):
        raise RuntimeError(f"worker {item.worker} failed:\n{item.message}")
    return item
