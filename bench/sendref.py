"""What one `send(2)` of a small frame to a loopback TCP socket costs on this machine now: the
reference beside a classroom's figures.

Most of the product's CPU in a classroom is the kernel's loopback send (bench/README.md: ~85 %
against Socket.IO's ~57 %), and this VM's own speed at it moved by a fifth within an hour
(a C loop sending to 1,000 sockets whose readers waited in epoll: 5.3 to 6.7 µs a send),
which moves the product's ratio to Socket.IO with it. Measured with the fan-out's own C loop
(`peerspark_rt.actors._fanout.send_all`) on the server's CPU, the fastest of 30 rounds and
with nobody waiting to read (so no wake-up: ~2 µs), so it is the bare cost of the sends a
delivery makes, without Python or an event loop; compare it between runs, not with the
figure above."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

FRAME = b"\x81\x3a" + b"x" * 58  # a 60-byte websocket text frame, as a short chat message is


class _Member:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd


@contextlib.contextmanager
def _on_cpus(cpus: list[int] | None) -> Iterator[None]:
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def loopback_send_microseconds(
    cpus: list[int] | None = None, sockets: int = 1000, rounds: int = 30
) -> float | None:
    """Microseconds per send of a 60-byte frame to one of `sockets` connected loopback TCP
    sockets (the fastest of `rounds` rounds, each a send to every socket), measured on `cpus`;
    None without the C extension, or when the machine would not let it measure (no such
    CPU, too few open files): a reference is never worth a run's figures."""
    try:
        return _measure(cpus, sockets, rounds)
    except (ImportError, OSError):
        return None


def _measure(cpus: list[int] | None, sockets: int, rounds: int) -> float:
    from peerspark_rt.actors._fanout import send_all

    listener = socket.create_server(("127.0.0.1", 0), backlog=sockets)
    senders: list[socket.socket] = []
    readers: list[socket.socket] = []
    try:
        for _ in range(sockets):
            senders.append(socket.create_connection(listener.getsockname()))
            reader, _ = listener.accept()
            reader.setblocking(False)
            readers.append(reader)
        # (a dict of members, as a room hands its members to the same loop)
        members = dict.fromkeys(_Member(s.fileno()) for s in senders)
        best = float("inf")
        with _on_cpus(cpus):
            for _ in range(rounds):
                started = time.perf_counter_ns()
                unsent = send_all(members, FRAME)
                elapsed = time.perf_counter_ns() - started
                if unsent:
                    raise RuntimeError(f"{len(unsent)} loopback sends were short")
                best = min(best, elapsed / sockets / 1000)
                for reader in readers:  # (outside the timing: the receiving side is not ours)
                    with contextlib.suppress(BlockingIOError):
                        reader.recv(65536)
        return round(best, 2)
    finally:
        for each in (*senders, *readers, listener):
            each.close()


def reference_line(before: float | None, after: float | None, cpus: list[int] | None) -> str:
    """The summary's line for the references measured before and after the runs on `cpus`."""
    where = "server CPU" if cpus else "unpinned: no server CPU of ours"
    if before is None or after is None:
        return "bare loopback send: not measured (no C extension, or the machine would not let it)"
    return (
        f"bare loopback send (C loop, 60-byte frame to one of 1,000 sockets, {where}): "
        f"{before:.2f} us before, {after:.2f} us after the runs (the product's ratio to "
        "Socket.IO falls as this rises: its CPU is mostly these sends)"
    )
