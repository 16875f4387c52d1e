"""The websocket scenarios, named after real use, and what a run of one is made of."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .wire import Kind


@dataclass(frozen=True)
class WsConfig:
    scenario: str
    clients: int  # sockets
    rooms: int  # rooms they are spread over (0: they join none)
    senders: int  # sockets that send, spread evenly over the rooms
    rate: float  # messages per second, all senders together
    duration: float  # seconds of sending (idle: seconds of watching)
    kind: Kind = "product"
    size: int = 120  # message body length, characters
    drop_at: float | None = None  # burst: seconds after the start when every client drops
    drain: float = 15.0  # seconds to wait after sending for the last deliveries
    binary: bool = False  # MessagePack frames instead of JSON (product only)
    connect_concurrency: int = 64  # handshakes in flight per worker process
    ack_timeout: float = 30.0
    settle: float = 2.0  # seconds between the last join and the "connected" memory sample
    user_rooms: bool = False  # every product socket also joins its user's own room
    heartbeat: float | None = None  # WS_HEARTBEAT of a node the harness starts
    # product sockets: the lean raw client, peerspark_rt.client.LiveClient (which resumes),
    # or the spec's Socket.IO events on /socket.io/
    client: Literal["lean", "live", "socketio"] = "lean"
    # who receives for the clients that only listen: the C receiver (bench/lean/receiver.c)
    # where it can (auto) or always (c), or the Python clients
    receiver: Literal["auto", "c", "python"] = "auto"
    # seconds after the start when the harness's own redis-server is paused (SIGSTOP), and for
    # how long: the room must not notice (product only)
    redis_stall_at: float | None = None
    redis_stall_for: float = 3.0
    # product nodes the harness starts, and whether behind nginx (the shipped
    # config/nginx.conf); several nodes share a Redis of the harness's own
    nodes: int = 1
    balancer: bool = False
    description: str = ""

    @property
    def per_room(self) -> int:
        return self.clients // self.rooms if self.rooms else 0


SCENARIOS: dict[str, WsConfig] = {
    "classroom": WsConfig(
        scenario="classroom",
        clients=1001,
        rooms=1,
        senders=1,
        # 100k deliveries/s offered: the Socket.IO peer is near its limit on one core here
        rate=100,
        duration=10,
        description="one room: 1 sender (the teacher) and 1,000 listeners",
    ),
    "study-hall": WsConfig(
        scenario="study-hall",
        clients=1000,
        rooms=200,
        senders=1000,
        rate=2000,
        duration=10,
        description="200 rooms of 5, everyone chatting; every message stored durably first",
    ),
    "idle": WsConfig(
        scenario="idle",
        clients=10_000,
        rooms=0,
        senders=0,
        rate=0,
        duration=15,
        heartbeat=5,
        description="10,000 idle authenticated sockets: memory each, and the heartbeat's CPU",
    ),
    "burst": WsConfig(
        scenario="burst",
        clients=5000,
        rooms=100,
        senders=100,
        rate=200,
        duration=10,
        drop_at=3,
        client="live",
        description="5,000 sockets in 100 rooms drop at once and resume while messages flow",
    ),
    "connect": WsConfig(
        scenario="connect",
        clients=1000,
        rooms=10,
        senders=0,
        rate=0,
        duration=1,
        settle=0.5,
        description="1,000 sockets arrive: websocket handshake + token check + join, per "
        "server CPU-second",
    ),
}

# The short versions `python -m bench all` runs.
QUICK: dict[str, dict[str, float]] = {
    # 50 msg/s: the delivery goals are set at ordinary rates (100 msg/s x 1,000 kept the
    # Python receivers ~90 % busy on a 2-core machine's one generator core; the C receiver,
    # bench/lean, takes ~30-40 % of it)
    "classroom": {"duration": 6, "rate": 50},
    "study-hall": {"duration": 6},
    "idle": {"duration": 11},
    "burst": {"duration": 8},
}


# `bench all` runs the classroom at each of these (issue 18's delivery goals are set at both)
CLASSROOM_GOAL_RATES = (20.0, 50.0)


def preset(name: str, quick: bool = False) -> WsConfig:
    config = SCENARIOS[name]
    if quick:
        config = replace(config, **QUICK.get(name, {}))  # type: ignore[arg-type]
    return config
