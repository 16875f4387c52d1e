"""What the coordinator and its load-generator worker processes say to each other.

One JSON object per line: the coordinator writes a plan and then commands to a worker's stdin;
the worker writes events to its stdout.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .stats import HistogramWire

Kind = Literal["product", "socketio", "echo"]


class ClientSpec(msgspec.Struct, array_like=True):
    """One simulated client: who it is, which rooms it joins, where it sends (if anywhere)."""

    token: str  # the product's access token ("" for peers)
    name: str  # a user name (peers put it in messages)
    rooms: list[str]
    sends_to: str | None = None
    # the local address to connect from (a load balancer that hashes client addresses, as
    # nginx's ip_hash does, then spreads the sockets over its nodes); None: the kernel's choice
    source: str | None = None


class WsPlan(msgspec.Struct, tag="ws"):
    kind: Kind
    url: str
    clients: list[ClientSpec]
    rate: float  # messages per second over this worker's senders
    duration: float
    size: int  # message body length in characters
    binary: bool
    connect_concurrency: int
    drop_at: float | None  # seconds after the start: every client drops and resumes
    cpus: list[int] | None
    worker: int
    ack_timeout: float
    client: Literal["lean", "live", "socketio"] = "lean"
    # the compiled lean receiver (bench/lean/receiver.c): it takes the clients that only
    # listen; None: every client is a Python one
    receiver: str | None = None

    @classmethod
    def listening(
        cls, kind: Kind, url: str, clients: list[ClientSpec], *, connect_concurrency: int
    ) -> WsPlan:
        """A plan whose clients connect, join and only listen (no sending, no drops)."""
        return cls(
            kind=kind,
            url=url,
            clients=clients,
            rate=0,
            duration=1,
            size=120,
            binary=False,
            connect_concurrency=connect_concurrency,
            drop_at=None,
            cpus=None,
            worker=0,
            ack_timeout=5,
        )


class RestRequest(msgspec.Struct, array_like=True):
    """A request template; {name} placeholders are filled from `RestPlan.pools` per request."""

    method: str
    path: str
    body: str | None = None


class RestPlan(msgspec.Struct, tag="rest"):
    base_url: str
    tokens: list[str]
    scenario: str
    requests: list[RestRequest]
    pools: dict[str, list[str]]
    concurrency: int
    duration: float
    cpus: list[int] | None
    worker: int


# --- coordinator -> worker -------------------------------------------------------------------


class Go(msgspec.Struct, tag="go"):
    start: float  # wall-clock time (time.time()) at which sending starts


class Expect(msgspec.Struct, tag="expect"):
    """Sending is over: what each room should have delivered, and how long to wait for it."""

    finals: dict[str, int]
    drain: float


class Quit(msgspec.Struct, tag="quit"):
    pass


Command = Go | Expect | Quit


# --- worker -> coordinator -------------------------------------------------------------------


class Ready(msgspec.Struct, tag="ready"):
    worker: int
    connected: int
    failed: int
    connect: HistogramWire  # seconds from opening the socket to the upgrade
    join: HistogramWire  # seconds from sending `join` to `joined`
    errors: dict[str, int]
    cpu_seconds: float  # this worker process's CPU time so far


class Tick(msgspec.Struct, tag="tick"):
    """One second of one worker's run (second 0 starts at Go.start)."""

    worker: int
    second: int
    deliveries: int
    latency: HistogramWire
    sent: int
    acked: int
    errors: int


class Sent(msgspec.Struct, tag="sent"):
    """Sending has stopped: per room, the highest acknowledged sequence and the count sent."""

    worker: int
    max_seq: dict[str, int]
    sent_count: dict[str, int]
    sent: int
    acked: int
    ack_latency: HistogramWire
    cpu_seconds: float = 0.0  # this worker process's CPU time when sending stopped
    at: float = 0.0  # time.time() when sending stopped (the last acknowledgement was in)


class Done(msgspec.Struct, tag="done"):
    worker: int
    deliveries: int
    latency: HistogramWire
    missing: int  # messages some member never received
    extra: int  # messages received beyond what was expected (never acknowledged)
    duplicates: int
    gaps: int  # times a sequence jumped (a later message before an earlier one)
    resync: int
    errors: dict[str, int]
    resume: HistogramWire  # burst: seconds from the drop to being back in every room
    not_back: int  # burst: clients not back in all their rooms when the run ended
    cpu_seconds: float  # this worker process's CPU time


class RestTick(msgspec.Struct, tag="rtick"):
    worker: int
    second: int
    requests: int
    latency: HistogramWire
    failures: int


class RestDone(msgspec.Struct, tag="rdone"):
    worker: int
    requests: int
    latency: HistogramWire
    statuses: dict[str, int]
    failures: int
    sample_error: str | None
    cpu_seconds: float


class Failed(msgspec.Struct, tag="failed"):
    worker: int
    message: str


Event = Ready | Tick | Sent | Done | RestTick | RestDone | Failed

plan_decoder = msgspec.json.Decoder(WsPlan | RestPlan)
command_decoder = msgspec.json.Decoder(Command)
event_decoder = msgspec.json.Decoder(Event)
encoder = msgspec.json.Encoder()
