"""python -m bench {ws,rest,all}: the command line. bench/README.md documents every flag."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .context import DEFAULT_OUT, Context, machine_load
from .procs import Placement
from .report import comparison_lines, nodes_lines, repeated_ratio_lines, ws_table
from .scenarios import SCENARIOS, preset
from .wire import Kind

DESCRIPTION = """\
PeerSpark RT load-test harness.

commands:
  ws     websocket scenarios (classroom, study-hall, idle, burst, or custom numbers) against the
         product, the Socket.IO peer or the bare aiohttp echo peer (--server / --compare)
  rest   REST endpoints under concurrency against a seeded database
  study-due  GET /api/study/due for one user with 50,000 flashcards (p50/p99, the plan)
  leaderboard  the leaderboard's Redis read and write paths with 1,000,000 users' scores
  rollup-day  the analytics rollup of one day with 1,000 users' attendance (rolled back)
  all    a short version of every scenario, the peer comparison and the REST scenarios, with
         one summary table (what `make bench` runs; a few minutes)

Without --target the harness starts the server itself (pinned to one CPU, the load generator
on the others) and, for the product, an embedded PostgreSQL kept in the output folder (or the
one in DATABASE_URL). Results go to bench/out/<time>-<run>/ (result.json, plot.png).
"""


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("where and how")
    g.add_argument(
        "--target",
        metavar="URL",
        help="a running node or load balancer (http://host:port); default: start one here",
    )
    g.add_argument(
        "--server-pid",
        type=int,
        metavar="PID",
        help="with --target on this machine: read the server's CPU and memory from /proc/PID "
        "instead of its /metrics",
    )
    g.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="output folder (default bench/out)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=4,
        metavar="N",
        help="load-generator processes (default 4)",
    )
    g.add_argument(
        "--server-cpus",
        metavar="LIST",
        help="CPUs for a server the harness starts, e.g. 0 or 0-1 (default: the first CPU)",
    )
    g.add_argument(
        "--client-cpus",
        metavar="LIST",
        help="CPUs for the load generator (default: every CPU but the server's)",
    )
    g.add_argument("--no-pin", action="store_true", help="let the kernel place every process")
    g.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        metavar="URL",
        help="PostgreSQL for a node the harness starts (default: $DATABASE_URL, else an "
        "embedded server in the output folder)",
    )
    g.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        metavar="URL",
        help="Redis for a node the harness starts (default: $REDIS_URL, else in-process)",
    )
    g.add_argument(
        "--fresh-database",
        action="store_true",
        help="start the embedded PostgreSQL's product database empty (runs then compare on "
        "the same seeded data; a database given by URL is never emptied)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress lines, only the result")


def _ws_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        nargs="?",
        default="classroom",
        choices=[*SCENARIOS, "custom"],
        help="a named scenario (default classroom); flags below override its numbers",
    )
    g = parser.add_argument_group("the load (each defaults to the scenario's value)")
    g.add_argument("--clients", type=int, metavar="N", help="websocket clients")
    g.add_argument("--rooms", type=int, metavar="R", help="rooms the clients are spread over")
    g.add_argument("--senders", type=int, metavar="S", help="clients that send (spread evenly)")
    g.add_argument("--rate", type=float, metavar="MSG/S", help="messages per second, in total")
    g.add_argument("--duration", type=float, metavar="SECONDS", help="seconds of sending")
    g.add_argument("--size", type=int, metavar="CHARS", help="message body length (default 120)")
    g.add_argument(
        "--drop-at", type=float, metavar="SECONDS", help="every client drops and resumes then"
    )
    g.add_argument(
        "--drain", type=float, metavar="SECONDS", help="wait this long for the last deliveries"
    )
    g.add_argument("--binary", action="store_true", help="MessagePack frames (product only)")
    g.add_argument(
        "--redis-stall-at",
        type=float,
        metavar="SECONDS",
        help="run the node on a redis-server of the harness's own and pause it (SIGSTOP) this "
        "long after the start; the result reports p99 and lost/duplicated during the stall",
    )
    g.add_argument(
        "--redis-stall-for",
        type=float,
        metavar="SECONDS",
        help="how long the Redis stall lasts (default 3)",
    )
    g.add_argument(
        "--user-rooms",
        action="store_true",
        help="every product socket also joins its user's own room (user:<id>), as apps do "
        "for notifications",
    )
    g.add_argument(
        "--client",
        choices=("lean", "live", "socketio"),
        help="product sockets: the lean raw client on /ws (default), "
        "peerspark_rt.client.LiveClient (burst always uses it: it is what resumes), or the "
        "spec's Socket.IO events on /socket.io/ (with --compare: next to /ws and the peers)",
    )
    g.add_argument(
        "--receiver",
        choices=("auto", "c", "python"),
        help="who receives for the clients that only listen: the C receiver "
        "(bench/lean/receiver.c, compiled with gcc on first use) where the run allows it "
        "(auto, default), always (c), or the Python clients (python)",
    )
    g.add_argument(
        "--heartbeat",
        type=float,
        metavar="SECONDS",
        help="WS_HEARTBEAT of a node the harness starts (idle: 5; with --target: the target's, "
        "for the per-ping figure)",
    )
    g.add_argument(
        "--settle",
        type=float,
        metavar="SECONDS",
        help="pause after connecting before the memory sample and the start (default 2)",
    )
    g.add_argument(
        "--connect-concurrency",
        type=int,
        metavar="N",
        help="handshakes in flight per worker process (default 64)",
    )
    g.add_argument(
        "--nodes",
        type=int,
        metavar="N",
        help="start N product nodes behind nginx (the shipped config/nginx.conf) on a shared "
        "Redis, after the same load on one node, and compare their CPU per delivery",
    )
    g.add_argument(
        "--server",
        choices=("product", "socketio", "echo"),
        default="product",
        help="what the server is (default product; with --target: what the target speaks)",
    )
    g.add_argument(
        "--compare",
        action="store_true",
        help="run the scenario against the product, the Socket.IO peer and the echo peer",
    )
    g.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="with --compare: N interleaved rounds (product, peers, product, peers, ...); "
        "prints min and median of each ratio",
    )
    g.add_argument(
        "--echo-mode",
        choices=("raw", "send"),
        default="raw",
        help="echo peer: write one pre-built frame to each transport (raw, default) or await "
        "aiohttp's send_str per member (send)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    ws = commands.add_parser("ws", help="websocket scenarios")
    _ws_args(ws)
    _common(ws)
    from .restrun import add_rest_args

    rest = commands.add_parser("rest", help="REST endpoints under concurrency")
    add_rest_args(rest)
    _common(rest)
    from .study_due import add_study_due_args

    study = commands.add_parser("study-due", help="GET /api/study/due, one user, 50,000 cards")
    add_study_due_args(study)
    _common(study)
    from .leaderboard import add_args as add_leaderboard_args

    board = commands.add_parser("leaderboard", help="leaderboard reads and score updates")
    add_leaderboard_args(board)
    from .rollup_day import add_args as add_rollup_args

    rollup = commands.add_parser("rollup-day", help="the analytics rollup of one busy day")
    add_rollup_args(rollup)
    everything = commands.add_parser("all", help="short versions of everything + summary table")
    everything.add_argument(
        "--skip-peers", action="store_true", help="no Socket.IO / echo comparison"
    )
    everything.add_argument("--skip-rest", action="store_true", help="no REST scenarios")
    everything.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="interleaved classroom rounds (product, Socket.IO, echo) at each goal rate "
        "(3: a median that one disturbed round cannot move)",
    )
    everything.add_argument(
        "--only",
        metavar="LIST",
        help="comma-separated websocket scenarios to run (default: all four)",
    )
    _common(everything)
    # every `bench all` seeds the same data into an empty database: each REST run seeds more,
    # and a grown database had slowed resource search threefold between two runs
    everything.set_defaults(fresh_database=True)
    everything.add_argument(
        "--keep-database",
        dest="fresh_database",
        action="store_false",
        help="run on the embedded database as earlier runs left it",
    )
    return parser


def raise_open_file_limit() -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE to the hard limit (servers and workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


def context_from(args: argparse.Namespace) -> Context:
    if args.no_pin:
        placement = Placement(None, None)
    elif args.server_cpus or args.client_cpus:
        default = Placement.default()
        given = Placement.parse(args.server_cpus, args.client_cpus)
        placement = Placement(given.server or default.server, given.clients or default.clients)
    else:
        placement = Placement.default()
    if args.target and not args.server_cpus:
        placement = Placement(None, placement.clients)
    return Context(
        out_root=args.out.resolve(),
        placement=placement,
        target=args.target,
        server_pid=args.server_pid,
        database_url=args.database_url,
        redis_url=args.redis_url,
        workers=max(1, args.workers),
        quiet=args.quiet,
        fresh_database=args.fresh_database,
        echo_mode=getattr(args, "echo_mode", "raw"),
    )


def ws_config(args: argparse.Namespace, kind: Kind) -> Any:
    name = args.scenario
    base = preset(name) if name != "custom" else replace(preset("classroom"), scenario="custom")
    overrides: dict[str, Any] = {"kind": kind}
    for field in (
        "clients",
        "rooms",
        "senders",
        "rate",
        "duration",
        "size",
        "drop_at",
        "drain",
        "heartbeat",
        "connect_concurrency",
        "client",
        "receiver",
        "settle",
        "redis_stall_at",
        "redis_stall_for",
        "nodes",
    ):
        value = getattr(args, field)
        if value is not None:
            overrides[field] = value
    if args.binary:
        overrides["binary"] = True
    if args.user_rooms:
        overrides["user_rooms"] = True
    config = replace(base, **overrides)
    if args.target and args.heartbeat is None:
        # The harness cannot set a running node's heartbeat: assume the product's default.
        config = replace(config, heartbeat=25.0)
    if config.drop_at is not None:
        if config.client == "socketio":
            raise SystemExit(f"{name}: drops and resumes are measured with --client live")
        config = replace(config, client="live")  # dropping and resuming is LiveClient's job
    if config.receiver == "c":
        from .lean import unsupported

        why = unsupported(config)
        if why:
            raise SystemExit(f"--receiver c: not for this run ({why})")
    if config.rooms and config.clients < config.rooms:
        raise SystemExit("--clients must be at least --rooms")
    if config.senders > config.clients:
        raise SystemExit("--senders must be at most --clients")
    if kind != "product" and (config.drop_at is not None or config.binary):
        raise SystemExit(f"{name}: drops and MessagePack are for the product only")
    if config.redis_stall_at is not None and (kind != "product" or args.target):
        raise SystemExit("--redis-stall-at: for a product node the harness starts itself")
    if kind == "echo" and config.rooms == 0:
        raise SystemExit("the echo peer needs rooms")
    if config.nodes > 1:
        if kind != "product" or args.target:
            raise SystemExit("--nodes: product nodes the harness starts itself")
        if config.redis_stall_at is not None or config.client == "live":
            # (LiveClient sockets all come from one address: ip_hash would send them to one
            # node)
            raise SystemExit("--nodes: not with --redis-stall-at, burst or --client live")
    elif config.nodes < 1:
        raise SystemExit("--nodes must be at least 1")
    return config


async def _ws(args: argparse.Namespace) -> int:
    from .sendref import loopback_send_microseconds, reference_line
    from .wsrun import run_ws

    ctx = context_from(args)
    soft, hard = raise_open_file_limit()
    ctx.log(f"open-file limit (RLIMIT_NOFILE) raised from {soft} to {hard}")
    ctx.log(f"machine load before: {machine_load()}")
    if args.scenario == "connect" and args.compare:
        raise SystemExit("connect: the peers check no token; it measures the product only")
    kinds: list[Kind] = ["product", "socketio", "echo"] if args.compare else [args.server]
    configs = [ws_config(args, kind) for kind in kinds]
    if args.compare and args.client == "socketio":
        # the compatibility codec's cost: the same run on /ws first
        configs.insert(0, replace(configs[0], client="lean"))
    if args.compare:
        # interleaved, so a change in the machine's load lands on every kind alike
        configs = configs * max(1, args.repeat)
    results = []
    send_before = loopback_send_microseconds(ctx.placement.server) if args.compare else None
    try:
        for config in configs:
            # several nodes are measured against one node behind the same nginx, same load
            runs = [config]
            if config.nodes > 1:
                config = replace(config, balancer=True)
                runs = [replace(config, nodes=1), config]
            for run in runs:
                result = await run_ws(ctx, run)
                results.append(result)
                ctx.log(f"result: {result['output']}/result.json and plot.png")
    finally:
        await ctx.close()
    print()
    print(ws_table(results))
    if results:
        before = results[0].get("machine_load_before") or {}
        after = results[-1].get("machine_load_after") or {}
        print(
            f"machine load (1-minute average, {os.cpu_count()} CPUs): "
            f"{before.get('load1', '-')} before, {after.get('load1', '-')} after"
        )
    for line in comparison_lines(results) + repeated_ratio_lines(results) + nodes_lines(results):
        print(line)
    if args.compare:
        send_after = loopback_send_microseconds(ctx.placement.server)
        print(reference_line(send_before, send_after, ctx.placement.server))
    for result in results:
        stall = result.get("redis_stall")
        if stall:
            print(
                f"redis paused {stall['paused_at']:.1f}-{stall['resumed_at']:.1f}s: delivery p99 "
                f"{_ms(stall['p99_during'])} during (before: {_ms(stall['p99_before'])}, max "
                f"{_ms(stall['max_during'])}), {stall['acked_during']} acked during; missing "
                f"{stall['missing']}, duplicates {stall['duplicates']}, gaps {stall['gaps']}"
            )
    return 0


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    if args.command == "ws":
        return int(runner(_ws(args)))
    if args.command == "rest":
        from .restrun import main_rest

        return int(runner(main_rest(args, context_from(args))))
    if args.command == "study-due":
        from .study_due import main_study_due

        return int(runner(main_study_due(args, context_from(args))))
    if args.command == "leaderboard":
        from .leaderboard import main_leaderboard

        return main_leaderboard(args, runner)
    if args.command == "rollup-day":
        from .rollup_day import main_rollup_day

        return int(runner(main_rollup_day(args)))
    from .allrun import main_all

    return int(runner(main_all(args, context_from(args))))


if __name__ == "__main__":
    sys.exit(main())
